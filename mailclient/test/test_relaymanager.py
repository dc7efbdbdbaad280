"""
Tests for L{mailclient.relaymanager}: relaying a queue through a smart host
or to each domain's mail exchanges, against real loopback servers, with a
fake resolver for DNS.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import pickle
import socket
import sys
import textwrap
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.names import dns, error
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from zope.interface import implementer

from mailclient import relaymanager
from mailclient._relaying import manager as _manager
from mailclient.interfaces import IAttemptManager, IDeliveryProgress
from mailclient._relaying.queue import dumpEnvelope
from mailclient.relaymanager import (
    ESMTPManagedRelayerFactory,
    MXCalculator,
    Queue,
    RelayStateHelper,
    SMTPManagedRelayer,
    SMTPManagedRelayerFactory,
    SmartHostESMTPRelayingManager,
    SmartHostSMTPRelayingManager,
)
from mailclient.test.helpers import FakeResolver, mx
from mailclient.test.helpers_relay import (
    BINARY_BODY,
    RelayTestServer,
    _ChildProcess,
    portOf,
    pythonEnv,
    queueFiles,
    spawnPython,
    startServer,
    wire,
)

REPORTING_MTA = "relay.example.net"


def envelopes(queue: Queue) -> List[List[Any]]:
    queue.readDirectory()
    return sorted(queue.getEnvelope(name) for name in queue.getWaiting())


def dataOf(queue: Queue, name: str) -> bytes:
    with open(queue.getPath(name) + "-D", "rb") as f:
        return f.read()


def closedPort() -> int:
    """
    A loopback port nothing listens on (connections to it are refused).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Redirect:
    """
    A reactor whose C{connectTCP} sends connections for some (documentation)
    addresses to 127.0.0.1 ports, so exchanges at different addresses can be
    tested on loopback alone.

    @ivar ports: The 127.0.0.1 port for each address.
    @ivar connections: The C{(address, port)} asked for, in order.
    """

    def __init__(self, ports: Dict[str, int]) -> None:
        self.ports = ports
        self.connections: List[Tuple[str, int]] = []

    def connectTCP(self, host: str, port: int, factory: Any, *args: Any, **kw: Any) -> Any:
        self.connections.append((host, port))
        return reactor.connectTCP("127.0.0.1", self.ports.get(host, port), factory, *args, **kw)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)


class _ManagerTestMixin:
    """
    A queue in a temporary directory and a loopback server.
    """

    server: RelayTestServer
    queue: Queue

    def setUpQueue(self: Any) -> None:
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        self.queue = Queue(self.directory)
        self.queue.noisy = False
        self.queue.fsync = False
        self.server = startServer(self)
        self.clock = Clock()

    def add(self, recipient: str, body: bytes = b"Subject: test\n\nbody\n", sender: str = "alice@example.com") -> str:
        name = self.queue.enqueue(sender, recipient, body)
        self.queue.readDirectory()
        return name

    def manager(self, cls: Any = SmartHostSMTPRelayingManager, *args: Any, **kw: Any) -> Any:
        kw.setdefault("smartHost", ("127.0.0.1", portOf(self.server)))
        kw.setdefault("clock", self.clock)
        manager = cls(self.queue, *args, **kw)
        manager.reportingMTA = REPORTING_MTA
        return manager

    def waiting(self) -> List[str]:
        """
        The waiting messages, once the queue has read its directory.
        """
        self.queue.readDirectory()
        return self.queue.getWaiting()

    @defer.inlineCallbacks
    def relayOnce(self, manager: Any) -> Any:
        """
        One C{checkState}, waited for until every connection is closed.
        """
        result = manager.checkState()
        if result is not None:
            result = yield result
        yield self.server.idle()
        return result

    @defer.inlineCallbacks
    def relayAll(self, manager: Any) -> Any:
        """
        C{checkState} until nothing more can be started.
        """
        for _ in range(20):
            result = yield self.relayOnce(manager)
            if result is None:
                return
        raise AssertionError("relaying did not finish")


class SmartHostTests(_ManagerTestMixin, TestCase):
    """
    Relaying everything through a smart host.
    """

    def setUp(self) -> None:
        self.setUpQueue()

    @defer.inlineCallbacks
    def test_relaysQueue(self) -> Any:
        """
        Every waiting message is delivered byte for byte and removed from
        the queue; then C{checkState} has nothing to do.
        """
        for i in range(5):
            self.add("rcpt%d@domain%d.example" % (i, i % 2), BINARY_BODY)
        manager = self.manager()
        yield self.relayAll(manager)
        self.assertEqual(
            sorted(m.recipients[0] for m in self.server.messages),
            [b"rcpt%d@domain%d.example" % (i, i % 2) for i in range(5)],
        )
        self.assertEqual({m.data for m in self.server.messages}, {wire(BINARY_BODY)})
        self.assertEqual({m.sender for m in self.server.messages}, {b"alice@example.com"})
        self.assertEqual(queueFiles(self.directory), [])
        self.assertEqual(manager.managed, {})
        self.assertIsNone(manager.checkState())

    @defer.inlineCallbacks
    def test_limits(self) -> Any:
        """
        At most C{maxConnections} connections are open, each given at most
        C{maxMessagesPerConnection} messages; C{managed} maps each factory
        to the base names of its messages.
        """
        names = [self.add("r%d@example.org" % (i,)) for i in range(7)]
        manager = self.manager(maxConnections=2, maxMessagesPerConnection=3)
        d = manager.checkState()
        self.assertEqual(
            sorted(manager.managed.values()), [names[0:3], names[3:6]]
        )
        for factory, messages in manager.managed.items():
            self.assertIsInstance(factory, SMTPManagedRelayerFactory)
            self.assertEqual(factory.messages, [self.queue.getPath(m) for m in messages])
        self.assertEqual(self.queue.getWaiting(), [names[6]])
        self.assertEqual(sorted(self.queue.getRelayed()), sorted(names[:6]))
        self.assertIsNone(manager.checkState())
        yield d
        yield self.relayAll(manager)
        self.assertEqual(self.server.connections, 3)
        self.assertEqual(self.server.maxActive, 2)
        self.assertEqual(len(self.server.messages), 7)

    @defer.inlineCallbacks
    def test_esmtp(self) -> Any:
        """
        L{SmartHostESMTPRelayingManager} relays over ESMTP; C{fArgs} give
        the secret, context factory and identity.
        """
        self.add("bob@example.org")
        manager = self.manager(SmartHostESMTPRelayingManager)
        manager.fArgs = (None, None, b"relay.example.net")
        self.assertIs(manager.factory, ESMTPManagedRelayerFactory)
        yield self.relayAll(manager)
        self.assertIn(b"EHLO relay.example.net", self.server.commands)
        self.assertEqual(self.server.recipients(), [b"bob@example.org"])

    @defer.inlineCallbacks
    def test_identity(self) -> Any:
        """
        C{fArgs} give the SMTP identity; without them (Twisted's default,
        with which Twisted's relayer cannot even be made) this host's name
        is used.
        """
        from mailclient._wire.host import getDNSName

        self.add("bob@example.org")
        manager = self.manager()
        manager.fArgs = (b"relay.example.net",)
        yield self.relayAll(manager)
        self.add("carol@example.org")
        yield self.relayAll(self.manager())
        helos = [c for c in self.server.commands if c.startswith(b"HELO")]
        self.assertEqual(helos, [b"HELO relay.example.net", b"HELO " + getDNSName()])

    @defer.inlineCallbacks
    def test_smartHostList(self) -> Any:
        """
        Smart hosts are tried in order: an unreachable one is skipped.
        """
        self.add("bob@example.org")
        manager = self.manager(smartHost=[("127.0.0.1", closedPort()), ("127.0.0.1", portOf(self.server))])
        yield self.relayAll(manager)
        self.assertEqual(self.server.recipients(), [b"bob@example.org"])
        self.assertRaises(ValueError, SmartHostSMTPRelayingManager, self.queue, smartHost=[])


