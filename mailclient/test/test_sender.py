"""
Tests for L{mailclient.smtp.SenderMixin}, L{SMTPSender},
L{SMTPSenderFactory}, L{ESMTPSender} and L{ESMTPSenderFactory}.

Scripted conversations over a L{StringTransport} are compared with
Twisted's factories; mailclient's fixes (default certificate verification,
retry backoff, single outcome, address and message checks) are tested
against the scripted transport and, for TLS, real loopback servers.
"""

from __future__ import annotations

import inspect
import io
from typing import Any, List, Optional, Sequence, Tuple

from twisted.internet import defer, error, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import Clock
from twisted.mail import smtp as twisted_smtp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mailclient import smtp as mailclient_smtp
from mailclient._testing.certs import generateCertificates, localCertificates
from mailclient.test.helpers import LOOPBACK, REMOTE, TLSStringTransport, lines, Session, trustCA
from mailclient.test.helpers_interop import (
    PASSWORD,
    SENDER,
    TWISTED_MESSAGE,
    TWISTED_RECEIVED,
    USER,
    ClientTracker,
    startTwistedServer,
)

IMPLEMENTATIONS = {"twisted": twisted_smtp, "mailclient": mailclient_smtp}
IDENTITY = b"client.example"

BODY = b"Subject: hi\n\nHello.\n"
ADDR = IPv4Address("TCP", "127.0.0.1", 25)


class FakeConnector:
    """
    A connector whose C{connect} records the position of the factory's
    file at the time it is called.
    """

    def __init__(self, host: str = "mx.example.net", port: int = 25) -> None:
        self.destination = IPv4Address("TCP", host, port)
        self.connects: List[Optional[int]] = []
        self.factory: Any = None
        self.disconnects = 0

    def getDestination(self) -> IPv4Address:
        return self.destination

    def connect(self) -> None:
        f = getattr(self.factory, "file", None)
        self.connects.append(f.tell() if f is not None else None)

    def disconnect(self) -> None:
        self.disconnects += 1

    def stopConnecting(self) -> None:
        pass


PLAIN_SUCCESS = lines(
    b"220 mx ESMTP",
    b"250 mx",
    b"250 sender ok",
    b"250 recipient ok",
    b"354 go ahead",
    b"250 queued",
    b"250 reset",
    b"221 bye",
)

ESMTP_SUCCESS = lines(
    b"220 mx ESMTP",
    b"250-mx\r\n250 AUTH LOGIN PLAIN",
    b"334 VXNlcm5hbWU6",
    b"334 UGFzc3dvcmQ6",
    b"235 ok",
    b"250 sender ok",
    b"250 recipient ok",
    b"354 go ahead",
    b"250 queued",
    b"250 reset",
    b"221 bye",
)


class Run:
    """
    One factory, one protocol, one scripted session.
    """

    def __init__(
        self,
        impl: str,
        esmtp: bool = False,
        recipients: Any = ("bob@example.org",),
        body: Any = BODY,
        transport: Any = None,
        clock: Optional[Clock] = None,
        **kw: Any,
    ) -> None:
        module = IMPLEMENTATIONS[impl]
        self.d: defer.Deferred = defer.Deferred()
        self.file = io.BytesIO(body) if isinstance(body, bytes) else body
        kw.setdefault("retries", 0)
        if esmtp:
            self.factory = module.ESMTPSenderFactory(
                kw.pop("username", USER),
                kw.pop("password", PASSWORD),
                "alice@example.com",
                list(recipients) if not isinstance(recipients, str) else recipients,
                self.file,
                self.d,
                **kw,
            )
        else:
            self.factory = module.SMTPSenderFactory(
                "alice@example.com",
                list(recipients) if not isinstance(recipients, str) else recipients,
                self.file,
                self.d,
                **kw,
            )
        self.factory.domain = IDENTITY
        self.connector = FakeConnector()
        self.connector.factory = self.factory
        self.clock = clock if clock is not None else Clock()
        self.transport = transport
        self.session: Optional[Session] = None

    def connect(self) -> Session:
        if self.transport is None:
            self.transport = TLSStringTransport(peerAddress=LOOPBACK, tls=True)
        proto = self.factory.buildProtocol(ADDR)
        self.session = Session(proto, self.transport, self.clock)
        return self.session

    def converse(self, replies: Sequence[bytes]) -> "Run":
        session = self.connect()
        session.converse(replies)
        if session.lost:
            self.factory.clientConnectionLost(self.connector, session.lostReason)
        return self


