"""
What one worker of the PostgreSQL queue holds, as the relaying manager sees
it: the messages it claimed (their copies in its scratch directory), the
batches they came in, and the connection slots of those batches; with the
directory queue's read-only interface.  L{PGQueue} is one, and adds what
changes the database.

A batch's slot is held while a connection relays it (L{Holding.holdSlots}),
and freed once its messages are settled and its connections closed: by the
next statement the worker runs (its next claim, which follows the end of a
connection, or a confirmation), or else by one of its own in the same
reactor turn.
"""

from __future__ import annotations

import os
import uuid
from typing import IO, Any, TypeVar
from collections.abc import Iterable

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from mailclient._relaying.pgdb import QueueReactor, StaleLeaseError
from mailclient._relaying.pgscratch import ScratchDirectory
from mailclient._relaying.pgsql import _Batch, _Held
from mailclient._relaying.queuefiles import Path, loadPickleFile, openQueueFile
from mailclient._wire.queuestate import RetryState

T = TypeVar("T")


class Holding:
    """
    The claimed messages, batches and slots of one worker.

    @ivar directory: The worker's scratch directory: the messages it has
        claimed, in Twisted's format.
    @ivar waiting: Claimed messages waiting to be relayed (base names).
    @ivar relayed: Claimed messages being relayed.
    @ivar quarantined: Messages this worker quarantined.
    """

    def __init__(self, directory: Path, reactor: QueueReactor) -> None:
        self.directory = directory
        self.reactor = reactor
        self.scratch = ScratchDirectory(directory)
        self.waiting: dict[str, int] = {}
        self.relayed: dict[str, int] = {}
        self.quarantined: dict[str, int] = {}
        self._held: dict[str, _Held] = {}
        self._batches: dict[uuid.UUID, _Batch] = {}
        #: The slots of batches this worker is done with, freed by its next
        #: statement (L{_takeSlots}), or by L{_freeSlots} in this turn.
        self._slotsToFree: list[uuid.UUID] = []
        self._freeTimer: IDelayedCall | None = None

    # Connection slots

    def _endBatch(self, batch: _Batch) -> None:
        """
        A batch's messages are all settled: free its connection slot, once
        no connection holds it, with the next statement this worker runs
        (its next claim, after the connection that ends a batch, or a
        confirmation), or with one of its own in this reactor turn.
        """
        if batch.names or batch.holds:
            return
        if self._batches.pop(batch.token, None) is None or not batch.slot:
            return
        self._freeSoon([batch.token])

    def _freeSoon(self, slots: list[uuid.UUID]) -> None:
        """
        Free C{slots} with this worker's next statement, or by one of their
        own (L{_freeSlots}) in this reactor turn.
        """
        self._slotsToFree.extend(slots)
        if self._freeTimer is None:
            self._freeTimer = self.reactor.callLater(0, self._freeSlots)

    def _freeSlots(self) -> None:
        """
        Free the slots waiting to be, by a statement of their own.
        """
        raise NotImplementedError()

    def _takeSlots(self) -> list[uuid.UUID]:
        """
        The slots waiting to be freed, for the statement about to run,
        which frees them.
        """
        slots, self._slotsToFree = self._slotsToFree, []
        if self._freeTimer is not None:
            if self._freeTimer.active():
                self._freeTimer.cancel()
            self._freeTimer = None
        return slots

    def _carrying(self, d: defer.Deferred[T], slots: list[uuid.UUID]) -> None:
        """
        C{d} is the statement freeing C{slots}: if it fails (but for a
        stale lease, which it found once it had run), free them again.
        """
        if not slots:
            return

        def failed(failure: Failure) -> Failure:
            if not failure.check(StaleLeaseError):
                self._freeSoon(slots)
            return failure

        d.addErrback(failed)

    def holdSlots(self, messages: Iterable[str], until: defer.Deferred[T]) -> None:
        """
        Keep the connection slots of the batches of C{messages} until
        C{until} fires (the connections relaying them are closed), even if
        the messages are settled before: a slot counts a connection, and a
        connection outlives its last message by its C{QUIT}.
        """
        batches = {}
        for name in messages:
            held = self._held.get(os.path.basename(name))
            if held is not None:
                batches[held.batch.token] = held.batch
        for batch in batches.values():
            batch.holds += 1

        def over(result: object) -> object:
            for batch in batches.values():
                batch.holds -= 1
                self._endBatch(batch)
            return result

        until.addBoth(over)

    # The directory queue's interface, for the relaying manager

    def readDirectory(self) -> None:
        """
        Nothing to scan: the claimed messages are the queue (see L{claim}).
        """

    def getWaiting(self) -> list[str]:
        """
        The claimed messages waiting to be relayed, in the order claimed.
        """
        return list(self.waiting)

    def hasWaiting(self) -> bool:
        """Whether any claimed message waits."""
        return bool(self.waiting)

    def getRelayed(self) -> list[str]:
        """The claimed messages being relayed."""
        return list(self.relayed)

    def setRelaying(self, message: str) -> None:
        """
        A claimed message is being relayed: it is no longer released on
        L{stop}.
        """
        del self.waiting[message]
        self.relayed[message] = 1
        held = self._held.get(message)
        if held is not None:
            held.started = True

    def addMessage(self, message: str) -> None:
        """Messages come from L{claim}; this does nothing."""

    def getPath(self, message: str) -> str:
        """
        The base path of a claimed message's copy.
        """
        return self.scratch.path(message)

    def getEnvelope(self, message: str) -> Any:
        """
        The C{[from, to]} envelope of a claimed message.
        """
        return loadPickleFile(self.getPath(message) + "-H")

    def getEnvelopeFile(self, message: str) -> IO[bytes]:
        """
        Open the envelope file of a claimed message.
        """
        return openQueueFile(self.getPath(message) + "-H")

    def schedule(self, message: str) -> RetryState | None:
        """
        The retry schedule of a claimed message, as it was when claimed;
        L{None} if it never failed.
        """
        held = self._held.get(os.path.basename(message))
        if held is None or held.state.failures == 0 and not held.state.warned:
            return None
        return held.state

    def isDue(self, message: str, now: float) -> bool:
        """
        Whether a claimed message may be tried: always (the database
        decided when it claimed it).
        """
        return os.path.basename(message) in self._held

    def queuedAt(self, message: str) -> float | None:
        """
        When a claimed message was queued (the database's clock).
        """
        held = self._held.get(os.path.basename(message))
        return None if held is None else held.queuedAt

    def holds(self, message: str) -> bool:
        """
        Whether this worker holds C{message} (claimed, not settled).
        """
        return os.path.basename(message) in self._held
