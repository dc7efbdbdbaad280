"""
One connection of a pool: L{PooledClient}, an L{ESMTPClient} that takes
its messages from the pool and waits, connected, when there are none; its
record L{Connection}; and the factory that connects it.

The client keeps the whole conversation of L{ESMTPClient}: EHLO,
STARTTLS and AUTH once, when the connection is made; then, for each
message, the plan of L{mailclient._wire.plan} (PIPELINING, CHUNKING and,
with C{pipelineMessages}, the next message started before the previous
one's replies).  It only changes what happens between messages:

  - with a message waiting, C{smtpState_from} starts it at once: no RSET
    after a message the server accepted (nor NOOP), RSET after one that
    failed (as L{SMTPClient} does), and after one the client refused
    itself (an address it cannot send), which ends no connection;
  - with none, the connection waits without a command and without a
    reply timer, until the pool gives it a message (after a NOOP, when
    it waited past the pool's threshold) or closes it (QUIT).

What the pool must know of each message, besides its outcome, is whether
the end of its data was written: then a lost connection leaves its fate
unknown, and it must not be sent again.  The client keeps that in its
transaction (C{Transaction.dataWritten}), read when the message is
reported.
"""

from __future__ import annotations

import io
from collections import deque
from typing import TYPE_CHECKING

from twisted.internet import protocol
from twisted.internet.interfaces import IAddress, IConnector, IDelayedCall
from twisted.python.failure import Failure
from twisted.python.util import LineLog

from mailclient._protocol.outcome import SUCCESS, abortConnection
from mailclient._protocol.esmtp import ESMTPClient, tlsRecordOf
from mailclient._wire.errors import CannotSendError, InvalidAddressError, SMTPConnectError
from mailclient._wire.state import Transaction
from mailclient._wire.tlspolicy import TLSRecord
from mailclient._wire.types import RecipientResult, Text

if TYPE_CHECKING:
    from mailclient._pool.connections import ConnectionManager
    from mailclient._pool.pool import Delivery


class State:
    """
    Where a pooled connection is (the values of L{Connection.state}).
    """

    #: Resolving the host, connecting, or in the greeting, EHLO, STARTTLS
    #: or AUTH.
    CONNECTING = "connecting"
    #: Waiting for a message, no command outstanding.
    IDLE = "idle"
    #: Checking with NOOP, after a long wait, before taking a message.
    CHECKING = "checking"
    #: Sending messages.
    BUSY = "busy"
    #: QUIT sent (or being closed): takes nothing more.
    CLOSING = "closing"
    #: Gone.
    CLOSED = "closed"


class Connection:
    """
    The pool's record of one connection.

    @ivar number: its number in the pool (1 for the first).
    @ivar state: see L{State}.
    @ivar client: the protocol, once connected.
    @ivar connector: what connected it (to stop connecting).
    @ivar address: the server's IP address, once connected.
    @ivar tls: the TLS it got, once set up.
    @ivar carried: how many messages it started.
    @ivar waited: whether it ever waited for a message.
    @ivar idleSince: when it last began to wait (clock seconds).
    @ivar idleTimer: closes it when it waited too long.
    @ivar suspect: check it with NOOP before the next message, however
        short its wait (another connection was found closed by the server).
    @ivar ready: whether it got through greeting, EHLO, STARTTLS and AUTH.
    @ivar round: the pool's round of connection attempts it belongs to.
    @ivar failure: why it could not be made or set up.
    @ivar refused: whether that was a definite refusal (connection
        refused, no such host).
    """

    def __init__(self, number: int) -> None:
        self.number = number
        self.state = State.CONNECTING
        self.client: PooledClient | None = None
        self.connector: IConnector | None = None
        self.address: str | None = None
        self.tls: TLSRecord | None = None
        self.carried = 0
        self.waited = False
        self.idleSince = 0.0
        self.idleTimer: IDelayedCall | None = None
        self.suspect = False
        self.ready = False
        self.round = 0
        self.failure: Exception | None = None
        self.refused = False

    def __repr__(self) -> str:
        return "<Connection %d %s>" % (self.number, self.state)

    @property
    def live(self) -> bool:
        """
        Whether it is connecting or connected and not closing.
        """
        return self.state not in (State.CLOSING, State.CLOSED)


def _settle(delivery: Delivery) -> None:
    """
    The client is done with C{delivery}'s transaction: keep whether the end
    of its data was written (then a lost connection leaves its fate
    unknown, and it is never sent again).
    """
    txn = delivery.transaction
    if isinstance(txn, Transaction) and txn.dataWritten:
        delivery.dataEnded = True
    delivery.transaction = None


