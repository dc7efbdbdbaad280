"""
A relay worker on the PostgreSQL queue: a service that keeps a relaying
manager supplied with claimed messages.

It claims as many messages as the manager has room for (free connections
times messages per connection, less what it already holds), has the manager
relay them (C{checkState}), and does it again when an attempt ends, when a
notification says mail was queued or released, and when the next deferred
message falls due (at most every C{pollInterval} seconds).  Stopping it
releases what was claimed and not started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailclient._relaying.pgdb import QueueReactor
from mailclient._relaying.pgqueue import PGQueue
from mailclient._wire.queuestate import smartHostDestination

if TYPE_CHECKING:
    from mailclient._relaying.manager import SmartHostSMTPRelayingManager

_log = Logger()


class PGRelayService(service.Service):
    """
    Drives C{manager} (a C{SmartHostSMTPRelayingManager} whose C{queue} is
    C{queue}) from the PostgreSQL queue.

    @ivar pollInterval: The longest time between two looks at the queue.
    @ivar minimumDelay: The shortest time between two looks, when the next
        message falls due sooner.
    @ivar idleDelay: The time before the next look when messages are due
        but none could be claimed (their destinations' connection slots are
        all taken).
    """

    minimumDelay: float = 0.05

    idleDelay: float = 1.0

    def __init__(
        self, manager: SmartHostSMTPRelayingManager, queue: PGQueue, pollInterval: float = 30.0,
        reactor: QueueReactor | None = None,
    ) -> None:
        if reactor is None:
            reactor = queue.reactor
        self.manager = manager
        self.queue = queue
        self.pollInterval = pollInterval
        self.reactor = reactor
        # One claimed batch (one connection slot) is one connection's worth:
        # a larger batch would be split by the manager over several
        # connections under one slot.
        queue.batchSize = max(1, manager.maxMessagesPerConnection)
        smartHost = getattr(manager, "smartHost", None)
        if queue.smartHost is None and smartHost:
            host, port = smartHost[0]
            queue.smartHost = smartHostDestination(host, port)
        self._busy = False
        self._again = False
        self._timer: IDelayedCall | None = None
        self._attempts: set[defer.Deferred[list[tuple[bool, None]]]] = set()

    def startService(self) -> defer.Deferred[None]:
        """
        Start the queue (its schema is checked), then relay.
        """
        service.Service.startService(self)
        d = self.queue.start()

        def started(_: object) -> None:
            self.queue.wakeObservers.append(self.wake)
            self.wake()

        return d.addCallback(started)

    def stopService(self) -> defer.Deferred[None]:
        """
        Stop claiming, release what was not started, and wait (at most the
        queue's lease) for what was.
        """
        service.Service.stopService(self)
        self._cancelTimer()
        if self.wake in self.queue.wakeObservers:
            self.queue.wakeObservers.remove(self.wake)
        return self.queue.stop()

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def wake(self) -> None:
        """
        Look at the queue now (or right after the current look).
        """
        if not self.running:
            return
        if self._busy:
            self._again = True
            return
        self._busy = True
        self._cancelTimer()
        d = defer.maybeDeferred(self._cycle)
        d.addBoth(self._cycled)

    def _room(self) -> tuple[int, int]:
        manager = self.manager
        free = max(0, manager.maxConnections - len(manager.managed))
        perConnection = max(1, manager.maxMessagesPerConnection)
        return free * perConnection - len(self.queue.waiting), free

    def _cycle(self) -> defer.Deferred[tuple[int, float | None]]:
        room, free = self._room()
        if room <= 0 or free <= 0:
            # Start what waits; claim only if that leaves room.
            self._relay()
            room, free = self._room()
            if room <= 0 or free <= 0:
                return defer.succeed((0, None))
        # The claim says when the next message falls due: no query of its
        # own.
        d = self.queue.claimNext(limit=room, batches=free)

        def relay(claimed: tuple[list[str], float | None]) -> tuple[int, float | None]:
            names, due = claimed
            self._relay()
            return len(names), due

        return d.addCallback(relay)

    def _relay(self) -> None:
        if not self.running:
            return
        before = set(self.queue.waiting)
        attempts = self.manager.checkState()
        if attempts is not None:
            # The connections just started hold their slots until they end.
            started = before - set(self.queue.waiting)
            self.queue.holdSlots(started, attempts)
            self._attempts.add(attempts)

            def over(result: object) -> None:
                self._attempts.discard(attempts)
                self.wake()

            attempts.addBoth(over)

    def _cycled(self, result: tuple[int, float | None] | Failure) -> None:
        self._busy = False
        delay: float | None
        if isinstance(result, Failure):
            _log.error("Cannot relay from the queue: {error}", error=result.getErrorMessage())
            delay = self.pollInterval
        else:
            claimed, delay = result
            if not claimed and delay is not None and delay <= 0:
                # Due, but not claimable: its destination's slots are
                # taken.  Freeing one of a full destination notifies; look
                # again within a second anyway.
                delay = self.idleDelay
        if not self.running:
            return
        if self._again:
            self._again = False
            self.wake()
            return
        if delay is None or delay > self.pollInterval:
            delay = self.pollInterval
        room, free = self._room()
        if room <= 0 or free <= 0:
            # Busy: the end of an attempt wakes us.
            delay = self.pollInterval
        self._timer = self.reactor.callLater(max(self.minimumDelay, delay), self.wake)