class OutcomeTests(_ManagerTestMixin, TestCase):
    """
    What happens to a message depends on the server's answer: 2xx removes
    it, 4xx keeps it, 5xx returns it to the sender.
    """

    def setUp(self) -> None:
        self.setUpQueue()

    @defer.inlineCallbacks
    def test_temporaryFailureKeepsMessage(self) -> Any:
        """
        A 4xx reply to C{RCPT} or to the body leaves the message queued and
        waiting, without a bounce; it is not tried again before
        C{backoffDelay} has passed, then delivered.
        """
        self.server.rcptReplies[b"bob@example.org"] = b"451 4.7.1 greylisted"
        self.server.dataReplies[b"carol@example.org"] = b"452 4.3.1 out of space"
        bob = self.add("bob@example.org")
        carol = self.add("carol@example.org")
        self.add("dan@example.org")
        manager = self.manager()
        yield self.relayOnce(manager)
        self.assertEqual(self.server.recipients(), [b"dan@example.org"])
        self.assertEqual(sorted(self.queue.getWaiting()), sorted([bob, carol]))
        self.assertEqual(len(queueFiles(self.directory)), 4)
        self.assertEqual(manager.retries, {bob: (1, 30.0), carol: (1, 30.0)})

        self.server.rcptReplies.clear()
        self.server.dataReplies.clear()
        self.clock.advance(manager.backoffDelay - 1)
        self.assertIsNone(manager.checkState())
        self.assertEqual(self.server.connections, 1)
        self.clock.advance(1)
        yield self.relayAll(manager)
        self.assertEqual(manager.retries, {})
        self.assertEqual(
            sorted(self.server.recipients()),
            [b"bob@example.org", b"carol@example.org", b"dan@example.org"],
        )
        self.assertEqual(queueFiles(self.directory), [])

    @defer.inlineCallbacks
    def test_permanentFailureBounces(self) -> Any:
        """
        A 5xx reply to C{RCPT} removes the message and queues an RFC 3464
        report to its sender, from the null sender, which is then relayed
        like any message.
        """
        self.server.rcptReplies[b"bob@example.org"] = b"550 5.1.1 no such user"
        original = self.add("bob@example.org", BINARY_BODY)
        manager = self.manager()
        yield self.relayOnce(manager)
        self.assertEqual(self.server.messages, [])
        self.assertNotIn(original, self.queue.getWaiting())
        [bounce] = self.waiting()
        self.assertEqual(self.queue.getEnvelope(bounce), ["", "alice@example.com"])

        report: Any = email.message_from_bytes(dataOf(self.queue, bounce), policy=email.policy.compat32)
        self.assertEqual(report.get_content_type(), "multipart/report")
        self.assertEqual(report.get_param("report-type"), "delivery-status")
        perMessage, recipient = report.get_payload()[1].get_payload()
        self.assertEqual(perMessage["Reporting-MTA"], "dns; " + REPORTING_MTA)
        self.assertEqual(
            (recipient["Final-Recipient"], recipient["Action"], recipient["Status"], recipient["Remote-MTA"], recipient["Diagnostic-Code"]),
            ("rfc822; bob@example.org", "failed", "5.1.1", "dns; 127.0.0.1", "smtp; 550 5.1.1 no such user"),
        )
        self.assertIn(BINARY_BODY, dataOf(self.queue, bounce))

        yield self.relayAll(manager)
        [delivered] = self.server.messages
        self.assertEqual((delivered.sender, delivered.recipients), (b"", [b"alice@example.com"]))
        self.assertIn(b"MAIL FROM:<>", self.server.commands)
        self.assertEqual(queueFiles(self.directory), [])

    @defer.inlineCallbacks
    def test_refusedBody(self) -> Any:
        """
        A 5xx reply to the body bounces the message with that reply's
        status.
        """
        self.server.dataReplies[b"bob@example.org"] = b"554 5.6.0 content rejected"
        self.add("bob@example.org")
        yield self.relayOnce(self.manager())
        [bounce] = self.waiting()
        report = dataOf(self.queue, bounce)
        self.assertIn(b"Status: 5.6.0\n", report)
        self.assertIn(b"Diagnostic-Code: smtp; 554 5.6.0 content rejected\n", report)

    @defer.inlineCallbacks
    def test_bouncesAreNotBounced(self) -> Any:
        """
        A message from the null sender that fails for good is dropped, not
        bounced.
        """
        self.server.rcptReplies[b"alice@example.com"] = b"550 5.1.1 gone"
        self.add("alice@example.com", sender="")
        yield self.relayAll(self.manager())
        self.assertEqual(queueFiles(self.directory), [])
        self.assertEqual(self.server.messages, [])

    @defer.inlineCallbacks
    def test_connectionDroppedDuringData(self) -> Any:
        """
        When the connection drops after the body was sent but before the
        server's reply, the message is kept (not bounced) and waits again,
        as do the messages not yet sent.
        """
        self.server.dataReplies[b"bob@example.org"] = "drop"
        names = [self.add("bob@example.org"), self.add("carol@example.org")]
        manager = self.manager()
        yield self.relayOnce(manager)
        self.assertEqual(self.server.messages, [])
        self.assertEqual(sorted(self.queue.getWaiting()), sorted(names))
        self.assertEqual(len(queueFiles(self.directory)), 4)
        # Only the message being sent is deferred; the next was not tried.
        self.assertEqual(list(manager.retries), [names[0]])
        del self.server.dataReplies[b"bob@example.org"]
        yield self.relayAll(manager)
        self.assertEqual(self.server.recipients(), [b"carol@example.org"])
        self.clock.advance(manager.backoffDelay)
        yield self.relayAll(manager)
        self.assertEqual(sorted(self.server.recipients()), [b"bob@example.org", b"carol@example.org"])
        self.assertEqual(queueFiles(self.directory), [])

    @defer.inlineCallbacks
    def test_replyTimeout(self) -> Any:
        """
        Managed relayers give up on a server that does not answer after
        C{timeout} seconds (600 by default; Twisted's wait for ever): the
        message stays queued, deferred.
        """
        from twisted.mail import relaymanager as twisted_relaymanager

        self.assertEqual(SMTPManagedRelayer.timeout, 600)
        self.assertIsNone(twisted_relaymanager.SMTPManagedRelayer.timeout)
        self.patch(SMTPManagedRelayer, "timeout", 0.2)
        self.server.dataReplies[b"bob@example.org"] = "stall"
        name = self.add("bob@example.org")
        manager = self.manager()
        yield self.relayOnce(manager)
        self.assertEqual(self.server.messages, [])
        self.assertEqual(queueFiles(self.directory), [name + "-D", name + "-H"])
        self.assertEqual(list(manager.retries), [name])

    @defer.inlineCallbacks
    def test_crashDuringDelivery(self) -> Any:
        """
        When the relaying process is killed while the server holds the body
        unanswered, the message is still queued, and is delivered by the
        next process.
        """
        self.server.dataReplies[b"bob@example.org"] = "stall"
        name = self.add("bob@example.org", BINARY_BODY)
        stalled = self.server.stalled()
        child, transport = spawnPython(
            """
            import sys
            from twisted.internet import reactor
            from mailclient.relaymanager import Queue, SmartHostSMTPRelayingManager
            queue = Queue(sys.argv[1])
            manager = SmartHostSMTPRelayingManager(
                queue, smartHost=("127.0.0.1", int(sys.argv[2])))
            reactor.callWhenRunning(manager.checkState)
            reactor.callLater(60, reactor.stop)
            reactor.run()
            """,
            self.directory,
            str(portOf(self.server)),
        )
        yield stalled
        transport.signalProcess("KILL")
        yield child.ended
        yield self.server.idle()
        self.assertEqual(self.server.messages, [])
        self.assertEqual(queueFiles(self.directory), [name + "-D", name + "-H"])

        del self.server.dataReplies[b"bob@example.org"]
        self.queue = Queue(self.directory)
        self.queue.noisy = False
        yield self.relayAll(self.manager())
        [message] = self.server.messages
        self.assertEqual(message.data, wire(BINARY_BODY))
        self.assertEqual(queueFiles(self.directory), [])

    @defer.inlineCallbacks
    def test_unroutableRecipient(self) -> Any:
        """
        A recipient without a domain is returned to the sender (5.1.3)
        without connecting anywhere.
        """
        self.add("postmaster")
        manager = self.manager()
        result = yield self.relayOnce(manager)
        self.assertEqual(result, [])
        self.assertEqual(self.server.connections, 0)
        [bounce] = self.waiting()
        self.assertIn(b"Status: 5.1.3\n", dataOf(self.queue, bounce))

    @defer.inlineCallbacks
    def test_invalidAddress(self) -> Any:
        """
        A recipient that cannot be put on the wire (a line break in it) is
        returned to the sender, and the other messages are sent.
        """
        self.add("bob@example.org\r\nRCPT TO:<evil@example.net>")
        self.add("carol@example.org")
        yield self.relayAll(self.manager())
        self.assertNotIn(b"evil", b"".join(self.server.commands))
        delivered = sorted(self.server.recipients())
        self.assertEqual(delivered, [b"alice@example.com", b"carol@example.org"])
        [bounce] = [m for m in self.server.messages if m.sender == b""]
        self.assertIn(b"Status: 5.1.3\r\n", bounce.data)

    @defer.inlineCallbacks
    def _cannotSend(self, extensions: List[str], body: bytes, status: bytes,
                    bounceDelivered: bool = False) -> Any:
        from mailclient.testing import SMTPTestServer

        server = SMTPTestServer(hostname="mx.test", extensions=extensions)
        server.listenTCP(reactor)
        self.addCleanup(server.stopListening)
        self.add("bob@example.org", body)
        self.add("carol@example.org", b"Subject: fine\n\nascii\n")
        manager = self.manager(SmartHostESMTPRelayingManager, smartHost=("127.0.0.1", server.portNumber))
        manager.fArgs = (None, None, b"relay.test")
        yield manager.checkState()
        # The connection is closed after the refusal; the next message was
        # not reached and waits without delay.
        self.assertEqual(server.messages, [])
        [bounce] = [m for m in self.waiting() if self.queue.getEnvelope(m)[0] == ""]
        self.assertEqual(self.queue.getEnvelope(bounce), ["", "alice@example.com"])
        report = dataOf(self.queue, bounce)
        self.assertIn(b"Status: " + status + b"\n", report)
        self.assertIn(b"Final-Recipient: rfc822; bob@example.org\n", report)
        self.assertEqual(len(queueFiles(self.directory)), 4)
        self.assertEqual(manager.retries, {})
        yield self.relayAll(manager)
        if bounceDelivered:
            # The report is MIME: converted to 7 bits, it goes through.
            self.assertEqual([m.rcptTo for m in server.messages],
                             [[b"carol@example.org"], [b"alice@example.com"]])
            self.assertTrue(server.messages[1].data.isascii())
        else:
            # The report holds the original, so this server cannot take it
            # either; being from the null sender, it is dropped.
            self.assertEqual([m.rcptTo for m in server.messages], [[b"carol@example.org"]])
        self.assertEqual(queueFiles(self.directory), [])

    def test_eightBitWithout8BITMIME(self) -> Any:
        """
        A message with 8-bit data that is not MIME, for a server that does
        not offer 8BITMIME, cannot be sent there (RFC 6152): it is returned
        at once (5.6.3), not retried for days; the other messages are sent.
        The report, which is MIME, is converted to 7 bits and delivered.
        """
        return self._cannotSend(["PIPELINING"], BINARY_BODY, b"5.6.3", bounceDelivered=True)

    @defer.inlineCallbacks
    def test_eightBitMIMEConverted(self) -> Any:
        """
        An 8-bit MIME message for a server without 8BITMIME is converted to
        7 bits (RFC 6152 section 3) and delivered; its content is unchanged
        once decoded.
        """
        from mailclient.testing import SMTPTestServer

        server = SMTPTestServer(hostname="mx.test", extensions=["PIPELINING"])
        server.listenTCP(reactor)
        self.addCleanup(server.stopListening)
        text = "Gr\u00fc\u00dfe aus K\u00f6ln\n.\nfin\n"
        body = (b"Subject: mime\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
                b"Content-Transfer-Encoding: 8bit\n\n" + text.encode("utf-8"))
        self.add("bob@example.org", body)
        manager = self.manager(SmartHostESMTPRelayingManager, smartHost=("127.0.0.1", server.portNumber))
        manager.fArgs = (None, None, b"relay.test")
        yield self.relayAll(manager)
        [message] = server.messages
        self.assertTrue(message.data.isascii())
        self.assertIn(b"Content-Transfer-Encoding: quoted-printable", message.data)
        parsed = email.message_from_bytes(message.data, policy=email.policy.compat32)
        self.assertEqual(parsed.get_payload(decode=True).decode("utf-8").replace("\r\n", "\n"), text)
        self.assertEqual(queueFiles(self.directory), [])

    def test_overSizeLimit(self) -> Any:
        """
        A message over the server's SIZE limit is returned at once (5.3.4).
        """
        return self._cannotSend(["PIPELINING", "8BITMIME", "SIZE 100"], b"Subject: big\n\n" + b"x" * 200 + b"\n", b"5.3.4")

    @defer.inlineCallbacks
    def test_corruptEnvelopeQuarantined(self) -> Any:
        """
        A message whose envelope cannot be read is quarantined (left on
        disk, not relayed); the others are relayed.
        """
        bad = self.add("bob@example.org")
        with open(self.queue.getPath(bad) + "-H", "wb") as f:
            f.write(b"not a pickle")
        self.add("carol@example.org")
        yield self.relayAll(self.manager())
        self.assertEqual(self.server.recipients(), [b"carol@example.org"])
        self.assertEqual(list(self.queue.quarantined), [bad])
        self.assertEqual(queueFiles(self.directory), [bad + "-D", bad + "-H"])