class PooledClient(ESMTPClient):
    """
    The protocol of a pooled connection (see the module's docstring).

    @ivar connection: its L{Connection}.
    @ivar started: the messages started on it and not yet reported, oldest
        first (two with C{pipelineMessages}).
    """

    def __init__(self, pool: ConnectionManager, connection: Connection, secret: Text | None,
                 contextFactory: object, identity: bytes, overlap: bool) -> None:
        ESMTPClient.__init__(self, secret, contextFactory, identity, 20)
        self.pool = pool
        self.connection = connection
        self.started: deque[Delivery] = deque()
        self._overlap = overlap

    @property
    def pipelineMessages(self) -> bool:
        """
        Start the next message before the previous one's replies only when
        one is waiting: the client must never ask for a message the pool
        does not have (it would end the session).
        """
        return self._overlap and self.pool._hasWork()

    @pipelineMessages.setter
    def pipelineMessages(self, value: bool) -> None:
        self._overlap = value

    # Entry points: whatever outcomes they bring are handed to the caller
    # once the client has gone as far as it can (see connections.Turn).

    def connectionMade(self) -> None:
        with self.pool._turn:
            ESMTPClient.connectionMade(self)
            peer = getattr(self.transport, "getPeer", None)
            try:
                self.connection.address = getattr(peer(), "host", None) if peer else None
            except Exception:
                self.connection.address = None

    def dataReceived(self, data: bytes) -> None:
        with self.pool._turn:
            ESMTPClient.dataReceived(self, data)

    def timeoutConnection(self) -> None:
        with self.pool._turn:
            ESMTPClient.timeoutConnection(self)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        with self.pool._turn:
            ESMTPClient.connectionLost(self, reason)
            while self.started:
                # (Every started message is reported by the client; this
                # is a safety net, never sent again.)
                delivery = self.started.popleft()
                _settle(delivery)
                self.pool._failed(self.connection, delivery, SMTPConnectError(
                    -1, b"Connection to the SMTP server was lost", self.log.str()))
            self.pool._gone(self.connection)

    # What the pool asks of the connection.

    def resume(self) -> None:
        """
        Take the next message now.
        """
        with self.pool._turn:
            self.smtpState_from(250, b"")

    def check(self) -> None:
        """
        Send NOOP; on its 250 take the next message, on anything else close.
        """
        with self.pool._turn:
            self.connection.state = State.CHECKING
            self._expected = SUCCESS
            self._okresponse = self.smtpState_from
            self._failresponse = self._closeOnReply
            self.sendLine(b"NOOP")

    def quit(self) -> None:
        """
        Say QUIT and close (the connection is waiting).
        """
        self.connection.state = State.CLOSING
        self._disconnectFromServer()

    def abort(self) -> None:
        """
        Drop the connection at once.
        """
        self.connection.state = State.CLOSING
        self.setTimeout(None)
        abortConnection(self)

    def _closeOnReply(self, code: int, resp: bytes) -> None:
        # A reply while waiting (a server's "421 idle too long"), or a
        # refused NOOP: the connection is no use any more.
        self.connection.state = State.CLOSING
        self.smtpState_disconnect(code, resp)

    # The conversation between messages.

    def smtpState_from(self, code: int, resp: bytes) -> None:
        state = self._mailclient
        if state.deferredStart is not None or state.early:
            # The message asked for early (pipelineMessages), or its fate.
            ESMTPClient.smtpState_from(self, code, resp)
            return
        connection = self.connection
        if not connection.ready:
            connection.ready = True
            connection.tls = tlsRecordOf(self)
            self.pool._ready(connection)
        if connection.state is State.CLOSING:
            self._disconnectFromServer()
            return
        if self.pool._hasWork():
            connection.state = State.BUSY
            ESMTPClient.smtpState_from(self, code, resp)
            return
        # Nothing to send: wait, with no reply awaited and no timer.
        self.setTimeout(None)
        self._expected = ()
        self._okresponse = self._failresponse = self._closeOnReply
        connection.state = State.IDLE
        self.pool._connectionFree(connection)

    def getMailFrom(self) -> str | None:
        delivery = self.pool._take(self.connection)
        if delivery is None:
            return None
        self.started.append(delivery)
        return delivery.message.sender

    def getMailTo(self) -> list[str]:
        delivery = self.started[-1]
        delivery.transaction = self._mailclient.transaction
        return list(delivery.message.recipients)

    def getMailData(self) -> io.BytesIO:
        return io.BytesIO(self.started[-1].message.body)

    def sentMail(self, code: int, resp: bytes, numOk: int,
                 addresses: list[RecipientResult], log: LineLog) -> None:
        delivery = self.started.popleft()
        _settle(delivery)
        self.pool._answered(self.connection, delivery, code, resp, addresses, log.str())

    def sendError(self, exc: Exception) -> None:
        connection = self.connection
        if not self.started:
            if not connection.ready:
                self.pool._setupFailed(connection, exc)
                connection.state = State.CLOSING
                ESMTPClient.sendError(self, exc)
            # (Else the connection was lost, or its server talked, while
            # it waited: nothing to report.)
            return
        delivery = self.started.popleft()
        _settle(delivery)
        if isinstance(exc, (InvalidAddressError, CannotSendError)) and not exc.isFatal:
            # Refused by the client before its data: this message alone
            # fails; RSET ends whatever the server has of it.
            self.pool._failed(connection, delivery, exc)
            self._resetAfterRefusal()
            return
        self.pool._failed(connection, delivery, exc)
        connection.state = State.CLOSING
        ESMTPClient.sendError(self, exc)

    def _resetAfterRefusal(self) -> None:
        self._expected = SUCCESS
        self._okresponse = self.smtpState_from
        self._failresponse = self._closeOnReply
        self.sendLine(b"RSET")


class ConnectionFactory(protocol.ClientFactory):
    """
    Connects one pooled connection (given to L{connectSender}, which tries
    each address of the host and builds one protocol).
    """

    noisy = False

    def __init__(self, pool: ConnectionManager, connection: Connection) -> None:
        self.pool = pool
        self.connection = connection

    def buildProtocol(self, addr: IAddress | None) -> PooledClient | None:
        return self.pool._buildProtocol(self, self.connection)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self.pool._connectFailed(self.connection, reason)

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        # The protocol's connectionLost has told the pool.
        pass


__all__ = ["Connection", "ConnectionFactory", "PooledClient", "State"]

