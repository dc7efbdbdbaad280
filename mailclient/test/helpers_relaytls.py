"""
Helpers for the tests of the relay's TLS (C{test_relaytls}) and of its
sources of policy (C{test_mtasts}, C{test_dane}, C{test_requiretls},
C{test_tlsrpt}): a queue, a resolver double and loopback test servers; an
HTTPS server serving an MTA-STS policy; TLSA records of test certificates
and a trusted-resolver double.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.names import dns
from twisted.web.resource import Resource
from twisted.web.server import Site

from mailclient._relaying.attempt import DeliveryReport
from mailclient._relaying.dane import TLSAAnswer
from mailclient._relaying.mtasts import CACHE_NAME, MTASTS, HTTPSPolicyFetcher
from mailclient._wire.dane import TLSARecord
from mailclient.relaymanager import MXCalculator, Queue, SmartHostESMTPRelayingManager
from mailclient.test import helpers_tls
from mailclient.test.helpers import FakeResolver, mx
from mailclient.test.helpers_tls import ServerCertificate, certificatesFor
from mailclient.testing import SMTPTestServer

MX = "mx.example.org"
IDENTITY = b"relay.example.net"
SMART = "smtp.corp.test"
DOMAIN = "example.org"
STS_HOST = "mta-sts." + DOMAIN

ENFORCE = b"version: STSv1\nmode: enforce\nmx: *.example.org\nmax_age: 86400\n"
TESTING = b"version: STSv1\nmode: testing\nmx: mx.example.org\nmax_age: 86400\n"
OTHER_MX = b"version: STSv1\nmode: enforce\nmx: mail.example.net\nmax_age: 86400\n"
NONE = b"version: STSv1\nmode: none\nmax_age: 86400\n"


class RelayMixin:
    """
    A queue, a resolver double and loopback test servers.
    """

    def setUpRelay(self: Any) -> None:
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        self.queue = Queue(self.directory)
        self.queue.noisy = False
        self.queue.fsync = False
        self.clock = Clock()
        self.resolver = FakeResolver([
            ("example.org", mx(10, MX)),
            (MX, dns.Record_A("127.0.0.1")),
            (SMART, dns.Record_A("127.0.0.1")),
        ])
        self.reports: List[DeliveryReport] = []

    def listen(self: Any, server: SMTPTestServer, options: Any = None) -> int:
        """
        Listen with C{server} on 127.0.0.1 (TLS from the first byte with
        C{options}); stop when the test ends.
        """
        if options is None:
            server.listenTCP(reactor)
            self.addCleanup(server.stopListening)
            return server.portNumber
        listening = reactor.listenSSL(0, server, options, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(server.stopListening)
        self.addCleanup(listening.stopListening)
        return int(listening.getHost().port)

    def manager(self: Any, port: int, **kw: Any) -> SmartHostESMTPRelayingManager:
        kw.setdefault("mxcalc", MXCalculator(self.resolver, self.clock))
        kw.setdefault("clock", self.clock)
        fArgs = kw.pop("fArgs", (None, None, IDENTITY))
        manager = SmartHostESMTPRelayingManager(self.queue, **kw)
        manager.fArgs = fArgs
        manager.PORT = port
        manager.reportingMTA = "relay.example.net"
        manager.deliveryObservers.append(self.reports.append)
        return manager

    @defer.inlineCallbacks
    def relay(self: Any, manager: SmartHostESMTPRelayingManager, recipient: str = "bob@example.org") -> Any:
        name = self.queue.enqueue("alice@example.com", recipient, b"Subject: hi\n\nHello.\n")
        self.queue.readDirectory()
        d = manager.checkState()
        self.assertIsNotNone(d)
        yield d
        return name

    def waiting(self: Any) -> List[str]:
        self.queue.readDirectory()
        return self.queue.getWaiting()


class PolicyResource(Resource):
    """
    Serves the policy file: C{body} with C{code} and C{contentType}; counts
    requests.
    """

    isLeaf = True

    def __init__(self) -> None:
        Resource.__init__(self)
        self.body = ENFORCE
        self.code = 200
        self.contentType = b"text/plain"
        self.requests: List[bytes] = []

    def render_GET(self, request: Any) -> bytes:
        self.requests.append(request.uri)
        request.setResponseCode(self.code)
        request.setHeader(b"content-type", self.contentType)
        return self.body


class STSMixin(RelayMixin):
    """
    A relay with MTA-STS: the TXT record in the resolver double, the policy
    served over HTTPS on 127.0.0.1 with a certificate for
    C{mta-sts.example.org} from a test CA.
    """

    def setUpSTS(self: Any, policyId: str = "1", kind: str = "good") -> None:
        self.setUpRelay()
        self.policy = PolicyResource()
        self.httpsCerts = certificatesFor(STS_HOST)
        site = Site(self.policy)
        site.displayTracebacks = False
        listening = reactor.listenSSL(  # type: ignore[attr-defined]
            0, site, self.httpsCerts.byKind(kind).serverOptions(), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        self.httpsPort = listening.getHost().port
        self.setRecord(policyId)
        self.smtpCerts = certificatesFor(MX)

    def setRecord(self: Any, policyId: Optional[str]) -> None:
        name = "_mta-sts." + DOMAIN
        self.resolver.records = [r for r in self.resolver.records if str(r.name) != name]
        if policyId is not None:
            self.resolver.add(name, dns.Record_TXT(b"v=STSv1; id=" + policyId.encode("ascii")))

    def fetcher(self: Any) -> HTTPSPolicyFetcher:
        return HTTPSPolicyFetcher(reactor, port=self.httpsPort,
                                  caCertificates=(self.httpsCerts.caPEM,),
                                  connectHost=lambda host: "127.0.0.1")

    def sts(self: Any) -> MTASTS:
        return MTASTS(self.resolver, fetchPolicy=self.fetcher(),
                      cachePath=os.path.join(self.directory, CACHE_NAME), clock=self.clock)

    def smtp(self: Any, kind: str = "good", starttls: bool = True) -> tuple[SMTPTestServer, int]:
        extensions = ["PIPELINING", "8BITMIME"] + (["STARTTLS"] if starttls else [])
        server = SMTPTestServer(hostname=MX, extensions=extensions,
                                tlsCertificate=self.smtpCerts.byKind(kind).serverOptions())
        return server, self.listen(server)

    def stsManager(self: Any, port: int, sts: Any = None, **kw: Any) -> Any:
        kw.setdefault("mtaSTS", sts if sts is not None else self.sts())
        manager = self.manager(port, **kw)
        manager.tlsCACertificates = (self.smtpCerts.caPEM,)
        return manager


def der(pem: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def spki(pem: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return x509.load_pem_x509_certificate(pem).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def tlsa(usage: int, selector: int, matching: int, pem: bytes) -> TLSARecord:
    """
    The TLSA record of C{pem} with this usage, selector and matching type.
    """
    data = der(pem) if selector == 0 else spki(pem)
    if matching == 1:
        data = hashlib.sha256(data).digest()
    elif matching == 2:
        data = hashlib.sha512(data).digest()
    return TLSARecord(usage, selector, matching, data)


def rdata(record: TLSARecord) -> bytes:
    return bytes([record.usage, record.selector, record.matchingType]) + record.data


CERTS = certificatesFor(MX)


class FakeTLSA:
    """
    A trusted resolver double: answers from a table of L{TLSAAnswer}s (or
    exceptions) by host.
    """

    def __init__(self, answers: Dict[str, Any]) -> None:
        self.answers = answers
        self.asked: List[Tuple[str, int]] = []

    def lookupTLSA(self, host: str, port: int = 25) -> "defer.Deferred[TLSAAnswer]":
        self.asked.append((host, port))
        answer = self.answers.get(host, TLSAAnswer())
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed(answer)


def chainOptions(certificate: ServerCertificate, certs: helpers_tls.TestCertificates = CERTS) -> Any:
    """
    Server TLS options presenting C{certificate} and the CA above it.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from twisted.internet import ssl

    key = serialization.load_pem_private_key(certificate.keyPEM, password=None)
    return ssl.CertificateOptions(
        privateKey=key,  # type: ignore[arg-type]
        certificate=x509.load_pem_x509_certificate(certificate.certificatePEM),  # type: ignore[arg-type]
        extraCertChain=[x509.load_pem_x509_certificate(certs.caPEM)],  # type: ignore[list-item]
    )
