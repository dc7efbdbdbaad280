"""
Tests for L{mailclient.relay}: relayers that send queued messages.

Delivery is tested against a real SMTP server on a loopback port
(L{mailclient.test.helpers_relay.RelayTestServer}, shared with the relaying
manager's tests); differential tests show where Twisted's relayer fails.
"""

from __future__ import annotations

import json
import os
from typing import Any, List, Optional, Sequence, Tuple

from twisted.internet import defer, protocol, reactor
from twisted.internet.error import ProcessDone
from twisted.trial.unittest import SkipTest, TestCase

import mailclient
from mailclient import relay
from mailclient._relaying.relayer import closeCurrent, dropCurrent
from mailclient.relaymanager import Queue
from mailclient.test.helpers_relay import (
    BINARY_BODY,
    RelayTestServer,
    portOf,
    queueFiles,
    spawnPython,
    startServer,
    wire,
)

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None  # type: ignore[assignment]


def fillQueue(
    directory: str, messages: Sequence[Tuple[str, str, bytes]]
) -> Tuple[Queue, List[str]]:
    """
    Queue C{(from, to, body)} messages in C{directory}; return the queue and
    their base paths.
    """
    queue = Queue(directory)
    queue.noisy = False
    queue.fsync = False
    names = [queue.enqueue(sender, recipient, body) for sender, recipient, body in messages]
    queue.readDirectory()
    return queue, [queue.getPath(name) for name in names]


def openQueueFiles(directory: str) -> Optional[List[str]]:
    """
    The files under C{directory} this process has open (None where
    C{/proc/self/fd} is not available).
    """
    if not os.path.isdir("/proc/self/fd"):
        return None
    prefix = os.path.realpath(directory) + os.sep
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(os.path.join("/proc/self/fd", fd))
        except OSError:
            continue
        if target.startswith(prefix):
            found.append(target)
    return found


def connectRelayer(
    server: RelayTestServer, relayer: Any
) -> "defer.Deferred[Any]":
    """
    Connect C{relayer} to C{server}; the Deferred fires when the connection
    has closed on both sides.
    """
    done: defer.Deferred[Any] = defer.Deferred()
    lost = relayer.connectionLost

    def connectionLost(reason: Any) -> None:
        try:
            lost(reason)
        finally:
            server.idle().chainDeferred(done)

    relayer.connectionLost = connectionLost
    protocol.ClientCreator(reactor, lambda: relayer).connectTCP(
        "127.0.0.1", portOf(server)
    )
    return done


def body(relayer: Any) -> Any:
    """
    The open body file of C{relayer}'s current message.
    """
    return relayer.getMailData()


