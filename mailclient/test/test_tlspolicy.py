"""
The library's one TLS policy (L{mailclient._wire.tlspolicy}), the per-delivery
TLS record, and the opportunistic level at work.
"""

from __future__ import annotations

import io
import os
from typing import Any, List, Tuple

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.mail import smtp as twisted_smtp
from twisted.trial.unittest import SynchronousTestCase

from mailclient import smtp
from mailclient._testing.certs import generateCertificates
from mailclient._wire.tlspolicy import TLSLevel, TLSPolicy, TLSRecord
from mailclient.testing import SMTPTestServer

BODY = b"Subject: hi\r\n\r\nHello.\r\n"
HOST = "relay.corp.example"


class ChooseTests(SynchronousTestCase):
    """
    L{TLSPolicy.choose}: the level each combination of Twisted's arguments
    selects (the table of docs/security.rst).
    """

    TABLE: List[Tuple[dict, TLSLevel, bool]] = [
        ({}, TLSLevel.MAY, False),
        ({"hostname": "mx.example"}, TLSLevel.MAY, True),
        ({"contextFactory": object()}, TLSLevel.MAY, True),
        ({"requireTransportSecurity": True}, TLSLevel.VERIFY, True),
        ({"requireAuthentication": True}, TLSLevel.VERIFY, True),
        ({"implicit": True}, TLSLevel.VERIFY, True),
        ({"tls": False}, TLSLevel.NONE, False),
        ({"tls": False, "requireTransportSecurity": True}, TLSLevel.NONE, False),
    ]

    def test_table(self) -> None:
        for arguments, level, verifies in self.TABLE:
            policy = TLSPolicy.choose(**arguments)
            self.assertEqual((policy.level, policy.verifies), (level, verifies), arguments)

    def test_levels(self) -> None:
        self.assertEqual([level.value for level in TLSLevel], ["none", "may", "encrypt", "verify"])
        self.assertEqual([level.required for level in TLSLevel], [False, False, True, True])
        self.assertTrue(TLSPolicy("verify").verifies)
        self.assertFalse(TLSPolicy("encrypt").verifies)
        self.assertRaises(ValueError, TLSPolicy, "sometimes")
        self.assertRaises(ValueError, TLSPolicy, TLSLevel.NONE, implicit=True)

    def test_settingsUseIt(self) -> None:
        """
        L{ClientSettings.tlsPolicyFor} applies L{TLSPolicy.choose} to its
        options, names the host connected to when none was given, and
        returns an explicit policy as it is.
        """
        settings = smtp.ClientSettings(requireTransportSecurity=False, requireAuthentication=False)
        policy = settings.tlsPolicyFor("mx.example")
        self.assertEqual((policy.level, policy.verifies, policy.hostname),
                         (TLSLevel.MAY, False, "mx.example"))
        explicit = TLSPolicy(TLSLevel.ENCRYPT)
        self.assertIs(settings.replace(tlsPolicy=explicit).tlsPolicyFor("mx"), explicit)

    def test_record(self) -> None:
        clear = TLSRecord(TLSLevel.MAY)
        self.assertFalse(clear.encrypted)
        self.assertEqual(clear.describe(), "no TLS (level may)")
        record = TLSRecord(TLSLevel.MAY, "TLSv1.3", "TLS_AES_128_GCM_SHA256", False,
                           "mx.example", "self-signed certificate (depth 0)")
        self.assertEqual(
            record.describe(),
            "TLSv1.3 TLS_AES_128_GCM_SHA256, not verified: self-signed certificate "
            "(depth 0) (level may)")


def deliver(factoryClass: Any, server: SMTPTestServer, *args: Any, **kw: Any) -> Tuple[Any, Any]:
    """
    Send one message with C{factoryClass} to C{server}, which answers as
    L{HOST} (not a loopback address: the credential rules apply in full).
    """
    reactor = MemoryReactorClock()
    d: defer.Deferred[Any] = defer.Deferred()
    factory = factoryClass(*args, "alice@corp.example", ["bob@corp.example"],
                           io.BytesIO(BODY), d, retries=0, **kw)
    reactor.connectTCP(HOST, 25, factory)
    connection = server.connectPending(reactor)
    for _ in range(50):
        if not connection.pump():
            break
    return factory, d


