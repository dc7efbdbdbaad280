"""
Tests for L{mailclient.smtp.sendmail}.

Most run with a L{MemoryReactorClock}: the connection C{sendmail} asks for
is made by hand to an in-memory transport and driven with scripted replies,
through Twisted's C{sendmail} too where its behaviour is right.  A few use
real loopback servers (implicit TLS, certificate verification).
"""

from __future__ import annotations

import base64
import email.message
import inspect
import io
from typing import Any, List, Optional, Sequence, Tuple

from twisted.internet import defer, error
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.mail import smtp as twisted_smtp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mailclient import smtp as mailclient_smtp
from mailclient._testing.certs import generateCertificates, localCertificates
from mailclient.test.helpers import LOOPBACK, REMOTE, TLSStringTransport, lines, Session
from mailclient.test.helpers_connect import StaticResolver
from mailclient.test.helpers_interop import (
    PASSWORD,
    SENDER,
    TWISTED_MESSAGE,
    TWISTED_RECEIVED,
    USER,
    ClientTracker,
    TrackingReactor,
    startTwistedServer,
)

IMPLEMENTATIONS = {"twisted": twisted_smtp, "mailclient": mailclient_smtp}
BODY = b"Subject: hi\n\n.dot first\nHello."
WIRE_BODY = b"Subject: hi\r\n\r\n..dot first\r\nHello.\r\n.\r\n"


SUCCESS = lines(
    b"220 mx ESMTP",
    b"250-mx\r\n250 HELP",
    b"250 sender ok",
    b"250 recipient ok",
    b"354 go ahead",
    b"250 queued",
    b"250 reset",
    b"221 bye",
)

#: A server that takes 8-bit bodies.
SUCCESS_8BIT = [SUCCESS[0], b"250-mx\r\n250 8BITMIME\r\n"] + SUCCESS[2:]


#: Where the name C{Call} sends to resolves (mailclient; Twisted's sendmail
#: connects to the name).
MX_ADDRESS = "192.0.2.25"


class Call:
    """
    One C{sendmail} call on a memory reactor (whose name resolver gives
    C{mx.example.net} one address, L{MX_ADDRESS}).
    """

    def __init__(self, impl: str, *args: Any, **kw: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.nameResolver = StaticResolver(  # type: ignore[assignment]
            {"mx.example.net": [MX_ADDRESS]})
        kw.setdefault("senderDomainName", "client.example")
        kw.setdefault("port", 2525)
        if not args:
            args = ("mx.example.net", "alice@example.com", ["bob@example.org"], BODY)
        self.d = IMPLEMENTATIONS[impl].sendmail(*args, reactor=self.reactor, **kw)
        self.session: Optional[Session] = None

    @property
    def factory(self) -> Any:
        clients = self.reactor.tcpClients or self.reactor.sslClients
        return clients[-1][2]

    @property
    def connector(self) -> Any:
        return self.reactor.connectors[-1]

    def connect(self, transport: Any = None) -> Session:
        if transport is None:
            transport = TLSStringTransport(peerAddress=LOOPBACK)
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 2525))
        self.session = Session(proto, transport, clock=self.reactor)
        return self.session

    def converse(self, replies: Sequence[bytes], transport: Any = None) -> "Call":
        session = self.connect(transport)
        session.converse(replies)
        if session.lost:
            self.factory.clientConnectionLost(self.connector, session.lostReason)
        return self


class SignatureTests(SynchronousTestCase):
    def test_signature(self) -> None:
        """
        Twisted's parameters, in order, with the same defaults (except the
        reactor, resolved at call time); additions are keyword-only.
        """
        ours = list(inspect.signature(mailclient_smtp.sendmail).parameters.values())
        theirs = list(inspect.signature(twisted_smtp.sendmail).parameters.values())
        self.assertEqual([p.name for p in ours[: len(theirs)]], [p.name for p in theirs])
        for a, b in zip(ours, theirs):
            if a.name != "reactor":
                self.assertEqual(a.default, b.default, a.name)
        for p in ours[len(theirs):]:
            self.assertIn(
                p.kind, (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD), p.name)

    def test_unknownOption(self) -> None:
        """
        An option that is not one of L{ClientSettings}' fails the Deferred
        with a TypeError naming it; nothing is connected.
        """
        from twisted.internet.testing import MemoryReactorClock

        reactor = MemoryReactorClock()
        d = mailclient_smtp.sendmail("mx.example.net", SENDER, ["bob@example.org"], b"x",
                                     reactor=reactor, pipelineing=False)
        self.assertIn("pipelineing", str(self.failureResultOf(d, TypeError).value))
        self.assertEqual(reactor.tcpClients, [])


