"""
Tests for L{mailclient._protocol.connect}: happy eyeballs (RFC 8305) for
every connection mailclient opens, with L{mailclient.smtp.connectSender}
its public face.

The timing logic runs on a L{MemoryReactorClock} with a name resolver
double; real connections run on loopback (C{::1} and C{127.0.0.1}), with a
port nothing listens on and an address that never answers (a listening
socket with a full accept queue).
"""

from __future__ import annotations

import io
from typing import Any, List

from twisted.internet import defer, error, reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from mailclient import smtp
from mailclient._protocol import connect
from mailclient._wire import eyeballs
from mailclient._protocol.connect import (
    ATTEMPT_DELAY,
    HappyEyeballsConnector,
    connectSender,
    interleave,
)
from mailclient.test.helpers_connect import (
    BlackHole,
    PlainRecordingFactory,
    RecordingFactory,
    ResolvingReactor,
    StaticResolver,
)
from mailclient.testing import SMTPTestServer

BODY = b"Subject: hi\r\n\r\nHello.\r\n"
V6 = ["2001:db8::1", "2001:db8::2"]
V4 = ["192.0.2.1", "192.0.2.2"]


def memoryReactor(hosts: Any = None, manual: bool = False) -> MemoryReactorClock:
    reactor = MemoryReactorClock()
    reactor.nameResolver = StaticResolver(  # type: ignore[assignment]
        hosts if hosts is not None else {"mx.example": V6 + V4}, manual=manual)
    return reactor


def refused() -> Failure:
    return Failure(error.ConnectionRefusedError())


class OrderTests(SynchronousTestCase):
    """
    The order addresses are tried in (RFC 8305 section 4).
    """

    def test_interleave(self) -> None:
        """
        Families alternate, starting with the family of the first address;
        within a family the order is kept; duplicates go.
        """
        self.assertEqual(interleave(V6 + V4 + ["192.0.2.3"]),
                         ["2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2", "192.0.2.3"])
        self.assertEqual(interleave(["192.0.2.1"] + V6), ["192.0.2.1", "2001:db8::1", "2001:db8::2"])
        self.assertEqual(interleave(V6 + V4, first=4),
                         ["192.0.2.1", "2001:db8::1", "192.0.2.2", "2001:db8::2"])
        self.assertEqual(interleave(["::1", "::1", "127.0.0.1"]), ["::1", "127.0.0.1"])
        self.assertEqual(interleave([]), [])

    def test_preference(self) -> None:
        self.assertEqual(eyeballs.preferredFamily("ipv6"), 6)
        self.assertEqual(eyeballs.preferredFamily("ipv4"), 4)
        self.assertIn(eyeballs.preferredFamily("any"), (4, 6))
        self.assertRaises(ValueError, eyeballs.preferredFamily, "ipv5")


class PlainTests(SynchronousTestCase):
    """
    When there is nothing to race: one plain C{connectTCP}, as Twisted.
    """

    def test_ipv4Literal(self) -> None:
        reactor = memoryReactor()
        factory = RecordingFactory()
        connector = connectSender(reactor, "127.0.0.1", 25, factory)
        self.assertEqual(reactor.tcpClients, [("127.0.0.1", 25, factory, 30, None)])
        self.assertIs(connector, reactor.connectors[0])
        self.assertEqual(reactor.nameResolver.queries, [])  # type: ignore[attr-defined]
        self.assertEqual(factory.events, [("started", connector)])

    def test_ipv6Literal(self) -> None:
        reactor = memoryReactor()
        factory = RecordingFactory()
        connectSender(reactor, "::1", 25, factory)
        self.assertEqual(reactor.tcpClients, [("::1", 25, factory, 30, None)])

    def test_noNameResolver(self) -> None:
        """
        A reactor without a name resolver connects to the name itself.
        """
        reactor = memoryReactor()
        reactor.nameResolver = None  # type: ignore[assignment]
        factory = RecordingFactory()
        connectSender(reactor, "mx.example", 25, factory)
        self.assertEqual(reactor.tcpClients, [("mx.example", 25, factory, 30, None)])

    def test_memoryReactorDefaultResolver(self) -> None:
        """
        The default resolver of Twisted's memory reactor (every name is
        127.0.0.1) counts as none: the name is connected to, as before.
        """
        reactor = MemoryReactorClock()
        factory = RecordingFactory()
        connectSender(reactor, "mx.example", 25, factory)
        self.assertEqual(reactor.tcpClients, [("mx.example", 25, factory, 30, None)])

    def test_optionsPassed(self) -> None:
        reactor = memoryReactor()
        factory = RecordingFactory()
        connectSender(reactor, "192.0.2.1", 25, factory, timeout=5,
                      bindAddress=("192.0.2.9", 0))
        self.assertEqual(reactor.tcpClients, [("192.0.2.1", 25, factory, 5, ("192.0.2.9", 0))])


