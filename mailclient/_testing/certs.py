"""
Throwaway TLS certificates for L{mailclient.testing}.

A private certificate authority and a server certificate for C{localhost},
C{127.0.0.1} and C{::1} are made with C{cryptography} the first time they are
asked for and then kept for the rest of the process.  Tests trust the CA
certificate, so client code is exercised with full verification, exactly as
against a real server.  Needs C{cryptography} and pyOpenSSL (Twisted's C{tls}
extra).
"""

from __future__ import annotations

import datetime
import ipaddress
import threading
from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:
    from twisted.internet import ssl

# cryptography and pyOpenSSL (Twisted's "tls" extra) are imported when first
# needed, so that mailclient.testing works without them when TLS is unused.


class LocalCertificates:
    """
    A certificate authority and one server certificate it signed, in PEM.

    @ivar caCertificatePEM: the CA certificate; clients trust this one.
    @ivar serverCertificatePEM: the server's certificate.
    @ivar serverKeyPEM: the server's private key (unencrypted PKCS#8).
    @ivar hostname: the DNS name the server certificate is for.
    """

    def __init__(
        self,
        caCertificatePEM: bytes,
        serverCertificatePEM: bytes,
        serverKeyPEM: bytes,
        hostname: str,
    ) -> None:
        self.caCertificatePEM = caCertificatePEM
        self.serverCertificatePEM = serverCertificatePEM
        self.serverKeyPEM = serverKeyPEM
        self.hostname = hostname

    def trustRoot(self) -> ssl.Certificate:
        """
        Return the CA certificate as a Twisted L{ssl.Certificate}, ready to be
        passed as C{trustRoot} to L{ssl.optionsForClientTLS}.
        """
        from twisted.internet import ssl

        return ssl.Certificate.loadPEM(self.caCertificatePEM)

    def serverCertificate(self) -> ssl.PrivateCertificate:
        """
        Return the server certificate and key as an L{ssl.PrivateCertificate}.
        """
        from twisted.internet import ssl

        return ssl.PrivateCertificate.loadPEM(
            self.serverKeyPEM + self.serverCertificatePEM
        )

    def serverOptions(self) -> ssl.CertificateOptions:
        """
        Return server-side TLS options that present the server certificate.
        """
        return self.serverCertificate().options()

    def clientOptions(self, hostname: Optional[str] = None) -> Any:
        """
        Return client-side TLS options (an
        L{twisted.internet.interfaces.IOpenSSLClientConnectionCreator}) that
        trust only the CA and verify that the server is C{hostname} (by
        default the certificate's own name).
        """
        from twisted.internet import ssl

        return ssl.optionsForClientTLS(
            hostname or self.hostname, trustRoot=self.trustRoot()
        )


def generateCertificates(
    hostname: str = "localhost",
    ipAddresses: Sequence[str] = ("127.0.0.1", "::1"),
    selfSigned: bool = False,
) -> LocalCertificates:
    """
    Make a new CA and a server certificate for C{hostname} and
    C{ipAddresses}, valid from yesterday for a year.

    Elliptic-curve keys are used because they are made in microseconds.

    @param selfSigned: make the server certificate sign itself (it is then
        its own C{caCertificatePEM}), as on many internal relays.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    notBefore = now - datetime.timedelta(days=1)
    notAfter = now + datetime.timedelta(days=365)

    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "mailclient.testing CA")]
    )
    caSKI = x509.SubjectKeyIdentifier.from_public_key(caKey.public_key())
    caCert = (
        x509.CertificateBuilder()
        .subject_name(caName)
        .issuer_name(caName)
        .public_key(caKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(notBefore)
        .not_valid_after(notAfter)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(caSKI, critical=False)
        .sign(caKey, hashes.SHA256())
    )

    serverKey = ec.generate_private_key(ec.SECP256R1())
    altNames: "list[x509.GeneralName]" = [x509.DNSName(hostname)]
    altNames += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ipAddresses]
    serverCert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(caName)
        .public_key(serverKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(notBefore)
        .not_valid_after(notAfter)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(altNames), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(serverKey.public_key()),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(caSKI),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    if selfSigned:
        serverName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
        serverCert = (
            x509.CertificateBuilder()
            .subject_name(serverName)
            .issuer_name(serverName)
            .public_key(serverKey.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(notBefore)
            .not_valid_after(notAfter)
            .add_extension(x509.SubjectAlternativeName(altNames), critical=False)
            .sign(serverKey, hashes.SHA256())
        )
        caCert = serverCert

    pem = serialization.Encoding.PEM
    return LocalCertificates(
        caCertificatePEM=caCert.public_bytes(pem),
        serverCertificatePEM=serverCert.public_bytes(pem),
        serverKeyPEM=serverKey.private_bytes(
            pem,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        hostname=hostname,
    )


_cached: Optional[LocalCertificates] = None
_lock = threading.Lock()


def localCertificates() -> LocalCertificates:
    """
    Return this process's certificates for C{localhost}, making them on the
    first call.
    """
    global _cached
    with _lock:
        if _cached is None:
            _cached = generateCertificates()
        return _cached
