"""
Tests for L{mailclient._relaying.pgworker}: relaying managers fed by the
PostgreSQL queue, on a real PostgreSQL, relaying to a loopback server.
"""

from __future__ import annotations

import os
import re
import textwrap
from typing import Any, Dict, List, Tuple

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from mailclient._relaying.manager import SmartHostESMTPRelayingManager
from mailclient._relaying.pgdb import Statement, ThreadedDatabase
from mailclient._relaying.pgschema import createSchema
from mailclient._relaying.pgqueue import PGQueue
from mailclient._relaying.pgworker import PGRelayService
from mailclient.test.helpers_pg import PostgresTestMixin
from mailclient.test.helpers_relay import RelayTestServer, portOf, startServer


class RelayServiceTests(PostgresTestMixin, TestCase):
    """
    Several workers drain one queue.
    """

    @defer.inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        super().setUp()
        self.db = self.database()
        yield self.createQueueSchema(self.db)
        self.server = startServer(self, RelayTestServer())

    @defer.inlineCallbacks
    def worker(self, maxConnections: int = 2, **kw: Any) -> Any:
        database = self.database(size=2)
        queue = PGQueue(database, self.mktemp(), schema=self.schema, **kw)
        queue.noisy = False
        manager = SmartHostESMTPRelayingManager(
            queue, maxConnections, 4, smartHost=("127.0.0.1", portOf(self.server)))
        manager.fArgs = (None, None, b"worker.example.com")
        manager.reportingMTA = "worker.example.com"
        service = PGRelayService(manager, queue, pollInterval=1.0)
        yield service.startService()
        self.addCleanup(service.stopService)
        return service

    @defer.inlineCallbacks
    def drained(self, queue: PGQueue, timeout: float = 60) -> Any:
        for _ in range(int(timeout * 10)):
            stats = yield queue.stats()
            if stats["queued"] == 0:
                yield self.server.idle()
                return
            yield task.deferLater(reactor, 0.1, lambda: None)
        self.fail("the queue was not drained: %r" % (stats,))

    @defer.inlineCallbacks
    def test_workersDrainOneQueue(self) -> Any:
        """
        Two workers relay every message once, within the fleet's connection
        limit to the smart host, whichever worker queued it.
        """
        workers: List[PGRelayService] = []
        for _ in range(2):
            workers.append((yield self.worker(destinationLimit=2)))
        recipients = [b"user%d@example.org" % (i,) for i in range(30)]
        for i, recipient in enumerate(recipients):
            yield workers[i % 2].queue.enqueueMessage(
                "alice@example.com", recipient, b"Subject: %d\n\nbody\n" % (i,))
        yield self.drained(workers[0].queue)
        self.assertEqual(sorted(self.server.recipients()), sorted(recipients))
        self.assertLessEqual(self.server.maxActive, 2)
        stats = yield workers[0].queue.stats()
        self.assertEqual(stats["slots"], 0)

    async def test_oneTransactionPerLook(self) -> None:
        """
        A worker's look at the queue is one transaction: the claim says
        when the next message falls due, no query of its own asks.
        """
        service: PGRelayService = await self.worker()
        queue = service.queue
        asked: list[None] = []

        def nextDue() -> defer.Deferred[float | None]:
            asked.append(None)
            return defer.succeed(None)

        self.patch(queue, "nextDue", nextDue)
        for i in range(10):
            await queue.enqueueMessage("a@example.com", "u%d@example.org" % (i,), b"Hi\n")
        await self.drained(queue)
        self.assertEqual(len(self.server.messages), 10)
        self.assertEqual(asked, [])

    @defer.inlineCallbacks
    def test_refusedMessageReturned(self) -> Any:
        """
        A message refused for good is returned to its sender (the bounce is
        queued, then relayed like any message) and leaves the queue.
        """
        service = yield self.worker()
        self.server.rcptReplies[b"nobody@example.org"] = b"550 5.1.1 no such user"
        yield service.queue.enqueueMessage("alice@example.com", "nobody@example.org",
                                           b"Subject: lost\n\nbody\n")
        for _ in range(600):
            if self.server.messages:
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        yield self.drained(service.queue)
        [bounce] = self.server.messages
        self.assertEqual((bounce.sender, bounce.recipients), (b"", [b"alice@example.com"]))
        self.assertIn(b"5.1.1", bounce.data)


    @defer.inlineCallbacks
    def waitFor(self, program: Any, check: Any, timeout: float = 30) -> Any:
        for _ in range(int(timeout * 10)):
            rows = yield self.db.run(program, self.schema)
            if check(rows):
                return rows
            yield task.deferLater(reactor, 0.1, lambda: None)
        self.fail("never: %r" % (rows,))

    @defer.inlineCallbacks
    def test_temporaryFailureScheduledInTheDatabase(self) -> Any:
        """
        A message refused for now has its failure counted and its next
        attempt set in its row, on the database's clock: a restarted
        worker resumes the back-off instead of trying it at once.
        """
        service = yield self.worker()
        service.manager.backoffDelay = 3600
        self.server.rcptReplies[b"later@example.org"] = b"451 4.3.0 try again later"
        yield service.queue.enqueueMessage("alice@example.com", "later@example.org",
                                           b"Subject: later\n\nbody\n")

        def schedule(schema: str) -> Any:
            result = yield Statement(
                "SELECT failures, next_attempt > clock_timestamp() + interval '50 minutes',"
                " last_reason FROM %s.messages" % (schema,))
            return result.rows

        [(failures, later, reason)] = yield self.waitFor(schedule, lambda rows: rows and rows[0][0])
        self.assertEqual((failures, later), (1, True))
        self.assertIn("451", reason)
        stats = yield service.queue.stats()
        self.assertEqual(stats["queued"], 1)
        self.assertEqual(len(self.server.messages), 0)

    @defer.inlineCallbacks
    def test_421BacksOffTheDestination(self) -> Any:
        """
        A destination that answers 421 is left alone by every worker for
        the manager's C{destinationBackoff}: it is recorded in the
        database, not in one worker's memory.
        """
        service = yield self.worker()
        service.manager.destinationBackoff = 600
        self.server.rcptReplies[b"busy@example.org"] = b"421 4.7.0 too many connections"
        yield service.queue.enqueueMessage("alice@example.com", "busy@example.org",
                                           b"Subject: busy\n\nbody\n")

        def destinations(schema: str) -> Any:
            result = yield Statement(
                "SELECT destination, not_before > clock_timestamp() + interval '9 minutes'"
                " FROM %s.destinations WHERE not_before IS NOT NULL" % (schema,))
            return result.rows

        rows = yield self.waitFor(destinations, lambda rows: bool(rows))
        self.assertEqual([later for _, later in rows], [True])
        self.assertIn("127.0.0.1", rows[0][0])