class RaceTests(SynchronousTestCase):
    """
    Happy eyeballs on a memory reactor: the delays, the winner, the one
    outcome the factory sees.
    """

    def start(self, factory: Any = None, **kw: Any) -> Any:
        self.reactor = memoryReactor(kw.pop("hosts", None), kw.pop("manual", False))
        self.factory = factory if factory is not None else RecordingFactory()
        self.connector = connectSender(self.reactor, "mx.example", 25, self.factory, **kw)
        return self.connector

    def tried(self) -> List[str]:
        return [c[0] for c in self.reactor.tcpClients]

    def settle(self) -> None:
        """
        Let every delay pass.
        """
        for _ in range(20):
            self.reactor.advance(ATTEMPT_DELAY)

    def test_delays(self) -> None:
        """
        The first address is tried at once, each next one
        L{ATTEMPT_DELAY} (250 ms) later while none has connected; the
        families alternate, IPv6 first as the resolver gave it.
        """
        self.start()
        self.assertEqual(self.tried(), ["2001:db8::1"])
        self.reactor.advance(ATTEMPT_DELAY - 0.001)
        self.assertEqual(self.tried(), ["2001:db8::1"])
        self.reactor.advance(0.001)
        self.assertEqual(self.tried(), ["2001:db8::1", "192.0.2.1"])
        self.reactor.advance(ATTEMPT_DELAY)
        self.reactor.advance(ATTEMPT_DELAY)
        self.assertEqual(self.tried(), ["2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2"])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        # Each attempt carries the factory itself.
        self.assertEqual({c[2] for c in self.reactor.tcpClients}, {self.factory})
        self.assertEqual(self.connector.attempted, 4)
        self.assertEqual(self.factory.events, [("started", self.connector)])

    def test_failureStartsNextAtOnce(self) -> None:
        """
        An attempt that fails before the delay is over is followed at once
        by the next; the factory is not told.
        """
        self.start()
        self.factory.clientConnectionFailed(self.reactor.connectors[0], refused())
        self.assertEqual(self.tried(), ["2001:db8::1", "192.0.2.1"])
        self.assertEqual(self.factory.kinds(), ["started"])
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)

    def test_firstConnectionWins(self) -> None:
        """
        The first connection made is used: the other attempts are stopped
        and the pending delay is cancelled; a connection that completes
        later is refused, and what the stopped attempts report is ignored.
        """
        self.start()
        self.reactor.advance(ATTEMPT_DELAY)
        first, second = self.reactor.connectors
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 25))
        self.assertIsNotNone(protocol)
        self.assertTrue(first._disconnected)
        self.assertFalse(second._disconnected)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.connector.address, "192.0.2.1")
        self.assertEqual(self.connector.state, "connected")
        self.factory.clientConnectionFailed(first, Failure(error.UserError()))
        late = self.factory.buildProtocol(IPv6Address("TCP", "2001:db8::1", 25))
        self.assertIsInstance(late, connect._Refused)
        self.reactor.advance(10)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertEqual(self.factory.kinds(), ["started", "built"])
        self.factory.clientConnectionLost(second, Failure(error.ConnectionDone()))
        self.assertEqual(self.factory.kinds(), ["started", "built", "lost"])
        self.assertIs(self.factory.events[-1][1], self.connector)
        self.assertEqual(self.connector.state, "disconnected")

    def test_allFailOneOutcome(self) -> None:
        """
        When every address fails, the factory is told once, with the
        connector standing for them all and the last failure.
        """
        self.start()
        reasons = []
        for i in range(4):
            reason = Failure(error.ConnectionRefusedError(str(i)))
            reasons.append(reason)
            self.factory.clientConnectionFailed(self.reactor.connectors[i], reason)
        self.assertEqual(self.tried(), ["2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2"])
        self.assertEqual(self.factory.kinds(), ["started", "failed"])
        self.assertIs(self.factory.events[1][1], self.connector)
        self.assertIs(self.factory.events[1][2], reasons[-1])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_failuresWhileOthersPending(self) -> None:
        """
        The last attempt failing while an earlier one is still connecting
        is not the end.
        """
        self.start(hosts={"mx.example": ["2001:db8::1", "192.0.2.1"]})
        self.reactor.advance(ATTEMPT_DELAY)
        first, second = self.reactor.connectors
        self.factory.clientConnectionFailed(second, refused())
        self.assertEqual(self.factory.kinds(), ["started"])
        self.factory.buildProtocol(IPv6Address("TCP", "2001:db8::1", 25))
        self.assertEqual(self.factory.kinds(), ["started", "built"])

    def test_maxAddresses(self) -> None:
        self.start(maxAddresses=2)
        self.settle()
        self.assertEqual(self.tried(), ["2001:db8::1", "192.0.2.1"])
        self.assertEqual(self.connector.attempted, 2)

    def test_timeout(self) -> None:
        """
        Each attempt gets the connect timeout: given, else the factory's
        C{settings.connectTimeout}.
        """
        self.start(timeout=7)
        self.assertEqual(self.reactor.tcpClients[0][3], 7)
        factory = smtp.ESMTPSenderFactory(
            None, None, "a@example.com", ["b@example.org"], io.BytesIO(BODY),
            defer.Deferred(), connectTimeout=12)
        self.start(factory)
        self.assertEqual(self.reactor.tcpClients[0][3], 12)

    def test_bindAddressFamily(self) -> None:
        """
        With a bind address, only addresses of its family are asked for and
        tried, each from it.
        """
        self.start(bindAddress=("192.0.2.100", 0))
        self.settle()
        self.assertEqual(self.tried(), V4)
        self.assertEqual({c[4] for c in self.reactor.tcpClients}, {("192.0.2.100", 0)})
        [(_, _, types)] = self.reactor.nameResolver.queries  # type: ignore[attr-defined]
        self.assertEqual(types, (IPv4Address,))

    def test_bindAddressPerFamily(self) -> None:
        self.start(bindAddress=[("192.0.2.100", 0), ("2001:db8::100", 0)])
        self.settle()
        self.assertEqual([(c[0], c[4]) for c in self.reactor.tcpClients], [
            ("2001:db8::1", ("2001:db8::100", 0)), ("192.0.2.1", ("192.0.2.100", 0)),
            ("2001:db8::2", ("2001:db8::100", 0)), ("192.0.2.2", ("192.0.2.100", 0))])

    def test_noAddress(self) -> None:
        """
        A name without addresses fails the factory once, with
        L{error.DNSLookupError}; so does a name with none of the bind
        address's family.
        """
        self.start(hosts={})
        self.assertEqual(self.factory.kinds(), ["failed"])
        self.factory.events[0][2].trap(error.DNSLookupError)
        self.start(hosts={"mx.example": V6}, bindAddress=("192.0.2.100", 0))
        self.assertEqual(self.factory.kinds(), ["failed"])
        self.factory.events[0][2].trap(error.DNSLookupError)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_resolutionTimeout(self) -> None:
        """
        A resolution that takes longer than the timeout fails; its late
        answer is ignored.
        """
        self.start(manual=True, timeout=5)
        self.reactor.advance(4.9)
        self.assertEqual(self.factory.kinds(), [])
        self.reactor.advance(0.1)
        self.assertEqual(self.factory.kinds(), ["failed"])
        self.factory.events[0][2].trap(error.DNSLookupError)
        self.reactor.nameResolver.answer()  # type: ignore[attr-defined]
        self.assertEqual(self.reactor.tcpClients, [])

    def test_stopDuringResolution(self) -> None:
        """
        Stopping while the name is resolved reports L{error.UserError}, as
        Twisted's connectors do; the late answer is ignored and no timer
        is left.
        """
        self.start(manual=True)
        self.connector.disconnect()
        self.assertEqual(self.factory.kinds(), ["failed"])
        self.factory.events[0][2].trap(error.UserError)
        self.reactor.nameResolver.answer()  # type: ignore[attr-defined]
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stopWhileTrying(self) -> None:
        """
        Stopping while addresses are tried stops each attempt (and what
        they report later is ignored).
        """
        self.start()
        self.reactor.advance(ATTEMPT_DELAY)
        self.connector.stopConnecting()
        self.assertTrue(all(c._disconnected for c in self.reactor.connectors))
        self.assertEqual(self.factory.kinds(), ["started", "failed"])
        for c in self.reactor.connectors:
            self.factory.clientConnectionFailed(c, Failure(error.UserError()))
        self.assertEqual(self.factory.kinds(), ["started", "failed"])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertRaises(error.NotConnectingError, self.connector.stopConnecting)

    def test_connectAgainResolvesAgain(self) -> None:
        """
        C{connect()} after a failure (a retry) resolves the name again and
        tries its addresses again.
        """
        self.start(hosts={"mx.example": ["192.0.2.1"]})
        self.factory.clientConnectionFailed(self.reactor.connectors[0], refused())
        self.connector.disconnect()  # (nothing to stop)
        self.assertEqual(self.factory.kinds(), ["started", "failed"])
        self.connector.connect()
        self.assertEqual(self.tried(), ["192.0.2.1", "192.0.2.1"])
        self.assertEqual(len(self.reactor.nameResolver.queries), 2)  # type: ignore[attr-defined]
        self.assertRaises(RuntimeError, self.connector.connect)

    def test_notAwareFactory(self) -> None:
        """
        A factory that knows nothing of happy eyeballs is given to each
        attempt behind a proxy, and sees the same single outcome.
        """
        factory = PlainRecordingFactory()
        self.start(factory)
        self.reactor.advance(ATTEMPT_DELAY)
        proxies = [c[2] for c in self.reactor.tcpClients]
        self.assertNotIn(factory, proxies)
        proxies[0].clientConnectionFailed(self.reactor.connectors[0], refused())
        self.assertEqual(factory.kinds(), ["started"])
        self.assertIs(factory.events[0][1], self.connector)
        proxies = [c[2] for c in self.reactor.tcpClients]
        self.assertEqual(len(proxies), 3)
        self.assertIsNotNone(proxies[1].buildProtocol(IPv4Address("TCP", "192.0.2.1", 25)))
        self.assertEqual(factory.kinds(), ["started", "built"])
        self.assertIsInstance(proxies[2].buildProtocol(IPv6Address("TCP", "2001:db8::2", 25)),
                              connect._Refused)
        proxies[1].clientConnectionLost(self.reactor.connectors[1], Failure(error.ConnectionDone()))
        self.assertEqual(factory.kinds(), ["started", "built", "lost"])

    def test_notAwareAllFail(self) -> None:
        factory = PlainRecordingFactory()
        self.start(factory, hosts={"mx.example": ["192.0.2.1", "2001:db8::1"]})
        self.reactor.tcpClients[0][2].clientConnectionFailed(self.reactor.connectors[0], refused())
        self.reactor.tcpClients[1][2].clientConnectionFailed(self.reactor.connectors[1], refused())
        self.assertEqual(factory.kinds(), ["started", "failed"])
        self.assertIs(factory.events[1][1], self.connector)

    def test_implicitTLS(self) -> None:
        """
        With a TLS context, each attempt is a C{connectSSL} with it.
        """
        context = object()
        self.start(contextFactory=context)
        self.reactor.advance(ATTEMPT_DELAY)
        self.assertEqual([(c[0], c[2], c[3]) for c in self.reactor.sslClients],
                         [("2001:db8::1", self.factory, context), ("192.0.2.1", self.factory, context)])
        self.assertEqual(self.reactor.tcpClients, [])

    def test_destination(self) -> None:
        """
        The connector's destination is the name asked for, as Twisted's.
        """
        self.start()
        self.assertEqual(self.connector.getDestination(), IPv4Address("TCP", "mx.example", 25))
        connector = HappyEyeballsConnector(self.reactor, "::1", 25, RecordingFactory())
        self.assertEqual(connector.getDestination(), IPv6Address("TCP", "::1", 25))


