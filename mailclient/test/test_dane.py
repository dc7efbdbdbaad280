"""
DANE for SMTP (RFC 7672): TLSA records and their matching (pure), the
lookup with the AD bit from a trusted resolver (a DNS server of the
tests' own on loopback), and the relay: DANE-EE and DANE-TA matches,
mismatches, unusable and unvalidated records, and DANE's precedence over
MTA-STS.
"""

from __future__ import annotations

import datetime
from typing import Any, Dict, List, Sequence, Tuple

from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mailclient._relaying.attempt import DeliveryOutcome
from mailclient._relaying.dane import DNSSECResolver, TLSAAnswer, TLSALookupError
from mailclient._wire.dane import (
    DANEMismatch,
    TLSAError,
    TLSARecord,
    matchChain,
    parseTLSA,
    tlsaName,
    usable,
)
from mailclient._wire.tlspolicy import SourceKind, TLSLevel
from mailclient.test import helpers_tls
from mailclient.test.helpers_relaytls import (
    CERTS,
    ENFORCE,
    MX,
    FakeTLSA,
    RelayMixin,
    STSMixin,
    chainOptions,
    der,
    rdata,
    tlsa,
)
from mailclient.test.helpers_tls import ServerCertificate, certificatesFor
from mailclient.testing import SMTPTestServer


class TLSARecordTests(SynchronousTestCase):
    """
    Reading TLSA records, and which ones SMTP can use.
    """

    def test_parse(self) -> None:
        record = parseTLSA(b"\x03\x01\x01" + b"\xab" * 32)
        self.assertEqual((record.usage, record.selector, record.matchingType, record.data),
                         (3, 1, 1, b"\xab" * 32))
        self.assertEqual(str(record), "3 1 1 " + "ab" * 32)
        self.assertTrue(record.usable)

    def test_tooShort(self) -> None:
        self.assertRaises(TLSAError, parseTLSA, b"\x03\x01\x01")

    def test_unusable(self) -> None:
        """
        PKIX usages (0, 1), unknown selectors or matching types, and
        digests of the wrong size are unusable for SMTP.
        """
        for record in (TLSARecord(0, 0, 1, b"a" * 32), TLSARecord(1, 1, 1, b"a" * 32),
                       TLSARecord(3, 2, 1, b"a" * 32), TLSARecord(3, 1, 3, b"a" * 32),
                       TLSARecord(3, 1, 1, b"a" * 31), TLSARecord(2, 1, 2, b"a" * 32)):
            self.assertFalse(record.usable, record)
        self.assertEqual(usable([TLSARecord(0, 0, 1, b"a" * 32)]), ())

    def test_name(self) -> None:
        self.assertEqual(tlsaName("MX.Example.org."), "_25._tcp.mx.example.org")


class MatchTests(SynchronousTestCase):
    """
    L{matchChain}.
    """

    def chain(self, certificate: ServerCertificate, certs: helpers_tls.TestCertificates = CERTS) -> List[bytes]:
        return [der(certificate.certificatePEM), der(certs.caPEM)]

    def test_eeEverySelectorAndMatchingType(self) -> None:
        """
        DANE-EE matches the server's certificate by the whole certificate or
        its key, in full, SHA-256 or SHA-512.
        """
        for selector in (0, 1):
            for matching in (0, 1, 2):
                record = tlsa(3, selector, matching, CERTS.selfSigned.certificatePEM)
                self.assertEqual(matchChain([record], [der(CERTS.selfSigned.certificatePEM)]),
                                 record)

    def test_eeIgnoresNamesAndDates(self) -> None:
        """
        DANE-EE checks neither names nor dates (RFC 7672 section 3.1.1).
        """
        for certificate in (CERTS.expired, CERTS.wrongName):
            record = tlsa(3, 1, 1, certificate.certificatePEM)
            self.assertEqual(matchChain([record], self.chain(certificate), ["mx.example.org"]),
                             record)

    def test_eeMismatch(self) -> None:
        record = tlsa(3, 1, 1, CERTS.good.certificatePEM)
        e = self.assertRaises(DANEMismatch, matchChain, [record],
                              [der(CERTS.selfSigned.certificatePEM)])
        self.assertIn("no TLSA record matches", str(e))

    def test_taMatch(self) -> None:
        """
        DANE-TA matches a certificate above the server's that signed the
        chain; the server's certificate must be valid for the name.
        """
        for selector in (0, 1):
            record = tlsa(2, selector, 1, CERTS.caPEM)
            self.assertEqual(matchChain([record], self.chain(CERTS.good), [MX]), record)

    def test_taWrongName(self) -> None:
        record = tlsa(2, 0, 1, CERTS.caPEM)
        e = self.assertRaises(DANEMismatch, matchChain, [record], self.chain(CERTS.wrongName),
                              [MX])
        self.assertIn("not valid for", str(e))

    def test_taExpired(self) -> None:
        record = tlsa(2, 0, 1, CERTS.caPEM)
        self.assertRaises(DANEMismatch, matchChain, [record], self.chain(CERTS.expired), [MX])

    def test_taNotSigned(self) -> None:
        """
        A trust anchor that did not sign the server's certificate does not
        make it trusted.
        """
        other = certificatesFor("other.example.org")
        record = tlsa(2, 0, 1, other.caPEM)
        chain = [der(CERTS.good.certificatePEM), der(other.caPEM)]
        e = self.assertRaises(DANEMismatch, matchChain, [record], chain, [MX])
        self.assertIn("not signed", str(e))

    def test_taDoesNotMatchLeaf(self) -> None:
        """
        DANE-TA does not match the server's own certificate.
        """
        record = tlsa(2, 0, 1, CERTS.selfSigned.certificatePEM)
        self.assertRaises(DANEMismatch, matchChain, [record],
                          [der(CERTS.selfSigned.certificatePEM)], [MX])

    def test_dateGiven(self) -> None:
        """
        The time the dates are checked against can be given.
        """
        record = tlsa(2, 0, 1, CERTS.caPEM)
        past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=10)
        self.assertEqual(matchChain([record], self.chain(CERTS.expired), [MX], now=past), record)