class LoadTests(TestCase):
    """
    L{relay.RelayerMixin.loadMessages} reads envelopes and leaves bodies
    closed.
    """

    def test_envelopesLoadedBodiesClosed(self) -> None:
        """
        After construction, C{messages} holds C{[from, to, None]} per
        message and C{names} the base paths; no data file is open.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        _, paths = fillQueue(
            directory,
            [("a@example.com", "b@example.org", b"one\n"), ("c@example.com", "d@example.org", b"two\n")],
        )
        relayer = relay.SMTPRelayer(paths, b"client.test")
        self.assertEqual(
            relayer.messages,
            [["a@example.com", "b@example.org", None], ["c@example.com", "d@example.org", None]],
        )
        self.assertEqual(relayer.names, paths)
        self.assertEqual(openQueueFiles(directory) or [], [])

    def test_bytesPaths(self) -> None:
        """
        Paths may be given as bytes (as Twisted documents them).
        """
        directory = self.mktemp()
        os.mkdir(directory)
        _, paths = fillQueue(directory, [("a@example.com", "b@example.org", b"x\n")])
        relayer = relay.SMTPRelayer([os.fsencode(p) for p in paths], b"client.test")
        self.assertEqual(relayer.names, paths)
        self.assertEqual(relayer.getMailFrom(), "a@example.com")
        self.assertEqual(relayer.getMailTo(), ["b@example.org"])
        self.assertEqual(body(relayer).read(), b"x\n")
        closeCurrent(relayer)

    def test_unreadableEnvelopeSkipped(self) -> None:
        """
        A message whose envelope is missing or corrupt is skipped; the
        others are loaded.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        _, paths = fillQueue(
            directory,
            [("a@example.com", "b@example.org", b"1\n"), ("c@example.com", "d@example.org", b"2\n"), ("e@example.com", "f@example.org", b"3\n")],
        )
        os.remove(paths[0] + "-H")
        with open(paths[1] + "-H", "wb") as f:
            f.write(b"garbage")
        relayer = relay.SMTPRelayer(paths, b"client.test")
        self.assertEqual(relayer.names, [paths[2]])

    def test_noMessages(self) -> None:
        """
        With nothing (left) to send, the hooks return L{None}.
        """
        relayer = relay.SMTPRelayer([], b"client.test")
        self.assertIsNone(relayer.getMailFrom())
        self.assertIsNone(relayer.getMailTo())
        self.assertIsNone(relayer.getMailData())

    def test_missingDataSkipped(self) -> None:
        """
        A message whose data file has gone (another relayer sent it) is
        skipped by C{getMailFrom}.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        _, paths = fillQueue(
            directory,
            [("a@example.com", "b@example.org", b"1\n"), ("c@example.com", "d@example.org", b"2\n")],
        )
        relayer = relay.SMTPRelayer(paths, b"client.test")
        os.remove(paths[0] + "-D")
        self.assertEqual(relayer.getMailFrom(), "c@example.com")
        self.assertEqual(relayer.names, [paths[1]])
        self.assertEqual(body(relayer).read(), b"2\n")
        closeCurrent(relayer)

    def test_publicNames(self) -> None:
        """
        The module exports Twisted's three names, each documented.
        """
        self.assertEqual(sorted(relay.__all__), ["ESMTPRelayer", "RelayerMixin", "SMTPRelayer"])
        for name in relay.__all__:
            self.assertTrue(getattr(relay, name).__doc__.strip())
        self.assertTrue(issubclass(relay.SMTPRelayer, mailclient.smtp.SMTPClient))
        self.assertTrue(issubclass(relay.ESMTPRelayer, mailclient.smtp.ESMTPClient))


class DeliveryTests(TestCase):
    """
    Relayers deliver queued messages byte for byte to a real server and
    remove each from the queue only once the server accepted it.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        self.server = startServer(self)

    @defer.inlineCallbacks
    def _relay(self, relayerClass: Any, *args: Any) -> Any:
        _, paths = fillQueue(
            self.directory,
            [
                ("alice@example.com", "bob@example.org", BINARY_BODY),
                ("alice@example.com", "carol@example.org", b"second\n"),
            ],
        )
        opened: List[Optional[List[str]]] = []
        self.server.atEndOfData = lambda proto: opened.append(openQueueFiles(self.directory))
        relayer = relayerClass(paths, *args)
        yield connectRelayer(self.server, relayer)
        return relayer, paths, opened

    @defer.inlineCallbacks
    def test_smtpRelayerDeliversBytes(self) -> Any:
        """
        L{relay.SMTPRelayer} sends binary and UTF-8 bodies unchanged (but
        for CRLF line endings), then removes both messages from the queue.
        """
        relayer, paths, opened = yield self._relay(relay.SMTPRelayer, b"client.test")
        self.assertEqual(
            [(m.sender, m.recipients, m.data) for m in self.server.messages],
            [
                (b"alice@example.com", [b"bob@example.org"], wire(BINARY_BODY)),
                (b"alice@example.com", [b"carol@example.org"], b"second\r\n"),
            ],
        )
        self.assertEqual(queueFiles(self.directory), [])
        self.assertEqual(relayer.messages, [])
        if opened[0] is not None:
            # While a body was being sent, only that body was open.
            self.assertEqual(
                opened, [[os.path.realpath(p + "-D")] for p in paths]
            )
        self.assertEqual(openQueueFiles(self.directory) or [], [])

    @defer.inlineCallbacks
    def test_esmtpRelayerDeliversBytes(self) -> Any:
        """
        L{relay.ESMTPRelayer} does the same over ESMTP.
        """
        yield self._relay(relay.ESMTPRelayer, None, None, b"client.test")
        self.assertIn(b"EHLO client.test", self.server.commands)
        self.assertEqual(
            [m.data for m in self.server.messages], [wire(BINARY_BODY), b"second\r\n"]
        )
        self.assertEqual(queueFiles(self.directory), [])

    @defer.inlineCallbacks
    def test_refusedMessageStaysQueued(self) -> Any:
        """
        A message the server refuses (5xx to C{RCPT}, 4xx to C{DATA}) stays
        in the queue with its body closed; the others are sent.
        """
        self.server.rcptReplies[b"bob@example.org"] = b"550 5.1.1 no such user"
        self.server.dataReplies[b"carol@example.org"] = b"451 4.3.0 try later"
        queue, paths = fillQueue(
            self.directory,
            [
                ("a@example.com", "bob@example.org", b"1\n"),
                ("a@example.com", "carol@example.org", b"2\n"),
                ("a@example.com", "dan@example.org", b"3\n"),
            ],
        )
        relayer = relay.SMTPRelayer(paths, b"client.test")
        yield connectRelayer(self.server, relayer)
        self.assertEqual(self.server.recipients(), [b"dan@example.org"])
        self.assertEqual(
            queueFiles(self.directory),
            sorted(os.path.basename(p) + s for p in paths[:2] for s in ("-D", "-H")),
        )
        self.assertEqual(openQueueFiles(self.directory) or [], [])

    @defer.inlineCallbacks
    def test_connectionLostMidMessage(self) -> Any:
        """
        When the connection is lost before the server's reply to the body,
        the message stays queued, its body is closed and the error is
        reported through C{sendError}.
        """
        self.server.dataReplies[b"bob@example.org"] = "drop"
        queue, paths = fillQueue(
            self.directory,
            [("a@example.com", "bob@example.org", b"1\n"), ("a@example.com", "carol@example.org", b"2\n")],
        )
        errors: List[Exception] = []
        relayer = relay.SMTPRelayer(paths, b"client.test")
        original = relayer.sendError

        def sendError(exc: Exception) -> None:
            errors.append(exc)
            original(exc)

        relayer.sendError = sendError  # type: ignore[method-assign]
        yield connectRelayer(self.server, relayer)
        self.assertEqual(self.server.messages, [])
        self.assertEqual(len(queueFiles(self.directory)), 4)
        self.assertEqual([type(e) for e in errors], [mailclient.smtp.SMTPConnectError])
        self.assertEqual([m[2] for m in relayer.messages], [None, None])
        self.assertEqual(openQueueFiles(self.directory) or [], [])

    def test_sendErrorClosesBody(self) -> None:
        """
        C{sendError} closes the open body before the connection is closed.
        """
        _, paths = fillQueue(self.directory, [("a@example.com", "b@example.org", b"1\n")])
        relayer = relay.SMTPRelayer(paths, b"client.test")
        relayer.getMailFrom()
        data = body(relayer)
        self.assertFalse(data.closed)
        relayer.transport = None
        relayer.sendError(mailclient.smtp.SMTPProtocolError(-1, b"broken"))
        self.assertTrue(data.closed)
        self.assertEqual(len(queueFiles(self.directory)), 2)


