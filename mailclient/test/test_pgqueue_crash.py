"""
Worker processes on one PostgreSQL queue, one of them killed (C{SIGKILL})
while it relays: no message is lost, and only what the dead worker had in
flight can be delivered twice.
"""

from __future__ import annotations

import signal
from typing import Any, List, Tuple

from twisted.internet import defer, reactor, task, threads
from twisted.trial.unittest import TestCase

from mailclient._relaying.pgqueue import PGQueue
from mailclient.test.helpers_pg import PostgresTestMixin
from mailclient.test.helpers_relay import RelayTestServer, portOf, spawnPython, startServer

#: A worker process: argv is the conninfo, the schema, its scratch
#: directory, the smart host's port and its name.
WORKER = """
import sys

from twisted.internet import defer, task
from twisted.logger import globalLogBeginner, textFileLogObserver

from mailclient._relaying.manager import SmartHostESMTPRelayingManager
from mailclient._relaying.pgdb import connectDatabase
from mailclient._relaying.pgqueue import PGQueue
from mailclient._relaying.pgworker import PGRelayService

conninfo, schema, directory, port, name = sys.argv[1:6]


def main(reactor):
    # What goes wrong is told on standard error (the tests show it).
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)],
                                     redirectStandardIO=False)
    database = connectDatabase(conninfo, size=2)
    queue = PGQueue(database, directory, schema=schema, worker=name, lease=1.5)
    queue.noisy = False
    manager = SmartHostESMTPRelayingManager(queue, 2, 3, smartHost=("127.0.0.1", int(port)))
    manager.fArgs = (None, None, b"worker.example.com")
    manager.reportingMTA = "worker.example.com"
    service = PGRelayService(manager, queue, pollInterval=0.5)

    def stop():
        return service.stopService().addBoth(lambda _: database.close())

    reactor.addSystemEventTrigger("before", "shutdown", stop)
    d = service.startService()
    d.addCallback(lambda _: print("started", flush=True))
    return defer.Deferred()


task.react(main)
"""

#: The message whose final reply the server withholds, so that its worker
#: is killed in the middle of it.
VICTIM = b"victim@example.org"


class CrashTests(PostgresTestMixin, TestCase):
    """
    A worker dies; the others finish its work once its leases expire.
    """

    @defer.inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        super().setUp()
        self.db = self.database()
        yield self.createQueueSchema(self.db)
        self.server = startServer(self, RelayTestServer())
        self.queue = PGQueue(self.db, self.mktemp(), schema=self.schema, listen=False)
        self.queue.noisy = False

    def spawn(self, name: str) -> Tuple[Any, Any]:
        child, transport = spawnPython(
            WORKER, self.cluster.conninfo(), self.schema, self.mktemp(),
            str(portOf(self.server)), name)

        def stop() -> Any:
            if not child.ended.called:
                transport.signalProcess("KILL")
            return child.ended

        self.addCleanup(stop)
        return child, transport

    @defer.inlineCallbacks
    def waitFor(self, condition: Any, what: str, timeout: float = 60) -> Any:
        for _ in range(int(timeout * 10)):
            if condition():
                return
            yield task.deferLater(reactor, 0.1, lambda: None)
        self.fail("timed out waiting for " + what)

    @defer.inlineCallbacks
    def test_killedWorker(self) -> Any:
        self.server.dataReplies[VICTIM] = "stall"
        stalled = self.server.stalled()
        yield self.queue.enqueueMessage("alice@example.com", VICTIM, b"Subject: v\n\nbody\n")
        recipients = [VICTIM] + [b"user%d@example.org" % (i,) for i in range(40)]
        for recipient in recipients[1:]:
            yield self.queue.enqueueMessage("alice@example.com", recipient, b"Subject: x\n\nx\n")
        workers = {}
        for name in ("w0", "w1", "w2"):
            workers[name] = self.spawn(name)
        yield self.waitFor(lambda: all(b"started" in c.out for c, _ in workers.values()),
                           "the workers to start")
        yield stalled.addTimeout(60, reactor)
        [(holder,)] = self.cluster.execute(
            "SELECT lease_worker FROM %s.messages WHERE recipient = %%s" % (self.schema,),
            (VICTIM.decode(),))
        child, transport = workers.pop(holder)
        transport.signalProcess(signal.SIGKILL)
        yield child.ended
        del self.server.dataReplies[VICTIM]

        @defer.inlineCallbacks
        def drained() -> Any:
            stats = yield self.queue.stats()
            return stats["queued"] == 0

        for _ in range(600):
            if (yield drained()):
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        else:
            self.fail("the queue was not drained")
        yield self.server.idle()
        received: List[bytes] = self.server.recipients()
        self.assertEqual(sorted(set(received)), sorted(recipients))
        self.assertEqual(received.count(VICTIM), 1)
        # Only what the dead worker had in flight (2 connections of 3
        # messages) can have been delivered twice.
        self.assertLessEqual(len(received) - len(recipients), 6)
        for child, transport in workers.values():
            transport.signalProcess("TERM")
            yield child.ended

    @defer.inlineCallbacks
    def test_databaseRestart(self) -> Any:
        """
        The database restarts while two workers relay: every queued message
        is still delivered, and only what was in flight (claimed, not yet
        confirmed) can be delivered twice; the workers carry on with new
        connections.
        """
        recipients = [b"user%d@example.org" % (i,) for i in range(60)]
        for recipient in recipients:
            yield self.queue.enqueueMessage("alice@example.com", recipient, b"Subject: x\n\nx\n")
        restarted: List[defer.Deferred[None]] = []

        def endOfData(protocol: object) -> None:
            # The twentieth body: restart the database while the workers
            # are in the middle of their batches.
            if len(self.server.messages) == 19 and not restarted:
                restarted.append(threads.deferToThread(self.cluster.restart))

        self.server.atEndOfData = endOfData
        workers = [self.spawn(name) for name in ("w0", "w1")]
        yield self.waitFor(lambda: bool(restarted), "the twentieth message")
        yield restarted[0]

        def queued() -> int:
            [(count,)] = self.cluster.execute("SELECT count(*) FROM %s.messages" % (self.schema,))
            return int(count)

        try:
            yield self.waitFor(lambda: queued() == 0, "the queue to drain", timeout=60)
        except self.failureException:
            self.fail("the queue was not drained after the restart; the workers said: %r"
                      % ([c.err[-1500:] for c, _ in workers],))
        yield self.server.idle()
        received: List[bytes] = self.server.recipients()
        self.assertEqual(sorted(set(received)), sorted(recipients))
        # Claimed and not confirmed at the restart: at most 2 workers x 2
        # connections x 3 messages.
        self.assertLessEqual(len(received) - len(recipients), 12)
        for child, transport in workers:
            self.assertFalse(child.ended.called, child.err[-1500:])
            transport.signalProcess("TERM")
            yield child.ended