class _DNSServer(DatagramProtocol):
    """
    A DNS server on loopback answering TLSA queries from a table, setting
    the AD bit as told.
    """

    def __init__(self, answers: Dict[str, Sequence[bytes]], authenticated: bool = True,
                 rCode: int = dns.OK) -> None:
        self.answers = answers
        self.authenticated = authenticated
        self.rCode = rCode
        self.queries: List[dns.Message] = []

    def datagramReceived(self, data: bytes, addr: Tuple[str, int]) -> None:
        query = dns.Message()
        query.fromStr(data)
        self.queries.append(query)
        name = query.queries[0].name.name.decode("ascii")
        reply = dns.Message(id=query.id, answer=1, recDes=1, recAv=1,
                            authenticData=int(self.authenticated))
        reply.queries = query.queries
        reply.rCode = self.rCode
        if name not in self.answers and self.rCode == dns.OK:
            reply.rCode = dns.ENAME
        for payload in self.answers.get(name, ()):
            reply.answers.append(dns.RRHeader(name, 52, dns.IN, 60, dns.UnknownRecord(payload)))
        assert self.transport is not None
        self.transport.write(reply.toStr(), addr)


class DNSSECResolverTests(TestCase):
    """
    L{DNSSECResolver} against a DNS server of the tests' own.
    """

    def serve(self, server: _DNSServer) -> DNSSECResolver:
        port = reactor.listenUDP(0, server, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        return DNSSECResolver([("127.0.0.1", port.getHost().port)], reactor, timeout=30)

    @defer.inlineCallbacks
    def test_authenticated(self) -> Any:
        """
        Records with the AD bit: validated; the query asked for the AD bit.
        """
        record = tlsa(3, 1, 1, CERTS.good.certificatePEM)
        server = _DNSServer({"_25._tcp." + MX: [rdata(record), b"\x00\x00\x01" + b"a" * 32]})
        answer = yield self.serve(server).lookupTLSA(MX)
        self.assertTrue(answer.authenticated)
        self.assertEqual(answer.usable, (record,))
        self.assertEqual(len(answer.records), 2)
        self.assertTrue(server.queries[0].authenticData)
        self.assertEqual(server.queries[0].queries[0].type, 52)

    @defer.inlineCallbacks
    def test_notAuthenticated(self) -> Any:
        record = tlsa(3, 1, 1, CERTS.good.certificatePEM)
        server = _DNSServer({"_25._tcp." + MX: [rdata(record)]}, authenticated=False)
        answer = yield self.serve(server).lookupTLSA(MX)
        self.assertFalse(answer.authenticated)
        self.assertFalse(answer.present)

    @defer.inlineCallbacks
    def test_noSuchName(self) -> Any:
        answer = yield self.serve(_DNSServer({})).lookupTLSA(MX)
        self.assertEqual(answer.records, ())
        self.assertFalse(answer.present)

    @defer.inlineCallbacks
    def test_serverFailure(self) -> Any:
        """
        SERVFAIL (with a validating resolver: perhaps bogus records) is a
        failed lookup.
        """
        d = self.serve(_DNSServer({}, rCode=dns.ESERVER)).lookupTLSA(MX)
        yield self.assertFailure(d, TLSALookupError)


class DANERelayTests(RelayMixin, TestCase):
    """
    The relay with DANE.
    """

    def setUp(self) -> None:
        self.setUpRelay()

    def serve(self, options: Any, starttls: bool = True) -> Tuple[SMTPTestServer, int]:
        extensions = ["PIPELINING", "8BITMIME"] + (["STARTTLS"] if starttls else [])
        server = SMTPTestServer(hostname=MX, extensions=extensions, tlsCertificate=options)
        return server, self.listen(server)

    def daneManager(self, port: int, *records: TLSARecord, authenticated: bool = True,
                    answer: Any = None) -> Any:
        if answer is None:
            answer = TLSAAnswer(tuple(records), authenticated)
        self.tlsa = FakeTLSA({MX: answer})
        return self.manager(port, daneResolver=self.tlsa)

    @defer.inlineCallbacks
    def test_eeMatch(self) -> Any:
        """
        DANE-EE: a self-signed certificate matching the record is verified
        (by DANE); the record says which TLSA record matched.
        """
        record = tlsa(3, 1, 1, CERTS.selfSigned.certificatePEM)
        server, port = self.serve(CERTS.selfSigned.serverOptions())
        yield self.relay(self.daneManager(port, record))
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)
        tls = report.tls
        assert tls is not None
        self.assertEqual((tls.level, tls.verified, tls.source.kind, tls.daneMatch),
                         (TLSLevel.VERIFY, True, SourceKind.DANE, str(record)))
        self.assertIn("verified by DANE TLSA 3 1 1", tls.describe())
        self.assertEqual(self.tlsa.asked, [(MX, 25)])
        self.assertEqual(len(server.messages), 1)

    @defer.inlineCallbacks
    def test_eeMatchWrongNameExpired(self) -> Any:
        """
        DANE-EE: names and dates are not checked.
        """
        record = tlsa(3, 0, 2, CERTS.expired.certificatePEM)
        server, port = self.serve(CERTS.expired.serverOptions())
        yield self.relay(self.daneManager(port, record))
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)

    @defer.inlineCallbacks
    def test_taMatch(self) -> Any:
        """
        DANE-TA: the CA in the chain matches, the certificate is valid for
        the MX: delivered, though the system does not trust the CA.
        """
        record = tlsa(2, 1, 1, CERTS.caPEM)
        server, port = self.serve(chainOptions(CERTS.good))
        yield self.relay(self.daneManager(port, record))
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)
        assert report.tls is not None
        self.assertEqual((report.tls.verified, report.tls.daneMatch), (True, str(record)))

    @defer.inlineCallbacks
    def test_taWrongName(self) -> Any:
        """
        DANE-TA: a certificate for another name is refused: deferred.
        """
        record = tlsa(2, 1, 1, CERTS.caPEM)
        server, port = self.serve(chainOptions(CERTS.wrongName))
        name = yield self.relay(self.daneManager(port, record))
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DEFERRED)
        self.assertEqual(server.messages, [])
        self.assertEqual(self.waiting(), [name])

    @defer.inlineCallbacks
    def test_mismatchDeferred(self) -> Any:
        """
        No record matches the chain: the handshake fails, the message is
        deferred, the reason says DANE.
        """
        record = tlsa(3, 1, 1, CERTS.good.certificatePEM)
        server, port = self.serve(CERTS.selfSigned.serverOptions())
        name = yield self.relay(self.daneManager(port, record))
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DEFERRED)
        assert report.tls is not None
        self.assertIs(report.tls.verified, False)
        self.assertIn("DANE", report.tls.reason or "")
        self.assertEqual(server.messages, [])
        self.assertEqual(self.waiting(), [name])

    @defer.inlineCallbacks
    def test_noSTARTTLSDeferred(self) -> Any:
        """
        Validated records require TLS: a server without STARTTLS gets
        nothing.
        """
        record = tlsa(3, 1, 1, CERTS.selfSigned.certificatePEM)
        server, port = self.serve(CERTS.selfSigned.serverOptions(), starttls=False)
        yield self.relay(self.daneManager(port, record))
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DEFERRED)
        self.assertEqual(server.messages, [])

    @defer.inlineCallbacks
    def test_unusableRecordsMandatoryTLS(self) -> Any:
        """
        Only unusable records: TLS is mandatory but unauthenticated: a
        self-signed certificate is delivered to (level encrypt).
        """
        server, port = self.serve(CERTS.selfSigned.serverOptions())
        yield self.relay(self.daneManager(port, TLSARecord(1, 1, 1, b"\x00" * 32)))
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)
        assert report.tls is not None
        self.assertEqual((report.tls.level, report.tls.encrypted, report.tls.source.kind),
                         (TLSLevel.ENCRYPT, True, SourceKind.DANE))

    @defer.inlineCallbacks
    def test_unusableRecordsNoSTARTTLS(self) -> Any:
        """
        Only unusable records, and no STARTTLS: deferred, never in clear.
        """
        server, port = self.serve(CERTS.selfSigned.serverOptions(), starttls=False)
        yield self.relay(self.daneManager(port, TLSARecord(0, 0, 1, b"\x00" * 32)))
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DEFERRED)
        self.assertEqual(server.messages, [])

    @defer.inlineCallbacks
    def test_unvalidatedRecordsIgnored(self) -> Any:
        """
        Records without the AD bit are ignored: the default policy applies
        (a record that would not match does not stop the mail).
        """
        record = tlsa(3, 1, 1, CERTS.good.certificatePEM)
        server, port = self.serve(CERTS.selfSigned.serverOptions())
        yield self.relay(self.daneManager(port, record, authenticated=False))
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)
        assert report.tls is not None
        self.assertEqual((report.tls.level, report.tls.source.kind),
                         (TLSLevel.MAY, SourceKind.DEFAULT))

    @defer.inlineCallbacks
    def test_lookupFailureDefers(self) -> Any:
        """
        A TLSA lookup that fails (SERVFAIL: perhaps bogus) keeps the host
        out for now.
        """
        server, port = self.serve(CERTS.good.serverOptions())
        manager = self.daneManager(port, answer=TLSALookupError("SERVFAIL"))
        yield self.relay(manager)
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DEFERRED)
        self.assertEqual(server.sessions, [])

    @defer.inlineCallbacks
    def test_policyMapWins(self) -> Any:
        """
        An entry of the policy map for the domain is the operator's word:
        DANE is not looked up.
        """
        server, port = self.serve(CERTS.good.serverOptions())
        manager = self.daneManager(port, tlsa(3, 1, 1, CERTS.selfSigned.certificatePEM))
        manager.tlsPolicies = type(manager.tlsPolicies)({"example.org": "encrypt"})
        yield self.relay(manager)
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)
        assert report.tls is not None
        self.assertEqual(report.tls.source.kind, SourceKind.POLICY_MAP)
        self.assertEqual(self.tlsa.asked, [])