class SenderRaceTests(SynchronousTestCase):
    """
    The sender factories (through C{sendmail}) see one outcome, and retry
    the whole name.
    """

    def sendmail(self, hosts: Any, **kw: Any) -> Any:
        self.reactor = memoryReactor(hosts)
        kw.setdefault("retries", 0)
        return smtp.sendmail("mx.example", "alice@example.com", ["bob@example.org"], BODY,
                             reactor=self.reactor, port=2525, **kw)

    def test_factoryItselfInEachAttempt(self) -> None:
        """
        Each attempt is a C{connectTCP} of the sender factory itself (what
        Twisted's tests look for in C{reactor.tcpClients}).
        """
        self.sendmail({"mx.example": V6 + V4})
        for _ in range(4):
            self.reactor.advance(ATTEMPT_DELAY)
        factories = {c[2] for c in self.reactor.tcpClients}
        self.assertEqual(len(self.reactor.tcpClients), 4)
        [factory] = factories
        self.assertIsInstance(factory, smtp.ESMTPSenderFactory)
        self.assertEqual(factory._mailclient.connectHost, "mx.example")

    def test_oneFailureAfterAllAddresses(self) -> None:
        d = self.sendmail({"mx.example": ["2001:db8::1", "192.0.2.1"]})
        factory = self.reactor.tcpClients[0][2]
        factory.clientConnectionFailed(self.reactor.connectors[0], refused())
        self.assertNoResult(d)
        factory.clientConnectionFailed(self.reactor.connectors[1], refused())
        err = self.failureResultOf(d, smtp.SMTPConnectError).value
        self.assertIsInstance(err.__cause__, error.ConnectionRefusedError)

    def test_retryTriesTheNameAgain(self) -> None:
        """
        A retry resolves the name and tries every address again.
        """
        d = self.sendmail({"mx.example": ["2001:db8::1", "192.0.2.1"]}, retries=1)
        factory = self.reactor.tcpClients[0][2]
        for i in range(2):
            factory.clientConnectionFailed(self.reactor.connectors[i], refused())
        self.assertNoResult(d)
        self.assertEqual([c[0] for c in self.reactor.tcpClients],
                         ["2001:db8::1", "192.0.2.1", "2001:db8::1"])
        for i in range(2, 4):
            factory.clientConnectionFailed(self.reactor.connectors[i], refused())
        self.failureResultOf(d, smtp.SMTPConnectError)
        self.assertEqual(len(self.reactor.tcpClients), 4)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_cancelStopsEveryAttempt(self) -> None:
        d = self.sendmail({"mx.example": V6 + V4})
        self.reactor.advance(ATTEMPT_DELAY)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertTrue(all(c._disconnected for c in self.reactor.connectors))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_ipLiteralUnchanged(self) -> None:
        """
        An IP address is one plain C{connectTCP(host, port, factory)}.
        """
        self.reactor = memoryReactor()
        smtp.sendmail("192.0.2.1", "alice@example.com", ["bob@example.org"], BODY,
                      reactor=self.reactor, port=2525)
        [(host, port, factory, timeout, bind)] = self.reactor.tcpClients
        self.assertEqual((host, port, timeout, bind), ("192.0.2.1", 2525, 30, None))
        self.assertIsInstance(factory, smtp.ESMTPSenderFactory)
        self.assertEqual(self.reactor.nameResolver.queries, [])  # type: ignore[attr-defined]

    def test_settingsChecked(self) -> None:
        self.assertRaises(ValueError, smtp.ClientSettings, connectTimeout=0)
        self.assertRaises(ValueError, smtp.ClientSettings, bindAddress="127.0.0.1")
        self.assertRaises(ValueError, smtp.ClientSettings, bindAddress=("localhost", 0))
        self.assertRaises(ValueError, smtp.ClientSettings,
                          bindAddress=[("127.0.0.1", 0), ("127.0.0.2", 0)])
        smtp.ClientSettings(bindAddress=[("127.0.0.1", 0), ("::1", 0)])

    def test_publicName(self) -> None:
        self.assertIs(smtp.connectSender, connectSender)


