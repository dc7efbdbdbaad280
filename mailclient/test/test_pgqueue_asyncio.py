"""
Tests for the asyncio driver of the PostgreSQL relay queue
(L{mailclient._relaying.pgdb.AsyncioDatabase}), on a real PostgreSQL: the
same programs run as coroutines with C{psycopg.AsyncConnection}, on an
asyncio event loop of their own (in a thread, so that it runs under any
reactor), and a whole worker under Twisted's asyncio reactor in a child
process.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from typing import Any, Awaitable, Callable, List

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from mailclient._relaying.pgdb import (
    AsyncioDatabase,
    DatabaseUnreachable,
    StaleLeaseError,
    Statement,
    ThreadedDatabase,
    connectDatabase,
)
from mailclient._relaying.pgqueue import PGQueue
from mailclient._relaying.pgschema import SCHEMA_VERSION, checkSchema, createSchema
from mailclient._relaying.pgsql import claimProgram, enqueueProgram
from mailclient.test.helpers_pg import PostgresTestMixin
from mailclient.test.helpers_relay import pythonEnv


def runAsyncio(main: Callable[[], Awaitable[Any]]) -> Any:
    """
    Run C{main()} to completion on a new event loop in a thread of its own;
    return its result or raise its exception.
    """
    outcome: List[Any] = []

    def run() -> None:
        try:
            outcome.append((True, asyncio.run(main())))
        except BaseException as e:
            outcome.append((False, e))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(120)
    if not outcome:
        raise AssertionError("the asyncio test did not finish")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


async def wait(d: "defer.Deferred[Any]") -> Any:
    return await d.asFuture(asyncio.get_running_loop())


class AsyncioDatabaseTests(PostgresTestMixin, TestCase):
    """
    The queue's transactions on C{psycopg.AsyncConnection}s.
    """

    def test_programs(self) -> None:
        """
        Creating the schema, queueing, claiming (in two concurrent claims,
        without a message claimed twice) and confirming, as coroutines.
        """
        conninfo, schema, directory = self.cluster.conninfo(), self.schema, self.mktemp()
        os.makedirs(directory)

        async def main() -> Any:
            db = AsyncioDatabase(conninfo, size=2)
            try:
                self.assertEqual(await wait(createSchema(db, schema)), SCHEMA_VERSION)
                self.assertEqual(await wait(checkSchema(db, schema)), SCHEMA_VERSION)
                for i in range(20):
                    await wait(db.run(enqueueProgram, schema, "m%02d" % (i,), "a@example.com",
                                      "u%d@example.org" % (i,), b"body"))
                claims = await asyncio.gather(*[
                    wait(db.run(claimProgram, schema, "w%d" % (n,), 60.0, 10, 5, None, None,
                                None))
                    for n in range(2)])
                names = [m.name for batches in claims for b in batches for m in b.messages]
                self.assertEqual(sorted(names), ["m%02d" % (i,) for i in range(20)])
                queue = PGQueue(db, directory, schema=schema, listen=False)
                await wait(db.run(_release, schema))
                claimed = await wait(queue.claim(limit=3))
                self.assertEqual(len(claimed), 3)
                self.assertTrue(await wait(queue.confirm(claimed[0])))
                state = await wait(queue.recordFailure(claimed[1], "451 later"))
                self.assertEqual(state.failures, 1)
                queue._held[claimed[2]].batch.token = uuid.uuid4()
                try:
                    await wait(queue.confirm(claimed[2]))
                except StaleLeaseError:
                    pass
                else:
                    raise AssertionError("a stale token was accepted")
                return await wait(queue.stats())
            finally:
                await wait(db.close())

        stats = runAsyncio(main)
        self.assertEqual((stats["queued"], stats["deferred"]), (19, 1))

    def test_errors(self) -> None:
        """
        The asyncio driver gives the same one-line errors.
        """
        conninfo, directory = self.cluster.conninfo(), self.cluster.directory

        async def main() -> None:
            nowhere = AsyncioDatabase("host=%s/nowhere dbname=x" % (directory,))
            try:
                await wait(checkSchema(nowhere, "x"))
            except DatabaseUnreachable as e:
                self.assertNotIn("\n", str(e))
            else:
                raise AssertionError("no error")
            db = AsyncioDatabase(conninfo)

            def dying() -> Any:
                yield Statement("SELECT pg_terminate_backend(pg_backend_pid())")

            try:
                await wait(db.run(dying))
            except DatabaseUnreachable as e:
                self.assertIn("lost the relay queue database", str(e))
            else:
                raise AssertionError("no error")
            # The next transaction connects again.
            self.assertIsNone(await wait(db.run(_release, "x_unused")))
            await wait(db.close())

        runAsyncio(main)

    def test_choice(self) -> None:
        """
        L{connectDatabase} picks the asyncio driver for Twisted's asyncio
        reactor, threads for any other.
        """

        class AsyncioReactor:
            _asyncioEventloop = object()

        self.assertIsInstance(connectDatabase("host=/x", AsyncioReactor()), AsyncioDatabase)
        threaded = connectDatabase("host=/x")
        self.assertIsInstance(threaded, ThreadedDatabase)
        self.assertIsInstance(connectDatabase("host=/x", asyncio=True), AsyncioDatabase)

    def test_asyncioReactor(self) -> None:
        """
        A whole worker under Twisted's asyncio reactor: woken by a
        notification, it claims, renews its lease while relaying, and
        confirms.
        """
        result = subprocess.run(
            [sys.executable, "-c", _WORKER, self.cluster.conninfo(), self.schema, self.mktemp()],
            env=pythonEnv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        output = result.stdout.decode("utf-8", "replace")
        self.assertEqual(result.returncode, 0, output)
        self.assertIn("asyncio worker OK", output)


def _release(schema: str) -> Any:
    """
    A program that gives back every claimed message (the test's own
    shortcut); a no-op for a schema without the tables.
    """
    found = yield Statement("SELECT to_regclass(%s) IS NOT NULL", (schema + ".messages",))
    if found.scalar():
        yield Statement("UPDATE %s.messages SET lease_token = NULL, lease_until = NULL"
                        % (schema,))


_WORKER = r"""
import sys

from twisted.internet import asyncioreactor

asyncioreactor.install()

from twisted.internet import defer, task

from mailclient._relaying.pgdb import AsyncioDatabase, connectDatabase
from mailclient._relaying.pgqueue import PGQueue
from mailclient._relaying.pgschema import createSchema

conninfo, schema, directory = sys.argv[1:4]


@defer.inlineCallbacks
def main(reactor):
    db = connectDatabase(conninfo)
    assert isinstance(db, AsyncioDatabase), db
    yield createSchema(db, schema)
    worker = PGQueue(db, directory + "/a", schema=schema, lease=0.6)
    producer = PGQueue(db, directory + "/b", schema=schema, listen=False)
    yield worker.start()
    yield producer.start()
    woken = defer.Deferred()
    worker.wakeObservers.append(lambda: woken.called or woken.callback(None))
    name = yield producer.enqueueMessage("a@example.com", "b@example.org", b"hello\n")
    yield woken.addTimeout(10, reactor)
    claimed = yield worker.claim()
    assert claimed == [name], claimed
    worker.setRelaying(name)
    yield task.deferLater(reactor, 1.5, lambda: None)
    taken = yield producer.claim()
    assert taken == [], taken
    worker.done(name)
    yield worker.flush()
    stats = yield producer.stats()
    assert stats["queued"] == 0, stats
    yield worker.stop()
    yield producer.stop()
    yield db.close()
    print("asyncio worker OK")


task.react(main)
"""