class DifferentialTests(SynchronousTestCase):
    """
    The same replies through Twisted's C{sendmail} and mailclient's.
    """

    def both(self, replies: Sequence[bytes], *args: Any, **kw: Any) -> Tuple[Call, Call]:
        theirs = Call("twisted", *args, **kw).converse(replies)
        ours = Call("mailclient", *args, **kw).converse(replies)
        self.assertEqual(ours.session.exchange, theirs.session.exchange)  # type: ignore[union-attr]
        return theirs, ours

    def test_bytes(self) -> None:
        theirs, ours = self.both(SUCCESS)
        result = self.successResultOf(ours.d)
        self.assertEqual(result, self.successResultOf(theirs.d))
        self.assertEqual(result, (1, [(b"bob@example.org", 250, b"recipient ok")]))
        self.assertEqual(
            ours.session.commands()[:3],  # type: ignore[union-attr]
            [b"EHLO client.example", b"MAIL FROM:<alice@example.com>", b"RCPT TO:<bob@example.org>"],
        )
        self.assertIn(b"DATA\r\n" + WIRE_BODY + b"RSET\r\n", ours.session.written())  # type: ignore[union-attr]

    def test_file(self) -> None:
        theirs = Call("twisted", "mx.example.net", "alice@example.com", "bob@example.org", io.BytesIO(BODY))
        ours = Call("mailclient", "mx.example.net", "alice@example.com", "bob@example.org", io.BytesIO(BODY))
        theirs.converse(SUCCESS)
        ours.converse(SUCCESS)
        self.assertEqual(ours.session.exchange, theirs.session.exchange)  # type: ignore[union-attr]
        self.assertEqual(self.successResultOf(ours.d), (1, [(b"bob@example.org", 250, b"recipient ok")]))

    def test_emailMessage(self) -> None:
        """
        An email.message.Message is flattened with CRLF line endings: the
        same bytes on the wire as Twisted's LF flattening then conversion.
        """
        msg = email.message.EmailMessage()
        msg["From"] = "alice@example.com"
        msg["Subject"] = "test"
        msg.set_content(".dot\nsecond line\n")
        args = ("mx.example.net", "alice@example.com", ["bob@example.org"], msg)
        theirs, ours = self.both(SUCCESS, *args)
        self.successResultOf(ours.d)
        expected = msg.as_bytes().replace(b"\n", b"\r\n").replace(b"\r\n.dot", b"\r\n..dot")
        self.assertIn(b"DATA\r\n" + expected + b".\r\nRSET", ours.session.written())  # type: ignore[union-attr]

    def test_heloFallback(self) -> None:
        theirs, ours = self.both(lines(b"220 mx", b"502 no EHLO", b"250 hello") + SUCCESS[2:])
        self.assertEqual(ours.session.commands()[:2], [b"EHLO client.example", b"HELO client.example"])  # type: ignore[union-attr]
        self.assertEqual(self.successResultOf(ours.d)[0], 1)

    def test_startTLS(self) -> None:
        """
        STARTTLS is used when offered, with a context verifying smtphost.
        """
        transports = [TLSStringTransport(REMOTE), TLSStringTransport(REMOTE)]
        replies = lines(b"220 mx", b"250-mx\r\n250 STARTTLS", b"220 go", b"250 mx") + SUCCESS[2:]
        theirs = Call("twisted").converse(replies, transports[0])
        ours = Call("mailclient").converse(replies, transports[1])
        self.assertEqual(ours.session.exchange, theirs.session.exchange)  # type: ignore[union-attr]
        [ctx1], [ctx2] = transports[0].tlsStarted, transports[1].tlsStarted
        self.assertEqual(ctx2._hostnameASCII, ctx1._hostnameASCII)
        self.assertEqual(ctx2._hostnameASCII, "mx.example.net")
        self.assertEqual(self.successResultOf(ours.d)[0], 1)

    def test_allRefused(self) -> None:
        replies = lines(b"220 mx", b"250 mx", b"250 ok", b"550 unknown", b"250 reset", b"221 bye")
        theirs, ours = self.both(replies)
        e1 = self.failureResultOf(theirs.d, twisted_smtp.SMTPDeliveryError).value
        e2 = self.failureResultOf(ours.d, mailclient_smtp.SMTPDeliveryError).value
        self.assertEqual((e2.code, e2.resp, e2.log), (e1.code, e1.resp, e1.log))
        self.assertIn(b"bob@example.org: 550 unknown", e2.log)

    def test_authLogin(self) -> None:
        """
        With a password and loopback peer, LOGIN is used (CRAM-MD5 not
        offered): the same bytes as Twisted.
        """
        replies = lines(
            b"220 mx", b"250-mx\r\n250 AUTH LOGIN", b"334 VXNlcm5hbWU6", b"334 UGFzc3dvcmQ6", b"235 ok"
        ) + SUCCESS[2:]
        theirs, ours = self.both(replies, username="alice", password="Sup3r-secret")
        self.assertEqual(ours.session.commands()[1:4], [b"AUTH LOGIN", base64.b64encode(USER), base64.b64encode(PASSWORD)])  # type: ignore[union-attr]
        self.assertEqual(self.successResultOf(ours.d)[0], 1)

    def test_cancelBeforeConnection(self) -> None:
        for impl in ["twisted", "mailclient"]:
            call = Call(impl)
            call.d.cancel()
            self.failureResultOf(call.d, defer.CancelledError)
            self.assertTrue(call.connector._disconnected, impl)

    def test_cancelDuringConversation(self) -> None:
        for impl in ["twisted", "mailclient"]:
            call = Call(impl)
            session = call.connect()
            session.converse(SUCCESS[:3])
            call.d.cancel()
            self.failureResultOf(call.d, defer.CancelledError)
            self.assertTrue(session.aborted, impl)
            session.settle()
            call.factory.clientConnectionLost(call.connector, session.lostReason)
            self.assertFalse(call.connector._disconnected)
            self.assertEqual(call.reactor.getDelayedCalls(), [], impl)


