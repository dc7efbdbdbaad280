"""
The connections of a pool: opening them up to the cap, giving waiting
messages to the connections that wait, closing those that waited too long,
and making them again, as the retry policy says, when they cannot be made.

L{ConnectionManager} is the part of L{mailclient._pool.pool.SMTPPool} that
deals with connections; the pool itself deals with messages.  Connection
failures are counted once per I{round}: the connections opened at once
fail together (a server refusing connections refuses them all), and count
as one failure of the retry policy; while the policy's delay runs
(C{_hold}), no connection is opened.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, cast

from twisted.internet import error
from twisted.internet.interfaces import IDelayedCall, IReactorTCP, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailclient._pool.connection import Connection, ConnectionFactory, PooledClient, State
from mailclient._protocol.client import checkIdentity
from mailclient._protocol.connect import connectSender
from mailclient._protocol.events import emitRetry, errorText
from mailclient._protocol.sender import applySettings
from mailclient._wire.delivery import Outcome
from mailclient._wire.errors import SMTPClientError, SMTPConnectError
from mailclient._wire.host import getDNSName
from mailclient._wire.sasl import CramMD5ClientAuthenticator, LOGINAuthenticator, PLAINAuthenticator
from mailclient._wire.settings import ClientSettings
from mailclient._wire.tlspolicy import TLSPolicy
from mailclient._wire.types import RecipientResult

if TYPE_CHECKING:
    from mailclient._pool.pool import Delivery, Reported

_log = Logger(namespace="mailclient.pool")


class Turn:
    """
    The context of one event a connection processes: the outcomes met
    inside are handed to the callers when the outermost turn ends.
    """

    __slots__ = ("pool",)

    def __init__(self, pool: ConnectionManager) -> None:
        self.pool = pool

    def __enter__(self) -> None:
        self.pool._depth += 1

    def __exit__(self, *exc: object) -> None:
        pool = self.pool
        pool._depth -= 1
        if pool._depth == 0:
            pool._flush()


class ConnectionManager:
    """
    The connections of a pool (see the module's docstring).

    @ivar _connections: every connection, from the time it is opened until
        it is gone (those being made and those closing included: they
        count against the cap).
    @ivar _free: the connections waiting for a message, the last to wait
        last (it is taken first: the others may reach their idle timeout).
    """

    host: str
    port: int
    maxConnections: int
    idleTimeout: float | None
    noopAfter: float | None
    settings: ClientSettings
    tlsPolicy: TLSPolicy
    _reactor: IReactorTCP
    _clock: IReactorTime
    _context: object
    _username: bytes | None
    _password: bytes | None
    _identityGiven: bytes | None
    _overlap: bool
    _queue: deque[Delivery]
    _closed: bool
    _forced: bool

    def _initConnections(self) -> None:
        self._turn = Turn(self)
        self._depth = 0
        self._dispatching = False
        self._needDispatch = False
        self._connections: list[Connection] = []
        self._free: list[Connection] = []
        self._opened = 0
        self._round = 0
        self._failures = 0
        self._firstFailure: float | None = None
        self._givingUp: SMTPClientError | None = None
        self._hold: IDelayedCall | None = None

    # What the pool provides.

    def _hasWork(self) -> bool:
        return bool(self._queue)

    def _flush(self) -> None:
        raise NotImplementedError()

    def _report(self, number: int, delivery: Delivery | None, outcome: Outcome, *,
                error: BaseException | None = None) -> None:
        raise NotImplementedError()

    def _finish(self, delivery: Delivery, result: Reported) -> None:
        raise NotImplementedError()

    def _maybeClosed(self) -> None:
        raise NotImplementedError()

    def _take(self, connection: Connection) -> Delivery | None:
        raise NotImplementedError()

    def _answered(self, connection: Connection, delivery: Delivery, code: int, resp: bytes,
                  addresses: list[RecipientResult], log: bytes) -> None:
        raise NotImplementedError()

    def _failed(self, connection: Connection, delivery: Delivery, exc: Exception) -> None:
        raise NotImplementedError()

    # Connections.

    def _dispatch(self) -> None:
        """
        Give the waiting messages connections: a waiting connection, else a
        new one if the cap allows.
        """
        if self._dispatching:
            self._needDispatch = True
            return
        self._dispatching = True
        try:
            while True:
                self._needDispatch = False
                self._dispatchOnce()
                if not self._needDispatch:
                    break
        finally:
            self._dispatching = False

    def _dispatchOnce(self) -> None:
        if not self._free and (len(self._connections) >= self.maxConnections
                               or self._hold is not None or self._givingUp is not None):
            # Every connection is busy, and no other may be opened now.
            return
        while self._queue:
            claimed = sum(1 for c in self._connections
                          if c.state is State.CONNECTING or c.state is State.CHECKING)
            if len(self._queue) <= claimed:
                return
            if self._free:
                self._wake(self._free.pop())
            elif (len(self._connections) < self.maxConnections and self._hold is None
                  and self._givingUp is None and not self._forced):
                self._open()
            else:
                return

    def _wake(self, connection: Connection) -> None:
        self._stopWaiting(connection)
        client = cast(PooledClient, connection.client)
        waited = self._clock.seconds() - connection.idleSince
        if connection.suspect or (self.noopAfter is not None and waited >= self.noopAfter):
            connection.suspect = False
            client.check()
        else:
            client.resume()

    def _stopWaiting(self, connection: Connection) -> None:
        if connection in self._free:
            self._free.remove(connection)
        timer, connection.idleTimer = connection.idleTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _open(self) -> None:
        self._opened += 1
        connection = Connection(self._opened)
        connection.round = self._round
        self._connections.append(connection)
        factory = ConnectionFactory(self, connection)
        settings = self.settings
        try:
            connection.connector = connectSender(
                self._reactor, self.host, self.port, factory, settings.connectTimeout,
                settings.bindAddress,
                contextFactory=self._context if self.tlsPolicy.implicit else None)
        except Exception as e:
            self._connectFailed(connection, Failure(e))

    def _identity(self) -> bytes:
        if self._identityGiven is None:
            self._identityGiven = checkIdentity(getDNSName())
        return self._identityGiven

    def _buildProtocol(self, factory: ConnectionFactory,
                       connection: Connection) -> PooledClient | None:
        if connection.state is not State.CONNECTING:
            # Closed while connecting: the connection is dropped at once.
            self._gone(connection)
            return None
        client = PooledClient(self, connection, self._password, self._context,
                              self._identity(), self._overlap)
        client.factory = factory
        settings = self.settings
        client.timeout = settings.timeout
        if settings.timeouts is not None:
            client.timeouts = settings.timeouts
        if IReactorTime.providedBy(self._clock):
            client._mailclient.clock = self._clock
        if self._password is not None:
            for auth in (CramMD5ClientAuthenticator, LOGINAuthenticator, PLAINAuthenticator):
                client.registerAuthenticator(auth(self._username))
        applySettings(client, settings, self.tlsPolicy)
        connection.client = client
        return client

    def _ready(self, connection: Connection) -> None:
        self._failures = 0
        self._firstFailure = None
        self._givingUp = None

    def _connectionFree(self, connection: Connection) -> None:
        """
        C{connection} has nothing to send: it waits (or, once the pool is
        closed, says QUIT).
        """
        client = cast(PooledClient, connection.client)
        if self._closed and not self._queue:
            client.quit()
            return
        connection.idleSince = self._clock.seconds()
        connection.waited = True
        self._free.append(connection)
        if self.idleTimeout is not None:
            connection.idleTimer = self._clock.callLater(
                self.idleTimeout, self._idleTooLong, connection)

    def _setupFailed(self, connection: Connection, exc: Exception) -> None:
        connection.failure = exc

    def _connectFailed(self, connection: Connection, reason: Failure) -> None:
        with self._turn:
            exc = SMTPConnectError(-1, "Unable to connect to SMTP server: "
                                   + reason.getErrorMessage())
            exc.__cause__ = reason.value
            connection.failure = exc
            connection.refused = bool(reason.check(
                error.ConnectionRefusedError, error.DNSLookupError))
            self._gone(connection)

    def _gone(self, connection: Connection) -> None:
        """
        C{connection} is closed (or could not be made).
        """
        if connection.state is State.CLOSED:
            return
        wasClosing = connection.state is State.CLOSING
        connection.state = State.CLOSED
        self._stopWaiting(connection)
        if connection in self._connections:
            self._connections.remove(connection)
        connection.client = None
        if not connection.ready and not (self._closed and (wasClosing or not self._queue)):
            failure = connection.failure or SMTPConnectError(
                -1, b"Connection lost before the session was set up")
            self._connectionFailed(connection, failure, connection.refused)
        self._needDispatch = True
        if not self._depth:
            self._dispatch()
        self._maybeClosed()

    def _connectionFailed(self, connection: Connection, exc: Exception, refused: bool) -> None:
        """
        A connection could not be made or set up: try again as the retry
        policy says; once it gives up and no connection is left, fail the
        messages waiting.
        """
        if self._forced:
            return
        if connection.round == self._round:
            self._round += 1
            self._failures += 1
            now = self._clock.seconds()
            if self._firstFailure is None:
                self._firstFailure = now
            retryable = isinstance(exc, SMTPClientError) and (exc.retry or exc.isTemporary)
            delay = self.settings.retry.nextDelay(
                self._failures, now - self._firstFailure, refused) if retryable else None
            if delay is None:
                self._givingUp = exc if isinstance(exc, SMTPClientError) else SMTPConnectError(
                    -1, str(exc))
            elif self._queue:
                policy = self.settings.retry.retries
                emitRetry(_log, host=self.host, port=self.port, retry=self._failures,
                          retries=policy, delay=delay, reason=errorText(exc),
                          connection=connection.number)
                if delay > 0:
                    self._holdFor(delay)
        if self._givingUp is not None and not any(c.live for c in self._connections):
            failure, self._givingUp = self._givingUp, None
            self._failures = 0
            self._firstFailure = None
            self._round += 1
            while self._queue:
                delivery = self._queue.popleft()
                self._report(delivery.number, delivery, Outcome.FAILED, error=failure)
                self._finish(delivery, Failure(failure))

    def _holdFor(self, delay: float) -> None:
        if self._hold is not None and self._hold.active():
            self._hold.cancel()
        self._hold = self._clock.callLater(delay, self._holdOver)

    def _holdOver(self) -> None:
        self._hold = None
        with self._turn:
            self._needDispatch = True

    def _idleTooLong(self, connection: Connection) -> None:
        connection.idleTimer = None
        with self._turn:
            self._stopWaiting(connection)
            if connection.client is not None:
                connection.client.quit()

    def _stopConnecting(self) -> None:
        for connection in list(self._connections):
            if connection.state is State.CONNECTING:
                connection.state = State.CLOSING
                if connection.client is None and connection.connector is not None:
                    connection.connector.disconnect()
