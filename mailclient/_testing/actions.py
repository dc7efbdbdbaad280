# -*- test-case-name: mailclient.test.test_testing -*-
"""
The actions a test scripts the server with: what it does at one step (reply,
disconnect, hang, ...), and the steps that are not commands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union, cast

from twisted.internet.interfaces import IReactorTime

#: The step that scripts the server's greeting (the first reply).
GREETING = "GREETING"
#: The step that scripts the reply to the end of a message: the C{.} line
#: after DATA, or C{BDAT ... LAST} when no C{BDAT} script applies.
DATA_END = "DATA-END"

Text = bytes | str


def _b(text: Text) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else text


class Action:
    """
    Base class of everything the server can be scripted to do at a step.
    """


@dataclass(frozen=True)
class Reply(Action):
    """
    Send an SMTP reply.

    @ivar code: the three-digit reply code.  A 421 reply closes the
        connection after it is sent, as RFC 5321 requires.
    @ivar text: the text; a sequence of lines (or text with line breaks) makes
        a multi-line reply.  Empty text sends the bare code.
    """

    code: int
    text: Text | Sequence[Text] = b""

    def lines(self) -> list[bytes]:
        """
        Return the text lines of this reply, without codes or line endings.
        """
        if isinstance(self.text, (bytes, str)):
            return _b(self.text).splitlines() or [b""]
        return [_b(line) for line in self.text] or [b""]

    def toBytes(self) -> bytes:
        """
        Return the reply as it goes on the wire.
        """
        lines = self.lines()
        out = []
        for i, line in enumerate(lines):
            sep = b"-" if i < len(lines) - 1 else b" "
            out.append(b"%d%s%s\r\n" % (self.code, sep if line else sep.strip(), line))
        return b"".join(out)


@dataclass(frozen=True)
class Disconnect(Action):
    """
    Close the connection cleanly (FIN) instead of replying.
    """


@dataclass(frozen=True)
class Abort(Action):
    """
    Reset the connection (RST on TCP) instead of replying; bytes not yet sent
    are thrown away.
    """


@dataclass(frozen=True)
class NoReply(Action):
    """
    Hang: send nothing, now or ever, and process nothing more on this
    connection.  Use it to test the client's timeouts.
    """


@dataclass(frozen=True)
class Garbage(Action):
    """
    Send C{data} verbatim instead of a reply (include C{\\r\\n} yourself if
    you want a line), then carry on as if the command had failed.
    """

    data: bytes


@dataclass(frozen=True)
class EndlessLine(Action):
    """
    Start a reply line and never end it: send C{prefix} and C{size} more
    bytes with no line ending, then hang.
    """

    size: int = 100_000
    prefix: bytes = b"250 "


@dataclass(frozen=True)
class Delay(Action):
    """
    Wait C{seconds} (on the server's clock) and then do C{then}, or the
    default reply if C{then} is L{None}.  Commands received meanwhile wait
    their turn; the wait is cancelled if the connection is lost.
    """

    seconds: float
    then: Action | None = None


@dataclass(frozen=True)
class Trickle(Action):
    """
    Send the reply (C{then}, or the default reply) one byte every
    C{interval} seconds (on the server's clock): a reply that never quite
    arrives.  Commands received meanwhile wait their turn.
    """

    interval: float
    then: Reply | None = None


#: What L{SMTPTestServer.script} accepts for one step: an L{Action}, a reply
#: code, or L{None} for the default behaviour.
ActionLike = Union[Action, int, None]


def _clock(clock: IReactorTime | None) -> IReactorTime:
    """
    C{clock}, or the global reactor (imported only now: importing
    mailclient.testing must not install a reactor).
    """
    if clock is not None:
        return clock
    from twisted.internet import reactor

    return cast(IReactorTime, reactor)


def _toAction(value: ActionLike, text: Text = b"") -> Action | None:
    if value is None:
        return None
    return _asAction(value, text)


def _asAction(value: object, text: Text = b"") -> Action:
    """
    An L{Action}, or a reply code as a L{Reply}.

    @raise TypeError: for anything else.
    """
    if isinstance(value, Action):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Reply(value, text)
    raise TypeError(f"not an action or a reply code: {value!r}")