class SendmailTests(SynchronousTestCase):
    """
    mailclient additions and fixes.
    """

    def test_str(self) -> None:
        """
        A str message is sent as UTF-8 (declared 8BITMIME), with CRLF.
        """
        call = Call("mailclient", "mx.example.net", "alice@example.com", ["bob@example.org"], "Subject: caf\u00e9\n\nhi")
        call.converse(SUCCESS_8BIT)
        self.successResultOf(call.d)
        self.assertIn(b"DATA\r\nSubject: caf\xc3\xa9\r\n\r\nhi\r\n.\r\n", call.session.written())  # type: ignore[union-attr]

    def test_textFile(self) -> None:
        call = Call(
            "mailclient", "mx.example.net", "alice@example.com", ["bob@example.org"],
            io.StringIO("Subject: caf\u00e9\n\n.x\n"),
        )
        call.converse(SUCCESS_8BIT)
        self.successResultOf(call.d)
        self.assertIn(b"DATA\r\nSubject: caf\xc3\xa9\r\n\r\n..x\r\n.\r\n", call.session.written())  # type: ignore[union-attr]

    def test_quietFactory(self) -> None:
        """
        A sender factory logs nothing when it starts and stops; Twisted's
        logs a line each ("Starting factory ..."), for every message.
        """
        from twisted.logger import globalLogPublisher

        events: List[Any] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        counts = []
        for module in (mailclient_smtp, twisted_smtp):
            factory = module.ESMTPSenderFactory(
                None, None, "a@example.com", ["b@example.org"], io.BytesIO(b"x"),
                defer.Deferred(), requireTransportSecurity=False, requireAuthentication=False,
            )
            before = len(events)
            factory.doStart()
            factory.doStop()
            counts.append(len(events) - before)
        self.assertEqual(counts, [0, 2])

    def test_cancelPendingRetry(self) -> None:
        """
        cancel() while a retry is waiting cancels the delayed call.
        """
        call = Call("mailclient")
        for _ in range(2):
            call.factory.clientConnectionFailed(call.connector, Failure(error.ConnectionLost()))
        self.assertEqual(len(call.reactor.getDelayedCalls()), 1)
        # The first retry (at once) made a second attempt.
        self.assertEqual(len(call.reactor.tcpClients), 2)
        call.d.cancel()
        self.failureResultOf(call.d, defer.CancelledError)
        self.assertEqual(call.reactor.getDelayedCalls(), [])
        call.reactor.advance(1000)
        self.assertEqual(len(call.reactor.tcpClients), 2)

    def test_retryUsesGivenReactor(self) -> None:
        """
        Retries run on the given reactor: the first at once, the next after
        the policy's delay; each connects to the host's addresses again.
        """
        call = Call("mailclient", retries=2)
        connects: List[float] = []
        connectTCP = call.reactor.connectTCP

        def recordingConnectTCP(*args: Any, **kw: Any) -> Any:
            connects.append(call.reactor.seconds())
            return connectTCP(*args, **kw)

        call.reactor.connectTCP = recordingConnectTCP  # type: ignore[method-assign]
        call.reactor.advance(5)
        for _ in range(2):
            call.factory.clientConnectionFailed(call.connector, Failure(error.ConnectionLost()))
        self.assertNoResult(call.d)
        [delayed] = call.reactor.getDelayedCalls()
        delay = call.factory.settings.retry.delay
        self.assertEqual(delayed.getTime(), 5 + delay)
        self.assertEqual(connects, [5])
        call.reactor.advance(delay)
        self.assertEqual(connects, [5, 5 + delay])
        self.assertEqual([c[0] for c in call.reactor.tcpClients], [MX_ADDRESS] * 3)
        call.factory.clientConnectionFailed(call.connector, Failure(error.ConnectionLost()))
        self.failureResultOf(call.d, mailclient_smtp.SMTPConnectError)

    def test_defaultTimeout(self) -> None:
        """
        By default the greeting is awaited 300 s (RFC 5321 per-phase
        limits), on the given reactor.
        """
        call = Call("mailclient", retries=0)
        self.assertIsNone(call.factory.timeout)
        self.assertEqual(call.factory.timeouts, mailclient_smtp.Timeouts())
        proto = call.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 25))
        transport = StringTransport(peerAddress=LOOPBACK)
        proto.makeConnection(transport)
        try:
            self.assertEqual([c.getTime() for c in call.reactor.getDelayedCalls()], [300])
            call.reactor.advance(300)
            self.failureResultOf(call.d, mailclient_smtp.SMTPTimeoutError)
            self.assertTrue(transport.disconnecting)
        finally:
            proto.setTimeout(None)

    def test_timeoutNone(self) -> None:
        call = Call("mailclient", timeout=None)
        session = call.connect()
        session.converse(SUCCESS[:2])
        call.reactor.advance(100000)
        self.assertNoResult(call.d)
        call.d.cancel()
        self.failureResultOf(call.d, defer.CancelledError)

    def test_timeout(self) -> None:
        """
        A timeout is retried (as in Twisted); the last one fails the
        Deferred with SMTPTimeoutError.
        """
        call = Call("mailclient", timeout=20, retries=1)
        for attempt in range(2):
            session = call.connect()
            session.converse(SUCCESS[:3])
            call.reactor.advance(19)
            self.assertNoResult(call.d)
            call.reactor.advance(1)
            self.assertTrue(session.aborted or session.closed)
            session.settle()
            call.factory.clientConnectionLost(call.connector, session.lostReason)
            if attempt == 0:
                self.assertNoResult(call.d)
        err = self.failureResultOf(call.d, mailclient_smtp.SMTPTimeoutError).value
        self.assertIn(b"Timeout", err.resp)
        self.assertEqual(call.reactor.getDelayedCalls(), [])

    def test_implicitTLS(self) -> None:
        """
        Port 465 speaks TLS from the first byte (to each address of the
        host), verifying the certificate for the host's name.
        """
        ctx = object()
        call = Call("mailclient", port=465)
        self.assertEqual(len(call.reactor.sslClients), 1)
        self.assertEqual(call.reactor.sslClients[0][:2], (MX_ADDRESS, 465))
        self.assertEqual(call.reactor.sslClients[0][3]._hostnameASCII, "mx.example.net")
        call = Call("mailclient", port=2465, implicitTLS=True, contextFactory=ctx)
        self.assertEqual(call.reactor.sslClients[0][:4][1:], (2465, call.factory, ctx))
        self.assertEqual(call.reactor.tcpClients, [])
        call = Call("mailclient", port=465, implicitTLS=False)
        self.assertEqual(call.reactor.sslClients, [])
        self.assertEqual(call.reactor.tcpClients[0][:2], (MX_ADDRESS, 465))

    def test_implicitTLSSkipsStartTLS(self) -> None:
        call = Call("mailclient", port=465)
        call.converse(
            lines(b"220 mx", b"250-mx\r\n250 STARTTLS") + SUCCESS[2:],
            TLSStringTransport(REMOTE, tls=True),
        )
        self.assertNotIn(b"STARTTLS", call.session.commands())  # type: ignore[union-attr]
        self.assertEqual(self.successResultOf(call.d)[0], 1)

    def test_authenticators(self) -> None:
        call = Call(
            "mailclient",
            username="alice",
            password="ignored",
            authenticators=[mailclient_smtp.OAUTHBEARERAuthenticator("alice", lambda: "tok")],
        )
        call.converse(lines(b"220 mx", b"250-mx\r\n250 AUTH PLAIN OAUTHBEARER", b"235 ok") + SUCCESS[2:])
        self.assertEqual(
            call.session.commands()[1],  # type: ignore[union-attr]
            b"AUTH OAUTHBEARER " + base64.b64encode(b"n,a=alice,\x01auth=Bearer tok\x01\x01"),
        )
        self.assertEqual(self.successResultOf(call.d)[0], 1)

    def test_cleartextRefusedRemote(self) -> None:
        call = Call("mailclient", username="alice", password="Sup3r-secret")
        call.converse(lines(b"220 mx", b"250-mx\r\n250 AUTH PLAIN", b"221 bye"), TLSStringTransport(REMOTE))
        err = self.failureResultOf(call.d, mailclient_smtp.AUTHRequiredError).value
        self.assertIn(b"unencrypted", err.resp)
        self.assertNotIn(b"AUTH", call.session.written())  # type: ignore[union-attr]

    def test_cleartextAllowed(self) -> None:
        call = Call("mailclient", username="alice", password="Sup3r-secret", allowCleartextAuthentication=True)
        call.converse(lines(b"220 mx", b"250-mx\r\n250 AUTH PLAIN", b"235 ok") + SUCCESS[2:], TLSStringTransport(REMOTE))
        self.assertEqual(call.session.commands()[1], b"AUTH PLAIN " + base64.b64encode(b"\0alice\0Sup3r-secret"))  # type: ignore[union-attr]
        self.assertEqual(self.successResultOf(call.d)[0], 1)

    def test_invalidAddress(self) -> None:
        """
        A recipient that is not one address fails at once, without
        connecting.
        """
        call = Call("mailclient", "mx.example.net", "alice@example.com", ["bob@example.org\r\nRCPT TO:<x@y>"], BODY)
        self.failureResultOf(call.d, mailclient_smtp.InvalidAddressError)
        self.assertEqual(call.reactor.tcpClients, [])

    def test_nonAsciiRecipient(self) -> None:
        call = Call("mailclient", "mx.example.net", "alice@example.com", ["j\u00f6rg@example.org"], BODY)
        call.converse(SUCCESS[:3] + lines(b"221 bye"))
        err = self.failureResultOf(call.d, mailclient_smtp.InvalidAddressError).value
        self.assertIn("SMTPUTF8", str(err))
        self.assertFalse([c for c in call.session.commands() if c.startswith(b"RCPT")])  # type: ignore[union-attr]