class HostileQueueTests(_ManagerTestMixin, TestCase):
    """
    Whatever one queue file holds stops only its own message, which is
    quarantined; and one queue is relayed by one manager at a time.
    """

    def setUp(self) -> None:
        self.setUpQueue()

    @defer.inlineCallbacks
    def _quarantined(self, spoil: Any) -> Any:
        bad = self.add("bob@example.org")
        spoil(self.queue.getPath(bad))
        self.add("carol@example.org")
        yield self.relayAll(self.manager())
        self.assertEqual(self.server.recipients(), [b"carol@example.org"])
        self.assertEqual(list(self.queue.quarantined), [bad])
        self.assertEqual(self.waiting(), [])
        return bad

    def _write(self, path: str, data: bytes) -> None:
        os.remove(path)
        with open(path, "wb") as f:
            f.write(data)

    def test_deepEnvelope(self) -> Any:
        return self._quarantined(lambda path: self._write(path + "-H", b"(" * 30000 + b"l" * 30000 + b"."))

    def test_sharedEnvelope(self) -> Any:
        blowUp = pickle.dumps([[["x" * 50]] * 1000] * 1000, protocol=2)
        return self._quarantined(lambda path: self._write(path + "-H", blowUp))

    def test_constructorEnvelope(self) -> Any:
        return self._quarantined(lambda path: self._write(path + "-H", b"c__builtin__\nbytes\n(I400000000\ntR."))

    def test_linkedMessage(self) -> Any:
        """
        A message file that is a link (to a file the relay may read, such
        as its own configuration) is not sent.
        """
        secret = os.path.abspath(self.mktemp())
        with open(secret, "wb") as f:
            f.write(b"Subject: secret\n\npassword=hunter2\n")

        def link(path: str) -> None:
            os.remove(path + "-D")
            os.symlink(secret, path + "-D")

        d = self._quarantined(link)
        d.addCallback(lambda _: self.assertNotIn(b"hunter2", b"".join(m.data for m in self.server.messages)))
        return d

    def test_fifoMessage(self) -> Any:
        """
        A FIFO in place of a message is quarantined without blocking the
        reactor (the test would hang otherwise).
        """
        def fifo(path: str) -> None:
            os.remove(path + "-D")
            os.mkfifo(path + "-D")

        return self._quarantined(fifo)

    def test_otherOwner(self) -> Any:
        """
        A message file that does not belong to the queue's owner is not
        relayed.  (Giving a file away takes root; the rule itself is tested
        without it in test_queue.)
        """
        if os.getuid() != 0:
            raise SkipTest("chown to another user needs root")
        return self._quarantined(lambda path: os.chown(path + "-D", 12345, 12345))

    @defer.inlineCallbacks
    def test_bounceOnFullDisk(self) -> Any:
        """
        When a bounce cannot be written (a full disk), the original stays
        queued, and retry after retry leaves no file behind: no temporary
        file, no envelope without its message.
        """
        import errno

        from mailclient._relaying.queue import AtomicFile

        self.server.rcptReplies[b"bob@example.org"] = b"550 5.1.1 no such user"
        original = self.add("bob@example.org")
        files = queueFiles(self.directory)
        real = AtomicFile.write

        def write(self: Any, data: bytes) -> int:
            if self.name.endswith("-D"):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(self, data)

        self.patch(AtomicFile, "write", write)
        manager = self.manager()
        for _ in range(4):
            yield self.relayOnce(manager)
            self.assertEqual(queueFiles(self.directory), files)
            self.clock.advance(manager.maxBackoffDelay)
        self.assertEqual(self.waiting(), [original])
        self.assertEqual(self.server.connections, 4)

    @defer.inlineCallbacks
    def test_oneManagerPerQueue(self) -> Any:
        """
        Two managers on one queue directory (two services, two processes)
        would deliver every message twice: the second relays nothing, and
        says so once, until the first lets the queue go.
        """
        names = [self.add("bob@example.org"), self.add("carol@example.org")]
        other = Queue(self.directory)
        other.noisy = False
        first = self.manager()
        second = SmartHostSMTPRelayingManager(other, smartHost=("127.0.0.1", portOf(self.server)), clock=self.clock)
        logged: List[Any] = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        self.addCleanup(self.queue.releaseRelayLock)
        self.addCleanup(other.releaseRelayLock)
        d1 = first.checkState()
        self.assertIsNone(second.checkState())
        self.assertIsNone(second.checkState())
        yield d1
        yield self.server.idle()
        self.assertEqual(sorted(self.server.recipients()), [b"bob@example.org", b"carol@example.org"])
        self.assertEqual(len(self.server.messages), len(names))
        busy = [e for e in logged if "Not relaying" in e.get("log_format", "")]
        self.assertEqual(len(busy), 1)
        self.queue.releaseRelayLock()
        self.add("dave@example.org")
        yield self.relayAll(second)
        self.assertEqual(self.server.recipients()[-1], b"dave@example.org")
        self.assertIsNone(first.checkState())

    def test_serviceReleasesLock(self) -> None:
        """
        Stopping the service made by L{RelayStateHelper} lets another
        manager relay the queue.
        """
        manager = self.manager()
        service = RelayStateHelper(manager, 3600)
        service.clock = self.clock
        service.startService()
        self.assertIsNotNone(self.queue._lock)
        service.stopService()
        other = Queue(self.directory)
        other.acquireRelayLock()
        other.releaseRelayLock()
        self.assertIsNone(self.queue._lock)