class RequireTLSTests(PostgresTestMixin, TestCase):
    """
    A REQUIRETLS message keeps its flag in the PostgreSQL queue: it is
    never relayed over a hop without verified TLS.
    """

    @defer.inlineCallbacks
    def test_flagKept(self) -> Any:
        from mailclient._relaying.msgoptions import MessageOptions

        db = self.database()
        yield self.createQueueSchema(db)
        server = startServer(self, RelayTestServer())
        database = self.database(size=2)
        queue = PGQueue(database, self.mktemp(), schema=self.schema)
        queue.noisy = False
        manager = SmartHostESMTPRelayingManager(
            queue, 1, 4, smartHost=("127.0.0.1", portOf(server)))
        manager.fArgs = (None, None, b"worker.example.com")
        manager.reportingMTA = "worker.example.com"
        reports: List[Any] = []
        manager.deliveryObservers.append(reports.append)
        service = PGRelayService(manager, queue, pollInterval=1.0)
        yield service.startService()
        self.addCleanup(service.stopService)
        yield queue.enqueueMessage("alice@example.com", "bob@example.org",
                                   b"Subject: secret\n\nbody\n",
                                   options=MessageOptions(requireTLS=True))
        yield queue.enqueueMessage("alice@example.com", "carol@example.org",
                                   b"Subject: plain\n\nbody\n")
        for _ in range(300):
            if len(reports) >= 2:
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        yield server.idle()
        self.assertEqual(server.recipients(), [b"carol@example.org"])
        deferred = [r for r in reports if r.outcome.value == "deferred"]
        self.assertEqual(len(deferred), 1)
        self.assertTrue(deferred[0].status.startswith("4.7."), deferred[0])


DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "scaleout.rst")


def docBlocks() -> Tuple[str, List[str]]:
    """
    The Python example of C{docs/scaleout.rst}, and its SQL examples.
    """
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    [python] = re.findall(r"^\.\. code-block:: python\n\n((?:(?:    .*)?\n)+)", text, re.M)
    literal = re.findall(r"::\n\n((?:(?:    .*)?\n)+)", text)
    sql = [textwrap.dedent(b) for b in literal
           if b.lstrip().startswith(("INSERT", "GRANT", "--"))]
    return textwrap.dedent(python), sql


class DocumentationTests(PostgresTestMixin, TestCase):
    """
    The examples of C{docs/scaleout.rst} work as printed, in a database of
    their own with the default schema.
    """

    @defer.inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        super().setUp()
        name = "docs_" + self.schema
        self.cluster.execute("CREATE DATABASE %s" % (name,))
        self.conninfo = self.cluster.conninfo(database=name)
        self.db = ThreadedDatabase(self.conninfo)
        self.addCleanup(self.db.close)
        yield createSchema(self.db)
        self.server = startServer(self, RelayTestServer())

    def sql(self, statement: str) -> List[Any]:
        import psycopg

        with psycopg.connect(self.conninfo, autocommit=True) as connection:
            cursor = connection.execute(statement)
            return cursor.fetchall() if cursor.description is not None else []

    @defer.inlineCallbacks
    def test_workerExample(self) -> Any:
        """
        The worker of the example relays what the SQL example queues.
        """
        python, sql = docBlocks()
        namespace: Dict[str, Any] = {"__name__": "scaleout_example"}
        exec(compile(python, "docs/scaleout.rst", "exec"), namespace)
        relay = namespace["relayWorker"](
            self.conninfo, self.mktemp(), ("127.0.0.1", portOf(self.server)))
        self.addCleanup(relay.manager.queue.database.close)
        yield relay.startService()
        self.addCleanup(relay.stopService)
        [insert] = [s for s in sql if s.startswith("INSERT INTO mailclient.messages")]
        self.sql(insert)
        for _ in range(300):
            if self.server.messages:
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        [message] = self.server.messages
        self.assertEqual((message.sender, message.recipients),
                         (b"alice@example.com", [b"bob@example.org"]))
        self.assertEqual(message.data, b"Subject: hi\r\n\r\nHello\r\n")

    def test_sqlExamples(self) -> None:
        """
        The grants, the queries and the settings of the page run.
        """
        _, sql = docBlocks()
        self.assertEqual(len(sql), 3)
        self.sql("CREATE ROLE relay_worker")
        for block in sql:
            code = "\n".join(line for line in block.splitlines()
                             if not line.lstrip().startswith("--"))
            for statement in code.split(";"):
                if statement.strip():
                    self.sql(statement)
        self.assertEqual(
            self.sql("SELECT destination, max_connections FROM mailclient.destinations"
                     " ORDER BY 1"),
            [("example.com", 2), ("example.net", 0)])