class TwistedRelayerDifferentialTests(TestCase):
    """
    Where Twisted's relayer fails, mailclient's works.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.mkdir(self.directory)

    def test_twistedReadsBodiesAsText(self) -> None:
        """
        Twisted's C{SMTPRelayer} opens bodies in text mode: a UTF-8 body
        comes back as C{str}, which its client's C{transformChunk} cannot
        encode (C{TypeError}); a non-UTF-8 body cannot even be read
        (C{UnicodeDecodeError}).  mailclient's returns the bytes.
        """
        from twisted.mail import relay as twisted_relay

        _, paths = fillQueue(
            self.directory,
            [
                ("a@example.com", "b@example.org", "caf\u00e9\n".encode("utf-8")),
                ("a@example.com", "c@example.org", b"\xff\xfe\n"),
            ],
        )
        twistedRelayer = twisted_relay.SMTPRelayer(paths, b"client.test")
        failures = []
        try:
            for entry in twistedRelayer.messages:
                try:
                    twistedRelayer.transformChunk(entry[2].read())
                except (TypeError, UnicodeDecodeError) as e:
                    failures.append(type(e))
        finally:
            for entry in twistedRelayer.messages:
                entry[2].close()
        self.assertEqual(failures, [TypeError, UnicodeDecodeError])

        ours = relay.SMTPRelayer(paths, b"client.test")
        bodies = []
        while ours.getMailFrom() is not None:
            bodies.append(ours.transformChunk(body(ours).read()))
            dropCurrent(ours)
        self.assertEqual(bodies, ["caf\u00e9\r\n".encode("utf-8"), b"\xff\xfe\r\n"])

    def test_twistedOpensEveryBodyAtOnce(self) -> None:
        """
        Twisted's C{SMTPRelayer} opens every body when it is made, and
        never closes them; mailclient's opens none.
        """
        from twisted.mail import relay as twisted_relay

        if openQueueFiles(self.directory) is None:
            raise SkipTest("needs /proc/self/fd")
        _, paths = fillQueue(
            self.directory,
            [("a@example.com", "%d@example.org" % (i,), b"x\n") for i in range(5)],
        )
        twistedRelayer = twisted_relay.SMTPRelayer(paths, b"client.test")
        try:
            self.assertEqual(len(openQueueFiles(self.directory) or []), 5)
        finally:
            for entry in twistedRelayer.messages:
                entry[2].close()
        relay.SMTPRelayer(paths, b"client.test")
        self.assertEqual(openQueueFiles(self.directory), [])


_LIMITED_CHILD = """
    import json, os, resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    mode, directory, port = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def openFiles():
        count = 0
        for fd in range(64):
            try:
                os.fstat(fd)
            except OSError:
                continue
            count += 1
        return count

    def openQueueFiles():
        if not os.path.isdir("/proc/self/fd"):
            return -1
        prefix = os.path.realpath(directory) + os.sep
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink("/proc/self/fd/" + fd)
                # Message files only (the manager also holds the queue's
                # relaying lock).
                if target.startswith(prefix) and target.endswith(("-D", "-H")):
                    count += 1
            except OSError:
                pass
        return count

    paths = sorted(
        os.path.join(directory, name[:-2])
        for name in os.listdir(directory) if name.endswith("-D")
    )
    result = {"messages": len(paths)}
    if mode == "twisted":
        from twisted.mail import relay
        try:
            relay.SMTPRelayer(paths, b"client.test")
        except OSError as e:
            result["error"] = e.errno
        print(json.dumps(result))
        sys.exit(0)

    from twisted.internet import reactor, protocol
    from mailclient import relay
    from mailclient.relaymanager import Queue, SmartHostSMTPRelayingManager

    peak = [0, 0]

    def watch(cls):
        getMailData = cls.getMailData
        def counting(self):
            data = getMailData(self)
            peak[0] = max(peak[0], openFiles())
            peak[1] = max(peak[1], openQueueFiles())
            return data
        cls.getMailData = counting

    def finish(_=None):
        result["peak"] = peak[0]
        result["peakQueueFiles"] = peak[1]
        result["left"] = len([n for n in os.listdir(directory) if n.endswith("-D")])
        print(json.dumps(result))
        reactor.stop()

    if mode == "relayer":
        watch(relay.SMTPRelayer)
        relayer = relay.SMTPRelayer(paths, b"client.test")
        lost = relayer.connectionLost
        def connectionLost(reason):
            lost(reason)
            reactor.callLater(0, finish)
        relayer.connectionLost = connectionLost
        protocol.ClientCreator(reactor, lambda: relayer).connectTCP("127.0.0.1", port)
    else:
        from mailclient import relaymanager
        watch(relaymanager.SMTPManagedRelayer)
        queue = Queue(directory)
        queue.noisy = False
        manager = SmartHostSMTPRelayingManager(
            queue, maxConnections=4, maxMessagesPerConnection=25,
            smartHost=("127.0.0.1", port),
        )
        def step(_=None):
            d = manager.checkState()
            if d is None and not manager.managed:
                finish()
            elif d is None:
                reactor.callLater(0.05, step)
            else:
                d.addCallback(step)
        step()
    reactor.callLater(120, finish)
    reactor.run()