class OpportunisticTests(SynchronousTestCase):
    """
    Nothing required, no host name, no context (Buildbot's mail reporter
    with C{useTls=False}): STARTTLS is used when offered, a certificate that
    does not verify does not stop delivery, and is recorded.
    """

    def server(self, **kw: Any) -> SMTPTestServer:
        certificates = generateCertificates(HOST, selfSigned=True)
        return SMTPTestServer(tlsCertificate=certificates.serverCertificate(), **kw)

    def test_selfSignedDelivered(self) -> None:
        server = self.server(extensions=["STARTTLS"])
        factory, d = deliver(smtp.ESMTPSenderFactory, server, None, None,
                             requireAuthentication=False, requireTransportSecurity=False)
        self.assertEqual(self.successResultOf(d)[0], 1)
        self.assertTrue(server.sessions[0].tls)
        self.assertEqual([m.data for m in server.messages], [BODY])
        record = factory.tlsRecord
        self.assertEqual(record.level, TLSLevel.MAY)
        self.assertTrue(record.encrypted)
        self.assertIs(record.verified, False)
        self.assertIn("self-signed", record.reason)

    def test_twistedSendsInClear(self) -> None:
        """
        Twisted, given the same arguments, sends the same mail in clear
        (mailclient's unverified TLS is strictly better).
        """
        server = self.server(extensions=["STARTTLS"])
        factory, d = deliver(twisted_smtp.ESMTPSenderFactory, server, None, None,
                             requireAuthentication=False, requireTransportSecurity=False)
        self.assertEqual(self.successResultOf(d)[0], 1)
        self.assertFalse(server.sessions[0].tls)

    def test_notOfferedInClear(self) -> None:
        server = self.server(extensions=[])
        factory, d = deliver(smtp.ESMTPSenderFactory, server, None, None,
                             requireAuthentication=False, requireTransportSecurity=False)
        self.assertEqual(self.successResultOf(d)[0], 1)
        self.assertFalse(server.sessions[0].tls)
        self.assertEqual(factory.tlsRecord, TLSRecord(TLSLevel.MAY, hostname=HOST))

    def test_noCredentialsOverUnverifiedTLS(self) -> None:
        """
        Credentials are not sent over TLS whose certificate did not verify,
        to a remote host, unless the caller allows it.
        """
        server = self.server(extensions=["STARTTLS", "AUTH PLAIN LOGIN"],
                             credentials={"alice": "secret"})
        factory, d = deliver(smtp.ESMTPSenderFactory, server, b"alice", b"secret",
                             requireAuthentication=False, requireTransportSecurity=False)
        error = self.failureResultOf(d, smtp.AUTHRequiredError).value
        self.assertIn(b"not verified", error.resp)
        self.assertNotIn(b"AUTH", b"".join(server.sessions[0].commands))
        self.assertEqual(server.messages, [])

    def test_credentialsWhenAllowed(self) -> None:
        server = self.server(extensions=["STARTTLS", "AUTH PLAIN LOGIN"],
                             credentials={"alice": "secret"})
        factory, d = deliver(smtp.ESMTPSenderFactory, server, b"alice", b"secret",
                             requireAuthentication=False, requireTransportSecurity=False,
                             allowCleartextAuthentication=True)
        self.assertEqual(self.successResultOf(d)[0], 1)
        self.assertTrue(server.sessions[0].tls)

    def test_verifiedWhenTrusted(self) -> None:
        """
        A certificate that verifies for the host connected to is recorded
        as verified, and credentials may then be sent.
        """
        certificates = generateCertificates(HOST)
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(certificates.caCertificatePEM)
        old = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = path
        self.addCleanup(
            lambda: os.environ.pop("SSL_CERT_FILE") if old is None
            else os.environ.__setitem__("SSL_CERT_FILE", old))
        server = SMTPTestServer(tlsCertificate=certificates.serverCertificate(),
                                extensions=["STARTTLS", "AUTH PLAIN LOGIN"],
                                credentials={"alice": "secret"})
        factory, d = deliver(smtp.ESMTPSenderFactory, server, b"alice", b"secret",
                             requireAuthentication=False, requireTransportSecurity=False,
                             tlsPolicy=TLSPolicy(TLSLevel.MAY, context=None))
        self.assertEqual(self.successResultOf(d)[0], 1)
        self.assertIs(factory.tlsRecord.verified, True, factory.tlsRecord)


class VerifyWhenNamedTests(SynchronousTestCase):
    """
    A host name or a context given means verify whenever STARTTLS is used
    (Scrapy passes its host name and expects a mismatch to fail).
    """

    def test_mismatchFails(self) -> None:
        server = SMTPTestServer(extensions=["STARTTLS"])  # a certificate for localhost
        factory, d = deliver(smtp.ESMTPSenderFactory, server, None, None,
                             requireAuthentication=False, requireTransportSecurity=False,
                             hostname=HOST)
        error = self.failureResultOf(d, smtp.TLSError).value
        # Also what Twisted's callers catch.
        self.assertIsInstance(error, smtp.SMTPConnectError)
        self.assertIn(b"does not match the server host name: VerificationError: certificate "
                      b"is not valid for " + HOST.encode("ascii"), error.resp)
        self.assertEqual(server.messages, [])

    def test_requiredFailsUnverified(self) -> None:
        certificates = generateCertificates(HOST, selfSigned=True)
        server = SMTPTestServer(tlsCertificate=certificates.serverCertificate(),
                                extensions=["STARTTLS", "AUTH PLAIN"],
                                credentials={"alice": "secret"})
        factory, d = deliver(smtp.ESMTPSenderFactory, server, b"alice", b"secret")
        self.failureResultOf(d, smtp.SMTPConnectError)
        self.assertEqual(server.messages, [])
        self.assertNotIn(b"AUTH", b"".join(server.sessions[0].commands))


