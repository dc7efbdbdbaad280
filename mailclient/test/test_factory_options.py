"""
The modern-ESMTP options given to the sender factories and L{sendmail}:
C{mailOptions} (DSN), C{timeouts} (RFC 5321 per-phase limits), C{chunking}
and C{pipelining}, all keyword-only so Twisted-style calls mean the same.
"""

from __future__ import annotations

import io
from typing import Any, List

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from mailclient import smtp
from mailclient.test.helpers import LOOPBACK, TLSStringTransport, lines, Session

ADDR = IPv4Address("TCP", "127.0.0.1", 25)
BODY = b"Subject: options\r\n\r\nbody\r\n"


def factory(**kw: Any) -> Any:
    d: defer.Deferred = defer.Deferred()
    f = smtp.ESMTPSenderFactory(
        b"user",
        b"secret",
        "alice@example.com",
        ["bob@example.org"],
        io.BytesIO(BODY),
        d,
        retries=kw.pop("retries", 0),
        requireAuthentication=False,
        requireTransportSecurity=False,
        **kw,
    )
    f.domain = b"client.example"
    return f


class FactoryOptionTests(SynchronousTestCase):
    def converse(self, f: Any, replies: List[bytes]) -> Session:
        proto = f.buildProtocol(ADDR)
        session = Session(proto, TLSStringTransport(peerAddress=LOOPBACK))
        session.converse(replies)
        return session

    def test_mailOptionsReachTheWire(self) -> None:
        """
        C{mailOptions} given to the factory become DSN parameters on MAIL and
        RCPT when the server offers DSN.
        """
        options = smtp.MailOptions(ret="HDRS", envid="QQ314159", notify=["FAILURE", "DELAY"])
        f = factory(mailOptions=options)
        session = self.converse(
            f,
            lines(
                b"220 mx ESMTP",
                b"250-mx\r\n250 DSN",
                b"250 sender ok",
                b"250 recipient ok",
                b"354 go ahead",
                b"250 queued",
                b"221 bye",
            ),
        )
        commands = session.commands()
        self.assertIn(b"MAIL FROM:<alice@example.com> RET=HDRS ENVID=QQ314159", commands)
        self.assertIn(b"RCPT TO:<bob@example.org> NOTIFY=FAILURE,DELAY", commands)
        self.assertEqual(f.currentProtocol, None)

    def test_chunkingOff(self) -> None:
        """
        C{chunking=False} sends DATA even when CHUNKING and PIPELINING are
        offered; by default BDAT is used.
        """
        offered = lines(b"220 mx ESMTP", b"250-mx\r\n250-PIPELINING\r\n250 CHUNKING")
        withBDAT = self.converse(factory(), offered)
        self.assertTrue(any(c.startswith(b"BDAT") for c in withBDAT.commands()))
        session = self.converse(
            factory(chunking=False),
            offered + lines(b"250 sender ok", b"250 recipient ok", b"354 go ahead", b"250 queued", b"221 bye"),
        )
        self.assertIn(b"DATA", session.commands())
        self.assertFalse(any(c.startswith(b"BDAT") for c in session.commands()))

    def test_timeoutsPerPhase(self) -> None:
        """
        C{timeouts} set the limit for each phase when C{timeout} is None.
        """
        clock = MemoryReactorClock()
        f = factory(timeouts=smtp.Timeouts(greeting=7, mail=11))
        f.reactor = clock
        proto = f.buildProtocol(ADDR)
        proto.makeConnection(TLSStringTransport(peerAddress=LOOPBACK))
        try:
            self.assertEqual([c.getTime() for c in clock.getDelayedCalls()], [7])
            proto.dataReceived(b"220 mx ESMTP\r\n")
            self.assertEqual([c.getTime() for c in clock.getDelayedCalls()], [11])
        finally:
            proto.setTimeout(None)

    def test_timeoutOverridesTimeouts(self) -> None:
        """
        The Twisted-compatible C{timeout} applies one limit to every phase,
        even when C{timeouts} is also given.
        """
        clock = MemoryReactorClock()
        f = factory(timeout=4, timeouts=smtp.Timeouts(greeting=7))
        f.reactor = clock
        proto = f.buildProtocol(ADDR)
        proto.makeConnection(TLSStringTransport(peerAddress=LOOPBACK))
        try:
            self.assertEqual([c.getTime() for c in clock.getDelayedCalls()], [4])
        finally:
            proto.setTimeout(None)

    def test_smtpSenderFactoryTimeouts(self) -> None:
        """
        The plain factory takes C{timeouts} too.
        """
        d: defer.Deferred = defer.Deferred()
        f = smtp.SMTPSenderFactory(
            "alice@example.com", ["bob@example.org"], io.BytesIO(BODY), d,
            timeouts=smtp.Timeouts(greeting=9),
        )
        f.domain = b"client.example"
        clock = MemoryReactorClock()
        f.reactor = clock
        proto = f.buildProtocol(ADDR)
        proto.makeConnection(TLSStringTransport(peerAddress=LOOPBACK))
        try:
            self.assertEqual([c.getTime() for c in clock.getDelayedCalls()], [9])
        finally:
            proto.setTimeout(None)