class RealServerTests(TestCase):
    """
    sendmail to loopback servers.
    """

    def setUp(self) -> None:
        self.tracker = ClientTracker()
        self.reactor = TrackingReactor(self.tracker)

    @defer.inlineCallbacks
    def test_implicitTLS(self) -> Any:
        certs = localCertificates()
        server = startTwistedServer(
            self, self.tracker, implicitTLSOptions=certs.serverOptions(), mechanisms=(b"PLAIN",), requireAuth=True
        )
        result = yield mailclient_smtp.sendmail(
            "127.0.0.1",
            SENDER,
            ["bob@example.org"],
            TWISTED_MESSAGE,
            port=server.portNumber,
            reactor=self.reactor,
            username=USER,
            password=PASSWORD,
            implicitTLS=True,
            contextFactory=certs.clientOptions("localhost"),
            retries=0,
        )
        self.assertEqual(result, (1, [(b"bob@example.org", 250, b"Recipient address accepted")]))
        self.assertEqual([c[0] for c in self.reactor.connections], ["SSL"])
        self.assertEqual(server.logins, [USER])
        self.assertNotIn(b"STARTTLS", server.commands)
        self.assertEqual(server.received, [(SENDER, "bob@example.org", TWISTED_RECEIVED)])

    @defer.inlineCallbacks
    def test_implicitTLSUntrusted(self) -> Any:
        """
        The default context for implicit TLS verifies smtphost.
        """
        server = startTwistedServer(
            self, self.tracker, implicitTLSOptions=generateCertificates().serverOptions(), mechanisms=()
        )
        d = mailclient_smtp.sendmail(
            "localhost", SENDER, ["bob@example.org"], TWISTED_MESSAGE,
            port=server.portNumber, reactor=self.reactor, implicitTLS=True, retries=0,
        )
        err = yield self.assertFailure(d, mailclient_smtp.TLSError)
        self.assertIn("verif", str(err))
        self.assertEqual(server.received, [])

    @defer.inlineCallbacks
    def test_startTLSUntrusted(self) -> Any:
        server = startTwistedServer(
            self, self.tracker, startTLSOptions=generateCertificates().serverOptions(), mechanisms=()
        )
        d = mailclient_smtp.sendmail(
            "localhost", SENDER, ["bob@example.org"], TWISTED_MESSAGE,
            port=server.portNumber, reactor=self.reactor, retries=0,
        )
        err = yield self.assertFailure(d, mailclient_smtp.TLSError)
        self.assertIn("verif", str(err))
        self.assertEqual(server.received, [])

    @defer.inlineCallbacks
    def test_cancelRealConnection(self) -> Any:
        """
        cancel() while connected to a server that never answers drops the
        connection at once: no retry, no later outcome.
        """
        from twisted.internet import protocol, reactor

        class Silent(protocol.Protocol):
            pass

        serverConnections: List[Any] = []

        class SilentFactory(protocol.Factory):
            def buildProtocol(self, addr: Any) -> Any:
                p = Silent()
                serverConnections.append(p)
                return p

        port = reactor.listenTCP(0, SilentFactory(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        def closeServerSide() -> None:
            for p in serverConnections:
                if p.transport is not None:
                    p.transport.abortConnection()

        self.addCleanup(closeServerSide)
        d = mailclient_smtp.sendmail(
            "127.0.0.1", SENDER, ["bob@example.org"], TWISTED_MESSAGE,
            port=port.getHost().port, reactor=self.reactor, retries=3,
        )
        factory = self.reactor.factories[0]
        for _ in range(500):
            current = factory.currentProtocol
            if current is not None and current.transport is not None:
                break
            yield deferLater(0.01)
        self.assertFalse(d.called)
        d.cancel()
        yield self.assertFailure(d, defer.CancelledError)
        yield self.tracker.whenIdle()
        self.assertEqual(self.tracker.started, 1)
        self.assertEqual(self.tracker.ended, 1)
        self.assertIsNone(factory._mailclient.retryCall)


def deferLater(delay: float) -> defer.Deferred:
    from twisted.internet import reactor, task

    return task.deferLater(reactor, delay, lambda: None)