class RetryTests(_ManagerTestMixin, TestCase):
    """
    Messages that fail for now are retried after growing delays, and
    returned to their senders once they have been queued too long.
    """

    def setUp(self) -> None:
        self.setUpQueue()

    def test_retryDelay(self) -> None:
        """
        The delay starts at C{backoffDelay}, is multiplied by
        C{backoffFactor} at each failure and never exceeds
        C{maxBackoffDelay}.
        """
        manager = self.manager()
        self.assertEqual(
            [manager.retryDelay(n) for n in range(1, 9)],
            [30.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 3600.0],
        )
        manager.backoffDelay, manager.backoffFactor, manager.maxBackoffDelay = 10, 3, 100
        self.assertEqual([manager.retryDelay(n) for n in range(1, 6)], [10.0, 30.0, 90.0, 100.0, 100.0])
        self.assertEqual(manager.retryDelay(10**6), 100.0)

    @defer.inlineCallbacks
    def test_restartResumesBackOff(self) -> Any:
        """
        The schedule of a message refused for now is kept with it (its
        C{-R} file): a manager started on the same directory later (a
        restarted relay) does not try it before its time, and tries it
        then, with the failure count carried on.
        """
        self.server.rcptReplies[b"bob@example.org"] = b"451 4.3.0 later"
        name = self.add("bob@example.org")
        manager = self.manager()
        yield self.relayOnce(manager)
        self.assertEqual(self.server.connections, 1)
        self.assertTrue(os.path.exists(self.queue.getPath(name) + "-R"))
        self.queue.releaseRelayLock()

        restarted = Queue(self.directory)
        restarted.noisy = False
        self.queue = restarted
        again = self.manager()
        self.assertEqual(again.retries, {})
        self.clock.advance(again.backoffDelay - 1)
        self.assertIsNone(again.checkState())
        self.assertEqual(self.server.connections, 1)
        self.clock.advance(1)
        yield self.relayOnce(again)
        self.assertEqual(self.server.connections, 2)
        self.assertEqual(restarted.schedule(name).failures, 2)
        self.assertEqual(again.retries[name], (2, self.clock.seconds() + again.retryDelay(2)))

    @defer.inlineCallbacks
    def test_delayWarningOnce(self) -> Any:
        """
        With C{delayWarningAfter}, a message still waiting that long gets
        one delay warning (RFC 3464, C{Action: delayed}, the original's
        headers only), relayed like any message; later failures send no
        other.
        """
        self.server.rcptReplies[b"bob@example.org"] = b"451 4.3.0 later"
        name = self.add("bob@example.org", b"Subject: slow\n\nsecret body\n")
        # Queue times are file times: the manager's clock tells the time.
        self.clock.advance(os.stat(self.queue.getPath(name) + "-D").st_mtime)
        manager = self.manager()
        manager.delayWarningAfter = 0
        for _ in range(3):
            yield self.relayAll(manager)
            self.clock.advance(manager.maxBackoffDelay)
        warnings = [m for m in self.server.messages if m.sender == b""]
        [warning] = warnings
        self.assertEqual(warning.recipients, [b"alice@example.com"])
        self.assertIn(b"Action: delayed", warning.data)
        self.assertIn(b"Will-Retry-Until:", warning.data)
        self.assertIn(b"Subject: slow", warning.data)
        self.assertNotIn(b"secret body", warning.data)
        self.assertTrue(self.queue.schedule(name).warned)
        self.assertIn(name, self.waiting())

    @defer.inlineCallbacks
    def test_noDelayWarningByDefault(self) -> Any:
        self.server.rcptReplies[b"bob@example.org"] = b"451 4.3.0 later"
        self.add("bob@example.org")
        manager = self.manager()
        self.assertIsNone(manager.delayWarningAfter)
        yield self.relayAll(manager)
        self.clock.advance(manager.maxBackoffDelay)
        yield self.relayAll(manager)
        self.assertEqual([m for m in self.server.messages if m.sender == b""], [])

    @defer.inlineCallbacks
    def test_delaysGrow(self) -> Any:
        """
        A message refused for now again and again is tried once per delay,
        each delay longer than the last, never earlier; a message that
        gets through meanwhile is not held back.
        """
        self.server.rcptReplies[b"bob@example.org"] = b"451 4.7.1 greylisted"
        bob = self.add("bob@example.org")
        manager = self.manager()
        manager.backoffDelay, manager.backoffFactor, manager.maxBackoffDelay = 10, 2, 50
        attempts = []
        for delay in [0, 10, 20, 40, 50, 50]:
            if delay:
                self.clock.advance(delay - 0.5)
                self.assertIsNone(manager.checkState())
                self.clock.advance(0.5)
            before = self.server.connections
            yield self.relayOnce(manager)
            attempts.append(self.server.connections - before)
        self.assertEqual(attempts, [1] * 6)
        self.assertEqual(manager.retries, {bob: (6, self.clock.seconds() + 50)})

        carol = self.add("carol@example.org")
        yield self.relayOnce(manager)
        self.assertEqual(self.server.recipients(), [b"carol@example.org"])
        self.assertEqual(self.queue.getWaiting(), [bob])
        self.assertNotIn(carol, manager.retries)

    @defer.inlineCallbacks
    def test_expiredMessageReturned(self) -> Any:
        """
        A message refused for now after it has been queued for
        C{maxQueueLifetime} seconds is returned to its sender (status 4.4.7,
        with the last reply) and removed.
        """
        self.server.rcptReplies[b"bob@example.org"] = b"452 4.2.2 mailbox full"
        bob = self.add("bob@example.org", b"Subject: old\n\nbody\n")
        os.utime(self.queue.getPath(bob) + "-D", (0, 0))
        manager = self.manager()
        manager.maxQueueLifetime = 1000
        self.clock.advance(999)
        yield self.relayOnce(manager)
        self.assertEqual(self.queue.getWaiting(), [bob])

        self.clock.advance(manager.backoffDelay)
        yield self.relayOnce(manager)
        [bounce] = self.waiting()
        self.assertNotEqual(bounce, bob)
        self.assertEqual(self.queue.getEnvelope(bounce), ["", "alice@example.com"])
        report = dataOf(self.queue, bounce)
        for field in [
            b"Final-Recipient: rfc822; bob@example.org\n",
            b"Action: failed\n",
            b"Status: 4.4.7\n",
            b"Remote-MTA: dns; 127.0.0.1\n",
            b"Diagnostic-Code: smtp; 452 4.2.2 mailbox full\n",
            b"Subject: old\n",
        ]:
            self.assertIn(field, report)
        self.assertEqual(manager.retries, {})
        self.assertEqual(len(queueFiles(self.directory)), 2)

    @defer.inlineCallbacks
    def test_unreachableExpires(self) -> Any:
        """
        A message whose smart host cannot be reached is returned too once
        it is too old, saying why.
        """
        name = self.add("bob@example.org")
        os.utime(self.queue.getPath(name) + "-D", (0, 0))
        manager = self.manager(smartHost=("127.0.0.1", closedPort()))
        manager.maxQueueLifetime = 10
        self.clock.advance(10)
        yield self.relayOnce(manager)
        [bounce] = self.waiting()
        report = dataOf(self.queue, bounce)
        self.assertIn(b"Status: 4.4.7\n", report)
        self.assertIn(b"delivery time expired (cannot connect to 127.0.0.1)", report)

    @defer.inlineCallbacks
    def test_noExpiry(self) -> Any:
        """
        With C{maxQueueLifetime} L{None} messages are retried for ever.
        """
        self.server.rcptReplies[b"bob@example.org"] = b"451 4.7.1 later"
        name = self.add("bob@example.org")
        os.utime(self.queue.getPath(name) + "-D", (0, 0))
        manager = self.manager()
        manager.maxQueueLifetime = None
        self.clock.advance(10**9)
        yield self.relayOnce(manager)
        self.assertEqual(self.waiting(), [name])
        self.assertEqual(manager.retries[name][0], 1)

    @defer.inlineCallbacks
    def test_forgottenWhenGone(self) -> Any:
        """
        The retry record of a message removed from the queue by other means
        is dropped.
        """
        self.server.rcptReplies[b"bob@example.org"] = b"451 4.7.1 later"
        name = self.add("bob@example.org")
        manager = self.manager()
        yield self.relayOnce(manager)
        self.assertIn(name, manager.retries)
        self.queue.done(name)
        self.assertIsNone(manager.checkState())
        self.assertEqual(manager.retries, {})