class SendmailOptionTests(SynchronousTestCase):
    def call(self, **kw: Any) -> Any:
        reactor = MemoryReactorClock()
        d = smtp.sendmail(
            "mx.example.net", "alice@example.com", ["bob@example.org"], BODY,
            senderDomainName="client.example", port=2525, reactor=reactor,
            retries=0, **kw,
        )
        f = reactor.tcpClients[-1][2]
        return reactor, d, f

    def test_defaultIsRFCPerPhase(self) -> None:
        """
        Without C{timeout}, sendmail uses RFC 5321's limits: 300 s for the
        greeting, 120 s for the 354 after DATA, 600 s for the final reply.
        """
        reactor, d, f = self.call(tls=False)
        self.assertIsNone(f.timeout)
        self.assertEqual(f.timeouts, smtp.Timeouts())
        proto = f.buildProtocol(ADDR)
        session = Session(proto, TLSStringTransport(peerAddress=LOOPBACK), clock=reactor)
        seen = []

        def pending() -> List[float]:
            return [c.getTime() - reactor.seconds() for c in reactor.getDelayedCalls()]

        seen.append(pending())
        for reply in lines(b"220 mx ESMTP", b"250 mx", b"250 sender ok", b"250 recipient ok"):
            session.step(reply)
        seen.append(pending())
        session.step(b"354 go ahead\r\n")
        session.settle()
        seen.append(pending())
        self.assertEqual(seen, [[300.0], [120.0], [600.0]])
        session.step(b"250 queued\r\n")
        session.step(b"221 bye\r\n")
        self.successResultOf(d)

    def test_explicitTimeout(self) -> None:
        reactor, d, f = self.call(timeout=30)
        self.assertEqual(f.timeout, 30)

    def test_optionsPassed(self) -> None:
        options = smtp.MailOptions(notify=["NEVER"])
        timeouts = smtp.Timeouts(mail=5)
        reactor, d, f = self.call(
            mailOptions=options, timeouts=timeouts, pipelining=False, chunking=False
        )
        proto = f.buildProtocol(ADDR)
        self.assertIs(proto.mailOptions, options)
        self.assertIs(proto.timeouts, timeouts)
        self.assertFalse(proto.pipelining)
        self.assertFalse(proto.chunking)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)


class FakeConnector:
    def __init__(self) -> None:
        self.connects = 0

    def connect(self) -> None:
        self.connects += 1

    def getDestination(self) -> Any:
        return ADDR


class TemporaryRefusalTests(SynchronousTestCase):
    """
    A 4xx reply that fails the whole message is retried like a lost
    connection; a 5xx is not.
    """

    PLAIN = [b"220 mx ESMTP\r\n", b"250 mx\r\n", b"250 sender ok\r\n", b"250 recipient ok\r\n", b"354 go\r\n"]

    def attempt(self, f: Any, connector: FakeConnector, final: bytes) -> Session:
        proto = f.buildProtocol(ADDR)
        session = Session(proto, TLSStringTransport(peerAddress=LOOPBACK), clock=f.reactor)
        session.converse(self.PLAIN + [final, b"250 reset\r\n", b"221 bye\r\n"])
        if not session.lost:
            session.loseConnection()
        f.clientConnectionLost(connector, session.lostReason)
        return session

    def test_retriedThenDelivered(self) -> None:
        f = factory(retries=2)
        f.reactor = MemoryReactorClock()
        connector = FakeConnector()
        results: List[Any] = []
        f.result.addBoth(results.append)
        self.attempt(f, connector, b"451 4.3.0 try again later\r\n")
        self.assertEqual(results, [])
        # The first retry goes at once (as Twisted's).
        self.assertEqual(connector.connects, 1)
        self.assertEqual(f.file.tell(), 0)
        self.attempt(f, connector, b"250 queued\r\n")
        self.assertEqual(results, [(1, [(b"bob@example.org", 250, b"recipient ok")])])
        self.assertEqual(f.reactor.getDelayedCalls(), [])

    def test_retriesRunOut(self) -> None:
        f = factory(retries=1)
        f.reactor = MemoryReactorClock()
        connector = FakeConnector()
        d = f.result
        self.attempt(f, connector, b"451 4.3.0 try again later\r\n")
        self.attempt(f, connector, b"452 4.3.1 still full\r\n")
        error = self.failureResultOf(d, smtp.SMTPDeliveryError).value
        self.assertEqual(error.code, 452)
        self.assertTrue(error.isTemporary)
        self.assertEqual(connector.connects, 1)

    def test_permanentNotRetried(self) -> None:
        f = factory(retries=3)
        f.reactor = MemoryReactorClock()
        connector = FakeConnector()
        d = f.result
        self.attempt(f, connector, b"554 5.6.0 rejected\r\n")
        error = self.failureResultOf(d, smtp.SMTPDeliveryError).value
        self.assertEqual(error.code, 554)
        self.assertEqual(connector.connects, 0)
        self.assertEqual(f.reactor.getDelayedCalls(), [])
