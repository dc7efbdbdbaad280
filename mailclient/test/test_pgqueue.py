"""
Tests for L{mailclient._relaying.pgqueue}: the PostgreSQL relay queue, on a
real PostgreSQL (see L{mailclient.test.helpers_pg}), with the threaded
driver.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, List

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from mailclient._relaying.pgdb import StaleLeaseError
from mailclient._relaying.pgqueue import PGQueue
from mailclient._relaying.pgsql import returnProgram
from mailclient._relaying.queue import QueueBusyError, readEnvelope
from mailclient._wire.queuestate import bounceName, warningName
from mailclient.test.helpers_pg import PostgresTestMixin

BODY = b"From: a@example.com\nSubject: hi\n\nHello\n\xff\x00binary\n"


def sleep(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


class _QueueTestCase(PostgresTestMixin, TestCase):
    """
    A queue schema and ways to make workers on it.
    """

    @defer.inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        super().setUp()
        self.db = self.database()
        yield self.createQueueSchema(self.db)

    def sql(self, statement: str, params: Any = None) -> List[Any]:
        return self.cluster.execute(statement.format(s=self.schema), params)

    def makeQueue(self, **kw: Any) -> PGQueue:
        kw.setdefault("schema", self.schema)
        kw.setdefault("listen", False)
        database = kw.pop("database", self.db)
        return PGQueue(database, self.mktemp(), **kw)

    @defer.inlineCallbacks
    def startedQueue(self, **kw: Any) -> Any:
        queue = self.makeQueue(**kw)
        yield queue.start()
        self.addCleanup(queue.stop, 0)
        return queue

    @defer.inlineCallbacks
    def fill(self, queue: PGQueue, count: int, domain: str = "example.org") -> Any:
        names = []
        for i in range(count):
            name = yield queue.enqueueMessage("a@example.com", "u%d@%s" % (i, domain), BODY)
            names.append(name)
        return names

    def expireLeases(self) -> None:
        self.sql("UPDATE {s}.messages SET lease_until = clock_timestamp() - interval '1 second'"
                 " WHERE lease_until IS NOT NULL")
        self.sql("UPDATE {s}.slots SET lease_until = clock_timestamp() - interval '1 second'")

    def rows(self) -> List[Any]:
        return self.sql("SELECT id, sender, recipient, origin FROM {s}.messages ORDER BY id")


class ClaimTests(_QueueTestCase):
    """
    Claiming due messages into the scratch directory.
    """

    @defer.inlineCallbacks
    def test_claimWritesTwistedFormat(self) -> Any:
        """
        A claimed message is written as C{-H} (the pickled envelope) and
        C{-D} (the message) in the scratch directory, with the data file's
        time the time it was queued; it waits there.
        """
        queue = yield self.startedQueue()
        name = yield queue.enqueueMessage("a@example.com", "b@example.org", BODY)
        claimed = yield queue.claim()
        self.assertEqual(claimed, [name])
        self.assertEqual(queue.getWaiting(), [name])
        path = queue.getPath(name)
        self.assertEqual(readEnvelope(path + "-H"), ["a@example.com", "b@example.org"])
        self.assertEqual(queue.getEnvelope(name), ["a@example.com", "b@example.org"])
        with open(path + "-D", "rb") as f:
            self.assertEqual(f.read(), BODY)
        [(queued,)] = self.sql("SELECT extract(epoch FROM queued_at)::float8 FROM {s}.messages")
        self.assertAlmostEqual(os.stat(path + "-D").st_mtime, queued, places=3)
        self.assertEqual(queue.queuedAt(name), queued)
        self.assertTrue(queue.isDue(name, 0))
        self.assertIsNone(queue.schedule(name))

    @defer.inlineCallbacks
    def test_leasedNotClaimedAgain(self) -> Any:
        """
        A claimed message is not claimed again, by this worker or another,
        while its lease lasts.
        """
        a = yield self.startedQueue()
        b = yield self.startedQueue()
        yield self.fill(a, 3)
        first = yield a.claim(limit=10)
        self.assertEqual(len(first), 3)
        again = yield a.claim(limit=10)
        other = yield b.claim(limit=10)
        self.assertEqual((again, other), ([], []))
        [(worker, count)] = self.sql(
            "SELECT DISTINCT lease_worker, claims FROM {s}.messages")
        self.assertEqual((worker, count), (a.worker, 1))

    @defer.inlineCallbacks
    def test_dueTimes(self) -> Any:
        """
        A message whose next attempt is later, on the database's clock, is
        not claimed until then.
        """
        queue = yield self.startedQueue()
        [name] = yield self.fill(queue, 1)
        self.sql("UPDATE {s}.messages SET next_attempt = clock_timestamp() + interval '1 hour'")
        self.assertEqual((yield queue.claim()), [])
        due = yield queue.nextDue()
        self.assertTrue(3590 < due <= 3600, due)
        self.sql("UPDATE {s}.messages SET next_attempt = clock_timestamp() - interval '1 second'")
        self.assertEqual((yield queue.claim()), [name])

    @defer.inlineCallbacks
    def test_batches(self) -> Any:
        """
        Claims are made in batches of at most C{batchSize}, at most
        C{batches} of them, oldest first.
        """
        queue = yield self.startedQueue(batchSize=3)
        names = yield self.fill(queue, 10)
        claimed = yield queue.claim(limit=10, batches=2)
        self.assertEqual(claimed, names[:6])
        self.assertEqual(len(queue._batches), 2)

    @defer.inlineCallbacks
    def test_twoWorkersAtOnce(self) -> Any:
        """
        Workers claiming at the same time, each on its own connections,
        never claim a message twice, and between them claim them all.
        """
        filler = yield self.startedQueue()
        names = yield self.fill(filler, 120)
        workers = []
        for _ in range(3):
            database = self.database(size=2)
            workers.append((yield self.startedQueue(database=database, batchSize=4)))
        claimed: List[List[str]] = [[] for _ in workers]

        @defer.inlineCallbacks
        def drain(i: int, worker: PGQueue) -> Any:
            while True:
                got = yield worker.claim(limit=8, batches=2)
                if not got:
                    return
                claimed[i].extend(got)

        yield defer.gatherResults([drain(i, w) for i, w in enumerate(workers)])
        everything = [n for c in claimed for n in c]
        self.assertEqual(sorted(everything), sorted(names))
        self.assertEqual(len(everything), len(set(everything)))
        self.assertTrue(all(claimed), [len(c) for c in claimed])

    @defer.inlineCallbacks
    def test_scratchDirectoryBusy(self) -> Any:
        """
        Two workers cannot share a scratch directory.
        """
        a = yield self.startedQueue()
        b = PGQueue(self.db, a.directory, schema=self.schema, listen=False)
        yield self.assertFailure(b.start(), QueueBusyError)

    @defer.inlineCallbacks
    def test_scratchDirectoryEmptied(self) -> Any:
        """
        Copies left in the scratch directory by a worker that died are
        removed when a worker starts (the database holds the messages).
        """
        queue = self.makeQueue()
        os.makedirs(queue.directory)
        for leftover in ("old-H", "old-D", "old-C", "old-H.tmp"):
            with open(os.path.join(queue.directory, leftover), "wb") as f:
                f.write(b"x")
        yield queue.start()
        self.addCleanup(queue.stop, 0)
        self.assertEqual(os.listdir(queue.directory), [".pgqueue.lock"])


class LeaseTests(_QueueTestCase):
    """
    Leases expire, are renewed, and fence every change.
    """

    @defer.inlineCallbacks
    def test_expiredLeaseTakenOver(self) -> Any:
        """
        The messages of a worker that stopped renewing come back when the
        lease runs out (on the database's clock).
        """
        a = yield self.startedQueue(lease=0.5)
        b = yield self.startedQueue()
        names = yield self.fill(a, 2)
        yield a.claim()
        # a dies: no more renewals.
        a._renewal.stop()
        self.assertEqual((yield b.claim()), [])
        yield sleep(0.7)
        self.assertEqual(sorted((yield b.claim())), sorted(names))

    @defer.inlineCallbacks
    def test_renewal(self) -> Any:
        """
        A running worker renews its leases (every third of the lease), so
        that no other worker takes its messages however long it works.
        """
        a = yield self.startedQueue(lease=0.6)
        b = yield self.startedQueue()
        yield self.fill(a, 1)
        [name] = yield a.claim()
        a.setRelaying(name)
        yield sleep(1.5)
        self.assertEqual((yield b.claim()), [])
        [(left,)] = self.sql(
            "SELECT extract(epoch FROM lease_until - clock_timestamp())::float8"
            " FROM {s}.messages")
        self.assertTrue(0 < left <= 0.6, left)

    @defer.inlineCallbacks
    def test_staleTokenRefused(self) -> Any:
        """
        A worker whose lease expired and was taken over cannot confirm,
        defer, return or warn about the message: L{StaleLeaseError}, and
        nothing changes.
        """
        a = yield self.startedQueue()
        b = yield self.startedQueue()
        yield self.fill(a, 4)
        names = yield a.claim(limit=4)
        self.expireLeases()
        taken = yield b.claim(limit=4)
        self.assertEqual(sorted(taken), sorted(names))
        yield self.assertFailure(a.confirm(names[0]), StaleLeaseError)
        yield self.assertFailure(a.recordFailure(names[1], "4.0.0 later"), StaleLeaseError)
        yield self.assertFailure(
            a.returnMessage(names[2], b"report", "a@example.com"), StaleLeaseError)
        yield self.assertFailure(
            a.sendDelayWarning(names[3], b"report", "a@example.com"), StaleLeaseError)
        rows = self.sql("SELECT id, lease_worker, failures, warned FROM {s}.messages ORDER BY id")
        self.assertEqual(rows, sorted((n, b.worker, 0, False) for n in names))
        # The worker holding them can.
        yield b.confirm(names[0])
        self.assertEqual(len(self.rows()), 3)

    @defer.inlineCallbacks
    def test_renewalNoticesLostLease(self) -> Any:
        """
        Renewing finds the leases taken over: a message not started is
        dropped from the scratch directory; one being relayed is kept, and
        its confirmation is refused.
        """
        a = yield self.startedQueue()
        yield self.fill(a, 2)
        waiting, relaying = yield a.claim()
        a.setRelaying(relaying)
        self.sql("UPDATE {s}.messages SET lease_token = %s", (uuid.uuid4(),))
        lost = yield a.renew()
        self.assertEqual(sorted(lost), sorted([waiting, relaying]))
        self.assertEqual(a.getWaiting(), [])
        self.assertFalse(os.path.exists(a.getPath(waiting) + "-D"))
        self.assertEqual(a.getRelayed(), [relaying])
        yield self.assertFailure(a.confirm(relaying), StaleLeaseError)
        self.assertEqual(len(self.rows()), 2)

    @defer.inlineCallbacks
    def test_confirm(self) -> Any:
        """
        L{PGQueue.done} (what the manager calls after the final 2xx)
        removes the copy at once and the row in a transaction of its own.
        """
        queue = yield self.startedQueue()
        yield self.fill(queue, 2)
        first, second = yield queue.claim()
        queue.setRelaying(first)
        queue.done(first)
        self.assertFalse(os.path.exists(queue.getPath(first) + "-D"))
        self.assertEqual(queue.getRelayed(), [])
        yield queue.flush()
        self.assertEqual([r[0] for r in self.rows()], [second])

    @defer.inlineCallbacks
    def test_releaseOnStop(self) -> Any:
        """
        Stopping releases what was claimed and not started, so that another
        worker takes it at once; what is being relayed keeps its lease.
        """
        a = yield self.startedQueue()
        b = yield self.startedQueue()
        yield self.fill(a, 5)
        names = yield a.claim(limit=5)
        a.setRelaying(names[0])
        yield a.stop(timeout=0)
        self.assertEqual(os.listdir(a.directory), [".pgqueue.lock"])
        taken = yield b.claim(limit=5)
        self.assertEqual(sorted(taken), sorted(names[1:]))

    @defer.inlineCallbacks
    def test_stopWaitsForRelayed(self) -> Any:
        """
        Stopping waits for the messages being relayed to be settled.
        """
        a = yield self.startedQueue()
        yield self.fill(a, 1)
        [name] = yield a.claim()
        a.setRelaying(name)
        stopped: List[int] = []
        d = a.stop(timeout=30).addCallback(stopped.append)
        yield sleep(0.1)
        self.assertEqual(stopped, [])
        a.done(name)
        yield d
        self.assertEqual(stopped, [None])
        self.assertEqual(self.rows(), [])

    @defer.inlineCallbacks
    def test_setWaiting(self) -> Any:
        """
        A message its attempt did not reach waits again, still claimed.
        """
        queue = yield self.startedQueue()
        yield self.fill(queue, 1)
        [name] = yield queue.claim()
        queue.setRelaying(name)
        queue.setWaiting(name)
        self.assertEqual(queue.getWaiting(), [name])
        self.assertTrue(queue.holds(name))


class RetryTests(_QueueTestCase):
    """
    The retry schedule is kept in the database.
    """

    @defer.inlineCallbacks
    def test_recordFailure(self) -> Any:
        """
        A failure is counted, the next attempt scheduled on the database's
        clock, and the message released; a restarted worker resumes the
        back-off.
        """
        a = yield self.startedQueue()
        [name] = yield self.fill(a, 1)
        yield a.claim()
        state = yield a.recordFailure(name, "451 4.3.0 try later")
        self.assertEqual(state.failures, 1)
        self.assertAlmostEqual(state.nextAttempt - state.lastFailure, 30, places=3)
        self.assertEqual(state.lastReason, "451 4.3.0 try later")
        self.assertFalse(a.holds(name))
        self.assertFalse(os.path.exists(a.getPath(name) + "-D"))
        a.setWaiting(name)
        self.assertEqual(a.getWaiting(), [])
        [(worker, token)] = self.sql("SELECT lease_worker, lease_token FROM {s}.messages")
        self.assertEqual((worker, token), (None, None))
        yield a.stop(0)

        # A new worker (the old one restarted): not due yet.
        b = yield self.startedQueue()
        self.assertEqual((yield b.claim()), [])
        self.sql("UPDATE {s}.messages SET next_attempt = clock_timestamp()")
        self.assertEqual((yield b.claim()), [name])
        self.assertEqual(b.schedule(name).failures, 1)
        self.assertEqual(b.schedule(name).lastReason, "451 4.3.0 try later")
        state = yield b.recordFailure(name, "again", retryDelay=lambda n: 10.0 * n)
        self.assertEqual(state.failures, 2)
        self.assertAlmostEqual(state.nextAttempt - state.lastFailure, 20, places=3)

    @defer.inlineCallbacks
    def test_delayWarningOnce(self) -> Any:
        """
        The delay warning of a message is queued once, under a name made
        from the message's, with the message marked warned.
        """
        queue = yield self.startedQueue()
        [name] = yield self.fill(queue, 1)
        yield queue.claim()
        self.assertTrue((yield queue.sendDelayWarning(name, b"delayed", "a@example.com")))
        self.assertFalse((yield queue.sendDelayWarning(name, b"delayed", "a@example.com")))
        self.assertTrue(queue.schedule(name).warned)
        rows = self.rows()
        self.assertEqual(rows, sorted([
            (name, "a@example.com", "u0@example.org", None),
            (warningName(name), "", "a@example.com", name)]))
        [(warned,)] = self.sql("SELECT warned FROM {s}.messages WHERE id = %s", (name,))
        self.assertTrue(warned)


    @defer.inlineCallbacks
    def test_failureWithWarning(self) -> Any:
        """
        A failure can carry the delay warning: both in one transaction, the
        warning once.
        """
        queue = yield self.startedQueue()
        [name] = yield self.fill(queue, 1)
        yield queue.claim()
        state = yield queue.recordFailure(name, "later", warning=(b"delayed", "a@example.com"))
        self.assertEqual((state.failures, state.warned), (1, True))
        self.sql("UPDATE {s}.messages SET next_attempt = clock_timestamp()")
        self.assertEqual(sorted((yield queue.claim(limit=5))), [name, warningName(name)])
        state = yield queue.recordFailure(name, "later", warning=(b"again", "a@example.com"))
        self.assertEqual(state.failures, 2)
        self.assertEqual(self.sql("SELECT count(*) FROM {s}.messages WHERE origin = %s",
                                  (name,)), [(1,)])

    @defer.inlineCallbacks
    def test_forget(self) -> Any:
        """
        A message a relayer skipped is given back.
        """
        a = yield self.startedQueue()
        b = yield self.startedQueue()
        [name] = yield self.fill(a, 1)
        yield a.claim()
        a.setRelaying(name)
        a.forget(name)
        yield a.flush()
        self.assertFalse(a.holds(name))
        self.assertEqual((yield b.claim()), [name])


class BounceTests(_QueueTestCase):
    """
    A message is returned to its sender once, whatever fails.
    """

    @defer.inlineCallbacks
    def test_returnMessage(self) -> Any:
        """
        The bounce is queued and the message removed in one transaction;
        the bounce's name comes from the message's.
        """
        queue = yield self.startedQueue()
        [name] = yield self.fill(queue, 1)
        yield queue.claim()
        queued = yield queue.returnMessage(name, b"report", "a@example.com")
        self.assertTrue(queued)
        self.assertEqual(self.rows(), [(bounceName(name), "", "a@example.com", name)])
        [(data,)] = self.sql("SELECT data FROM {s}.messages")
        self.assertEqual(bytes(data), b"report")

    @defer.inlineCallbacks
    def test_crashBetweenSteps(self) -> Any:
        """
        A worker whose connection dies between queueing the bounce and
        removing the message changes nothing; the worker that takes the
        message over returns it, under the same name: one bounce.
        """
        a = yield self.startedQueue()
        b = yield self.startedQueue()
        [name] = yield self.fill(a, 1)
        yield a.claim()
        token = a._held[name].batch.token

        def dying(*args: Any) -> Any:
            # The bounce is queued, the message removed, and the worker's
            # connection is cut before the commit.
            yield from returnProgram(*args)
            from mailclient._relaying.pgdb import Statement

            yield Statement("SELECT pg_terminate_backend(pg_backend_pid())")

        yield self.assertFailure(
            self.db.run(dying, self.schema, name, token, bounceName(name), "a@example.com",
                        b"report"),
            Exception)
        self.assertEqual([r[0] for r in self.rows()], [name])
        self.expireLeases()
        self.assertEqual((yield b.claim()), [name])
        self.assertTrue((yield b.returnMessage(name, b"report", "a@example.com")))
        self.assertEqual([r[0] for r in self.rows()], [bounceName(name)])

    @defer.inlineCallbacks
    def test_bounceAlreadyQueued(self) -> Any:
        """
        If the bounce of a message is queued already (made by an earlier
        try), returning the message removes it and queues nothing more.
        """
        queue = yield self.startedQueue()
        [name] = yield self.fill(queue, 1)
        yield queue.enqueueMessage("", "a@example.com", b"first report", bounceName(name))
        yield queue.claim(limit=1)
        self.assertEqual(queue.getWaiting(), [name])
        self.assertFalse((yield queue.returnMessage(name, b"report", "a@example.com")))
        rows = self.sql("SELECT id, data FROM {s}.messages")
        self.assertEqual([(r[0], bytes(r[1])) for r in rows],
                         [(bounceName(name), b"first report")])

    @defer.inlineCallbacks
    def test_returnedOnce(self) -> Any:
        """
        Returning the same message twice makes one bounce: the second try
        no longer holds it.
        """
        queue = yield self.startedQueue()
        [name] = yield self.fill(queue, 1)
        yield queue.claim()
        token = queue._held[name].batch.token
        yield queue.returnMessage(name, b"report", "a@example.com")
        yield self.assertFailure(
            self.db.run(returnProgram, self.schema, name, token, bounceName(name),
                        "a@example.com", b"report"),
            StaleLeaseError)
        self.assertEqual([r[0] for r in self.rows()], [bounceName(name)])


class DestinationTests(_QueueTestCase):
    """
    Fleet-wide limits per destination.
    """

    @defer.inlineCallbacks
    def test_capAcrossWorkers(self) -> Any:
        """
        However many workers claim, at most C{destinationLimit} batches (one
        connection each) of one destination are claimed at once; settling a
        batch frees its slot for any worker.
        """
        workers = []
        for _ in range(3):
            workers.append((yield self.startedQueue(batchSize=5, destinationLimit=2)))
        yield self.fill(workers[0], 30)
        yield self.fill(workers[0], 3, domain="example.net")
        claimed = yield defer.gatherResults([w.claim(limit=20, batches=4) for w in workers])
        domains = [n for c in claimed for n in c]
        self.assertEqual(len(domains), 13)
        slots = self.sql("SELECT destination, count(*) FROM {s}.slots GROUP BY 1 ORDER BY 1")
        self.assertEqual(slots, [("example.net", 1), ("example.org", 2)])
        stats = yield workers[0].stats()
        self.assertEqual((stats["leased"], stats["slots"]), (13, 3))

        # A worker settles one example.org batch: its slot is free again.
        holder = next(w for w, c in zip(workers, claimed)
                      if any(w._held[n].batch.destination == "example.org" for n in c))
        batch = next(b for b in holder._batches.values() if b.destination == "example.org")
        for name in list(batch.names):
            holder.done(name)
        yield holder.flush()
        other = workers[(workers.index(holder) + 1) % 3]
        again = yield other.claim(limit=20, batches=4)
        self.assertEqual(len(again), 5)

    @defer.inlineCallbacks
    def test_slotHeldByConnection(self) -> Any:
        """
        A slot held for a connection (L{PGQueue.holdSlots}) stays taken
        after the batch's messages are settled, until the connection ends.
        """
        a = yield self.startedQueue(batchSize=2, destinationLimit=1)
        b = yield self.startedQueue(batchSize=2, destinationLimit=1)
        yield self.fill(a, 4)
        names = yield a.claim(limit=2, batches=1)
        connection: defer.Deferred[None] = defer.Deferred()
        a.holdSlots(names, connection)
        for name in names:
            a.setRelaying(name)
            a.done(name)
        yield a.flush()
        self.assertEqual((yield b.claim(limit=2, batches=1)), [])
        connection.callback(None)
        yield a.flush()
        self.assertEqual(len((yield b.claim(limit=2, batches=1))), 2)

    @defer.inlineCallbacks
    def test_limitInDatabase(self) -> Any:
        """
        A destination's limit set in the database applies to every worker;
        0 pauses it.
        """
        queue = yield self.startedQueue(batchSize=1)
        yield self.fill(queue, 3)
        yield queue.setDestinationLimit("example.org", 0)
        self.assertEqual((yield queue.claim(limit=3, batches=3)), [])
        yield queue.setDestinationLimit("example.org", 2)
        self.assertEqual(len((yield queue.claim(limit=3, batches=3))), 2)

    @defer.inlineCallbacks
    def test_deadSlotsExpire(self) -> Any:
        """
        The slots of a worker that died stop counting when their lease runs
        out.
        """
        a = yield self.startedQueue(batchSize=2, destinationLimit=1)
        b = yield self.startedQueue(batchSize=2, destinationLimit=1)
        yield self.fill(a, 4)
        self.assertEqual(len((yield a.claim(limit=4, batches=2))), 2)
        self.assertEqual((yield b.claim(limit=4, batches=2)), [])
        self.expireLeases()
        self.assertEqual(len((yield b.claim(limit=4, batches=2))), 2)

    @defer.inlineCallbacks
    def test_backOff(self) -> Any:
        """
        A destination that answered 421 (or 4.7.x) is not claimed by any
        worker until its back-off ends; the messages for it that the worker
        held and had not started are released.
        """
        a = yield self.startedQueue()
        b = yield self.startedQueue()
        yield self.fill(a, 2)
        [other] = yield self.fill(a, 1, domain="example.net")
        held = yield a.claim(limit=2)
        self.assertEqual(len(held), 2)
        until = yield a.backOffDestination("example.org", 300, "421 4.7.0 too many connections")
        [(notBefore,)] = self.sql(
            "SELECT extract(epoch FROM not_before)::float8 FROM {s}.destinations"
            " WHERE destination = 'example.org'")
        self.assertEqual(until, notBefore)
        yield a.flush()
        self.assertEqual(a.getWaiting(), [])
        self.assertEqual((yield b.claim(limit=5)), [other])
        # A shorter back-off does not shorten it.
        self.assertEqual((yield a.backOffDestination("example.org", 1)), until)
        self.sql("UPDATE {s}.destinations SET not_before = clock_timestamp()")
        self.assertEqual(len((yield b.claim(limit=5))), 2)

    @defer.inlineCallbacks
    def test_smartHost(self) -> Any:
        """
        Through a smart host every message counts against the smart host's
        slots, whatever its domain.
        """
        queue = yield self.startedQueue(batchSize=1, smartHost="[smtp.example.com]:587",
                                        destinationLimit=2)
        yield self.fill(queue, 2)
        yield self.fill(queue, 2, domain="example.net")
        self.assertEqual(len((yield queue.claim(limit=4, batches=4))), 2)
        self.assertEqual(self.sql("SELECT DISTINCT destination FROM {s}.slots"),
                         [("[smtp.example.com]:587",)])


class MiscellaneousTests(_QueueTestCase):
    """
    Notifications, quarantine, the directory queue's interface.
    """

    @defer.inlineCallbacks
    def test_notifyWakes(self) -> Any:
        """
        A worker listening is woken when mail is queued, by any producer
        (the insert trigger), and when mail is released.
        """
        idle = yield self.startedQueue(listen=True)
        producer = yield self.startedQueue()
        woken: List[defer.Deferred[None]] = [defer.Deferred()]
        idle.wakeObservers.append(lambda: woken[-1].called or woken[-1].callback(None))
        yield producer.enqueueMessage("a@example.com", "b@example.org", BODY)
        yield woken[-1].addTimeout(10, reactor)
        woken.append(defer.Deferred())
        self.sql("INSERT INTO {s}.messages (id, sender, recipient, data)"
                 " VALUES ('by-sql', 'a@example.com', 'c@example.org', 'x')")
        yield woken[-1].addTimeout(10, reactor)
        yield producer.claim(limit=5)
        woken.append(defer.Deferred())
        yield producer.release()
        yield woken[-1].addTimeout(10, reactor)

    @defer.inlineCallbacks
    def test_listenerReconnects(self) -> Any:
        """
        When its connection is lost, the listener connects again and wakes
        the worker (notifications may have been missed meanwhile).
        """
        idle = yield self.startedQueue(listen=True)
        idle._listener.retryDelay = idle._listener._delay = 0.05
        woken: defer.Deferred[None] = defer.Deferred()
        idle.wakeObservers.append(lambda: woken.called or woken.callback(None))
        pid = idle._listener._connection.pgconn.backend_pid
        self.sql("SELECT pg_terminate_backend(%s)", (pid,))
        yield woken.addTimeout(10, reactor)
        self.assertTrue(idle._listener.listening)
        self.assertNotEqual(idle._listener._connection.pgconn.backend_pid, pid)

    @defer.inlineCallbacks
    def test_quarantine(self) -> Any:
        """
        A quarantined message stays in the table and is not claimed again.
        """
        queue = yield self.startedQueue()
        [name] = yield self.fill(queue, 1)
        yield queue.claim()
        queue.quarantine(name)
        yield queue.flush()
        self.assertEqual(queue.quarantined, {name: 1})
        self.assertEqual(self.sql("SELECT quarantined FROM {s}.messages"), [(True,)])
        self.assertEqual((yield queue.claim()), [])
        self.assertIsNone((yield queue.nextDue()))

    @defer.inlineCallbacks
    def test_enqueueCompatible(self) -> Any:
        """
        The directory queue's C{enqueue} returns the name at once and
        commits the message soon after.
        """
        queue = yield self.startedQueue()
        name = queue.enqueue("a@example.com", b"b@example.org", b"x")
        yield queue.flush()
        self.assertEqual(self.rows(), [(name, "a@example.com", "b@example.org", None)])
        [(domain,)] = self.sql("SELECT domain FROM {s}.messages")
        self.assertEqual(domain, "example.org")

    def test_badNames(self) -> None:
        """
        Only plain file names can name queued messages.
        """
        queue = self.makeQueue()
        for name in ("../x", ".hidden", "a/b", "", "x" * 300):
            self.assertRaises(ValueError, queue.enqueueMessage, "a@x", "b@y", b"", name)

    @defer.inlineCallbacks
    def test_nulRefused(self) -> Any:
        """
        An envelope address PostgreSQL's text cannot hold is refused.
        """
        queue = yield self.startedQueue()
        yield self.assertFailure(queue.enqueueMessage("a\x00@x", "b@y", b""), ValueError)
        yield self.assertFailure(queue.enqueueMessage("a@x", b"\xff@y", b""), ValueError)