class MXTests(_ManagerTestMixin, TestCase):
    """
    Relaying to each domain's mail exchanges, found with a fake resolver.
    """

    def setUp(self) -> None:
        self.setUpQueue()
        self.resolver = FakeResolver(
            [
                ("example.org", mx(10, "mx.example.org")),
                ("mx.example.org", dns.Record_A("127.0.0.1")),
                ("example.net", mx(5, "mx.example.net")),
                ("mx.example.net", dns.Record_A("127.0.0.1")),
            ]
        )
        self.clock = Clock()
        self.mxcalc = MXCalculator(self.resolver, self.clock)

    def manager(self, cls: Any = SmartHostSMTPRelayingManager, *args: Any, **kw: Any) -> Any:
        kw.setdefault("mxcalc", self.mxcalc)
        kw.setdefault("clock", self.clock)
        manager = cls(self.queue, *args, **kw)
        manager.reportingMTA = REPORTING_MTA
        manager.PORT = portOf(self.server)
        return manager

    @defer.inlineCallbacks
    def test_byDomain(self) -> Any:
        """
        Messages are grouped by domain, one connection each, and sent to
        the domain's exchange, whose address comes from the same resolver.
        """
        names = [self.add("a@example.org"), self.add("b@example.net"), self.add("c@EXAMPLE.org")]
        manager = self.manager()
        d = manager.checkState()
        self.assertEqual(sorted(manager.managed.values()), sorted([[names[0], names[2]], [names[1]]]))
        yield d
        yield self.server.idle()
        self.assertEqual(self.server.connections, 2)
        self.assertEqual(
            sorted(self.server.recipients()), [b"a@example.org", b"b@example.net", b"c@EXAMPLE.org"]
        )
        self.assertIn(("mx.example.org", dns.A), self.resolver.queries)
        self.assertIn(("example.net", dns.MX), self.resolver.queries)
        self.assertEqual(queueFiles(self.directory), [])

    @defer.inlineCallbacks
    def test_limitsPerDomain(self) -> Any:
        """
        A domain with more messages than C{maxMessagesPerConnection} gets
        several connections, all within C{maxConnections}, taken oldest
        message first; what does not fit waits for the next C{checkState}.
        """
        org = [self.add("o%d@example.org" % (i,)) for i in range(5)]
        net = self.add("n@example.net")
        manager = self.manager(maxConnections=3, maxMessagesPerConnection=2)
        d = manager.checkState()
        self.assertEqual(sorted(manager.managed.values()), sorted([org[0:2], org[2:4], [org[4]]]))
        self.assertEqual(self.queue.getWaiting(), [net])
        self.assertIsNone(manager.checkState())
        yield d
        yield self.server.idle()
        self.assertEqual(self.server.connections, 3)
        self.assertLessEqual(self.server.maxActive, 3)
        yield self.relayAll(manager)
        self.assertEqual(self.server.connections, 4)
        self.assertEqual(len(self.server.messages), 6)
        self.assertEqual(queueFiles(self.directory), [])

    @defer.inlineCallbacks
    def test_failoverWhenUnreachable(self) -> Any:
        """
        When the most preferred exchange refuses connections, the next one
        is used, and the first is marked bad.
        """
        redirect = Redirect({"192.0.2.2": closedPort()})
        self.resolver.add("example.com", mx(10, "down.example.com"))
        self.resolver.add("example.com", mx(20, "up.example.com"))
        self.resolver.add("down.example.com", dns.Record_A("192.0.2.2"))
        self.resolver.add("up.example.com", dns.Record_A("127.0.0.1"))
        self.add("bob@example.com")
        yield self.relayAll(self.manager(reactor=redirect))
        self.assertEqual(self.server.recipients(), [b"bob@example.com"])
        self.assertEqual(list(self.mxcalc.badMXs), ["down.example.com"])
        port = portOf(self.server)
        self.assertEqual(redirect.connections, [("192.0.2.2", port), ("127.0.0.1", port)])

    @defer.inlineCallbacks
    def test_failoverWhenSessionFails(self) -> Any:
        """
        When the preferred exchange answers but turns the session down
        (421), the next one is used.
        """
        busy = startServer(self, RelayTestServer(greeting=b"421 4.3.2 busy"))
        self.resolver.add("example.com", mx(10, "busy.example.com"))
        self.resolver.add("example.com", mx(20, "up.example.com"))
        self.resolver.add("busy.example.com", dns.Record_A("192.0.2.3"))
        self.resolver.add("up.example.com", dns.Record_A("127.0.0.1"))
        self.add("bob@example.com")
        yield self.relayAll(self.manager(reactor=Redirect({"192.0.2.3": portOf(busy)})))
        yield busy.idle()
        self.assertEqual(busy.connections, 1)
        self.assertEqual(self.server.recipients(), [b"bob@example.com"])
        self.assertEqual(list(self.mxcalc.badMXs), ["busy.example.com"])

    @defer.inlineCallbacks
    def test_noExchangeReachable(self) -> Any:
        """
        When no exchange can be reached, the messages wait again but are
        not tried before C{backoffDelay} seconds; each further failure
        doubles the delay.
        """
        redirect = Redirect({"192.0.2.2": closedPort()})
        self.resolver.add("example.com", mx(10, "down.example.com"))
        self.resolver.add("down.example.com", dns.Record_A("192.0.2.2"))
        name = self.add("bob@example.com")
        manager = self.manager(reactor=redirect)
        yield self.relayOnce(manager)
        self.assertEqual((self.queue.getWaiting(), self.queue.getRelayed(), manager.managed), ([name], [], {}))
        self.assertEqual(manager.retries, {name: (1, manager.backoffDelay)})
        self.assertEqual(len(redirect.connections), 1)
        self.clock.advance(manager.backoffDelay - 1)
        self.assertIsNone(manager.checkState())
        self.assertEqual(len(redirect.connections), 1)
        self.clock.advance(1)
        yield self.relayOnce(manager)
        self.assertEqual(len(redirect.connections), 2)
        self.assertEqual(manager.retries, {name: (2, 3 * manager.backoffDelay)})
        self.assertEqual(len(queueFiles(self.directory)), 2)

    @defer.inlineCallbacks
    def test_temporaryDNSFailure(self) -> Any:
        """
        A DNS server failure is temporary: the messages wait again,
        unbounced, and are tried after C{backoffDelay}.
        """
        self.resolver.add("example.com", dns.Record_TXT(b"x"))
        self.resolver.errors[("example.com", dns.MX)] = error.DNSServerError("SERVFAIL")
        name = self.add("bob@example.com")
        manager = self.manager()
        [(ok, result)] = yield self.relayOnce(manager)
        self.assertFalse(ok)
        self.assertTrue(result.check(error.DNSServerError))
        self.assertEqual(self.queue.getWaiting(), [name])
        self.assertIsNone(manager.checkState())
        self.assertEqual(len(self.resolver.queries), 1)
        self.clock.advance(manager.backoffDelay)
        del self.resolver.errors[("example.com", dns.MX)]
        self.resolver.add("example.com", mx(10, "mx.example.org"))
        yield self.relayAll(manager)
        self.assertEqual(self.server.recipients(), [b"bob@example.com"])
        self.assertEqual(self.server.connections, 1)
        self.assertEqual(manager.retries, {})

    @defer.inlineCallbacks
    def _undeliverable(self, status: str) -> Any:
        self.add("bob@example.com", b"Subject: lost\n\nbody\n")
        yield self.relayOnce(self.manager())
        self.assertEqual(self.server.connections, 0)
        [bounce] = self.waiting()
        self.assertEqual(self.queue.getEnvelope(bounce), ["", "alice@example.com"])
        report = dataOf(self.queue, bounce)
        self.assertIn(b"Final-Recipient: rfc822; bob@example.com\n", report)
        self.assertIn(b"Status: " + status.encode("ascii") + b"\n", report)
        self.assertIn(b"Subject: lost\n", report)

    def test_nullMX(self) -> Any:
        """
        Mail for a domain with a null MX is returned at once (5.1.10).
        """
        self.resolver.add("example.com", mx(0, ""))
        return self._undeliverable("5.1.10")

    def test_noSuchDomain(self) -> Any:
        """
        Mail for a domain that does not exist is returned at once (5.1.2).
        """
        return self._undeliverable("5.1.2")

    @defer.inlineCallbacks
    def test_domainLiteral(self) -> Any:
        """
        A recipient at an address literal is sent to that address without
        any lookup.
        """
        self.add("bob@[127.0.0.1]")
        yield self.relayAll(self.manager())
        self.assertEqual(self.server.recipients(), [b"bob@[127.0.0.1]"])
        self.assertEqual(self.resolver.queries, [])

    @defer.inlineCallbacks
    def test_addressLimit(self) -> Any:
        """
        A domain with a thousand MX records, none reachable, costs
        C{maxAddresses} connection attempts per try, the most preferred
        first, not a thousand.
        """
        down = closedPort()
        redirect = Redirect({"192.0.2.%d" % (i,): down for i in range(1, 255)})
        for i in range(1000):
            self.resolver.add("example.com", mx(i, "mx%d.example.com" % (i,)))
            self.resolver.add("mx%d.example.com" % (i,), dns.Record_A("192.0.2.%d" % (i % 254 + 1,)))
        name = self.add("bob@example.com")
        manager = self.manager(reactor=redirect)
        self.assertEqual(manager.maxAddresses, 5)
        yield self.relayOnce(manager)
        self.assertEqual(
            [host for host, port in redirect.connections],
            ["192.0.2.%d" % (i % 254 + 1,) for i in range(5)],
        )
        self.assertEqual(self.waiting(), [name])
        manager.maxAddresses = 2
        self.clock.advance(manager.backoffDelay)
        yield self.relayOnce(manager)
        self.assertEqual(len(redirect.connections), 7)

    @defer.inlineCallbacks
    def test_ipv6OnlyExchange(self) -> Any:
        """
        An exchange with only an AAAA record is reached over IPv6 (the
        manager looks up AAAA and A for every exchange).
        """
        from mailclient.testing import SMTPTestServer

        server = SMTPTestServer(extensions=["PIPELINING", "8BITMIME"])
        try:
            server.listenTCP(reactor, interface="::1")
        except Exception as e:  # pragma: no cover - no IPv6 loopback
            raise SkipTest("cannot listen on ::1: %s" % (e,))
        self.addCleanup(server.stopListening)
        self.resolver.add("example.com", mx(10, "mx6.example.com"))
        self.resolver.add("mx6.example.com", dns.Record_AAAA("::1"))
        self.add("bob@example.com")
        manager = self.manager()
        manager.PORT = server.portNumber
        reports: List[Any] = []
        manager.deliveryObservers.append(reports.append)
        yield self.relayAll(manager)
        self.assertEqual([m.rcptTo for m in server.messages], [[b"bob@example.com"]])
        self.assertEqual([(r.outcome.value, r.exchange, r.address) for r in reports],
                         [("delivered", "mx6.example.com", "::1")])
        self.assertIn(("mx6.example.com", dns.AAAA), self.resolver.queries)

    @defer.inlineCallbacks
    def test_deadIPv6FallsBackToIPv4(self) -> Any:
        """
        An exchange whose IPv6 address refuses connections is reached at
        its IPv4 address in the same attempt, without marking it bad.
        """
        from mailclient.test.helpers_connect import ResolvingReactor

        recording = ResolvingReactor(reactor, None)
        self.resolver.add("example.com", mx(10, "dual.example.com"))
        self.resolver.add("dual.example.com", dns.Record_A("127.0.0.1"))
        self.resolver.add("dual.example.com", dns.Record_AAAA("::1"))
        self.add("bob@example.com")
        yield self.relayAll(self.manager(reactor=recording))
        port = portOf(self.server)
        self.assertEqual(recording.connections, [("TCP", "::1", port), ("TCP", "127.0.0.1", port)])
        self.assertEqual(self.server.recipients(), [b"bob@example.com"])
        self.assertEqual(self.mxcalc.badMXs, {})

    @defer.inlineCallbacks
    def test_addressLimitAcrossFamilies(self) -> Any:
        """
        C{maxAddresses} counts addresses, of every exchange and both
        families: an exchange with three AAAA and three A records, none
        reachable, costs five attempts (IPv6 first, the families
        alternating), and the next exchange is not tried.
        """
        down = closedPort()
        v6 = ["2001:db8::%d" % (i,) for i in range(1, 4)]
        v4 = ["192.0.2.%d" % (i,) for i in range(1, 4)]
        redirect = Redirect({address: down for address in v6 + v4 + ["192.0.2.99"]})
        self.resolver.add("example.com", mx(10, "big.example.com"))
        self.resolver.add("example.com", mx(20, "next.example.com"))
        for address in v6:
            self.resolver.add("big.example.com", dns.Record_AAAA(address))
        for address in v4:
            self.resolver.add("big.example.com", dns.Record_A(address))
        self.resolver.add("next.example.com", dns.Record_A("192.0.2.99"))
        name = self.add("bob@example.com")
        manager = self.manager(reactor=redirect)
        yield self.relayOnce(manager)
        self.assertEqual([host for host, port in redirect.connections],
                         ["2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2", "2001:db8::3"])
        self.assertEqual(self.waiting(), [name])
        self.assertNotIn(("next.example.com", dns.A), self.resolver.queries)
        manager.addressPreference = "ipv4"
        manager.maxAddresses = 8
        self.clock.advance(manager.backoffDelay)
        yield self.relayOnce(manager)
        # (big.example.com failed: it is tried after next.example.com now.)
        self.assertEqual([host for host, port in redirect.connections[5:]],
                         ["192.0.2.99", "192.0.2.1", "2001:db8::1", "192.0.2.2", "2001:db8::2",
                          "192.0.2.3", "2001:db8::3"])

    @defer.inlineCallbacks
    def test_refusePrivateAddresses(self) -> Any:
        """
        With C{refusePrivateAddresses}, an exchange (or address literal)
        at a loopback or private address is not connected to: DNS cannot
        point the relay at internal services.  The message waits, as for
        an exchange that cannot be reached.
        """
        names = [self.add("bob@example.org"), self.add("carol@[127.0.0.1]")]
        manager = self.manager()
        manager.refusePrivateAddresses = True
        yield self.relayOnce(manager)
        self.assertEqual(self.server.connections, 0)
        self.assertEqual(sorted(self.waiting()), sorted(names))
        self.assertEqual(sorted(manager.retries), sorted(names))
        manager.refusePrivateAddresses = False
        self.clock.advance(manager.backoffDelay)
        yield self.relayAll(manager)
        self.assertEqual(sorted(self.server.recipients()), [b"bob@example.org", b"carol@[127.0.0.1]"])

    def test_isGlobal(self) -> None:
        """
        Only global unicast addresses are global.
        """
        for address in ("192.0.2.1", "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1",
                        "169.254.169.254", "0.0.0.0", "224.0.0.1", "::1", "fe80::1%eth0",
                        "fc00::1", "::ffff:127.0.0.1", "mx.example.org", "", "100.64.0.1"):
            self.assertFalse(_manager.isGlobal(address), address)
        for address in ("8.8.8.8", "2001:4860:4860::8888", "93.184.216.34"):
            self.assertTrue(_manager.isGlobal(address), address)

    @defer.inlineCallbacks
    def test_defaultCalculator(self) -> Any:
        """
        Without an MX calculator one is made on first use, as in Twisted.
        """
        made: List[Any] = []

        def makeCalculator(clock: Any) -> MXCalculator:
            made.append(MXCalculator(self.resolver, clock))
            return made[-1]

        self.patch(_manager, "MXCalculator", makeCalculator)
        manager = SmartHostSMTPRelayingManager(self.queue)
        self.assertIsNone(manager.mxcalc)
        self.assertIsNone(manager.checkState())
        self.assertIsNone(manager.mxcalc)
        self.add("bob@[127.0.0.1]")
        manager.PORT = portOf(self.server)
        yield manager.checkState()
        yield self.server.idle()
        self.assertEqual(made, [manager.mxcalc])
        self.assertEqual(self.server.recipients(), [b"bob@[127.0.0.1]"])


