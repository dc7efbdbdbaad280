"""
Waiting for C{NOTIFY} from the PostgreSQL queue's database: L{Listener}
listens on a connection of its own, watched by the reactor, and makes it
again when it is lost.
"""

from __future__ import annotations

import os
from typing import Callable

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mailclient._relaying.pgdb import Database, ListenConnection, QueueReactor

_log = Logger()


@implementer(IReadDescriptor)
class Listener:
    """
    Listens for C{NOTIFY} on C{channel}, on a connection of its own watched
    by the reactor, and calls C{callback(payload)} for each notification.
    When the connection is lost it is made again (after C{retryDelay}
    seconds, doubling up to C{maxRetryDelay}), and C{callback(None)} is
    called once it listens again: notifications sent meanwhile were lost.
    """

    def __init__(
        self, database: Database, channel: str, callback: Callable[[str | None], object],
        reactor: QueueReactor | None = None, retryDelay: float = 1.0,
        maxRetryDelay: float = 30.0,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        self.database = database
        self.channel = channel
        self.callback = callback
        self.reactor = reactor
        self.retryDelay = retryDelay
        self.maxRetryDelay = maxRetryDelay
        self._connection: ListenConnection | None = None
        self._fd = -1
        self._retry: IDelayedCall | None = None
        self._delay = retryDelay
        self._stopped = True
        self._connecting: defer.Deferred[ListenConnection] | None = None

    @property
    def listening(self) -> bool:
        """
        Whether a connection is listening now.
        """
        return self._connection is not None

    def start(self) -> defer.Deferred[None]:
        """
        Listen.  The Deferred fails if the first connection cannot be made
        (no retry then).
        """
        self._stopped = False
        return self._connect().addCallback(lambda _: None)

    def _connect(self) -> defer.Deferred[None]:
        self._retry = None
        d = self._connecting = self.database.listenConnection(self.channel)
        return d.addCallback(self._listening)

    def _listening(self, connection: ListenConnection) -> None:
        self._connecting = None
        if self._stopped:
            self.database.closeConnection(connection)
            return
        self._connection = connection
        # The reactor watches a duplicate of the socket, closed only once it
        # is no longer watched: libpq closes its own as soon as it sees the
        # connection end, before we can stop watching it.
        self._fd = os.dup(connection.fileno())
        self._delay = self.retryDelay
        self.reactor.addReader(self)

    def _reconnect(self) -> None:
        def listening(_: object) -> None:
            if not self._stopped:
                self._notify(None)

        def failed(failure: Failure) -> None:
            self._connecting = None
            _log.warn("Cannot listen for queued mail: {error}", error=failure.getErrorMessage())
            self._scheduleReconnect()

        self._connect().addCallbacks(listening, failed)

    def _scheduleReconnect(self) -> None:
        if self._stopped or self._retry is not None:
            return
        delay, self._delay = self._delay, min(self._delay * 2, self.maxRetryDelay)
        self._retry = self.reactor.callLater(delay, self._reconnect)

    def _notify(self, payload: str | None) -> None:
        try:
            self.callback(payload)
        except Exception:
            _log.failure("Queue notification callback failed")

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "PostgreSQL listener"

    def doRead(self) -> None:
        connection = self._connection
        if connection is None:
            return None
        pgconn = connection.pgconn
        payloads = []
        lost = False
        try:
            pgconn.consume_input()
            while True:
                notification = pgconn.notifies()
                if notification is None:
                    break
                payloads.append(notification.extra.decode("utf-8", "replace"))
            # Anything but CONNECTION_OK (0): the connection is gone.
            lost = int(pgconn.status) != 0
        except Exception:
            lost = True
        for payload in payloads:
            self._notify(payload)
        if lost:
            self._lost()
        return None

    def _lost(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        self._unwatch()
        try:
            connection.pgconn.finish()
        except Exception:
            pass
        if not self._stopped:
            _log.warn("Lost the connection listening for queued mail; reconnecting")
            self._scheduleReconnect()

    def connectionLost(self, reason: Failure) -> None:
        self._lost()

    def stop(self) -> defer.Deferred[None]:
        """
        Stop listening and close the connection.
        """
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        connection, self._connection = self._connection, None
        if connection is None:
            connecting = self._connecting
            if connecting is not None:
                # Closed by _listening once made; wait for it.
                done: defer.Deferred[None] = defer.Deferred()
                connecting.addBoth(lambda _: done.callback(None))
                return done
            return defer.succeed(None)
        self._unwatch()
        return self.database.closeConnection(connection)

    def _unwatch(self) -> None:
        self.reactor.removeReader(self)
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