class PrecedenceTests(STSMixin, TestCase):
    """
    DANE over MTA-STS.
    """

    def setUp(self) -> None:
        self.setUpSTS()

    @defer.inlineCallbacks
    def test_daneOverSTS(self) -> Any:
        """
        The domain has an enforce policy naming the MX, and the MX has
        validated TLSA records: DANE decides (a self-signed certificate
        matching the record is delivered to, which the policy's check
        would refuse).
        """
        self.policy.body = ENFORCE
        record = tlsa(3, 1, 1, CERTS.selfSigned.certificatePEM)
        server = SMTPTestServer(hostname=MX, tlsCertificate=CERTS.selfSigned.serverOptions())
        port = self.listen(server)
        manager = self.stsManager(port, daneResolver=FakeTLSA({MX: TLSAAnswer((record,), True)}))
        yield self.relay(manager)
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)
        assert report.tls is not None
        self.assertEqual((report.tls.source.kind, report.tls.daneMatch),
                         (SourceKind.DANE, str(record)))

    @defer.inlineCallbacks
    def test_stsWithoutValidatedRecords(self) -> Any:
        """
        Unvalidated records: MTA-STS applies (and refuses the self-signed
        certificate).
        """
        self.policy.body = ENFORCE
        record = tlsa(3, 1, 1, CERTS.selfSigned.certificatePEM)
        server = SMTPTestServer(hostname=MX, tlsCertificate=CERTS.selfSigned.serverOptions())
        port = self.listen(server)
        manager = self.stsManager(port, daneResolver=FakeTLSA({MX: TLSAAnswer((record,), False)}))
        yield self.relay(manager)
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DEFERRED)
        assert report.tls is not None
        self.assertEqual(report.tls.source.kind, SourceKind.MTA_STS)
        self.assertEqual(server.messages, [])