_AIOSMTPD_CHILD = """
    import asyncio, json, os, sys
    from aiosmtpd.smtp import SMTP

    outdir = sys.argv[1]

    class Handler:
        def __init__(self):
            self.count = 0
            self.greylisted = set()

        async def handle_RCPT(self, server, session, envelope, address, options):
            if address.startswith("grey") and address not in self.greylisted:
                self.greylisted.add(address)
                return "451 4.7.1 greylisted, try again later"
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 OK"

        async def handle_DATA(self, server, session, envelope):
            self.count += 1
            path = os.path.join(outdir, "%05d" % (self.count,))
            with open(path + ".tmp", "wb") as f:
                f.write(json.dumps([envelope.mail_from, envelope.rcpt_tos]).encode() + b"\\n")
                f.write(envelope.original_content)
            os.rename(path + ".tmp", path)
            return "250 2.0.0 OK"

    async def main():
        loop = asyncio.get_running_loop()
        handler = Handler()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="mx.test"), "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await loop.run_in_executor(None, sys.stdin.buffer.read)
        server.close()
        await server.wait_closed()

    asyncio.run(main())
"""


class _ServerProcess(_ChildProcess):
    """
    A child process that prints its port on its first line.
    """

    def __init__(self) -> None:
        _ChildProcess.__init__(self)
        self.listening: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        _ChildProcess.outReceived(self, data)
        if not self.listening.called and b"\n" in self.out:
            self.listening.callback(int(self.out.split(b"\n", 1)[0]))

    def processEnded(self, reason: Any) -> None:
        if not self.listening.called:
            self.listening.errback(RuntimeError(self.err.decode("utf-8", "replace")))
        _ChildProcess.processEnded(self, reason)