class SignatureTests(SynchronousTestCase):
    """
    Constructors take Twisted's arguments, in Twisted's order, with
    Twisted's defaults.
    """

    def assertSameParameters(self, ours: Any, theirs: Any) -> None:
        p1 = list(inspect.signature(ours).parameters.values())
        p2 = list(inspect.signature(theirs).parameters.values())
        self.assertEqual(
            [(p.name, p.default, p.kind) for p in p1[: len(p2)]],
            [(p.name, p.default, p.kind) for p in p2],
        )
        # Additions are keyword-only (or the options of ClientSettings), so
        # positional calls mean the same.
        for p in p1[len(p2):]:
            self.assertIn(
                p.kind, (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD), p.name)

    def test_smtpSenderFactory(self) -> None:
        self.assertSameParameters(
            mailclient_smtp.SMTPSenderFactory.__init__, twisted_smtp.SMTPSenderFactory.__init__
        )

    def test_esmtpSenderFactory(self) -> None:
        self.assertSameParameters(
            mailclient_smtp.ESMTPSenderFactory.__init__, twisted_smtp.ESMTPSenderFactory.__init__
        )

    def test_esmtpSender(self) -> None:
        self.assertSameParameters(
            mailclient_smtp.ESMTPSender.__init__, twisted_smtp.ESMTPSender.__init__
        )

    def test_classes(self) -> None:
        self.assertIs(mailclient_smtp.SMTPSenderFactory.protocol, mailclient_smtp.SMTPSender)
        self.assertIs(mailclient_smtp.ESMTPSenderFactory.protocol, mailclient_smtp.ESMTPSender)
        self.assertTrue(issubclass(mailclient_smtp.SMTPSender, mailclient_smtp.SenderMixin))
        self.assertTrue(issubclass(mailclient_smtp.SMTPSender, mailclient_smtp.SMTPClient))
        self.assertTrue(issubclass(mailclient_smtp.ESMTPSender, mailclient_smtp.ESMTPClient))
        self.assertTrue(
            issubclass(mailclient_smtp.ESMTPSenderFactory, mailclient_smtp.SMTPSenderFactory)
        )
        self.assertTrue(mailclient_smtp.ESMTPSender.requireAuthentication)
        self.assertTrue(mailclient_smtp.ESMTPSender.requireTransportSecurity)


class FactoryAttributeTests(SynchronousTestCase):
    def test_attributes(self) -> None:
        d: defer.Deferred = defer.Deferred()
        f = io.BytesIO(BODY)
        factory = mailclient_smtp.SMTPSenderFactory(
            "alice@example.com", ["bob@example.org", "carol@example.org"], f, d, retries=3, timeout=7
        )
        self.assertIs(factory.result, d)
        self.assertIs(factory.file, f)
        self.assertFalse(factory.sendFinished)
        self.assertIsNone(factory.currentProtocol)
        self.assertEqual(factory.toEmail, [b"bob@example.org", b"carol@example.org"])
        self.assertEqual(str(factory.fromEmail), "alice@example.com")
        self.assertEqual(factory.nEmails, 2)
        self.assertEqual(factory.retries, -3)
        self.assertEqual(factory.timeout, 7)
        self.assertIsInstance(factory.domain, bytes)
        self.assertEqual(factory.domain, twisted_smtp.DNSNAME)

    def test_singleRecipientString(self) -> None:
        """
        A single address as a string is one recipient (str or bytes).
        """
        for to in ["bob@example.org", b"bob@example.org"]:
            factory = mailclient_smtp.SMTPSenderFactory(
                "alice@example.com", to, io.BytesIO(), defer.Deferred()
            )
            self.assertEqual(factory.toEmail, [b"bob@example.org"])

    def test_buildProtocol(self) -> None:
        d: defer.Deferred = defer.Deferred()
        factory = mailclient_smtp.SMTPSenderFactory(
            "alice@example.com", ["bob@example.org"], io.BytesIO(BODY), d, timeout=9
        )
        factory.domain = IDENTITY
        p = factory.buildProtocol(ADDR)
        self.assertIsInstance(p, mailclient_smtp.SMTPSender)
        self.assertIs(p.factory, factory)
        self.assertIs(factory.currentProtocol, p)
        self.assertEqual(p.timeout, 9)
        self.assertEqual(p.identity, IDENTITY)

    def test_esmtpBuildProtocol(self) -> None:
        ctx = object()
        factory = mailclient_smtp.ESMTPSenderFactory(
            USER,
            PASSWORD,
            "alice@example.com",
            ["bob@example.org"],
            io.BytesIO(BODY),
            defer.Deferred(),
            contextFactory=ctx,
            heloFallback=True,
            requireAuthentication=False,
            requireTransportSecurity=False,
        )
        p = factory.buildProtocol(ADDR)
        self.assertIsInstance(p, mailclient_smtp.ESMTPSender)
        self.assertIs(p.context, ctx)
        self.assertTrue(p.heloFallback)
        self.assertFalse(p.requireAuthentication)
        self.assertFalse(p.requireTransportSecurity)
        self.assertEqual(p.secret, PASSWORD)
        self.assertEqual(p.username, USER)
        self.assertEqual(
            [a.getName() for a in p.authenticators], [b"CRAM-MD5", b"LOGIN", b"PLAIN"]
        )

    def test_esmtpDefaults(self) -> None:
        factory = mailclient_smtp.ESMTPSenderFactory(
            USER, PASSWORD, "alice@example.com", ["bob@example.org"], io.BytesIO(), defer.Deferred(),
            contextFactory=object(),
        )
        p = factory.buildProtocol(ADDR)
        self.assertFalse(p.heloFallback)
        self.assertTrue(p.requireAuthentication)
        self.assertTrue(p.requireTransportSecurity)

    def test_resultAndProtocolForgottenWhenDone(self) -> None:
        run = Run("mailclient").converse(PLAIN_SUCCESS)
        self.successResultOf(run.d)
        self.assertTrue(run.factory.sendFinished)
        self.assertIsNone(run.factory.currentProtocol)
        self.assertFalse(hasattr(run.factory, "result"))


