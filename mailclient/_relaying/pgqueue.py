"""
A relay queue in PostgreSQL, drained by any number of workers on any number
of hosts.

Design: the database is the queue; each worker holds a I{scratch directory}
of the messages it has claimed, written in Twisted's C{-H}/C{-D} format, so
that the relaying manager and its relayers, which open queued messages by
path, work on a L{PGQueue} as they do on a directory L{Queue}.  What
changes the database (claiming, confirming a delivery, deferring, returning,
releasing) is asynchronous: it returns a Deferred, and the synchronous
methods of the directory queue's interface (L{PGQueue.done},
L{PGQueue.setWaiting}, ...) start it and return at once.

  - L{PGQueue.claim} takes due messages with C{SELECT ... FOR UPDATE SKIP
    LOCKED} under a lease that expires: a worker that dies gives its
    messages back after at most L{PGQueue.lease} seconds.  A running worker
    renews its leases every third of that.
  - Every change to a claimed message is fenced by the lease token of its
    claim: a worker that lost its lease cannot remove, defer or return a
    message another worker holds now.
  - A delivery is confirmed (the row deleted) right after the server's
    final 2xx, by one statement committed on its own.
  - Claims are made per destination (recipient domain, or smart host), one
    connection slot per batch, counted across all workers.  A batch's slot
    is freed with the next statement the worker runs (its next claim, or a
    confirmation), else by one of its own in the same reactor turn.
  - C{LISTEN}/C{NOTIFY} wakes idle workers when mail is queued or released,
    and when a slot is freed that another worker may be waiting for.
"""

from __future__ import annotations

import os
import secrets
import socket
import uuid
from typing import Any, Callable, Concatenate, ParamSpec, TypeVar, cast
from collections.abc import Iterable

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailclient._relaying.msgoptions import (
    NO_OPTIONS,
    MessageOptions,
    MessageOptionsError,
)
from mailclient._relaying.pgdb import Database, Program, QueueReactor, StaleLeaseError
from mailclient._relaying.pglisten import Listener
from mailclient._relaying.pgschema import DEFAULT_SCHEMA, channelOf, checkSchema, checkSchemaName
from mailclient._relaying.pgsql import (
    Claim,
    ClaimedBatch,
    backOffProgram,
    claimNextProgram,
    confirmProgram,
    enqueueProgram,
    failProgram,
    limitProgram,
    nextDueProgram,
    quarantineProgram,
    releaseProgram,
    renewProgram,
    returnProgram,
    statsProgram,
    warnProgram,
    _Batch,
    _Held,
)
from mailclient._relaying.pgholding import Holding
from mailclient._relaying.queuefiles import EnvelopeAddress, Path
from mailclient._wire.queuestate import (
    MAX_REASON,
    RetryDelay,
    RetryState,
    bounceName,
    defaultRetryDelay,
    isSafeName,
    newMessageName,
    warningName,
)

_log = Logger()

T = TypeVar("T")
P = ParamSpec("P")


def _reason(reason: object) -> str:
    return " ".join(str(reason).split())[:MAX_REASON]


