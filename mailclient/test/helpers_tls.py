"""
Certificates for the TLS tests, made at test time with C{cryptography}: one
certificate authority and, for a host name, a good certificate (signed by
the CA, valid for the name), one for another name, an expired one and a
self-signed one.

Elliptic-curve keys are used: they are made in microseconds.  The set for
a host name is made once per process.
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass
from typing import Any, Sequence

#: The kinds of server certificate L{certificatesFor} makes.
KINDS = ("good", "wrongName", "expired", "selfSigned")


@dataclass(frozen=True)
class ServerCertificate:
    """
    A server certificate and its key, in PEM.

    @ivar kind: one of L{KINDS}.
    @ivar names: the DNS names (and IP addresses) it is valid for.
    """

    kind: str
    names: tuple[str, ...]
    certificatePEM: bytes
    keyPEM: bytes

    def serverOptions(self) -> Any:
        """
        New server TLS options presenting this certificate (for
        C{listenSSL}, or L{mailclient.testing.SMTPTestServer}'s
        C{tlsCertificate}).  The key and certificate go to OpenSSL as
        C{cryptography} objects, which pyOpenSSL takes without a
        deprecation warning.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from twisted.internet import ssl

        key = serialization.load_pem_private_key(self.keyPEM, password=None)
        certificate = x509.load_pem_x509_certificate(self.certificatePEM)
        # (Twisted hands both to pyOpenSSL as they are; its annotations
        # still say PKey and X509.)
        return ssl.CertificateOptions(privateKey=key, certificate=certificate)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TestCertificates:
    """
    A CA and the four kinds of server certificate for one host name.

    @ivar caPEM: the CA's certificate: what clients trust.
    @ivar hostname: the name the good, expired and self-signed certificates
        are for.
    """

    caPEM: bytes
    hostname: str
    good: ServerCertificate
    wrongName: ServerCertificate
    expired: ServerCertificate
    selfSigned: ServerCertificate

    def byKind(self, kind: str) -> ServerCertificate:
        return {"good": self.good, "wrongName": self.wrongName,
                "expired": self.expired, "selfSigned": self.selfSigned}[kind]


def _name(text: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _alternativeNames(names: Sequence[str]) -> Any:
    import ipaddress

    from cryptography import x509

    entries: list[Any] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _pem(certificate: Any, key: Any) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization

    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()),
    )


@functools.lru_cache(maxsize=None)
def certificatesFor(hostname: str, otherName: str = "other.example.net") -> TestCertificates:
    """
    Make (once per process) a CA and the four server certificates for
    C{hostname}: good, for C{otherName} (wrong name), expired (yesterday),
    self-signed.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)

    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = _name("mailclient test CA for %s" % (hostname,))
    caCertificate = (
        x509.CertificateBuilder()
        .subject_name(caName)
        .issuer_name(caName)
        .public_key(caKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - day)
        .not_valid_after(now + 365 * day)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(caKey.public_key()),
                       critical=False)
        .sign(caKey, hashes.SHA256())
    )
    caPEM = _pem(caCertificate, caKey)[0]

    def issue(kind: str, names: tuple[str, ...], notBefore: datetime.datetime,
              notAfter: datetime.datetime, selfSigned: bool = False) -> ServerCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(names[0])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject if selfSigned else caName)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(notBefore)
            .not_valid_after(notAfter)
            .add_extension(_alternativeNames(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
        )
        if not selfSigned:
            builder = builder.add_extension(
                x509.BasicConstraints(ca=False, path_length=None), critical=True
            ).add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(caKey.public_key()),
                critical=False,
            )
        certificate = builder.sign(key if selfSigned else caKey, hashes.SHA256())
        certificatePEM, keyPEM = _pem(certificate, key)
        return ServerCertificate(kind, names, certificatePEM, keyPEM)

    names = (hostname,)
    return TestCertificates(
        caPEM=caPEM,
        hostname=hostname,
        good=issue("good", names, now - day, now + 365 * day),
        wrongName=issue("wrongName", (otherName,), now - day, now + 365 * day),
        expired=issue("expired", names, now - 30 * day, now - day),
        selfSigned=issue("selfSigned", names, now - day, now + 365 * day, selfSigned=True),
    )