class EndToEndTests(TestCase):
    """
    A queue relayed through a real SMTP server (aiosmtpd) running in its own
    process on loopback.
    """

    @defer.inlineCallbacks
    def startServerProcess(self, outdir: str) -> Any:
        child = _ServerProcess()
        transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            child,
            sys.executable,
            [sys.executable, "-c", textwrap.dedent(_AIOSMTPD_CHILD), outdir],
            env=pythonEnv(),
        )

        def stop() -> "defer.Deferred[Any]":
            if not child.ended.called:
                transport.closeStdin()
                killer = reactor.callLater(10, transport.signalProcess, "KILL")  # type: ignore[attr-defined]
                child.ended.addBoth(lambda r: killer.cancel() if killer.active() else None)
            return child.ended

        self.addCleanup(stop)
        port = yield child.listening
        return port

    @defer.inlineCallbacks
    def test_everyMessageOnceByteForByte(self) -> Any:
        """
        Sixty messages (binary, UTF-8, leading dots, lines up to 885
        characters, one greylisted at first) are relayed over ESMTP with at most three connections;
        each arrives exactly once, byte for byte (with CRLF line endings),
        with its envelope, and the queue ends empty.
        """
        try:
            import aiosmtpd  # noqa: F401
        except ImportError:  # pragma: no cover
            raise SkipTest("needs aiosmtpd")
        directory = self.mktemp()
        outdir = self.mktemp()
        os.mkdir(directory)
        os.mkdir(outdir)
        port = yield self.startServerProcess(outdir)

        queue = Queue(directory)
        queue.noisy = False
        queue.fsync = False
        expected = {}
        for i in range(60):
            recipient = "%s%d@example.org" % ("grey" if i == 7 else "rcpt", i)
            body = (
                b"Subject: message %d\n\n" % (i,)
                + BINARY_BODY
                + b"." * (i % 3) + b"\n"
                + b"x" * (15 * i) + b"\n"
            )
            queue.enqueue("sender%d@example.com" % (i,), recipient, body)
            expected[recipient] = ("sender%d@example.com" % (i,), wire(body))
        queue.readDirectory()

        clock = Clock()
        manager = SmartHostESMTPRelayingManager(
            queue, 3, 10, smartHost=("127.0.0.1", port), clock=clock
        )
        manager.fArgs = (None, None, b"relay.test")
        for _ in range(20):
            d = manager.checkState()
            if d is None:
                if not manager.retries:
                    break
                clock.advance(manager.backoffDelay)
                continue
            yield d
        self.assertEqual(queueFiles(directory), [])

        received = {}
        for name in sorted(os.listdir(outdir)):
            with open(os.path.join(outdir, name), "rb") as f:
                envelope, content = f.read().split(b"\n", 1)
            sender, [recipient] = json.loads(envelope)
            self.assertNotIn(recipient, received)
            received[recipient] = (sender, content)
        self.assertEqual(sorted(received), sorted(expected))
        self.assertEqual(received, expected)
        # The greylisted message got through on a retry, after the delay.
        self.assertEqual(clock.seconds(), manager.backoffDelay)


class _TwistedQueueing:
    """
    Fill a queue the way a Twisted mail server does.
    """

    @staticmethod
    def queueWithTwisted(directory: str, lines: List[bytes]) -> None:
        from twisted.mail.relay import DomainQueuer
        from twisted.mail.relaymanager import Queue as TwistedQueue

        class Service:
            queue = TwistedQueue(directory)

        class User:
            orig = "alice@example.com"
            dest = "bob@example.org"

        Service.queue.noisy = False
        message = DomainQueuer(Service()).startMessage(User())
        for line in lines:
            message.lineReceived(line)
        message.eomReceived()


class TwistedCompatibilityTests(_ManagerTestMixin, TestCase):
    """
    A queue filled by Twisted is relayed by mailclient, where Twisted's own
    manager crashes.
    """

    LINES = [b"Subject: caf\xc3\xa9", b"", b"\xff\xfe binary", b".dot", b"end"]

    def setUp(self) -> None:
        self.setUpQueue()

    @defer.inlineCallbacks
    def test_twistedQueueRelayedByMailclient(self) -> Any:
        """
        Messages queued by Twisted's C{DomainQueuer} and C{Queue} are
        relayed byte for byte by mailclient's manager.
        """
        _TwistedQueueing.queueWithTwisted(self.directory, self.LINES)
        self.queue.readDirectory()
        yield self.relayAll(self.manager())
        [message] = self.server.messages
        self.assertEqual((message.sender, message.recipients), (b"alice@example.com", [b"bob@example.org"]))
        self.assertEqual(message.data, b"".join(line + b"\r\n" for line in self.LINES))
        self.assertEqual(queueFiles(self.directory), [])

    def test_twistedManagerCrashes(self) -> None:
        """
        Twisted's manager fails on its first waiting message, whatever queue
        it is given: C{dict_keys} has no C{reverse}, a dict no
        C{iteritems}.
        """
        from twisted.mail.relaymanager import Queue as TwistedQueue
        from twisted.mail.relaymanager import SmartHostSMTPRelayingManager as TwistedManager

        _TwistedQueueing.queueWithTwisted(self.directory, self.LINES)
        twistedQueue = TwistedQueue(self.directory)
        twistedQueue.noisy = False
        error = self.assertRaises(AttributeError, TwistedManager(twistedQueue).checkState)
        self.assertIn("reverse", str(error))

        manager = TwistedManager(self.queue)
        manager.mxcalc = MXCalculator(FakeResolver(), Clock())  # type: ignore[assignment]
        self.queue.readDirectory()
        error = self.assertRaises(AttributeError, manager.checkState)
        self.assertIn("iteritems", str(error))


@implementer(IAttemptManager, IDeliveryProgress)
class NotifyingManager:
    """
    An attempt manager that records notifications (temporary failures
    too: it provides L{IDeliveryProgress}).
    """

    def __init__(self) -> None:
        self.calls: List[Tuple[str, Any]] = []

    def notifySending(self, relay: Any, message: str) -> None:
        pass

    def forget(self, relay: Any, message: str) -> None:
        self.calls.append(("forget", message))

    def notifySuccess(self, relay: Any, message: str) -> None:
        self.calls.append(("success", message))

    def notifyFailure(self, relay: Any, message: str) -> None:
        self.calls.append(("failure", message))

    def notifyTemporaryFailure(self, relay: Any, message: str) -> None:
        self.calls.append(("temporary", message))

    def notifyDone(self, relay: Any) -> None:
        self.calls.append(("done", relay))