class LoopbackTests(TestCase):
    """
    Real connections on loopback: C{::1} and C{127.0.0.1}.
    """

    def server(self, interface: str) -> SMTPTestServer:
        server = SMTPTestServer(extensions=["PIPELINING"])
        try:
            server.listenTCP(reactor, interface=interface)
        except Exception as e:  # pragma: no cover - no IPv6 loopback here
            raise SkipTest("cannot listen on %s: %s" % (interface, e))
        self.addCleanup(server.stopListening)
        return server

    def send(self, hosts: Any, port: int, **kw: Any) -> Any:
        self.reactor = ResolvingReactor(reactor, StaticResolver(hosts))
        return smtp.sendmail("mail.test", "alice@example.com", ["bob@example.org"], BODY,
                             reactor=self.reactor, port=port, retries=0, tls=False, **kw)

    @defer.inlineCallbacks
    def test_ipv6Only(self) -> Any:
        """
        A server reachable only over IPv6 gets the mail (Twisted's
        C{connectTCP(name)} resolves IPv4 only: Twisted issue #10258).
        """
        server = self.server("::1")
        result = yield self.send({"mail.test": ["::1"]}, server.portNumber)
        self.assertEqual(result[0], 1)
        self.assertEqual(self.reactor.connections, [("TCP", "::1", server.portNumber)])
        self.assertEqual([m.rcptTo for m in server.messages], [[b"bob@example.org"]])

    @defer.inlineCallbacks
    def test_refusedFirstAddress(self) -> Any:
        """
        A first address that refuses the connection is followed at once by
        the next (IPv6 refused, IPv4 listening).
        """
        server = self.server("127.0.0.1")
        result = yield self.send({"mail.test": ["::1", "127.0.0.1"]}, server.portNumber)
        self.assertEqual(result[0], 1)
        self.assertEqual([c[1] for c in self.reactor.connections], ["::1", "127.0.0.1"])
        self.assertEqual(len(server.messages), 1)

    @defer.inlineCallbacks
    def test_blackHoleFirstAddress(self) -> Any:
        """
        A first address that never answers does not hold the mail for a
        connect timeout: the next address is tried after the delay, wins,
        and the hanging attempt is stopped.
        """
        server = self.server("127.0.0.1")
        try:
            hole = BlackHole("::1", server.portNumber)
        except OSError as e:
            raise SkipTest("cannot make a black hole on [::1]:%d: %s" % (server.portNumber, e))
        self.addCleanup(hole.close)
        if not hole.isBlackHole():
            raise SkipTest("this kernel completes connections beyond the backlog")
        result = yield self.send({"mail.test": ["::1", "127.0.0.1"]}, server.portNumber,
                                 connectTimeout=120)
        self.assertEqual(result[0], 1)
        self.assertEqual([c[1] for c in self.reactor.connections], ["::1", "127.0.0.1"])
        self.assertEqual(len(server.messages), 1)
        self.assertEqual([c for c in reactor.getDelayedCalls()  # type: ignore[attr-defined]
                          if "HappyEyeballs" in repr(c)], [])