class BareClientTests(SynchronousTestCase):
    """
    An C{ESMTPClient} subclass with no context (the cookbook's batch
    recipes, the relayers) uses STARTTLS when the server offers it, at the
    library's C{may} level; C{opportunisticTLS = False} gives Twisted's
    behaviour back.
    """

    def send(self, server: SMTPTestServer, secret: Any = None, **attributes: Any) -> Any:
        from mailclient.test.helpers import Message, recording

        client = recording(smtp.ESMTPClient)(secret, None, b"client.example")
        client.registerAuthenticator(smtp.PLAINAuthenticator(b"alice"))
        for name, value in attributes.items():
            setattr(client, name, value)
        client.queue(Message("alice@corp.example", ["bob@corp.example"], BODY))
        from twisted.internet.address import IPv4Address

        from mailclient._testing.memory import MemoryConnection

        # A remote address: the rules for credentials apply in full.
        connection = MemoryConnection(server, client, MemoryReactorClock(),
                                      IPv4Address("TCP", "192.0.2.25", 25))
        for _ in range(50):
            if not connection.pump():
                break
        return client

    def server(self, **kw: Any) -> SMTPTestServer:
        certificates = generateCertificates(HOST, selfSigned=True)
        return SMTPTestServer(tlsCertificate=certificates.serverCertificate(), **kw)

    def test_startTLSWhenOffered(self) -> None:
        server = self.server(extensions=["STARTTLS"])
        client = self.send(server)
        self.assertEqual(len(client.delivered), 1)
        self.assertTrue(server.sessions[0].tls)
        self.assertEqual([m.data for m in server.messages], [BODY])
        record = client.tlsRecord
        self.assertEqual((record.level, record.encrypted, record.verified), (TLSLevel.MAY, True, False))
        self.assertIsNone(client.context)

    def test_switchBack(self) -> None:
        server = self.server(extensions=["STARTTLS"])
        client = self.send(server, opportunisticTLS=False)
        self.assertEqual(len(client.delivered), 1)
        self.assertFalse(server.sessions[0].tls)
        self.assertNotIn(b"STARTTLS", b"".join(server.sessions[0].commands))

    def test_notOffered(self) -> None:
        server = self.server(extensions=[])
        client = self.send(server)
        self.assertEqual(len(client.delivered), 1)
        self.assertFalse(server.sessions[0].tls)

    def test_refusedGoesOnInClear(self) -> None:
        """
        A server that offers STARTTLS and then refuses it (454) gets the
        mail in clear at level C{may}, as one that did not offer it would.
        """
        server = self.server(extensions=["STARTTLS"])
        server.script("STARTTLS", 454)
        client = self.send(server)
        self.assertEqual(len(client.delivered), 1)
        self.assertFalse(server.sessions[0].tls)
        self.assertIn(b"STARTTLS", b"".join(server.sessions[0].commands))
        self.assertFalse(client.tlsRecord.encrypted)

    def test_refusedWithOwnContextFails(self) -> None:
        """
        With the caller's own context, a refused STARTTLS fails, as in
        Twisted.
        """
        server = self.server(extensions=["STARTTLS"])
        server.script("STARTTLS", 454)
        client = self.send(server, context=server.clientTLSOptions(HOST))
        self.assertEqual(client.delivered, [])
        [error] = [c[1] for c in client.calls if c[0] == "sendError"]
        self.assertIsInstance(error, smtp.TLSError)

    def test_noCredentialsOverIt(self) -> None:
        """
        Credentials are not sent over opportunistic TLS whose certificate
        did not verify (to a remote host).
        """
        server = self.server(extensions=["STARTTLS", "AUTH PLAIN"], credentials={"alice": "secret"})
        client = self.send(server, b"secret", requireAuthentication=True)
        self.assertTrue(server.sessions[0].tls)
        self.assertNotIn(b"AUTH", b"".join(server.sessions[0].commands))
        self.assertEqual(client.delivered, [])
        [error] = [c[1] for c in client.calls if c[0] == "sendError"]
        self.assertIsInstance(error, smtp.AUTHRequiredError)


