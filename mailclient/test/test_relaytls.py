"""
TLS on every relay hop: the policy of each destination (level, trust
anchors, names), SNI, implicit TLS to smart hosts, and the TLS record of
each delivery, against loopback servers with certificates made at test
time (L{mailclient.test.helpers_tls}) and a resolver double for DNS.

L{RelayTLSMatrixTests} has one test per combination of policy level
(none, may, encrypt, verify), server certificate (good, wrong name,
expired, self-signed) and STARTTLS (offered or not), named
C{test_<level>_<certificate>_<starttls|noStarttls>}.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from twisted.internet import defer, reactor
from twisted.logger import globalLogPublisher
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mailclient import relaymanager
from mailclient._relaying.attempt import DeliveryOutcome
from mailclient._wire.tlspolicy import SourceKind, TLSLevel, TLSPolicy, TLSPolicyMap, TLSRecord
from mailclient.relaymanager import (
    MXCalculator,
    Queue,
    SmartHostESMTPRelayingManager,
)
from mailclient.test.helpers import FakeResolver, mx
from mailclient.test.helpers_connect import RedirectingReactor
from mailclient.test.helpers_relaytls import IDENTITY, MX, SMART, RelayMixin as _RelayMixin
from mailclient.test.helpers_tls import KINDS, certificatesFor
from mailclient.smtp import PLAINAuthenticator
from mailclient.testing import SMTPTestServer

LEVELS = ("none", "may", "encrypt", "verify")

#: What each case should come to: C{"delivered verified"}, C{"delivered
#: unverified"}, C{"delivered in clear"}, C{"deferred"} (or C{"bounced"},
#: which no TLS problem leads to: Postfix defers them too).
def expectedOutcome(level: str, kind: str, offered: bool) -> str:
    if level == "none" or (not offered and level == "may"):
        return "delivered in clear"
    if not offered:
        return "deferred"
    if kind == "good":
        return "delivered verified"
    if level == "verify":
        return "deferred"
    return "delivered unverified"


#: Why each certificate but the good one does not verify for C{MX}.
REASONS = {
    "wrongName": "not valid for %s" % (MX,),
    "expired": "certificate has expired",
    "selfSigned": "self-signed certificate",
}


class RelayTLSMatrixTests(_RelayMixin, TestCase):
    """
    Each TLS level against each kind of certificate, with STARTTLS offered
    or not: the outcome, and the TLS record of the delivery.  The policy
    comes from the manager's policy map and trusts the test CA.
    """

    def setUp(self) -> None:
        self.setUpRelay()

    @defer.inlineCallbacks
    def check(self, level: str, kind: str, offered: bool) -> Any:
        certs = certificatesFor(MX)
        extensions = ["PIPELINING", "8BITMIME"] + (["STARTTLS"] if offered else [])
        server = SMTPTestServer(hostname=MX, extensions=extensions,
                                tlsCertificate=certs.byKind(kind).serverOptions())
        port = self.listen(server)
        manager = self.manager(port, tlsPolicies={
            "example.org": TLSPolicy(level, caCertificates=(certs.caPEM,))})
        name = yield self.relay(manager)
        [report] = self.reports
        expected = expectedOutcome(level, kind, offered)
        tls = report.tls
        self.assertIsInstance(tls, TLSRecord)
        assert tls is not None
        self.assertEqual((report.message, report.nextHop, report.exchange, report.address),
                         (name, "example.org", MX, "127.0.0.1"))
        self.assertEqual(tls.level, TLSLevel(level))
        self.assertEqual(tls.source.kind, SourceKind.POLICY_MAP)
        if expected == "deferred":
            self.assertEqual(report.outcome, DeliveryOutcome.DEFERRED)
            self.assertEqual(self.waiting(), [name])
            self.assertIn(name, manager.retries)
            self.assertEqual(server.messages, [])
            self.assertFalse(tls.encrypted)
            if offered:
                # The handshake failed: the certificate did not verify.
                self.assertIs(tls.verified, False)
                self.assertIn("certificate", tls.reason or "")
            else:
                self.assertIsNotNone(tls.reason)
            return
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)
        self.assertEqual(self.waiting(), [])
        self.assertEqual([m.rcptTo for m in server.messages], [[b"bob@example.org"]])
        self.assertEqual(server.sessions[-1].tls, tls.encrypted)
        if expected == "delivered in clear":
            self.assertFalse(tls.encrypted)
            self.assertNotIn(b"STARTTLS", server.sessions[-1].commands)
            return
        self.assertTrue(tls.encrypted)
        self.assertEqual(tls.hostname, MX)
        if expected == "delivered verified":
            self.assertIs(tls.verified, True)
            self.assertIsNone(tls.reason)
        else:
            self.assertIs(tls.verified, False)
            self.assertIn(REASONS[kind], tls.reason or "")


def _matrixTest(level: str, kind: str, offered: bool) -> Any:
    def test(self: RelayTLSMatrixTests) -> Any:
        return self.check(level, kind, offered)

    test.__doc__ = "Level %s, %s certificate, STARTTLS %s: %s." % (
        level, kind, "offered" if offered else "not offered",
        expectedOutcome(level, kind, offered))
    return test


for _level in LEVELS:
    for _kind in KINDS:
        for _offered in (True, False):
            _name = "test_%s_%s_%s" % (_level, _kind, "starttls" if _offered else "noStarttls")
            setattr(RelayTLSMatrixTests, _name, _matrixTest(_level, _kind, _offered))
del _level, _kind, _offered, _name


class RelayTLSTests(_RelayMixin, TestCase):
    """
    The defaults, SNI, smart hosts, implicit TLS, reports and logs.
    """

    def setUp(self) -> None:
        self.setUpRelay()

    @defer.inlineCallbacks
    def test_defaultMayWithSNI(self) -> Any:
        """
        With no configuration, mail to an MX goes over opportunistic TLS
        (level C{may}) with the MX's name as SNI and checked against the
        certificate: here the system does not trust the test CA, so it is
        delivered, recorded as not verified.
        """
        certs = certificatesFor(MX)
        options = certs.good.serverOptions()
        names: List[Optional[bytes]] = []
        options.getContext().set_tlsext_servername_callback(
            lambda connection: names.append(connection.get_servername()))
        server = SMTPTestServer(hostname=MX, tlsCertificate=options)
        port = self.listen(server)
        yield self.relay(self.manager(port))
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)
        assert report.tls is not None
        self.assertEqual((report.tls.level, report.tls.encrypted, report.tls.verified),
                         (TLSLevel.MAY, True, False))
        self.assertEqual(report.tls.hostname, MX)
        self.assertEqual(report.tls.source.kind, SourceKind.DEFAULT)
        self.assertEqual(names, [MX.encode("ascii")])

    @defer.inlineCallbacks
    def test_failoverAfterTLSFailure(self) -> Any:
        """
        At level C{verify}, an exchange whose certificate does not verify is
        marked bad and the next one is tried in the same attempt; the report
        names the exchange that took the mail, with its own TLS record.
        """
        certs = certificatesFor("mx1.example.org")
        good = certificatesFor("mx2.example.org", otherName="mx1.example.org")
        bad = SMTPTestServer(hostname="mx1.example.org",
                             tlsCertificate=certs.selfSigned.serverOptions())
        server = SMTPTestServer(hostname="mx2.example.org",
                                tlsCertificate=good.good.serverOptions())
        ports = {"192.0.2.1": self.listen(bad), "192.0.2.2": self.listen(server)}
        self.resolver = FakeResolver([
            ("example.org", mx(10, "mx1.example.org")),
            ("example.org", mx(20, "mx2.example.org")),
            ("mx1.example.org", dns.Record_A("192.0.2.1")),
            ("mx2.example.org", dns.Record_A("192.0.2.2")),
        ])
        mxcalc = MXCalculator(self.resolver, self.clock)
        manager = self.manager(25, mxcalc=mxcalc, reactor=RedirectingReactor(reactor, ports),
                               tlsPolicies={"example.org": TLSPolicy(
                                   "verify", caCertificates=(certs.caPEM, good.caPEM))})
        yield self.relay(manager)
        [report] = self.reports
        self.assertEqual((report.outcome, report.exchange, report.address),
                         (DeliveryOutcome.DELIVERED, "mx2.example.org", "127.0.0.1"))
        assert report.tls is not None
        self.assertEqual((report.tls.verified, report.tls.hostname), (True, "mx2.example.org"))
        self.assertEqual(list(mxcalc.badMXs), ["mx1.example.org"])
        self.assertEqual(len(server.messages), 1)
        self.assertEqual(bad.messages, [])

    @defer.inlineCallbacks
    def test_bounceRecordsTLS(self) -> Any:
        """
        A message refused for good over TLS is returned to its sender; its
        report says so, with the TLS it got.
        """
        certs = certificatesFor(MX)
        server = SMTPTestServer(hostname=MX, tlsCertificate=certs.good.serverOptions())
        server.rcptReply("bob@example.org", 550, b"5.1.1 no such user")
        port = self.listen(server)
        manager = self.manager(port, tlsPolicies={"example.org": TLSPolicy(
            "verify", caCertificates=(certs.caPEM,))})
        name = yield self.relay(manager)
        [report] = self.reports
        self.assertEqual((report.message, report.outcome, report.status),
                         (name, DeliveryOutcome.BOUNCED, "5.1.1"))
        assert report.tls is not None
        self.assertEqual((report.tls.verified, report.tls.level), (True, TLSLevel.VERIFY))
        [bounce] = self.waiting()
        self.assertNotEqual(bounce, name)

    @defer.inlineCallbacks
    def test_logged(self) -> Any:
        """
        Each delivery is logged with its TLS record.
        """
        events: List[Dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        certs = certificatesFor(MX)
        server = SMTPTestServer(hostname=MX, tlsCertificate=certs.selfSigned.serverOptions())
        port = self.listen(server)
        yield self.relay(self.manager(port))
        [event] = [e for e in events if "deliveryReport" in e]
        self.assertEqual(event["tlsRecord"], self.reports[0].tls)
        self.assertIn("delivered; TLS: TLSv1", event["description"])
        self.assertIn("not verified: self-signed certificate", event["description"])

    @defer.inlineCallbacks
    def test_selfSignedSmartHostByDefault(self) -> Any:
        """
        An internal smart host with a self-signed certificate keeps working
        with no configuration (level C{may}), as with Twisted, over TLS.
        """
        certs = certificatesFor(SMART)
        server = SMTPTestServer(hostname=SMART, tlsCertificate=certs.selfSigned.serverOptions())
        port = self.listen(server)
        manager = self.manager(port, smartHost=(SMART, port))
        yield self.relay(manager)
        [report] = self.reports
        self.assertEqual((report.outcome, report.nextHop, report.exchange),
                         (DeliveryOutcome.DELIVERED, None, SMART))
        assert report.tls is not None
        self.assertEqual((report.tls.level, report.tls.encrypted, report.tls.verified),
                         (TLSLevel.MAY, True, False))

    @defer.inlineCallbacks
    def test_smartHostWithCredentialsVerifies(self) -> Any:
        """
        With credentials the smart host's certificate must verify (level
        C{verify}): a self-signed one defers the mail, and no password is
        sent.
        """
        certs = certificatesFor(SMART)
        server = SMTPTestServer(hostname=SMART, credentials={"relay": "secret"},
                                tlsCertificate=certs.selfSigned.serverOptions())
        port = self.listen(server)
        manager = self.manager(port, smartHost=(SMART, port),
                               fArgs=(lambda addr: b"secret", None, IDENTITY))
        name = yield self.relay(manager)
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DEFERRED)
        assert report.tls is not None
        self.assertEqual((report.tls.level, report.tls.verified), (TLSLevel.VERIFY, False))
        self.assertEqual(self.waiting(), [name])
        self.assertEqual([s.authenticated for s in server.sessions], [None])

    def trustedSmartHost(self, password: bytes) -> tuple[SMTPTestServer, Any]:
        """
        A smart host asking for a login (user C{relay}, password C{secret}),
        whose CA the manager trusts; the manager's relayers give
        C{password}.
        """
        certs = certificatesFor(SMART)
        server = SMTPTestServer(hostname=SMART, credentials={"relay": "secret"},
                                tlsCertificate=certs.good.serverOptions())
        port = self.listen(server)
        manager = self.manager(port, smartHost=(SMART, port))
        manager.tlsCACertificates = (certs.caPEM,)
        manager.fArgs = (lambda addr: password, None, IDENTITY)
        manager.fKwArgs = {}
        return server, manager

    @defer.inlineCallbacks
    def test_smartHostTrustAnchors(self) -> Any:
        """
        Given the CA that signed the smart host's certificate
        (C{tlsCACertificates}, Postfix's C{smtp_tls_CAfile}), the level is
        C{verify}: the certificate verifies and the credentials go over it.
        """
        _, manager = self.trustedSmartHost(b"secret")
        yield self.relay(manager)
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)
        assert report.tls is not None
        self.assertEqual((report.tls.level, report.tls.verified), (TLSLevel.VERIFY, True))

    @defer.inlineCallbacks
    def test_declinedLoginDefersWithTheReply(self) -> Any:
        """
        A smart host that declines the login (535) refuses the session, not
        the message: the message waits again, and its report carries the
        server's reply (status 4.7.8 from its 5.7.8), not a lost connection.
        """
        server, manager = self.trustedSmartHost(b"wrong")

        class LoggingIn(relaymanager.ESMTPManagedRelayerFactory):
            def buildProtocol(self, addr: Any) -> Any:
                relayer = relaymanager.ESMTPManagedRelayerFactory.buildProtocol(self, addr)
                relayer.registerAuthenticator(PLAINAuthenticator("relay"))
                relayer.requireAuthentication = True
                return relayer

        manager.factory = LoggingIn
        name = yield self.relay(manager)
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DEFERRED)
        self.assertEqual(report.status, "4.7.8")
        self.assertIn("535", report.reason)
        self.assertEqual(self.waiting(), [name])
        self.assertEqual([s.authenticated for s in server.sessions], [None])

    @defer.inlineCallbacks
    def test_deferredReportSaysWhatTheServerSaid(self) -> Any:
        """
        A message refused for now is reported with the server's reply as
        its reason, whatever the reply refused (here RCPT).
        """
        server = SMTPTestServer(hostname=SMART)
        server.rcptReply("bob@example.org", 451, b"4.7.1 greylisted, come back later")
        port = self.listen(server)
        manager = self.manager(port, smartHost=(SMART, port))
        name = yield self.relay(manager)
        [report] = self.reports
        self.assertEqual((report.outcome, report.status), (DeliveryOutcome.DEFERRED, "4.7.1"))
        self.assertIn("greylisted, come back later", report.reason)
        self.assertIn("451", report.reason)
        self.assertEqual(self.waiting(), [name])

    @defer.inlineCallbacks
    def test_smartHostCAFile(self) -> Any:
        """
        C{tlsCAFile} names the trust anchors in a file.
        """
        certs = certificatesFor(SMART)
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(certs.caPEM)
        server = SMTPTestServer(hostname=SMART, tlsCertificate=certs.good.serverOptions())
        port = self.listen(server)
        manager = self.manager(port, smartHost=(SMART, port), tlsCAFile=path)
        yield self.relay(manager)
        [report] = self.reports
        assert report.tls is not None
        self.assertEqual((report.outcome, report.tls.level, report.tls.verified),
                         (DeliveryOutcome.DELIVERED, TLSLevel.VERIFY, True))

    @defer.inlineCallbacks
    def test_implicitTLSSmartHost(self) -> Any:
        """
        A smart host spoken to over TLS from the first byte (SMTPS, port 465
        or C{smartHostImplicitTLS}): no STARTTLS, the certificate verified
        with the policy's trust anchors.
        """
        certs = certificatesFor(SMART)
        server = SMTPTestServer(hostname=SMART, extensions=["PIPELINING", "8BITMIME"])
        port = self.listen(server, certs.good.serverOptions())
        manager = self.manager(port, smartHost=(SMART, port), tlsPolicies={
            "[%s]" % (SMART,): TLSPolicy("verify", caCertificates=(certs.caPEM,))})
        manager.smartHostImplicitTLS = True
        yield self.relay(manager)
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)
        assert report.tls is not None
        self.assertEqual((report.tls.encrypted, report.tls.verified, report.tls.level),
                         (True, True, TLSLevel.VERIFY))
        self.assertNotIn(b"STARTTLS", server.sessions[0].commands)
        self.assertEqual(len(server.messages), 1)

    @defer.inlineCallbacks
    def test_implicitTLSWrongCertificate(self) -> Any:
        certs = certificatesFor(SMART)
        server = SMTPTestServer(hostname=SMART, extensions=["PIPELINING"])
        port = self.listen(server, certs.wrongName.serverOptions())
        manager = self.manager(port, smartHost=(SMART, port), tlsPolicies={
            SMART: TLSPolicy("verify", implicit=True, caCertificates=(certs.caPEM,))})
        name = yield self.relay(manager)
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DEFERRED)
        self.assertEqual(self.waiting(), [name])
        self.assertEqual(server.messages, [])

    @defer.inlineCallbacks
    def test_matchNames(self) -> Any:
        """
        A policy may accept other names than the exchange's (Postfix's
        C{match=}): here any name under C{example.net}.
        """
        certs = certificatesFor(MX)
        server = SMTPTestServer(hostname=MX, tlsCertificate=certs.wrongName.serverOptions())
        port = self.listen(server)
        manager = self.manager(port, tlsPolicies={"example.org": TLSPolicy(
            "verify", caCertificates=(certs.caPEM,), matchNames=(".example.net",))})
        yield self.relay(manager)
        [report] = self.reports
        assert report.tls is not None
        self.assertEqual((report.outcome, report.tls.verified),
                         (DeliveryOutcome.DELIVERED, True))

    @defer.inlineCallbacks
    def test_twistedContextStillUsed(self) -> Any:
        """
        A context given the Twisted way (C{fArgs}) is used for every
        exchange, with its own verification.
        """
        certs = certificatesFor(MX)
        server = SMTPTestServer(hostname=MX, tlsCertificate=certs.good.serverOptions())
        port = self.listen(server)
        from twisted.internet import ssl

        context = ssl.optionsForClientTLS(MX, trustRoot=ssl.Certificate.loadPEM(certs.caPEM))
        manager = self.manager(port, fArgs=(None, context, IDENTITY))
        yield self.relay(manager)
        [report] = self.reports
        assert report.tls is not None
        # (Verified by the caller's context: the record cannot tell.)
        self.assertEqual((report.outcome, report.tls.encrypted, report.tls.verified),
                         (DeliveryOutcome.DELIVERED, True, None))


class PolicyChoiceTests(SynchronousTestCase):
    """
    L{SmartHostESMTPRelayingManager.tlsPolicyFor}: which policy each
    destination gets.  (Pure: nothing connects.)
    """

    def manager(self, **kw: Any) -> SmartHostESMTPRelayingManager:
        directory = self.mktemp()
        os.mkdir(directory)
        return SmartHostESMTPRelayingManager(Queue(directory), **kw)

    class Factory:
        contextFactory: Any = None
        secret: Any = None

    def test_mxDefault(self) -> None:
        policy = self.manager().tlsPolicyFor("example.org", MX, 25, self.Factory())
        self.assertEqual((policy.level, policy.hostname, policy.verifies, policy.implicit),
                         (TLSLevel.MAY, MX, False, False))

    def test_levelSetting(self) -> None:
        policy = self.manager(tlsSecurityLevel="encrypt").tlsPolicyFor(
            "example.org", MX, 25, self.Factory())
        self.assertEqual(policy.level, TLSLevel.ENCRYPT)

    def test_mapEntries(self) -> None:
        manager = self.manager(tlsPolicies={
            "example.org": "verify", ".corp.test": TLSPolicy("encrypt", hostname="x.test"),
            "[%s]:587" % (SMART,): "none"})
        self.assertEqual(manager.tlsPolicyFor("EXAMPLE.ORG.", MX, 25).level, TLSLevel.VERIFY)
        policy = manager.tlsPolicyFor("a.corp.test", "mx.a.corp.test", 25)
        self.assertEqual((policy.level, policy.hostname), (TLSLevel.ENCRYPT, "x.test"))
        self.assertEqual(manager.tlsPolicyFor("other.test", "mx.other.test", 25).level,
                         TLSLevel.MAY)
        self.assertEqual(manager.tlsPolicyFor(None, SMART, 587).level, TLSLevel.NONE)
        self.assertEqual(manager.tlsPolicyFor(None, SMART, 25).level, TLSLevel.MAY)
        self.assertIsInstance(manager.tlsPolicies, TLSPolicyMap)

    def test_smartHostDefaults(self) -> None:
        """
        A smart host: C{may}; C{verify} with credentials or trust anchors;
        implicit TLS on port 465.
        """
        manager = self.manager()
        factory = self.Factory()
        self.assertEqual(manager.tlsPolicyFor(None, SMART, 25, factory).level, TLSLevel.MAY)
        factory.secret = lambda addr: b"secret"
        self.assertEqual(manager.tlsPolicyFor(None, SMART, 25, factory).level, TLSLevel.VERIFY)
        factory.secret = None
        manager.tlsCAFile = "/etc/ssl/corp-ca.pem"
        policy = manager.tlsPolicyFor(None, SMART, 25, factory)
        self.assertEqual((policy.level, policy.caFile), (TLSLevel.VERIFY, "/etc/ssl/corp-ca.pem"))
        # The trust anchors are the smart host's: MX delivery keeps the
        # system's.
        self.assertIsNone(manager.tlsPolicyFor("example.org", MX, 25, factory).caFile)
        self.assertTrue(manager.tlsPolicyFor(None, SMART, 465, factory).implicit)
        self.assertFalse(manager.tlsPolicyFor("example.org", MX, 465, factory).implicit)
        manager.smartHostImplicitTLS = False
        self.assertFalse(manager.tlsPolicyFor(None, SMART, 465, factory).implicit)

    def test_twistedContext(self) -> None:
        context = object()
        factory = self.Factory()
        factory.contextFactory = context
        policy = self.manager().tlsPolicyFor("example.org", MX, 25, factory)
        self.assertIs(policy.context, context)
        self.assertEqual((policy.level, policy.verifies), (TLSLevel.MAY, True))

    def test_pickled(self) -> None:
        """
        The TLS settings survive pickling, as plain data.
        """
        import pickle

        manager = self.manager(tlsPolicies={"example.org": TLSPolicy(
            "verify", matchNames=(".example.org",))}, tlsSecurityLevel="encrypt",
            bindAddress=("127.0.0.1", 0), connectTimeout=10)
        data = pickle.dumps(manager)
        self.assertNotIn(b"mailclient._", data)
        copy = pickle.loads(data)
        self.assertEqual(copy.tlsPolicies.forDomain("example.org"),
                         manager.tlsPolicies.forDomain("example.org"))
        self.assertEqual((copy.tlsSecurityLevel, copy.bindAddress, copy.connectTimeout),
                         (TLSLevel.ENCRYPT, ("127.0.0.1", 0), 10))
        self.assertEqual(copy.deliveryObservers, [])


class PolicyMapTests(SynchronousTestCase):
    """
    L{TLSPolicyMap} and the new fields of L{TLSPolicy}.  (Pure.)
    """

    def test_lookup(self) -> None:
        policies = TLSPolicyMap({"example.com": "verify", ".example.org": "encrypt",
                                 "[smtp.example.net]:587": "may", "[192.0.2.1]": "none"})
        self.assertEqual(policies.forDomain("Example.COM.").level, TLSLevel.VERIFY)  # type: ignore[union-attr]
        self.assertIsNone(policies.forDomain("mail.example.com"))
        self.assertEqual(policies.forDomain("a.b.example.org").level, TLSLevel.ENCRYPT)  # type: ignore[union-attr]
        self.assertIsNone(policies.forDomain("example.org"))
        self.assertEqual(policies.forDomain("[192.0.2.1]").level, TLSLevel.NONE)  # type: ignore[union-attr]
        self.assertEqual(policies.forHost("smtp.example.net", 587).level, TLSLevel.MAY)  # type: ignore[union-attr]
        self.assertIsNone(policies.forHost("smtp.example.net", 25))
        self.assertEqual(len(policies), 4)
        self.assertRaises(ValueError, TLSPolicyMap, {"example.com": "sometimes"})
        self.assertRaises(TypeError, TLSPolicyMap, {"example.com": 3})

    def test_policyFields(self) -> None:
        certs = certificatesFor(MX)
        policy = TLSPolicy("verify", caCertificates=certs.caPEM, matchNames="Mail.Example.ORG.")
        self.assertEqual(policy.caCertificates, (certs.caPEM,))
        self.assertEqual(policy.matchNames, ("mail.example.org",))
        self.assertTrue(policy.hasTrustAnchors)
        self.assertFalse(TLSPolicy().hasTrustAnchors)
        self.assertRaises(ValueError, TLSPolicy, caCertificates=(b"not a certificate",))
        self.assertRaises(ValueError, TLSPolicy, matchNames=("",))
        self.assertEqual(TLSPolicy().withHostname("a.test").hostname, "a.test")
        self.assertEqual(TLSPolicy(hostname="b.test").withHostname("a.test").hostname, "b.test")