"""


class OpenFileLimitTests(TestCase):
    """
    Relaying hundreds of messages in a process allowed 64 open files.
    """

    COUNT = 300

    def setUp(self) -> None:
        if resource is None:
            raise SkipTest("needs the resource module")
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        fillQueue(
            self.directory,
            [
                ("sender@example.com", "rcpt%d@example.org" % (i,), b"message %d\n" % (i,) + BINARY_BODY)
                for i in range(self.COUNT)
            ],
        )
        self.server = startServer(self)

    @defer.inlineCallbacks
    def _relayInChild(self, mode: str) -> Any:
        child, _ = spawnPython(_LIMITED_CHILD, mode, self.directory, str(portOf(self.server)))
        reason = yield child.ended
        self.assertIsInstance(reason, ProcessDone, child.err.decode("utf-8", "replace"))
        return json.loads(child.out.decode("ascii").strip().splitlines()[-1])

    @defer.inlineCallbacks
    def test_twistedRunsOutOfFiles(self) -> Any:
        """
        Twisted's C{SMTPRelayer} cannot even be made for 300 messages: it
        opens every body at once and fails with C{EMFILE}.
        """
        import errno

        result = yield self._relayInChild("twisted")
        self.assertEqual(result, {"messages": self.COUNT, "error": errno.EMFILE})

    @defer.inlineCallbacks
    def test_oneRelayerSendsAll(self) -> Any:
        """
        One mailclient C{SMTPRelayer} given all 300 messages sends them all
        over one connection, never holding more than one body open.
        """
        result = yield self._relayInChild("relayer")
        self.assertEqual(result["left"], 0)
        self.assertLess(result["peak"], 16)
        if result["peakQueueFiles"] >= 0:
            self.assertEqual(result["peakQueueFiles"], 1)
        self.assertEqual(len(self.server.messages), self.COUNT)
        self.assertEqual(self.server.connections, 1)
        self.assertEqual(
            sorted(m.recipients[0] for m in self.server.messages),
            sorted(b"rcpt%d@example.org" % (i,) for i in range(self.COUNT)),
        )

    @defer.inlineCallbacks
    def test_managerSendsAll(self) -> Any:
        """
        The relaying manager with four connections of 25 messages relays
        all 300 through a smart host, holding at most one body open per
        connection.
        """
        result = yield self._relayInChild("manager")
        self.assertEqual(result["left"], 0)
        self.assertLess(result["peak"], 20)
        if result["peakQueueFiles"] >= 0:
            self.assertLessEqual(result["peakQueueFiles"], 4)
        self.assertEqual(len(self.server.messages), self.COUNT)
        self.assertEqual(self.server.connections, self.COUNT // 25)
        self.assertLessEqual(self.server.maxActive, 4)
        for message in self.server.messages:
            self.assertTrue(message.data.endswith(wire(BINARY_BODY)))