class TrustAnchorTests(SynchronousTestCase):
    """
    A policy's own trust anchors and names (C{caCertificates}, C{caFile},
    C{matchNames}) for a sender: the same policy as the relay's.
    """

    def setUp(self) -> None:
        from mailclient.test.helpers_tls import certificatesFor

        self.certs = certificatesFor(HOST)

    def deliver(self, kind: str, policy: TLSPolicy) -> Tuple[Any, Any]:
        server = SMTPTestServer(tlsCertificate=self.certs.byKind(kind).serverOptions(),
                                extensions=["STARTTLS"])
        factory, d = deliver(smtp.ESMTPSenderFactory, server, None, None,
                             requireAuthentication=False, requireTransportSecurity=False,
                             tlsPolicy=policy)
        self.server = server
        return factory, d

    def test_verifiedWithAnchors(self) -> None:
        factory, d = self.deliver("good", TLSPolicy("verify", caCertificates=(self.certs.caPEM,)))
        self.assertEqual(self.successResultOf(d)[0], 1)
        self.assertEqual((factory.tlsRecord.verified, factory.tlsRecord.hostname), (True, HOST))

    def test_caFile(self) -> None:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(self.certs.caPEM)
        factory, d = self.deliver("good", TLSPolicy("verify", caFile=path))
        self.assertEqual(self.successResultOf(d)[0], 1)
        self.assertIs(factory.tlsRecord.verified, True)

    def test_anchorsReplaceSystemStore(self) -> None:
        """
        The anchors given are the only ones trusted: a certificate from
        another CA fails at level C{verify}, and is recorded as unverified
        at level C{may}.
        """
        from mailclient.test.helpers_tls import certificatesFor

        other = certificatesFor("other.test").caPEM
        factory, d = self.deliver("good", TLSPolicy("verify", caCertificates=(other,)))
        self.assertIn(b"verification failed", self.failureResultOf(d, smtp.TLSError).value.resp)
        self.assertEqual(self.server.messages, [])
        factory, d = self.deliver("good", TLSPolicy("may", caCertificates=(other,)))
        self.assertEqual(self.successResultOf(d)[0], 1)
        self.assertIs(factory.tlsRecord.verified, False)
        self.assertIn("issuer", factory.tlsRecord.reason)

    def test_matchNames(self) -> None:
        """
        C{matchNames} replaces the host name: a certificate for another
        name verifies when it is listed (or under a listed C{.domain}), and
        fails otherwise, even at the name connected to.
        """
        anchors = (self.certs.caPEM,)
        for names in (("other.example.net",), (".example.net",), ("x.test", ".example.net")):
            factory, d = self.deliver("wrongName", TLSPolicy(
                "verify", caCertificates=anchors, matchNames=names))
            self.assertEqual(self.successResultOf(d)[0], 1, names)
            self.assertIs(factory.tlsRecord.verified, True)
        factory, d = self.deliver("good", TLSPolicy(
            "verify", caCertificates=anchors, matchNames=(".example.net",)))
        self.assertIn(b"does not match the server host name: VerificationError: certificate "
                      b"is not valid for .example.net", self.failureResultOf(d, smtp.TLSError).value.resp)
        factory, d = self.deliver("good", TLSPolicy(
            "may", caCertificates=anchors, matchNames=(".example.net",)))
        self.successResultOf(d)
        self.assertIn("not valid for .example.net", factory.tlsRecord.reason)

    def test_contexts(self) -> None:
        """
        Without anchors or names, level C{verify} uses Twisted's verifying
        options (the system trust store); with them, mailclient's own,
        enforcing; levels C{may} and C{encrypt} record.
        """
        from twisted.internet._sslverify import ClientTLSOptions

        from mailclient._protocol.tls import RecordingTLS, contextForPolicy

        self.assertIsInstance(contextForPolicy(TLSPolicy("verify"), HOST), ClientTLSOptions)
        enforcing = contextForPolicy(TLSPolicy("verify", matchNames=(HOST,)), None)
        self.assertIsInstance(enforcing, RecordingTLS)
        self.assertTrue(enforcing.enforce)  # type: ignore[attr-defined]
        for level in ("may", "encrypt"):
            recording = contextForPolicy(TLSPolicy(level, caCertificates=(self.certs.caPEM,)), HOST)
            self.assertIsInstance(recording, RecordingTLS)
            self.assertFalse(recording.enforce)  # type: ignore[attr-defined]
        self.assertIsNone(contextForPolicy(TLSPolicy("verify"), None))
        self.assertIsNone(contextForPolicy(TLSPolicy("none"), HOST))