class PGQueue(Holding):
    """
    The PostgreSQL relay queue, as one worker sees it (what it holds: see
    L{Holding}).

    @ivar database: The L{Database} (see L{connectDatabase}).
    @ivar directory: The worker's scratch directory: the messages it has
        claimed, in Twisted's format.  One worker per directory; its files
        are copies, removed when the worker starts and stops.
    @ivar schema: The PostgreSQL schema of the queue's tables.
    @ivar worker: This worker's name, recorded with its leases.
    @ivar lease: Seconds a claim lasts unless renewed.
    @ivar batchSize: The most messages claimed together for one connection.
    @ivar smartHost: The destination key of the smart host everything is
        relayed through (L{smartHostDestination}), or L{None}: each
        message's recipient domain.
    @ivar destinationLimit: The most connections the whole fleet opens to
        one destination at once, unless the database sets another for it
        (L{setDestinationLimit}); L{None}: no limit.
    @ivar wakeObservers: Callables called with no argument when mail may
        be waiting (a notification came).
    """

    noisy: bool = True

    def __init__(
        self,
        database: Database,
        directory: Path,
        *,
        schema: str = DEFAULT_SCHEMA,
        worker: str | None = None,
        lease: float = 60.0,
        batchSize: int = 10,
        smartHost: str | None = None,
        destinationLimit: int | None = None,
        listen: bool = True,
        reactor: QueueReactor | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as globalReactor
            reactor = globalReactor
        if lease <= 0:
            raise ValueError("lease must be positive, not %r" % (lease,))
        super().__init__(directory, reactor)
        self.database = database
        self.schema = checkSchemaName(schema)
        self.worker = worker or "%s:%d:%s" % (socket.gethostname(), os.getpid(),
                                               secrets.token_hex(3))
        self.lease = float(lease)
        self.batchSize = max(1, batchSize)
        self.smartHost = smartHost
        self.destinationLimit = destinationLimit
        self.wakeObservers: list[Callable[[], object]] = []
        self._pending: set[defer.Deferred[Any]] = set()
        self._drained: list[defer.Deferred[None]] = []
        self._renewal: task.LoopingCall | None = None
        self._listener: Listener | None = (
            Listener(database, channelOf(self.schema), self._notified, reactor)
            if listen else None)
        self.running = False
        self._stopping = False

    # Lifecycle

    def start(self) -> defer.Deferred[None]:
        """
        Check the schema (L{checkSchema}), take the scratch directory
        (L{QueueBusyError} if another worker has it) and empty it, start
        renewing leases and listening for mail.
        """
        d = checkSchema(self.database, self.schema)

        def started(_: object) -> defer.Deferred[None] | None:
            self.scratch.take()
            self.running = True
            self._renewal = task.LoopingCall(self._renewTick)
            # Every reactor is an IReactorTime.
            self._renewal.clock = cast(IReactorTime, self.reactor)
            self._renewal.start(self.lease / 3, now=False)
            if self._listener is not None:
                return self._listener.start().addErrback(notListening)
            return None

        def notListening(failure: Failure) -> Failure:
            self.running = False
            if self._renewal is not None and self._renewal.running:
                self._renewal.stop()
            self._renewal = None
            self.scratch.release()
            return failure

        return d.addCallback(started)

    def stop(self, timeout: float | None = None) -> defer.Deferred[None]:
        """
        Release the messages not being relayed (any worker may take them
        at once); wait, renewing their leases, for those being relayed to
        be settled, at most C{timeout} seconds (default: L{lease}); then
        stop, and empty the scratch directory.
        """
        if not self.running:
            return defer.succeed(None)
        self.running = False
        self._stopping = True
        d = self.release()
        d.addErrback(self._logFailure, "Cannot release the messages not started")
        d.addCallback(lambda _: self._waitDrained(self.lease if timeout is None else timeout))
        d.addCallback(lambda _: self.flush())

        def stopped(_: object) -> defer.Deferred[None] | None:
            if self._renewal is not None and self._renewal.running:
                self._renewal.stop()
            self._renewal = None
            # What is still being relayed keeps its lease until it expires:
            # it may be in the middle of its DATA.  Slots held only by
            # connections (their messages are settled) are freed.
            idle = [b.token for b in self._batches.values() if b.slot and not b.names]
            idle += self._takeSlots()
            if idle:
                self._background(
                    self._run(releaseProgram, [], [], idle, channelOf(self.schema),
                              self.destinationLimit),
                    "Cannot free connection slots")
            self._held.clear()
            self._batches.clear()
            self.waiting.clear()
            self.relayed.clear()
            self.scratch.release()
            self._stopping = False
            d = self.flush()
            if self._listener is not None:
                d.addCallback(lambda _: self._listener.stop() if self._listener else None)
            return d

        return d.addCallback(stopped)

    def _waitDrained(self, timeout: float) -> defer.Deferred[None]:
        if not self.relayed:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._drained.append(d)
        def expired() -> None:
            if not d.called:
                _log.warn("Stopping while {count} messages are being relayed: their leases "
                          "will expire", count=len(self.relayed))
                d.callback(None)

        timer = self.reactor.callLater(timeout, expired)

        def cancelTimer(result: object) -> object:
            if timer.active():
                timer.cancel()
            return result

        return d.addBoth(cancelTimer)

    # Database operations

    def _run(self, program: Callable[Concatenate[str, P], Program[T]], *args: P.args,
             **kw: P.kwargs) -> defer.Deferred[T]:
        d = self.database.run(program, self.schema, *args, **kw)
        self._pending.add(d)

        def finished(result: object) -> object:
            self._pending.discard(d)
            return result

        return d.addBoth(finished)

    def flush(self) -> defer.Deferred[None]:
        """
        Wait for every database operation started so far, the freeing of
        the slots waiting for this worker's next statement included (it is
        started now).
        """
        self._freeSlots()
        pending = list(self._pending)
        if not pending:
            return defer.succeed(None)
        return defer.DeferredList(pending, consumeErrors=False).addCallback(lambda _: None)

    def _background(self, d: defer.Deferred[T], what: str) -> None:
        d.addErrback(self._logFailure, what)

    def _logFailure(self, failure: Failure, what: str) -> None:
        if failure.check(StaleLeaseError):
            _log.warn("{what}: {error}", what=what, error=failure.getErrorMessage())
        else:
            _log.error("{what}: {error}", what=what, error=failure.getErrorMessage())

    def enqueueMessage(
        self, sender: EnvelopeAddress, recipient: EnvelopeAddress, data: bytes,
        name: str | None = None, options: MessageOptions | None = None,
    ) -> defer.Deferred[str]:
        """
        Queue a message (committed when the Deferred fires).

        @param name: Its name (default: a new unique one); nothing is
            queued if a message of that name is.
        @param options: Its options (REQUIRETLS), kept in its row and given
            to the relay as the directory queue's C{-O} file.
        @return: A Deferred firing with its name.
        """
        if name is None:
            name = newMessageName()
        if not isSafeName(name):
            raise ValueError("%r cannot name a queued message" % (name,))
        state = options.toState() if options is not None and options != NO_OPTIONS else None
        return self._run(enqueueProgram, name, sender, recipient, data, None, state
                         ).addCallback(lambda _: name)

    def enqueue(self, sender: EnvelopeAddress, recipient: EnvelopeAddress, data: bytes) -> str:
        """
        Queue a message, as the directory queue's C{enqueue}: return its name
        at once; the insert is committed later (see L{enqueueMessage}, which
        tells when).
        """
        name = newMessageName()
        self._background(self.enqueueMessage(sender, recipient, data, name),
                         "Cannot queue a message")
        return name

    def claim(self, limit: int | None = None, batches: int | None = None) -> defer.Deferred[
            list[str]]:
        """
        Claim due messages and write them into the scratch directory, where
        they wait (L{getWaiting}).

        @param limit: The most messages (default: L{batchSize} times
            C{batches}, or L{batchSize}).
        @param batches: The most batches (connections); L{None}: no limit.
        @return: A Deferred firing with the names claimed.
        """
        return self.claimNext(limit, batches).addCallback(lambda claimed: claimed[0])

    def claimNext(
        self, limit: int | None = None, batches: int | None = None
    ) -> defer.Deferred[tuple[list[str], float | None]]:
        """
        Claim as L{claim} does, in one transaction that also frees the
        connection slots of the batches this worker is done with and, when
        fewer messages were due than C{limit}, finds when the next one may
        be (as L{nextDue}).

        @return: A Deferred firing with the names claimed, and the seconds
            until the next message may be claimable (0 or less: now;
            L{None}: nothing is queued).
        """
        if limit is None:
            limit = self.batchSize * (batches if batches is not None else 1)
        if limit <= 0 or batches == 0:
            return defer.succeed(([], None))
        slots = self._takeSlots()
        d = self._run(claimNextProgram, self.worker, self.lease, limit, self.batchSize, batches,
                      self.smartHost, self.destinationLimit, slots, channelOf(self.schema))
        self._carrying(d, slots)

        def claimed(claim: Claim) -> tuple[list[str], float | None]:
            return self._claimed(claim.batches), claim.due

        return d.addCallback(claimed)

    def _claimed(self, batches: list[ClaimedBatch]) -> list[str]:
        if self._stopping:
            # Claimed while stopping: give it all back.
            messages = [(m.name, b.token) for b in batches for m in b.messages]
            self._background(
                self._run(releaseProgram, [n for n, _ in messages], [t for _, t in messages],
                          [b.token for b in batches if b.slot], channelOf(self.schema),
                          self.destinationLimit),
                "Cannot release messages")
            return []
        names = []
        unusable: list[tuple[str, uuid.UUID]] = []
        for claimed in batches:
            batch = _Batch(claimed.token, claimed.destination, claimed.slot)
            self._batches[batch.token] = batch
            for message in claimed.messages:
                if not isSafeName(message.name):
                    self._background(
                        self._run(quarantineProgram, message.name, batch.token,
                                  "unsafe message name"),
                        "Cannot quarantine %r" % (message.name,))
                    continue
                try:
                    options = (None if message.options is None
                               else MessageOptions.fromState(message.options))
                except MessageOptionsError as e:
                    # Never relayed without what its options require.
                    self._background(
                        self._run(quarantineProgram, message.name, batch.token,
                                  "unreadable options: %s" % (e,)),
                        "Cannot quarantine %r" % (message.name,))
                    continue
                try:
                    self.scratch.write(message.name, message.sender, message.recipient,
                                       message.data, message.queuedAt, options)
                except OSError as e:
                    _log.error("Cannot write {message} to the scratch directory: {error}",
                               message=message.name, error=e)
                    unusable.append((message.name, batch.token))
                    continue
                self._held[message.name] = _Held(message.name, batch, message.queuedAt,
                                                 message.state, options=options is not None)
                batch.names.add(message.name)
                self.waiting[message.name] = 1
                names.append(message.name)
            if not batch.names:
                self._endBatch(batch)
        if unusable:
            self._background(
                self._run(releaseProgram, [n for n, _ in unusable], [t for _, t in unusable],
                          [], channelOf(self.schema), self.destinationLimit),
                "Cannot release messages")
        if names and self.noisy:
            _log.info("Claimed {count} messages", count=len(names))
        return names

    def _forget(self, name: str) -> _Held | None:
        """
        This worker no longer holds C{name}: remove its copy.
        """
        held = self._held.pop(name, None)
        self.waiting.pop(name, None)
        self.relayed.pop(name, None)
        self.scratch.remove(name, held is None or held.options)
        if held is not None:
            held.batch.names.discard(name)
            if not held.batch.names:
                self._endBatch(held.batch)
        self._checkDrained()
        return held

    def _checkDrained(self) -> None:
        if not self.relayed:
            drained, self._drained = self._drained, []
            for d in drained:
                if not d.called:
                    d.callback(None)

    def _freeSlots(self) -> None:
        """
        Free the slots waiting to be, by a statement of their own.
        """
        slots = self._takeSlots()
        if slots:
            self._background(
                self._run(releaseProgram, [], [], slots, channelOf(self.schema),
                          self.destinationLimit),
                "Cannot free connection slots")

    def _settle(
            self, message: str, program: Callable[Concatenate[str, str, uuid.UUID, P], Program[T]],
            *args: P.args, **kw: P.kwargs) -> defer.Deferred[T] | None:
        """
        Run C{program} (fenced by the message's lease token) to settle a
        claimed message, and drop it from this worker: its copy is removed
        at once.  L{None} if this worker does not hold it.
        """
        name = os.path.basename(message)
        held = self._held.get(name)
        if held is None:
            if self.noisy:
                _log.info("{message} is not held by this worker", message=name)
            return None
        # Started before the message is dropped, so that whoever waits for
        # the worker to drain (stop) waits for this too.
        d = self._run(program, name, held.batch.token, *args, **kw)
        self._forget(name)
        return d

    def _notHeld(self, message: str) -> defer.Deferred[T]:
        return defer.fail(StaleLeaseError(
            "message %s is not held by this worker" % (os.path.basename(message),)))

    def confirm(self, message: str) -> defer.Deferred[bool]:
        """
        A message was delivered: remove its copy and its row, by one
        statement committed on its own (which also frees the connection
        slots waiting to be: its batch's, if it was the last message of a
        batch no connection holds).  Fails with L{StaleLeaseError} if this
        worker lost its lease (another worker may deliver it again).
        """
        name = os.path.basename(message)
        held = self._held.get(name)
        slots: list[uuid.UUID] = []
        if held is not None:
            batch = held.batch
            if (batch.slot and batch.names == {name} and not batch.holds
                    and self._batches.pop(batch.token, None) is not None):
                # Its last message: the slot goes with it.
                self._slotsToFree.append(batch.token)
            slots = self._takeSlots()
        d = self._settle(name, confirmProgram, slots, channelOf(self.schema),
                         self.destinationLimit)
        if d is None:
            return defer.succeed(False)
        self._carrying(d, slots)
        return d

    def recordFailure(
        self, message: str, reason: object = "", retryDelay: RetryDelay | None = None,
        when: float | None = None, warning: tuple[bytes, EnvelopeAddress] | None = None,
    ) -> defer.Deferred[RetryState]:
        """
        A message failed for now: count the failure and schedule its next
        attempt C{retryDelay(failures)} seconds later (default: 30 s,
        doubling, at most an hour) on the database's clock (C{when} is
        ignored: it is for the directory queue), and release it.  Its copy
        is removed at once; L{setWaiting} then ignores it.

        @param warning: C{(report, recipient)}: also queue the message's
            delay warning (see L{sendDelayWarning}) in the same
            transaction, unless it was sent before.
        @return: A Deferred firing with its new L{RetryState}, or failing
            with L{StaleLeaseError}.
        """
        name = os.path.basename(message)
        notice = None if warning is None else (warningName(name), warning[1], warning[0])
        d = self._settle(name, failProgram, _reason(reason), retryDelay or defaultRetryDelay,
                         notice)
        return self._notHeld(message) if d is None else d

    def returnMessage(self, message: str, report: bytes, recipient: EnvelopeAddress
                      ) -> defer.Deferred[bool]:
        """
        Return a message to its sender: queue C{report} from the null sender
        to C{recipient} under L{bounceName}C{(message)} and remove the
        message, in one transaction; never two bounces for one message.

        @return: A Deferred firing with whether the bounce was queued now.
        """
        name = os.path.basename(message)
        d = self._settle(name, returnProgram, bounceName(name), recipient, report)
        return self._notHeld(message) if d is None else d

    def sendDelayWarning(self, message: str, report: bytes, recipient: EnvelopeAddress
                         ) -> defer.Deferred[bool]:
        """
        Queue the one delay warning of a message (C{report} from the null
        sender to C{recipient}, under L{warningName}C{(message)}) and mark
        it warned, in one transaction.  The message stays claimed.

        @return: A Deferred firing with whether the warning was queued now.
        """
        name = os.path.basename(message)
        held = self._held.get(name)
        if held is None:
            return self._notHeld(name)

        def sent(queued: bool) -> bool:
            held.state = held.state.asWarned()
            return queued

        return self._run(warnProgram, name, held.batch.token, warningName(name), recipient,
                         report).addCallback(sent)

    def release(self, messages: Iterable[str] | None = None) -> defer.Deferred[list[str]]:
        """
        Give back claimed messages not being relayed (default: all those
        waiting), so that any worker may take them at once.

        @return: A Deferred firing with the names released.
        """
        names = list(self.waiting) if messages is None else [
            os.path.basename(m) for m in messages]
        chosen = []
        for name in names:
            held = self._held.get(name)
            if held is not None and not held.started:
                chosen.append(held)
        if not chosen:
            return defer.succeed([])
        for held in chosen:
            del self._held[held.name]
            self.waiting.pop(held.name, None)
            self.scratch.remove(held.name, held.options)
            held.batch.names.discard(held.name)
        slots = self._takeSlots()
        for batch in {h.batch.token: h.batch for h in chosen}.values():
            if not batch.names and not batch.holds:
                # Freed by the same statement.
                self._batches.pop(batch.token, None)
                if batch.slot:
                    slots.append(batch.token)
        d = self._run(releaseProgram, [h.name for h in chosen],
                      [h.batch.token for h in chosen], slots, channelOf(self.schema),
                      self.destinationLimit)
        self._carrying(d, slots)
        return d

    def renew(self) -> defer.Deferred[list[str]]:
        """
        Extend the leases of every message and slot this worker holds.
        Messages whose lease was lost are dropped if they were not started
        (another worker holds them now); those being relayed are marked, and
        their confirmation will fail.

        @return: A Deferred firing with the names of the messages lost.
        """
        tokens = list(self._batches)
        if not tokens:
            return defer.succeed([])
        d = self._run(renewProgram, tokens, self.lease)

        def renewed(result: tuple[set[str], set[uuid.UUID]]) -> list[str]:
            names, slots = result
            lost = []
            for name, held in list(self._held.items()):
                if name in names or held.batch.token not in tokens:
                    continue
                lost.append(name)
                if held.started:
                    held.lost = True
                    _log.warn("Lost the lease of {message} while relaying it: another worker "
                              "may relay it too", message=name)
                else:
                    _log.warn("Lost the lease of {message}: dropped", message=name)
                    self._forget(name)
            for token in tokens:
                batch = self._batches.get(token)
                if batch is not None and batch.slot and token not in slots:
                    _log.warn("Lost the connection slot of {destination}",
                              destination=batch.destination)
            return lost

        return d.addCallback(renewed)

    def _renewTick(self) -> defer.Deferred[None]:
        d = self.renew()
        d.addErrback(self._logFailure, "Cannot renew the leases")
        return d.addCallback(lambda _: None)

    def backOffDestination(
        self, destination: str, delay: float, reason: object = ""
    ) -> defer.Deferred[float]:
        """
        No worker connects to C{destination} (a recipient domain, or the
        smart host key) for C{delay} seconds: it answered C{421}, or a
        4.7.x status.  The messages for it that this worker holds and has
        not started are released.

        @return: A Deferred firing with when the back-off ends (seconds
            since the epoch, the database's clock).
        """
        mine = [h.name for h in self._held.values()
                if not h.started and h.batch.destination == destination]
        d = self._run(backOffProgram, destination, float(delay), _reason(reason))
        if mine:
            d.addCallback(lambda until: self.release(mine).addCallback(lambda _: until))
        return d

    def setDestinationLimit(self, destination: str, limit: int | None) -> defer.Deferred[None]:
        """
        Let the whole fleet open at most C{limit} connections to
        C{destination} at once (0: none, the destination is paused; L{None}:
        each worker's L{destinationLimit}).
        """
        return self._run(limitProgram, destination, limit)

    def nextDue(self) -> defer.Deferred[float | None]:
        """
        Seconds until a queued message may be claimed (0 or less: now), or
        L{None} if nothing is queued.
        """
        return self._run(nextDueProgram, self.smartHost)

    def stats(self) -> defer.Deferred[dict[str, int]]:
        """
        Counts of the queue's messages (see L{statsProgram}).
        """
        return self._run(statsProgram)

    def _notified(self, payload: str | None) -> None:
        for observer in list(self.wakeObservers):
            try:
                observer()
            except Exception:
                _log.failure("Queue wake observer {observer} failed", observer=observer)

    # The directory queue's interface: what changes the database

    def setWaiting(self, message: str) -> None:
        """
        A claimed message waits again (its attempt did not reach it).
        Ignored for a message this worker no longer holds (deferred,
        returned, released).
        """
        message = os.path.basename(message)
        held = self._held.get(message)
        if held is None:
            return
        self.relayed.pop(message, None)
        self.waiting[message] = 1
        held.started = False
        self._checkDrained()

    def forget(self, message: str) -> None:
        """
        A relayer skipped a claimed message (its copy could not be read):
        give it back, so that any worker may take it again.
        """
        held = self._held.get(os.path.basename(message))
        if held is not None:
            held.started = False
            self._background(self.release([held.name]), "Cannot release %s" % (held.name,))

    def done(self, message: str) -> None:
        """
        A message was delivered (or returned): remove it (L{confirm}),
        without waiting for the database.
        """
        name = os.path.basename(message)
        if name not in self._held:
            self.scratch.remove(name)
            return
        self._background(self.confirm(name), "Delivered %s, but" % (name,))

    def quarantine(self, message: str) -> None:
        """
        Stop relaying a message that cannot be relayed; it stays in the
        table, marked C{quarantined}, for an administrator.
        """
        name = os.path.basename(message)
        self.quarantined[name] = 1
        d = self._settle(name, quarantineProgram, "quarantined by worker %s" % (self.worker,))
        if d is None:
            self._forget(name)
        else:
            self._background(d, "Cannot quarantine %s" % (name,))
