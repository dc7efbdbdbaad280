"""
Relayers: SMTP clients that send queued messages (C{-H}/C{-D} files in
Twisted's format) over one connection, removing each from the queue once
the server has accepted it.  Public face: L{mailclient.relay}.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Union
from collections.abc import Sequence

from twisted.logger import Logger
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.python.util import LineLog

from mailclient._protocol.client import SUCCESS, SMTPClient
from mailclient._protocol.esmtp import ESMTPClient
from mailclient._relaying.queuefiles import openQueueFile, readEnvelope
from mailclient._wire.options import MailOptions
from mailclient._wire.types import MessageFile, RecipientResult
from mailclient.interfaces import IDeliveryProgress

_log = Logger()

MessagePath = Union[str, bytes, "os.PathLike[str]"]

if TYPE_CHECKING:
    _ClientBase = SMTPClient
else:
    _ClientBase = object


class RelayerMixin(_ClientBase):
    """
    The C{getMailFrom}/C{getMailTo}/C{getMailData}/C{sentMail} hooks of an
    SMTP client that relays queued messages.  Mix it in before an
    L{SMTPClient} subclass.

    @ivar messages: For each message still to send, C{[from, to, body]}:
        the envelope, and the body file while the message is being sent
        (L{None} before and after).
    @ivar names: The base path of each message in C{messages}.
    """

    # Twisted's lists, whatever their entries (Twisted's own tests put
    # numbers there).
    messages: list[list[Any]]
    names: list[str]

    def loadMessages(self, messagePaths: Sequence[MessagePath]) -> None:
        """
        Read the envelopes of the messages to relay.  Bodies are not opened
        here.  A message whose envelope cannot be read is skipped (and
        logged); it stays in the queue.

        @param messagePaths: The base path of each message (without C{-H} or
            C{-D}).
        """
        self.messages = []
        self.names = []
        for path in messagePaths:
            name = os.fsdecode(path)
            try:
                sender, recipient = readEnvelope(name + "-H")
            except Exception as e:
                _log.error(
                    "Not relaying {name}: cannot read its envelope: {error}",
                    name=name,
                    error=str(e)[:300] or type(e).__name__,
                )
                continue
            self.messages.append([sender, recipient, None])
            self.names.append(name)

    def getMailFrom(self) -> object | None:
        """
        Return the sender of the next message, opening its body; L{None}
        when there are no more messages.  Messages whose data file cannot be
        opened (because it has gone) are skipped.
        """
        while self.messages:
            if openCurrent(self):
                return self.messages[0][0]
            name = self.names[0]
            dropCurrent(self)
            _skipped(self, name)
        return None

    def getMailTo(self) -> list[object] | None:
        """
        Return the recipient of the current message, as a one-item list.
        """
        if not self.messages:
            return None
        return [self.messages[0][1]]

    def getMailData(self) -> MessageFile | None:
        """
        Return the open binary body file of the current message.
        """
        if not self.messages:
            return None
        if not openCurrent(self):
            return None
        return self.messages[0][2]

    def sentMail(
        self, code: int, resp: bytes, numOk: int, addresses: list[RecipientResult],
        log: LineLog,
    ) -> None:
        """
        The server answered the current message: close its body and, if it
        was accepted, remove it from the queue.  A refused message stays in
        the queue.
        """
        name = self.names[0]
        dropCurrent(self)
        if code in SUCCESS:
            for suffix in ("-D", "-H"):
                try:
                    os.remove(name + suffix)
                except FileNotFoundError:
                    pass

    def sendError(self, exc: Exception) -> None:
        """
        Close the current body, then handle the error as L{SMTPClient} does
        (the connection is closed; the message stays in the queue).
        """
        closeCurrent(self)
        super().sendError(exc)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Close any open body when the connection goes away.
        """
        try:
            super().connectionLost(reason)
        finally:
            closeCurrent(self)


# The relayers' own steps: functions, so that no subclass can replace one
# by accident (Twisted's relayers have no such methods).  They work on any
# object with Twisted's C{messages} and C{names} lists, whatever their
# entries (Twisted's own tests give a bare ManagedRelayerMixin numbers).


def openCurrent(relayer: RelayerMixin) -> bool:
    """
    Open the body of C{relayer}'s first message, unless it is open already.
    """
    entry = relayer.messages[0]
    if entry[2] is None:
        try:
            entry[2] = openQueueFile(relayer.names[0] + "-D")
        except OSError as e:
            _log.error(
                "Not relaying {name}: cannot open its data: {error}",
                name=relayer.names[0],
                error=e,
            )
            return False
    return True


def closeCurrent(relayer: object) -> None:
    """
    Close the body of C{relayer}'s first message, if it is open.
    """
    messages = getattr(relayer, "messages", None)
    if not messages:
        return
    entry = messages[0]
    if isinstance(entry, list) and len(entry) > 2 and entry[2] is not None:
        body, entry[2] = entry[2], None
        body.close()


def dropCurrent(relayer: RelayerMixin) -> None:
    """
    C{relayer} is done with its first message: close its body and forget it.
    """
    closeCurrent(relayer)
    del relayer.messages[0]
    del relayer.names[0]


def _skipped(relayer: object, name: str) -> None:
    """
    The message C{name} was skipped because its data file is gone: tell
    the attempt manager, if C{relayer} has one that wants to know.
    """
    progress = IDeliveryProgress(getattr(relayer, "manager", None), None)
    if progress is not None:
        progress.forget(getattr(relayer, "factory", None), name)


class SMTPRelayer(RelayerMixin, SMTPClient):
    """
    An SMTP client that relays queued messages.
    """

    def __init__(self, messagePaths: Sequence[MessagePath], *args: Any, **kw: Any) -> None:
        """
        @param messagePaths: The base path of each message to relay.
        @param args: Positional arguments for L{SMTPClient.__init__}
            (C{identity}, C{logsize}).
        @param kw: Keyword arguments for L{SMTPClient.__init__}.
        """
        SMTPClient.__init__(self, *args, **kw)
        self.loadMessages(messagePaths)


class ESMTPRelayer(RelayerMixin, ESMTPClient):
    """
    An ESMTP client that relays queued messages.

    Whether a message holds 8-bit data is decided before MAIL: to a server
    that did not offer 8BITMIME, an 8-bit MIME message is converted to 7
    bits and any other 8-bit message is refused (5.6.3, so a managed
    relayer returns it to its sender once), never abandoned in the middle
    of DATA and retried the same way.
    """

    mailOptions = MailOptions(convertEightBit=True)

    def __init__(self, messagePaths: Sequence[MessagePath], *args: Any, **kw: Any) -> None:
        """
        @param messagePaths: The base path of each message to relay.
        @param args: Positional arguments for L{ESMTPClient.__init__}
            (C{secret}, C{contextFactory}, C{identity}, C{logsize}).
        @param kw: Keyword arguments for L{ESMTPClient.__init__}.
        """
        ESMTPClient.__init__(self, *args, **kw)
        self.loadMessages(messagePaths)