class DifferentialTests(SynchronousTestCase):
    """
    The same conversations through Twisted's and mailclient's factories: the
    same bytes on the wire and the same results.
    """

    def both(self, replies: Sequence[bytes], **kw: Any) -> Tuple[Run, Run]:
        theirs = Run("twisted", **kw).converse(replies)
        ours = Run("mailclient", **kw).converse(replies)
        assert theirs.session is not None and ours.session is not None
        self.assertEqual(ours.session.exchange, theirs.session.exchange)
        return theirs, ours

    def test_success(self) -> None:
        replies = PLAIN_SUCCESS[:4] + lines(b"251 will forward") + PLAIN_SUCCESS[4:]
        theirs, ours = self.both(replies, recipients=["bob@example.org", "carol@example.org"])
        result = self.successResultOf(ours.d)
        self.assertEqual(result, self.successResultOf(theirs.d))
        self.assertEqual(
            result,
            (2, [(b"bob@example.org", 250, b"recipient ok"), (b"carol@example.org", 251, b"will forward")]),
        )

    def test_esmtpSuccess(self) -> None:
        """
        ESMTPSenderFactory on a TLS transport with AUTH LOGIN.
        """
        theirs = Run("twisted", esmtp=True, transport=TLSStringTransport(LOOPBACK, tls=True)).converse(ESMTP_SUCCESS)
        ours = Run("mailclient", esmtp=True, transport=TLSStringTransport(LOOPBACK, tls=True)).converse(ESMTP_SUCCESS)
        self.assertEqual(ours.session.exchange, theirs.session.exchange)  # type: ignore[union-attr]
        result = self.successResultOf(ours.d)
        self.assertEqual(result, self.successResultOf(theirs.d))
        self.assertEqual(result, (1, [(b"bob@example.org", 250, b"recipient ok")]))

    def assertSameDeliveryError(self, theirs: Run, ours: Run) -> Any:
        e1 = self.failureResultOf(theirs.d, twisted_smtp.SMTPDeliveryError).value
        e2 = self.failureResultOf(ours.d, mailclient_smtp.SMTPDeliveryError).value
        self.assertEqual((e2.code, e2.resp, e2.log, e2.addresses), (e1.code, e1.resp, e1.log, e1.addresses))
        self.assertEqual(str(e2), str(e1))
        return e2

    def test_someRecipientsRefused(self) -> None:
        replies = lines(
            b"220 mx", b"250 mx", b"250 ok", b"550 no such user", b"250 ok", b"354 go", b"250 queued",
            b"250 reset", b"221 bye",
        )
        theirs, ours = self.both(replies, recipients=["nobody@example.org", "bob@example.org"])
        result = self.successResultOf(ours.d)
        self.assertEqual(result, self.successResultOf(theirs.d))
        self.assertEqual(
            result,
            (1, [(b"nobody@example.org", 550, b"no such user"), (b"bob@example.org", 250, b"ok")]),
        )

    def test_allRecipientsRefused(self) -> None:
        replies = lines(b"220 mx", b"250 mx", b"250 ok", b"550 no such user", b"551 not here", b"250 reset", b"221 bye")
        theirs, ours = self.both(replies, recipients=["a@example.org", "b@example.org"])
        error = self.assertSameDeliveryError(theirs, ours)
        self.assertIn(b"a@example.org: 550 no such user", error.log)
        self.assertIn(b"b@example.org: 551 not here", error.log)
        self.assertIn(b"<<< 551 not here", error.log)

    def test_refusedAtEndOfData(self) -> None:
        replies = lines(
            b"220 mx", b"250 mx", b"250 ok", b"250 ok", b"354 go", b"554 spam", b"250 reset", b"221 bye"
        )
        theirs, ours = self.both(replies)
        error = self.assertSameDeliveryError(theirs, ours)
        self.assertEqual((error.code, error.resp), (554, b"spam"))

    def test_senderRefused(self) -> None:
        replies = lines(b"220 mx", b"250 mx", b"553 bad sender", b"250 reset", b"221 bye")
        theirs, ours = self.both(replies)
        error = self.assertSameDeliveryError(theirs, ours)
        self.assertEqual(error.code, 553)

    def test_greetingRefused(self) -> None:
        """
        A 554 greeting: SMTPConnectError 554 (fatal: the connection is
        closed without QUIT).
        """
        replies = lines(b"554 go away", b"221 bye")
        theirs, ours = self.both(replies)
        e1 = self.failureResultOf(theirs.d, twisted_smtp.SMTPConnectError).value
        e2 = self.failureResultOf(ours.d, mailclient_smtp.SMTPConnectError).value
        self.assertEqual((e2.code, e2.resp), (e1.code, e1.resp))
        self.assertEqual(ours.session.commands(), [])  # type: ignore[union-attr]
        self.assertTrue(ours.session.closed)  # type: ignore[union-attr]

    def test_retryAfterTemporaryGreeting(self) -> None:
        """
        A 421 greeting with retries left: no result, QUIT, and a new
        connection (after the delay for mailclient); the file is rewound
        before it.
        """
        results = {}
        for impl in ["twisted", "mailclient"]:
            clock = Clock()
            run = Run(impl, retries=1, clock=clock)
            run.factory.reactor = clock
            run.file.read(5)
            run.converse(lines(b"421 busy", b"221 bye"))
            self.assertNoResult(run.d)
            # The first retry goes at once, in both.
            self.assertEqual(run.connector.connects, [0], impl)
            self.assertEqual(clock.getDelayedCalls(), [], impl)
            # The second attempt fails too: no retries left.
            run.session = None
            run.transport = None
            run.converse(lines(b"421 busy", b"221 bye"))
            results[impl] = self.failureResultOf(run.d).value
        self.assertEqual(
            (results["mailclient"].code, results["mailclient"].resp),
            (results["twisted"].code, results["twisted"].resp),
        )
        self.assertEqual(results["mailclient"].code, 421)

    def test_connectionFailedRetries(self) -> None:
        """
        Connection failures are retried C{retries} times, then the Deferred
        fails with SMTPConnectError naming the reason.
        """
        results = {}
        for impl in ["twisted", "mailclient"]:
            clock = Clock()
            run = Run(impl, retries=2)
            run.factory.reactor = clock
            for _ in range(3):
                run.factory.clientConnectionFailed(run.connector, Failure(error.ConnectionRefusedError()))
                clock.advance(1000)
            self.assertEqual(len(run.connector.connects), 2, impl)
            results[impl] = self.failureResultOf(run.d).value
        if __import__("twisted").version.major >= 26:
            # (Older Twisted gives the bare reason.)
            self.assertEqual(str(results["mailclient"]), str(results["twisted"]))
        self.assertEqual(
            str(results["mailclient"]),
            "Unable to connect to SMTP server: Connection was refused by other side.",
        )
        self.assertIsInstance(results["mailclient"], mailclient_smtp.SMTPConnectError)
        self.assertIn("Connection was refused", str(results["mailclient"]))

    def test_connectionLostAfterResultIgnored(self) -> None:
        for impl in ["twisted", "mailclient"]:
            run = Run(impl, retries=3).converse(PLAIN_SUCCESS)
            self.successResultOf(run.d)
            run.factory.clientConnectionLost(run.connector, Failure(error.ConnectionDone()))
            self.assertEqual(run.connector.connects, [], impl)


