"""
What the PostgreSQL relay queue asks of its database, on a real PostgreSQL:
a confirmation is one autocommitted statement, a connection slot is freed
with the worker's next statement and wakes the other workers only when one
may be waiting for it, the next due time comes with the claim; and the
threaded driver, which runs programs on the reactor's thread.  Also where
a worker's scratch directory goes by default.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Generator
from typing import Callable, Optional, TypeVar, cast

from twisted.internet import defer, reactor, task
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads, IReactorTime
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from mailclient._relaying.pgdb import (
    DatabaseUnreachable,
    Result,
    Statement,
    ThreadedDatabase,
    oneStatement,
)
from mailclient._relaying.pgqueue import PGQueue
from mailclient._relaying.pgschema import createSchema
from mailclient._relaying.pgscratch import scratchParent
from mailclient.test.helpers_pg import PostgresTestMixin

BODY = b"Subject: hi\n\nHello\n"

T = TypeVar("T")

#: A program with no particular result.
Steps = Generator[Statement, Result, None]

#: The global reactor, as these tests use it.
_reactor = cast(IReactorCore, reactor)


def sleep(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(cast(IReactorTime, reactor), seconds, lambda: None)


async def failure(d: defer.Deferred[T], *errors: type[BaseException]) -> BaseException:
    """
    The exception C{d} fails with, one of C{errors}.
    """
    try:
        await d
    except errors as e:
        return e
    raise AssertionError("did not fail")


class _Cluster(PostgresTestMixin):
    """
    Typed access to the test cluster.
    """

    def sql(self, statement: str, params: Optional[object] = None) -> list[tuple[object, ...]]:
        rows = self.cluster.execute(statement.format(s=self.schema), params)
        return [tuple(row) for row in rows]

    def scalar(self, statement: str, params: Optional[object] = None) -> int:
        [(value,)] = self.sql(statement, params)
        return int(cast(int, value))

    def threaded(self, size: int = 4, reactor: Optional[IReactorCore] = None
                 ) -> ThreadedDatabase:
        """
        A database on the cluster, closed after the test.
        """
        database = ThreadedDatabase(self.cluster.conninfo(), reactor=reactor, size=size)
        cast(TestCase, self).addCleanup(database.close)
        return database


class QueueStatementTests(_Cluster, TestCase):
    """
    The transactions, statements and notifications of a worker.
    """

    def setUp(self) -> None:
        _Cluster.setUp(self)
        self.db = self.threaded()

    async def startedQueue(self, batchSize: int = 10, destinationLimit: Optional[int] = None,
                           listen: bool = False, lease: float = 60.0) -> PGQueue:
        if self.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = %s",
                       (self.schema,)) == 0:
            await createSchema(self.db, self.schema)
        queue = PGQueue(self.db, self.mktemp(), schema=self.schema, batchSize=batchSize,
                        destinationLimit=destinationLimit, listen=listen, lease=lease)
        queue.noisy = False
        await queue.start()
        self.addCleanup(queue.stop, 0)
        return queue

    async def fill(self, queue: PGQueue, count: int) -> list[str]:
        names = []
        for i in range(count):
            names.append(await queue.enqueueMessage(
                "a@example.com", "u%d@example.org" % (i,), BODY))
        return names

    def nextXid(self) -> int:
        """
        The next transaction id: how many transactions wrote so far (a
        read-only one takes none; this statement takes none).
        """
        return self.scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")

    def slots(self) -> int:
        return self.scalar("SELECT count(*) FROM {s}.slots")

    def lastQuery(self) -> tuple[object, ...]:
        """
        The last statement of the connection of the queue's database that
        ran one last, and its state.
        """
        [last] = self.sql(
            "SELECT query, state FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            " ORDER BY state_change DESC LIMIT 1")
        return last

    async def test_confirmIsOneStatement(self) -> None:
        """
        Confirming a delivery is one autocommitted statement: one writing
        transaction, whose last statement (and only one) is the C{DELETE},
        not a C{COMMIT} closing a transaction block.  The confirmation of
        the last message of a batch frees the batch's slot in the same
        statement.
        """
        queue = await self.startedQueue()
        names = await self.fill(queue, 2)
        await queue.claim()
        for name, start in zip(names, ("DELETE FROM", "WITH confirmed AS (DELETE FROM")):
            before = self.nextXid()
            self.assertTrue(await queue.confirm(name))
            self.assertEqual(self.nextXid() - before, 1)
            query, state = self.lastQuery()
            self.assertEqual(state, "idle")
            self.assertTrue(str(query).startswith(
                "%s %s.messages WHERE id = $1" % (start, self.schema)), query)
        self.assertEqual(self.scalar("SELECT count(*) FROM {s}.messages"), 0)
        self.assertEqual(self.slots(), 0)

    async def test_slotFreedWithLastConfirmation(self) -> None:
        """
        The last confirmation of a batch that no connection holds frees its
        slot in the same statement: one transaction, nothing left to free.
        """
        queue = await self.startedQueue(batchSize=2)
        names = await self.fill(queue, 2)
        await queue.claim(limit=2, batches=1)
        self.assertEqual(self.slots(), 1)
        await queue.confirm(names[0])
        self.assertEqual(self.slots(), 1)
        before = self.nextXid()
        await queue.confirm(names[1])
        self.assertEqual(self.nextXid() - before, 1)
        self.assertEqual(self.slots(), 0)
        self.assertEqual((queue._slotsToFree, queue._freeTimer), ([], None))

    async def test_slotFreedByNextClaim(self) -> None:
        """
        A slot freed when its connection ends goes with the worker's next
        claim, made at once: no transaction of its own.
        """
        queue = await self.startedQueue(batchSize=2)
        names = await self.fill(queue, 2)
        await queue.claim(limit=2, batches=1)
        connection: defer.Deferred[None] = defer.Deferred()
        queue.holdSlots(names, connection)
        for name in names:
            queue.setRelaying(name)
            await queue.confirm(name)
        self.assertEqual(self.slots(), 1)
        before = self.nextXid()
        connection.callback(None)
        self.assertEqual(await queue.claimNext(limit=2, batches=1), ([], None))
        self.assertEqual(self.nextXid() - before, 1)
        self.assertEqual(self.slots(), 0)
        await sleep(0.05)
        self.assertEqual(self.nextXid() - before, 1)

    async def test_slotFreedSoon(self) -> None:
        """
        Without a claim to go with, a slot freed when its connection ends
        is freed by a statement of its own, in the same reactor turn.
        """
        queue = await self.startedQueue(batchSize=1)
        [name] = await self.fill(queue, 1)
        await queue.claim(limit=1, batches=1)
        connection: defer.Deferred[None] = defer.Deferred()
        queue.holdSlots([name], connection)
        await queue.confirm(name)
        connection.callback(None)
        for _ in range(100):
            if not self.slots():
                break
            await sleep(0.02)
        self.assertEqual(self.slots(), 0)

    async def wakes(self, limit: Optional[int], maxConnections: Optional[int] = None) -> int:
        """
        How many times a listening worker is woken by another's batch of
        two ending (its messages confirmed, its connection closed), the
        other with C{destinationLimit=limit}, the destination's row with
        C{maxConnections}.
        """
        watcher = await self.startedQueue(listen=True)
        queue = await self.startedQueue(batchSize=2, destinationLimit=limit)
        names = await self.fill(queue, 2)
        if maxConnections is not None:
            await queue.setDestinationLimit("example.org", maxConnections)
        self.assertEqual(len(await queue.claim(limit=2, batches=1)), 2)
        # The notifications of the inserts are in.
        await sleep(0.3)
        woken: list[None] = []
        watcher.wakeObservers.append(lambda: woken.append(None))
        connection: defer.Deferred[None] = defer.Deferred()
        queue.holdSlots(names, connection)
        for name in names:
            queue.setRelaying(name)
            queue.done(name)
        connection.callback(None)
        await queue.flush()
        self.assertEqual(self.slots(), 0)
        for _ in range(25):
            if woken:
                break
            await sleep(0.02)
        return len(woken)

    async def test_noWakeUnlimited(self) -> None:
        """
        Freeing a slot of a destination without a connection limit wakes no
        worker: none can be waiting for it.
        """
        self.assertEqual(await self.wakes(None), 0)

    async def test_noWakeBelowLimit(self) -> None:
        """
        Nor does freeing a slot of a destination that had slots to spare.
        """
        self.assertEqual(await self.wakes(2), 0)

    async def test_wakeAtLimit(self) -> None:
        """
        Freeing the slot of a destination whose slots were all taken wakes
        the listening workers: one may have found it full.
        """
        self.assertEqual(await self.wakes(1), 1)

    async def test_wakeAtDatabaseLimit(self) -> None:
        """
        The limit may be the database's.
        """
        self.assertEqual(await self.wakes(None, maxConnections=1), 1)

    async def test_wakeOnRelease(self) -> None:
        """
        Messages given back wake the listening workers.
        """
        watcher = await self.startedQueue(listen=True)
        queue = await self.startedQueue()
        await self.fill(queue, 1)
        await queue.claim()
        await sleep(0.3)
        woken: defer.Deferred[None] = defer.Deferred()
        watcher.wakeObservers.append(lambda: woken.called or woken.callback(None))
        await queue.release()
        await woken.addTimeout(10, _reactor)

    async def test_unlimitedNotLocked(self) -> None:
        """
        A claim for a destination without a connection limit does not wait
        for another holding the destination's row: it reads it, and drops
        the expired slots of dead workers itself.
        """
        import psycopg

        queue = await self.startedQueue(batchSize=1)
        names = await self.fill(queue, 2)
        await queue.claim(limit=1, batches=1)
        self.sql("INSERT INTO {s}.slots (token, destination, worker, lease_until)"
                 " VALUES (%s, 'example.org', 'dead', clock_timestamp() - interval '1 hour')",
                 (uuid.uuid4(),))
        self.assertEqual(self.slots(), 2)
        other = psycopg.connect(self.cluster.conninfo())
        self.addCleanup(other.close)
        other.execute("SELECT * FROM %s.destinations WHERE destination = 'example.org'"
                      " FOR UPDATE" % (self.schema,))
        try:
            claimed = await queue.claim(limit=1, batches=1).addTimeout(5, _reactor)
        finally:
            other.rollback()
        self.assertEqual(claimed, [names[1]])
        self.assertEqual(self.sql("SELECT worker FROM {s}.slots"), [(queue.worker,)] * 2)

    async def test_nextDueWithClaim(self) -> None:
        """
        The claim says when the next message may be claimed: computed when
        fewer messages were due than it could take (the ones it took count
        as leased), 0 when it took as many as it could, L{None} when
        nothing is queued.
        """
        queue = await self.startedQueue(lease=7200)
        self.assertEqual(await queue.claimNext(limit=5), ([], None))
        names = await self.fill(queue, 3)
        self.sql("UPDATE {s}.messages SET next_attempt = clock_timestamp() + interval '1 hour'"
                 " WHERE id = %s", (names[2],))
        self.assertEqual(await queue.claimNext(limit=1), ([names[0]], 0.0))
        claimed, due = await queue.claimNext(limit=5)
        self.assertEqual(claimed, [names[1]])
        assert due is not None
        self.assertTrue(3590 < due <= 3600, due)
        again = await queue.nextDue()
        assert again is not None
        self.assertTrue(abs(due - again) < 1, (due, again))


@implementer(IReactorFromThreads)
class _NoSockets:
    """
    A reactor that cannot watch sockets: calls from threads and system
    events only, given to the global reactor.
    """

    def callFromThread(self, callable: Callable[..., object], *args: object,
                       **kwargs: object) -> None:
        cast(IReactorFromThreads, reactor).callFromThread(callable, *args, **kwargs)

    def addSystemEventTrigger(self, phase: str, eventType: str,
                              callable: Callable[..., object], *args: object,
                              **kwargs: object) -> object:
        return _reactor.addSystemEventTrigger(phase, eventType, callable, *args, **kwargs)

    def removeSystemEventTrigger(self, triggerID: object) -> None:
        _reactor.removeSystemEventTrigger(triggerID)


class ThreadedDriverTests(_Cluster, TestCase):
    """
    L{ThreadedDatabase} runs programs on the reactor's thread, with
    psycopg's adapters, in transactions or as one autocommitted statement.
    """

    def setUp(self) -> None:
        _Cluster.setUp(self)
        self.sql("CREATE TABLE {s} (n int PRIMARY KEY)")
        self.addCleanup(self.sql, "DROP TABLE {s}")

    async def test_onReactorThread(self) -> None:
        """
        Programs run on the reactor's thread; on a reactor that cannot
        watch sockets, in the database's threads.
        """
        def where() -> Generator[Statement, Result, threading.Thread]:
            yield Statement("SELECT 1")
            return threading.current_thread()

        self.assertIs(await self.threaded().run(where), threading.current_thread())
        threaded = self.threaded(reactor=cast(IReactorCore, _NoSockets()))
        self.assertIsNot(await threaded.run(where), threading.current_thread())

    async def test_values(self) -> None:
        """
        Parameters and values are adapted as psycopg's cursors do; C{%}
        means nothing in a statement without parameters; a named parameter
        may be used twice.
        """
        token = uuid.uuid4()

        def values() -> Generator[Statement, Result, tuple[object, ...]]:
            row = yield Statement(
                "SELECT %s::bytea, %s::uuid[], %s::text[], %s::float8, %s, %s::jsonb, %s::int,"
                " %s::text IS NULL",
                (b"\x00\xff", [token], ["a", "b,c"], 1.5, True, '{"a": 1}', 7, None))
            literal = yield Statement("SELECT '100%'")
            named = yield Statement("SELECT %(a)s::int + %(a)s::int", {"a": 2})
            return row.one(), literal.scalar(), named.scalar()

        row, literal, named = await self.threaded().run(values)
        self.assertEqual(row, (b"\x00\xff", [token], ["a", "b,c"], 1.5, True, {"a": 1}, 7, True))
        self.assertEqual((literal, named), ("100%", 4))

    async def test_transactions(self) -> None:
        """
        A program that raises is rolled back; a one-statement program is
        committed by its statement, whatever it raises after it; one that
        yields a second statement fails, its first committed.
        """
        db = self.threaded()
        table = self.schema

        def inserting(n: int) -> Steps:
            yield Statement("INSERT INTO %s VALUES (%%s)" % (table,), (n,))
            yield Statement("SELECT 1")
            raise ValueError("no")

        @oneStatement
        def alone(n: int) -> Steps:
            yield Statement("INSERT INTO %s VALUES (%%s)" % (table,), (n,))
            raise ValueError("no")

        @oneStatement
        def twice(n: int) -> Steps:
            yield Statement("INSERT INTO %s VALUES (%%s)" % (table,), (n,))
            yield Statement("INSERT INTO %s VALUES (%%s)" % (table,), (n + 1,))

        await failure(db.run(inserting, 1), ValueError)
        await failure(db.run(alone, 2), ValueError)
        await failure(db.run(twice, 3), Exception)
        self.assertEqual(self.sql("SELECT n FROM {s} ORDER BY n"), [(2,), (3,)])

    async def test_errors(self) -> None:
        """
        A statement's error is psycopg's, and the connection serves the
        next program; a transaction that failed is rolled back.
        """
        import psycopg

        db = self.threaded(size=1)
        table = self.schema

        def failing() -> Steps:
            yield Statement("INSERT INTO %s VALUES (1)" % (table,))
            yield Statement("SELECT * FROM no_such_table_here")

        def count() -> Generator[Statement, Result, object]:
            result = yield Statement("SELECT count(*) FROM %s" % (table,))
            return result.scalar()

        await failure(db.run(failing), psycopg.errors.UndefinedTable)
        self.assertEqual(await db.run(count), 0)

    async def test_prepared(self) -> None:
        """
        A statement is prepared on a connection the second time it runs
        there, and runs prepared then.
        """
        db = self.threaded(size=1)

        def select(n: int) -> Generator[Statement, Result, object]:
            result = yield Statement("SELECT %s::int + 1", (n,))
            return result.scalar()

        def prepared() -> Generator[Statement, Result, object]:
            result = yield Statement(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                ("SELECT $1::int + 1%",))
            return result.scalar()

        results = [await db.run(select, n) for n in range(4)]
        self.assertEqual(results, [1, 2, 3, 4])
        self.assertEqual(await db.run(prepared), 1)

    async def test_concurrent(self) -> None:
        """
        Programs run at once on as many connections as the database may
        have, and wait for one beyond that.
        """
        def sleeping() -> Steps:
            yield Statement("SELECT pg_sleep(0.3)")

        for size, least, most in ((3, 0.25, 0.8), (1, 0.85, 10.0)):
            db = self.threaded(size=size)
            await db.run(sleeping)
            start = time.monotonic()
            await defer.gatherResults([db.run(sleeping) for _ in range(3)])
            took = time.monotonic() - start
            self.assertTrue(least <= took <= most, (size, took))

    async def test_closed(self) -> None:
        """
        Once closed, a database runs nothing more.
        """
        db = ThreadedDatabase(self.cluster.conninfo())

        def one() -> Steps:
            yield Statement("SELECT 1")

        await db.run(one)
        await db.close()
        await failure(db.run(one), DatabaseUnreachable)


class ScratchParentTests(SynchronousTestCase):
    """
    Where a worker makes its scratch directory when not told: in memory
    when it can.
    """

    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_runtimeDirectory(self) -> None:
        """
        C{$XDG_RUNTIME_DIR}, the user's own, comes first.
        """
        runtime = os.path.join(self.tmp, "run")
        os.mkdir(runtime, 0o700)
        self.assertEqual(scratchParent({"XDG_RUNTIME_DIR": runtime}), runtime)

    def test_notPrivate(self) -> None:
        """
        A runtime directory that others may read, or a relative one, is not
        used: C{/dev/shm} then, if it is usable, else the temporary
        directory.
        """
        runtime = os.path.join(self.tmp, "run")
        os.mkdir(runtime)
        os.chmod(runtime, 0o755)
        shm = os.stat("/dev/shm") if os.path.isdir("/dev/shm") else None
        usable = (shm is not None and os.access("/dev/shm", os.W_OK | os.X_OK)
                  and (not shm.st_mode & stat.S_IWOTH or bool(shm.st_mode & stat.S_ISVTX)))
        expected = "/dev/shm" if usable else tempfile.gettempdir()
        self.assertEqual(scratchParent({"XDG_RUNTIME_DIR": runtime}), expected)
        self.assertEqual(scratchParent({"XDG_RUNTIME_DIR": "run"}), expected)
        self.assertEqual(scratchParent({}), expected)
