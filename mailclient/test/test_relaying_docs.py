"""
The example in C{docs/relaying.rst} runs: it is extracted from the page and
run against a loopback server (L{mailclient.testing.SMTPTestServer}), in
this process and as a script, so the documentation cannot rot.
"""

from __future__ import annotations

import os
import sys
import textwrap
from typing import Any, Dict, List

from twisted.internet import defer, reactor
from twisted.internet.error import ProcessDone
from twisted.internet.task import Clock
from twisted.names import dns
from twisted.trial.unittest import SkipTest, TestCase

import mailclient
from mailclient.relaymanager import SmartHostESMTPRelayingManager
from mailclient.testing import SMTPTestServer
from mailclient.test.helpers import FakeResolver, mx
from mailclient.test.helpers_relay import _ChildProcess, pythonEnv, queueFiles

_DOCS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(mailclient.__file__))),
    "docs",
    "relaying.rst",
)

#: The message the example queues, as the server receives it.
EXPECTED = (
    b"From: alice@example.com\r\nTo: bob@example.org\r\n"
    b"Subject: hello\r\n\r\nHello Bob!\r\n"
)


def pythonBlocks(path: str) -> List[str]:
    """
    The C{.. code-block:: python} blocks of a reStructuredText file,
    dedented.
    """
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == ".. code-block:: python":
            i += 1
            body = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                body.append(lines[i])
                i += 1
            blocks.append(textwrap.dedent("\n".join(body)).strip() + "\n")
        else:
            i += 1
    return blocks


def example() -> str:
    """
    The runnable example of the relaying page (its only Python block).
    """
    if not os.path.exists(_DOCS):
        raise SkipTest("docs/relaying.rst is not available")
    [block] = pythonBlocks(_DOCS)
    return block


def load() -> Dict[str, Any]:
    """
    Run the example as a module (not as C{__main__}) and return its names.
    """
    namespace: Dict[str, Any] = {"__name__": "relaying_example"}
    exec(compile(example(), _DOCS, "exec"), namespace)
    return namespace


class RelayingExampleTests(TestCase):
    """
    The example relays a queue through a smart host and to MX hosts.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        self.server = SMTPTestServer(hostname="mx.test", extensions=["PIPELINING", "8BITMIME"])
        self.server.listenTCP(reactor)
        self.addCleanup(self.server.stopListening)
        self.example = load()

    def assertDelivered(self) -> None:
        [message] = self.server.messages
        self.assertEqual(message.mailFrom, b"alice@example.com")
        self.assertEqual(message.rcptTo, [b"bob@example.org"])
        self.assertEqual(message.data, EXPECTED)
        self.assertEqual(queueFiles(self.directory), [])

    def test_names(self) -> None:
        """
        The example defines the functions the page describes.
        """
        for name in ("smartHostManager", "mxManager", "relayQueue", "makeService", "main"):
            self.assertTrue(callable(self.example[name]), name)

    @defer.inlineCallbacks
    def test_smartHost(self) -> Any:
        """
        C{main} with a smart host queues the message and relays it there
        over ESMTP, giving the example's identity.
        """
        yield self.example["main"](reactor, self.directory, "127.0.0.1", str(self.server.portNumber))
        self.assertDelivered()
        [session] = self.server.sessions
        self.assertIn(b"EHLO relay.example.com", session.transcript().encode("utf-8"))

    @defer.inlineCallbacks
    def test_mx(self) -> Any:
        """
        C{mxManager} relays to the recipient domain's exchange, found with
        the resolver it is given.
        """
        resolver = FakeResolver(
            [("example.org", mx(10, "mx.example.org")), ("mx.example.org", dns.Record_A("127.0.0.1"))]
        )
        manager = self.example["mxManager"](self.directory, resolver, self.server.portNumber)
        self.assertIsInstance(manager, SmartHostESMTPRelayingManager)
        self.assertEqual((manager.maxConnections, manager.maxMessagesPerConnection), (4, 10))
        manager.queue.enqueue(
            "alice@example.com",
            "bob@example.org",
            b"From: alice@example.com\nTo: bob@example.org\nSubject: hello\n\nHello Bob!\n",
        )
        yield self.example["relayQueue"](manager)
        self.assertDelivered()
        self.assertEqual(resolver.queries[0], ("example.org", dns.MX))

    @defer.inlineCallbacks
    def test_stopsAtDeferredMessages(self) -> Any:
        """
        C{relayQueue} returns once only deferred messages are left; they
        stay in the queue.
        """
        self.server.script("RCPT", 451, b"4.7.1 greylisted")
        manager = self.example["smartHostManager"](self.directory, "127.0.0.1", self.server.portNumber)
        manager.clock = Clock()
        name = manager.queue.enqueue("alice@example.com", "bob@example.org", b"x\n")
        yield self.example["relayQueue"](manager)
        self.assertEqual(self.server.messages, [])
        self.assertEqual(queueFiles(self.directory), [name + "-D", name + "-H"])
        self.assertEqual(list(manager.retries), [name])

    def test_service(self) -> None:
        """
        C{makeService} gives a service calling C{checkState} every interval.
        """
        calls: List[None] = []

        class Manager:
            def checkState(self) -> None:
                calls.append(None)

        service = self.example["makeService"](Manager(), 60)
        service.clock = Clock()
        service.startService()
        service.clock.advance(60)
        service.stopService()
        self.assertEqual(len(calls), 2)

    @defer.inlineCallbacks
    def test_script(self) -> Any:
        """
        Run as a script (C{python relay.py QUEUE_DIR SMART_HOST PORT}) the
        example relays the message and exits with status 0.
        """
        child = _ChildProcess()
        reactor.spawnProcess(  # type: ignore[attr-defined]
            child,
            sys.executable,
            [sys.executable, "-c", example(), self.directory, "127.0.0.1", str(self.server.portNumber)],
            env=pythonEnv(),
        )
        reason = yield child.ended
        self.assertIsInstance(reason, ProcessDone, child.err.decode("utf-8", "replace"))
        self.assertDelivered()