class RetryTests(SynchronousTestCase):
    """
    mailclient's retries follow the settings' L{RetryPolicy}: the first at
    once, as in Twisted, then with exponential backoff on the factory's
    clock; a refused connection is retried at once every time.
    """

    LOST = error.ConnectionLost("reset by peer")

    def failAttempts(self, run: "Run", clock: Clock, count: int, reason: Exception) -> List[float]:
        """
        Fail C{count} attempts with C{reason}; return the wait before each
        retry that followed.
        """
        waits = []
        for _ in range(count):
            before = len(run.connector.connects)
            run.factory.clientConnectionFailed(run.connector, Failure(reason))
            calls = clock.getDelayedCalls()
            if len(run.connector.connects) > before:
                self.assertEqual(calls, [])
                waits.append(0.0)
                continue
            [call] = calls
            wait = call.getTime() - clock.seconds()
            clock.advance(wait / 2)
            self.assertEqual(len(run.connector.connects), before)
            clock.advance(wait / 2)
            self.assertEqual(len(run.connector.connects), before + 1)
            waits.append(wait)
        return waits

    def test_backoff(self) -> None:
        clock = Clock()
        run = Run("mailclient", retries=4, retry=mailclient_smtp.RetryPolicy(delay=2.0))
        run.factory.reactor = clock
        self.assertEqual(self.failAttempts(run, clock, 4, self.LOST), [0.0, 2.0, 4.0, 8.0])
        run.factory.clientConnectionFailed(run.connector, Failure(self.LOST))
        self.assertEqual(clock.getDelayedCalls(), [])
        self.failureResultOf(run.d, mailclient_smtp.SMTPConnectError)

    def test_refusedRetriedAtOnce(self) -> None:
        """
        A refused connection is a definite answer: retried at once, so a
        refused port fails in no time, as in Twisted.
        """
        clock = Clock()
        run = Run("mailclient", retries=5)
        run.factory.reactor = clock
        waits = self.failAttempts(run, clock, 5, error.ConnectionRefusedError())
        self.assertEqual(waits, [0.0] * 5)
        run.factory.clientConnectionFailed(run.connector, Failure(error.ConnectionRefusedError()))
        self.assertEqual(clock.seconds(), 0)
        self.failureResultOf(run.d, mailclient_smtp.SMTPConnectError)

    def test_maxDelay(self) -> None:
        clock = Clock()
        run = Run("mailclient", retries=10, retry=mailclient_smtp.RetryPolicy(maxDelay=3.0))
        run.factory.reactor = clock
        waits = self.failAttempts(run, clock, 6, self.LOST)
        self.assertEqual(waits, [0.0, 1.0, 2.0, 3.0, 3.0, 3.0])
        self.assertEqual(len(run.connector.connects), 6)

    def test_deadline(self) -> None:
        """
        No retry starts past the policy's deadline: the Deferred fails
        with the last error instead.
        """
        clock = Clock()
        run = Run("mailclient", retries=10,
                  retry=mailclient_smtp.RetryPolicy(delay=10.0, deadline=25.0))
        run.factory.reactor = clock
        run.factory.startedConnecting(run.connector)
        self.assertEqual(self.failAttempts(run, clock, 2, self.LOST), [0.0, 10.0])
        # The next wait (20 s) would end past the deadline (10 + 20 > 25).
        run.factory.clientConnectionFailed(run.connector, Failure(self.LOST))
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertIn("reset by peer", str(self.failureResultOf(run.d).value))

    def test_retryLogged(self) -> None:
        """
        Each retry is logged as it is scheduled: host, reason, number, wait.
        """
        from twisted.logger import globalLogPublisher

        events: List[Any] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        clock = Clock()
        run = Run("mailclient", retries=2)
        run.factory.reactor = clock
        run.factory.startedConnecting(run.connector)
        self.failAttempts(run, clock, 2, self.LOST)
        retries = [e for e in events if "retry" in e.get("log_format", "")]
        self.assertEqual([(e["retry"], e["retries"], e["delay"]) for e in retries],
                         [(1, 2, 0.0), (2, 2, 1.0)])
        self.assertEqual(retries[0]["host"], run.connector.getDestination().host)
        self.assertIn("reset by peer", retries[0]["reason"])

    def test_memoryReactorWithoutClock(self) -> None:
        """
        A reactor double without a clock (Twisted's C{MemoryReactor}) can be
        the factory's reactor: reply timers and retries use the global
        reactor's clock then, and the protocol still builds.
        """
        from twisted.internet.testing import MemoryReactor

        run = Run("mailclient", retries=1, timeout=30)
        run.factory.reactor = MemoryReactor()
        proto = run.factory.buildProtocol(ADDR)
        self.assertIsNone(proto._mailclient.clock)

    def test_noRetryWhenFileCannotBeRewound(self) -> None:
        class Unseekable(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, b: Any) -> int:
                return 0

            def seek(self, *a: Any) -> int:
                raise io.UnsupportedOperation("seek")

        clock = Clock()
        run = Run("mailclient", retries=3, body=Unseekable())
        run.factory.reactor = clock
        run.factory.clientConnectionFailed(run.connector, Failure(error.ConnectionRefusedError()))
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(run.connector.connects, [])
        self.failureResultOf(run.d, mailclient_smtp.SMTPConnectError)

    def test_cancelRetry(self) -> None:
        clock = Clock()
        run = Run("mailclient", retries=3)
        run.factory.reactor = clock
        for _ in range(2):
            run.factory.clientConnectionFailed(run.connector, Failure(self.LOST))
        self.assertEqual(len(run.connector.connects), 1)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        run.factory.cancelRetry()
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(100)
        self.assertEqual(len(run.connector.connects), 1)

    def test_noRetryAfterPermanentError(self) -> None:
        clock = Clock()
        run = Run("mailclient", retries=3)
        run.factory.reactor = clock
        run.converse(lines(b"220 mx", b"250 mx", b"553 bad sender", b"250 reset", b"221 bye"))
        self.failureResultOf(run.d, mailclient_smtp.SMTPDeliveryError)
        self.assertEqual(run.connector.connects, [])
        self.assertEqual(clock.getDelayedCalls(), [])