class ManagedRelayerTests(SynchronousTestCase):
    """
    Managed relayers report each outcome to their attempt manager.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        self.queue = Queue(self.directory)
        self.queue.noisy = False
        self.names = [
            self.queue.getPath(self.queue.enqueue("a@example.com", "r%d@example.org" % (i,), b"x\n"))
            for i in range(4)
        ]

    def relayer(self, manager: Any, cls: Any = SMTPManagedRelayer) -> Any:
        relayer = cls(self.names, manager, b"client.test")
        relayer.factory = SMTPManagedRelayerFactory(self.names, manager)
        return relayer

    def test_outcomes(self) -> None:
        """
        2xx is a success, 5xx a failure (its reply kept for the bounce), and
        4xx or no reply at all a temporary failure; each closes the body.
        """
        manager = NotifyingManager()
        relayer = self.relayer(manager)
        bodies = []
        for code, resp, addresses in [
            (250, b"ok", [("r0@example.org", 250, b"ok")]),
            (550, b"No recipients accepted", [("r1@example.org", 550, b"5.1.1 unknown")]),
            (451, b"4.3.0 later", [("r2@example.org", 250, b"ok")]),
            (-1, b"?", []),
        ]:
            relayer.getMailFrom()
            bodies.append(relayer.getMailData())
            relayer.sentMail(code, resp, 1, addresses, None)
        self.assertEqual(
            manager.calls,
            [("success", self.names[0]), ("failure", self.names[1]), ("temporary", self.names[2]), ("temporary", self.names[3])],
        )
        self.assertTrue(all(body.closed for body in bodies))
        failure = relayer.factory.failures[self.names[1]]
        self.assertEqual((failure.status, failure.diagnostic), ("5.1.1", b"550 5.1.1 unknown"))

    def test_connectionLostNotifiesDone(self) -> None:
        """
        Losing the connection closes the open body and notifies C{done}.
        """
        manager = NotifyingManager()
        relayer = self.relayer(manager)
        relayer.getMailFrom()
        body = relayer.getMailData()
        relayer.connectionLost(Failure(RuntimeError("gone")))
        self.assertTrue(body.closed)
        self.assertEqual(manager.calls[-1], ("done", relayer.factory))

    def test_twistedBouncesTemporaryFailures(self) -> None:
        """
        Twisted's managed relayer reports a 4xx reply as a failure, so the
        message is bounced; mailclient's keeps it for another try.
        """
        from twisted.mail import relaymanager as twisted_relaymanager

        twistedManager = NotifyingManager()
        twisted = twisted_relaymanager.SMTPManagedRelayer([], twistedManager, b"client.test")
        twisted.factory = None
        twisted.messages, twisted.names = [["a@example.com", "b@example.org", None]], [self.names[0]]
        twisted.sentMail(451, b"4.7.1 greylisted", 1, [], None)
        self.assertEqual(twistedManager.calls, [("failure", self.names[0])])

        manager = NotifyingManager()
        relayer = self.relayer(manager)
        relayer.sentMail(451, b"4.7.1 greylisted", 1, [], None)
        self.assertEqual(manager.calls, [("temporary", self.names[0])])

    def test_factories(self) -> None:
        """
        The factories make relayers for their messages and manager; the
        ESMTP one asks C{secret} for the password for the address.
        """
        manager = NotifyingManager()
        factory = SMTPManagedRelayerFactory(self.names, manager, b"client.test")
        relayer = factory.buildProtocol(None)
        self.assertIsInstance(relayer, SMTPManagedRelayer)
        self.assertEqual((relayer.factory, relayer.manager, relayer.identity), (factory, manager, b"client.test"))
        self.assertEqual(relayer.names, self.names)

        addresses = []

        def secret(addr: Any) -> bytes:
            addresses.append(addr)
            return b"password"

        esmtp = ESMTPManagedRelayerFactory(self.names, manager, secret, None, b"client.test")
        relayer = esmtp.buildProtocol("the address")
        self.assertIsInstance(relayer, relaymanager.ESMTPManagedRelayer)
        self.assertEqual((relayer.secret, relayer.identity, addresses), (b"password", b"client.test", ["the address"]))


class AttemptManagerTests(SynchronousTestCase):
    """
    Twisted's attempt manager never puts unreachable messages back to
    wait; mailclient's does.
    """

    def test_twistedNeverRetries(self) -> None:
        from twisted.mail import relaymanager as twisted_relaymanager

        for module in (twisted_relaymanager, relaymanager):
            directory = self.mktemp()
            os.mkdir(directory)
            queue = module.Queue(directory)
            queue.noisy = False
            with open(os.path.join(directory, "m-H"), "wb") as f:
                f.write(dumpEnvelope("a@example.com", "b@example.org"))
            with open(os.path.join(directory, "m-D"), "wb") as f:
                f.write(b"x\n")
            queue.readDirectory()
            queue.setRelaying("m")
            clock = Clock()
            smartHost = module.SmartHostSMTPRelayingManager(queue)
            if module is relaymanager:
                smartHost.clock = clock
            attempt = module._AttemptManager(smartHost, False, clock)
            smartHost.managed["factory"] = ["m"]
            attempt.notifyNoConnection("factory")
            clock.advance(60)
            waiting = list(queue.getWaiting())
            if module is relaymanager:
                self.assertEqual(waiting, ["m"])
            else:
                self.assertEqual(waiting, [])


class ManagerStateTests(SynchronousTestCase):
    """
    Pickling the manager, and the periodic helper.
    """

    def test_pickle(self) -> None:
        """
        The running relayers (and reactor) are not pickled.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        manager = SmartHostSMTPRelayingManager(Queue(directory), 3, 7, smartHost="smtp.example.net", clock=Clock())
        manager.managed["x"] = ["y"]
        manager.retries["z"] = (2, 90.0)
        manager.backoffDelay = 5
        copy = pickle.loads(pickle.dumps(manager))
        self.assertEqual((copy.managed, copy.maxConnections, copy.maxMessagesPerConnection), ({}, 3, 7))
        self.assertEqual(copy.smartHost, [("smtp.example.net", 25)])
        self.assertIsNone(copy.clock)
        self.assertIsNone(copy.reactor)
        self.assertEqual((copy.retries, copy.backoffDelay), ({"z": (2, 90.0)}, 5))
        self.assertEqual(copy.queue.directory, directory)
        self.assertNotIn("managed", manager.__getstate__())

    def test_stateWithoutRetries(self) -> None:
        """
        State saved without C{retries} (as Twisted's manager saves it)
        restores with no message deferred.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        manager = SmartHostSMTPRelayingManager(Queue(directory), smartHost="smtp.example.net")
        state = manager.__getstate__()
        del state["retries"]
        copy = SmartHostSMTPRelayingManager.__new__(SmartHostSMTPRelayingManager)
        copy.__setstate__(state)
        self.assertEqual((copy.retries, copy.managed), ({}, {}))

    def test_pickleAfterMXLookup(self) -> None:
        """
        A manager that has made its own MX calculator (holding the reactor
        and a resolver, which cannot be pickled) can still be pickled; the
        calculator is made again when needed.  One it was given is kept.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        queue = Queue(directory)
        queue.noisy = False
        queue.fsync = False
        queue.enqueue("a@example.com", "b@example.org", b"x\n")

        class Unpicklable:
            def __reduce__(self) -> Any:
                raise TypeError("cannot pickle")

        def makeCalculator(clock: Any) -> MXCalculator:
            calc = MXCalculator(FakeResolver(), clock)
            calc.resolver.unpicklable = Unpicklable()  # type: ignore[attr-defined]
            return calc

        self.patch(_manager, "MXCalculator", makeCalculator)
        manager = SmartHostSMTPRelayingManager(queue, clock=Clock())
        manager.checkState()
        self.assertIsInstance(manager.mxcalc, MXCalculator)
        self.assertRaises(TypeError, pickle.dumps, manager.mxcalc)
        copy = pickle.loads(pickle.dumps(manager))
        self.assertIsNone(copy.mxcalc)

        given = SmartHostSMTPRelayingManager(Queue(directory), mxcalc=MXCalculator(FakeResolver(), Clock()))
        given.mxcalc.markBad("mx.example.com")
        copy = pickle.loads(pickle.dumps(given))
        self.assertEqual(list(copy.mxcalc.badMXs), ["mx.example.com"])

    def test_relayStateHelper(self) -> None:
        """
        L{RelayStateHelper} is a timer service calling C{checkState}.
        """
        calls: List[Optional[int]] = []

        class Manager:
            def checkState(self) -> Any:
                calls.append(None)
                return defer.Deferred()

        service = RelayStateHelper(Manager(), 30)  # type: ignore[arg-type]
        service.clock = Clock()
        service.startService()
        service.clock.advance(30)
        service.clock.advance(30)
        service.stopService()
        self.assertEqual(len(calls), 3)

    def test_publicNames(self) -> None:
        """
        Twisted's names are all there, documented.
        """
        for name in [
            "ManagedRelayerMixin", "SMTPManagedRelayer", "ESMTPManagedRelayer",
            "SMTPManagedRelayerFactory", "ESMTPManagedRelayerFactory", "Queue",
            "SmartHostSMTPRelayingManager", "SmartHostESMTPRelayingManager",
            "MXCalculator", "RelayStateHelper", "CanonicalNameLoop", "CanonicalNameChainTooLong",
        ]:
            self.assertIn(name, relaymanager.__all__)
            self.assertTrue(getattr(relaymanager, name).__doc__.strip(), name)


class PickleCompatibilityTests(SynchronousTestCase):
    """
    A relaying manager pickled by an earlier release (its queue then named
    C{mailclient._queue.Queue}) still loads; new pickles name public paths.
    """

    #: SmartHostESMTPRelayingManager(Queue("/tmp/oldq"), 3, 7,
    #: smartHost=("smtp.example.net", 2525)) with a retry for "msg1" and
    #: fArgs ("relay.example",), pickled (protocol 2) before the private
    #: modules moved into layer packages.
    OLD = base64.b64decode(
        "gAJjbWFpbGNsaWVudC5yZWxheW1hbmFnZXIKU21hcnRIb3N0RVNNVFBSZWxheWluZ01hbmFnZXIK"
        "cQApgXEBfXECKFgOAAAAbWF4Q29ubmVjdGlvbnNxA0sDWBgAAABtYXhNZXNzYWdlc1BlckNvbm5l"
        "Y3Rpb25xBEsHWAcAAAByZXRyaWVzcQV9cQZYBAAAAG1zZzFxB0sCR0DIHIAAAAAAhnEIc1gFAAAA"
        "cXVldWVxCWNtYWlsY2xpZW50Ll9xdWV1ZQpRdWV1ZQpxCimBcQt9cQxYCQAAAGRpcmVjdG9yeXEN"
        "WAkAAAAvdG1wL29sZHFxDnNiWAUAAABmQXJnc3EPWA0AAAByZWxheS5leGFtcGxlcRCFcRFYBwAA"
        "AGZLd0FyZ3NxEn1xE1gJAAAAc21hcnRIb3N0cRRdcRVYEAAAAHNtdHAuZXhhbXBsZS5uZXRxFk3d"
        "CYZxF2F1Yi4="
    )

    def test_oldPickleLoads(self) -> None:
        self.assertIn(b"mailclient._queue", self.OLD)
        manager = pickle.loads(self.OLD)
        self.assertIsInstance(manager, relaymanager.SmartHostESMTPRelayingManager)
        self.assertIsInstance(manager.queue, relaymanager.Queue)
        self.assertEqual(manager.queue.directory, "/tmp/oldq")
        self.assertEqual((manager.maxConnections, manager.maxMessagesPerConnection), (3, 7))
        self.assertEqual(manager.smartHost, [("smtp.example.net", 2525)])
        self.assertEqual(manager.retries, {"msg1": (2, 12345.0)})
        self.assertEqual(manager.fArgs, ("relay.example",))
        self.assertEqual(manager.managed, {})

    def test_newPicklesNamePublicPaths(self) -> None:
        directory = self.mktemp()
        os.mkdir(directory)
        manager = relaymanager.SmartHostSMTPRelayingManager(relaymanager.Queue(directory))
        data = pickle.dumps(manager)
        self.assertNotIn(b"mailclient._", data)
        self.assertIsInstance(pickle.loads(data).queue, relaymanager.Queue)