class OutcomeTests(SynchronousTestCase):
    """
    Exactly one outcome per message, whatever happens after it.
    """

    def test_timeoutWaitingForReply(self) -> None:
        run = Run("mailclient", timeout=30)
        session = run.connect()
        session.converse(lines(b"220 mx", b"250 mx"))
        self.assertNoResult(run.d)
        run.clock.advance(29)
        self.assertNoResult(run.d)
        run.clock.advance(1)
        err = self.failureResultOf(run.d, mailclient_smtp.SMTPTimeoutError).value
        self.assertIn(b"Timeout", err.resp)
        self.assertTrue(session.closed)
        self.assertEqual(run.clock.getDelayedCalls(), [])

    def test_timeoutAfterDelivery(self) -> None:
        """
        A timeout after the message was accepted neither raises (Twisted:
        AttributeError) nor changes the result.
        """
        run = Run("mailclient", timeout=30)
        session = run.connect()
        session.converse(PLAIN_SUCCESS[:6])  # up to "250 queued"; RSET unanswered
        results: List[Any] = []
        run.d.addBoth(results.append)
        self.assertEqual(results, [(1, [(b"bob@example.org", 250, b"recipient ok")])])
        run.clock.advance(30)
        self.assertEqual(len(results), 1)
        self.assertTrue(session.closed)
        session.settle()
        run.factory.clientConnectionLost(run.connector, session.lostReason)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(run.connector.connects, [])

        theirs = Run("twisted", timeout=30)
        theirs.connect().converse(PLAIN_SUCCESS[:6])
        self.successResultOf(theirs.d)
        self.assertRaises(AttributeError, theirs.clock.advance, 30)

    def test_quitFailsAfterDelivery(self) -> None:
        run = Run("mailclient", timeout=30)
        session = run.connect()
        results: List[Any] = []
        run.d.addBoth(results.append)
        session.converse(PLAIN_SUCCESS[:7] + lines(b"500 what QUIT?"))
        self.assertTrue(session.closed)
        session.loseConnection(Failure(error.ConnectionLost()))
        run.factory.clientConnectionLost(run.connector, session.lostReason)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(results, [(1, [(b"bob@example.org", 250, b"recipient ok")])])

    def test_rsetRefusedAfterDelivery(self) -> None:
        run = Run("mailclient", timeout=30)
        session = run.connect()
        session.converse(PLAIN_SUCCESS[:6] + lines(b"502 no RSET", b"221 bye"))
        self.successResultOf(run.d)
        self.assertEqual(session.commands()[-2:], [b"RSET", b"QUIT"])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_connectionLostMidData(self) -> None:
        """
        The server closing while the body is being sent fails the Deferred
        with an SMTPClientError, once; nothing is logged as unhandled.
        """
        run = Run("mailclient", body=b"x" * 200000 + b"\n", retries=0)
        session = run.connect()
        session.converse(PLAIN_SUCCESS[:4])
        session.receive(b"354 go ahead\r\n")
        session.pump(limit=1)
        self.assertIsNotNone(session.transport.producer)
        session.loseConnection(Failure(error.ConnectionLost("reset by peer")))
        run.factory.clientConnectionLost(run.connector, session.lostReason)
        err = self.failureResultOf(run.d, mailclient_smtp.SMTPClientError).value
        self.assertEqual(err.code, -1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_connectionLostMidDataRetried(self) -> None:
        """
        With retries left, a connection lost mid-DATA is retried (as in
        Twisted, and as there at once), with the file rewound first; the
        second attempt delivers the whole message.
        """
        body = b"Subject: big\n\n" + b"x" * 100000 + b"\n"
        clock = Clock()
        run = Run("mailclient", body=body, retries=1, clock=clock)
        run.factory.reactor = clock
        session = run.connect()
        session.converse(PLAIN_SUCCESS[:4])
        session.receive(b"354 go ahead\r\n")
        session.pump(limit=1)
        self.assertGreater(run.file.tell(), 0)
        session.loseConnection(Failure(error.ConnectionLost("reset by peer")))
        run.factory.clientConnectionLost(run.connector, session.lostReason)
        self.assertNoResult(run.d)
        self.assertEqual(run.connector.connects, [0])
        run.transport = None
        run.converse(PLAIN_SUCCESS)
        self.assertEqual(self.successResultOf(run.d)[0], 1)
        self.assertIn(body.replace(b"\n", b"\r\n") + b".\r\n", run.session.written())  # type: ignore[union-attr]
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_nonAsciiRecipientRefused(self) -> None:
        """
        A non-ASCII local part, to a server without SMTPUTF8: a clear
        InvalidAddressError and no RCPT.
        """
        run = Run("mailclient", recipients=["j\u00f6rg@example.org"]).converse(
            lines(b"220 mx", b"250 mx", b"250 ok", b"221 bye")
        )
        err = self.failureResultOf(run.d, mailclient_smtp.InvalidAddressError).value
        self.assertIn("SMTPUTF8", str(err))
        self.assertIn("j\u00f6rg@example.org", str(err))
        self.assertFalse([c for c in run.session.commands() if c.startswith(b"RCPT")])  # type: ignore[union-attr]
        self.assertEqual(run.session.commands()[-1], b"QUIT")  # type: ignore[union-attr]

    def test_nonAsciiSenderRefused(self) -> None:
        """
        A non-ASCII sender is refused with InvalidAddressError naming
        SMTPUTF8, as a recipient is (not a parse error of its UTF-8 bytes).
        """
        d: defer.Deferred = defer.Deferred()
        try:
            factory = mailclient_smtp.SMTPSenderFactory(
                "j\u00f6rg@example.org", ["bob@example.org"], io.BytesIO(BODY), d, retries=0
            )
        except mailclient_smtp.InvalidAddressError as e:
            self.assertIn("SMTPUTF8", str(e))
            return
        factory.domain = IDENTITY
        session = Session(factory.buildProtocol(ADDR))
        session.converse(lines(b"220 mx", b"250 mx", b"221 bye"))
        err = self.failureResultOf(d, mailclient_smtp.InvalidAddressError).value
        self.assertIn("SMTPUTF8", str(err))
        self.assertFalse([c for c in session.commands() if c.startswith(b"MAIL")])

    def test_textModeFile(self) -> None:
        """
        A text-mode file is sent as UTF-8 with CRLF, instead of hanging.
        """
        text = "Subject: caf\u00e9\n\nna\u00efve\n"
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        for body in [io.StringIO(text), open(path, "r", encoding="utf-8")]:
            self.addCleanup(body.close)
            run = Run("mailclient", body=body).converse(PLAIN_SUCCESS)
            self.assertEqual(self.successResultOf(run.d)[0], 1)
            data = run.session.written()  # type: ignore[union-attr]
            self.assertIn(text.replace("\n", "\r\n").encode("utf-8") + b".\r\n", data)


class ESMTPSenderFactoryTests(SynchronousTestCase):
    """
    TLS and authentication through the ESMTP factory (scripted).
    """

    def test_defaultContextForDestination(self) -> None:
        """
        With no contextFactory and no hostname, the protocol gets a
        verifying context for the host the connector connects to (Twisted's
        gets none).
        """
        for module, expected in [(mailclient_smtp, "mx.example.net"), (twisted_smtp, None)]:
            factory = module.ESMTPSenderFactory(
                USER, PASSWORD, "alice@example.com", ["bob@example.org"], io.BytesIO(), defer.Deferred()
            )
            factory.startedConnecting(FakeConnector("mx.example.net"))
            p = factory.buildProtocol(ADDR)
            if expected is None:
                self.assertIsNone(p.context)
            else:
                self.assertEqual(p.context._hostnameASCII, expected)

    def test_hostnameWins(self) -> None:
        factory = mailclient_smtp.ESMTPSenderFactory(
            USER, PASSWORD, "alice@example.com", ["bob@example.org"], io.BytesIO(), defer.Deferred(),
            hostname="smtp.example.com",
        )
        factory.startedConnecting(FakeConnector("192.0.2.1"))
        self.assertEqual(factory.buildProtocol(ADDR).context._hostnameASCII, "smtp.example.com")

    def test_startTLSRefused(self) -> None:
        run = Run(
            "mailclient", esmtp=True, contextFactory=object(), transport=TLSStringTransport(REMOTE)
        ).converse(lines(b"220 mx", b"250-mx\r\n250 STARTTLS", b"454 4.7.0 TLS not available", b"221 bye"))
        err = self.failureResultOf(run.d, mailclient_smtp.TLSError).value
        self.assertEqual(err.code, 454)
        self.assertIn(b"TLS not available", err.resp)
        self.assertEqual(run.transport.tlsStarted, [])

    def test_tlsRequiredNotOffered(self) -> None:
        run = Run(
            "mailclient", esmtp=True, contextFactory=object(), transport=TLSStringTransport(REMOTE)
        ).converse(lines(b"220 mx", b"250-mx\r\n250 AUTH PLAIN", b"221 bye"))
        err = self.failureResultOf(run.d, mailclient_smtp.TLSRequiredError).value
        self.assertEqual(err.code, 502)
        self.assertNotIn(b"AUTH", run.session.written())  # type: ignore[union-attr]

    def test_startTLSThenAuth(self) -> None:
        ctx = object()
        run = Run(
            "mailclient", esmtp=True, contextFactory=ctx, transport=TLSStringTransport(REMOTE)
        ).converse(
            lines(
                b"220 mx", b"250-mx\r\n250 STARTTLS", b"220 go", b"250-mx\r\n250 AUTH PLAIN", b"235 ok",
                b"250 ok", b"250 ok", b"354 go", b"250 queued", b"250 reset", b"221 bye",
            )
        )
        self.assertEqual(self.successResultOf(run.d)[0], 1)
        self.assertEqual(run.transport.tlsStarted, [ctx])

    def test_cleartextRefused(self) -> None:
        run = Run(
            "mailclient", esmtp=True, requireTransportSecurity=False, transport=TLSStringTransport(REMOTE)
        ).converse(lines(b"220 mx", b"250-mx\r\n250 AUTH PLAIN LOGIN", b"221 bye"))
        err = self.failureResultOf(run.d, mailclient_smtp.AUTHRequiredError).value
        self.assertEqual(err.code, -1)
        self.assertIn(b"unencrypted", err.resp)
        written = run.session.written()  # type: ignore[union-attr]
        self.assertNotIn(b"AUTH", written)
        self.assertNotIn(PASSWORD, written)

    def test_cleartextAllowed(self) -> None:
        run = Run(
            "mailclient",
            esmtp=True,
            requireTransportSecurity=False,
            allowCleartextAuthentication=True,
            transport=TLSStringTransport(REMOTE),
        ).converse(ESMTP_SUCCESS)
        self.assertEqual(self.successResultOf(run.d)[0], 1)

    def test_requireAuthenticationNoPassword(self) -> None:
        run = Run(
            "mailclient", esmtp=True, password=None, transport=TLSStringTransport(LOOPBACK, tls=True)
        ).converse(lines(b"220 mx", b"250-mx\r\n250 AUTH PLAIN", b"221 bye"))
        err = self.failureResultOf(run.d, mailclient_smtp.AUTHRequiredError).value
        self.assertIn(b"no password was given", err.resp)

    def test_authenticatorsArgument(self) -> None:
        """
        ESMTPSenderFactory(authenticators=[...]) replaces the defaults.
        """
        token = "ya29.token"
        run = Run(
            "mailclient",
            esmtp=True,
            authenticators=[mailclient_smtp.XOAUTH2Authenticator(USER, token)],
        ).converse(
            lines(b"220 mx", b"250-mx\r\n250 AUTH LOGIN PLAIN XOAUTH2", b"235 ok")
            + ESMTP_SUCCESS[5:]
        )
        self.assertEqual(self.successResultOf(run.d)[0], 1)
        import base64

        self.assertEqual(
            run.session.commands()[1],  # type: ignore[union-attr]
            b"AUTH XOAUTH2 " + base64.b64encode(b"user=" + USER + b"\x01auth=Bearer ya29.token\x01\x01"),
        )

    def test_xoauth2Declined(self) -> None:
        run = Run(
            "mailclient",
            esmtp=True,
            password=b"token-from-password",
            authenticators=[mailclient_smtp.XOAUTH2Authenticator(USER)],
        ).converse(
            lines(b"220 mx", b"250-mx\r\n250 AUTH XOAUTH2", b"334 eyJzdGF0dXMiOiI0MDEifQ==", b"535 no", b"221 bye")
        )
        err = self.failureResultOf(run.d, mailclient_smtp.AUTHDeclinedError).value
        self.assertEqual(err.code, 535)
        self.assertEqual(run.session.commands()[2], b"")  # type: ignore[union-attr]
        self.assertNotIn(b"token-from-password", str(err).encode())


class TLSVerificationTests(TestCase):
    """
    ESMTPSenderFactory verifies certificates by default, against real
    loopback servers (Twisted's ESMTP server with STARTTLS).
    """

    def setUp(self) -> None:
        self.tracker = ClientTracker()

    def send(self, certs: Any, host: str = "127.0.0.1", **kw: Any) -> Tuple[Any, defer.Deferred]:
        server = startTwistedServer(
            self, self.tracker, startTLSOptions=certs.serverOptions(), mechanisms=(b"PLAIN",)
        )
        d: defer.Deferred = defer.Deferred()
        factory = mailclient_smtp.ESMTPSenderFactory(
            USER, PASSWORD, SENDER, ["bob@example.org"], io.BytesIO(TWISTED_MESSAGE), d,
            retries=0, timeout=10, **kw,
        )
        self.tracker.watch(factory)
        reactor.connectTCP(host, server.portNumber, factory)
        return server, d

    @defer.inlineCallbacks
    def test_untrusted(self) -> Any:
        server, d = self.send(generateCertificates())
        err = yield self.assertFailure(d, mailclient_smtp.TLSError)
        self.assertIn("verif", str(err))
        self.assertEqual(server.received, [])
        self.assertNotIn(b"AUTH", b"\n".join(server.commands))

    @defer.inlineCallbacks
    def test_otherHostName(self) -> Any:
        certs = generateCertificates("mail.other.example", ())
        trustCA(self, certs.caCertificatePEM)
        server, d = self.send(certs)
        err = yield self.assertFailure(d, mailclient_smtp.TLSError)
        self.assertIn("host name", str(err))
        self.assertEqual(server.received, [])

    @defer.inlineCallbacks
    def test_trustedForDestination(self) -> Any:
        """
        A certificate valid for the host connected to, from a trusted CA,
        is accepted with the default context.
        """
        certs = generateCertificates()
        trustCA(self, certs.caCertificatePEM)
        server, d = self.send(certs, host="localhost")
        result = yield d
        self.assertEqual(result[0], 1)
        self.assertEqual(server.received, [(SENDER, "bob@example.org", TWISTED_RECEIVED)])

    @defer.inlineCallbacks
    def test_trustRootViaContextFactory(self) -> Any:
        certs = localCertificates()
        server, d = self.send(
            certs, contextFactory=optionsForClientTLS("localhost", trustRoot=certs.trustRoot())
        )
        result = yield d
        self.assertEqual(result, (1, [(b"bob@example.org", 250, b"Recipient address accepted")]))
        self.assertEqual(server.logins, [USER])
        self.assertEqual(server.received, [(SENDER, "bob@example.org", TWISTED_RECEIVED)])
