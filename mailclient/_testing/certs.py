# -*- test-case-name: mailclient.test.test_testing -*-
"""
Throwaway TLS certificates for L{mailclient.testing}.

One private certificate authority is made with C{cryptography} the first
time it is needed and kept for the rest of the process; it signs a server
certificate for each host name a test server asks for (always valid for
C{localhost}, C{127.0.0.1} and C{::1} as well).  Tests trust the CA
certificate, so client code is exercised with full verification, exactly as
against a real server.

Keys and certificates are handed to OpenSSL as C{cryptography} objects, not
as pyOpenSSL's C{X509} and C{PKey} (which pyOpenSSL deprecates), so a test
suite running with C{-W error::DeprecationWarning} is not disturbed.  An
old pyOpenSSL that does not take them gets its own objects instead.

Needs C{cryptography} and pyOpenSSL, which mailclient depends on (through
Twisted's C{tls} extra); they are imported when first needed.
"""

from __future__ import annotations

import datetime
import ipaddress
import threading
from typing import TYPE_CHECKING, Optional, Sequence, Tuple, Union, cast

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import dsa, ed448, ed25519, rsa
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
    from cryptography.x509 import Certificate, GeneralName
    from OpenSSL import crypto
    from twisted.internet import ssl
    from twisted.internet.interfaces import IOpenSSLClientConnectionCreator

    #: A private key and its certificate.
    KeyAndCertificate = Tuple[EllipticCurvePrivateKey, Certificate]
    #: The private keys pyOpenSSL takes.
    SigningKey = Union[rsa.RSAPrivateKey, dsa.DSAPrivateKey, EllipticCurvePrivateKey,
                       ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey]


def tlsAvailable() -> bool:
    """
    Whether C{cryptography} and pyOpenSSL can be imported, so that test
    certificates can be made and STARTTLS offered.
    """
    try:
        import cryptography.x509  # noqa: F401
        import OpenSSL.SSL  # noqa: F401
    except ImportError:
        return False
    return True


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
        Return the server certificate and key as an L{ssl.PrivateCertificate},
        for example to pass as C{tlsCertificate} to
        L{mailclient.testing.SMTPTestServer}, which presents it without
        deprecated calls.  (Its own C{options()} hands pyOpenSSL's C{X509}
        and C{PKey} objects to OpenSSL, which pyOpenSSL now deprecates: use
        L{serverOptions} for server options.)
        """
        from twisted.internet import ssl

        return ssl.PrivateCertificate.loadPEM(
            self.serverKeyPEM + self.serverCertificatePEM
        )

    def serverOptions(self) -> ssl.CertificateOptions:
        """
        Return server-side TLS options (an L{ssl.CertificateOptions}) that
        present the server certificate.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(self.serverKeyPEM, password=None)
        certificate = x509.load_pem_x509_certificate(self.serverCertificatePEM)
        # (An elliptic-curve key, as this module makes them.)
        return certificateOptions(cast("SigningKey", key), certificate)

    def clientOptions(self, hostname: Optional[str] = None) -> IOpenSSLClientConnectionCreator:
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


def certificateOptions(
    key: SigningKey, certificate: Certificate
) -> ssl.CertificateOptions:
    """
    Server-side L{ssl.CertificateOptions} presenting C{certificate} (a
    C{cryptography} certificate) with C{key} (its C{cryptography} private
    key), given to OpenSSL in the form the installed pyOpenSSL takes without
    a deprecation warning.
    """
    from twisted.internet import ssl

    if not _takesCryptographyObjects():
        from OpenSSL import crypto

        return ssl.CertificateOptions(privateKey=crypto.PKey.from_cryptography_key(key),
                                      certificate=crypto.X509.from_cryptography(certificate))
    # Twisted passes both straight to pyOpenSSL's Context.use_privatekey and
    # use_certificate (23.10 and later alike); its annotations still say
    # PKey and X509.
    return ssl.CertificateOptions(privateKey=cast("crypto.PKey", key),
                                  certificate=cast("crypto.X509", certificate))


def privateCertificateOptions(certificate: ssl.PrivateCertificate) -> ssl.CertificateOptions:
    """
    Server-side options presenting a Twisted L{ssl.PrivateCertificate}, as its
    own C{options()} would, but handing OpenSSL C{cryptography} objects.
    """
    return certificateOptions(
        certificate.privateKey.original.to_cryptography_key(),
        certificate.original.to_cryptography(),
    )


_takes: Optional[bool] = None


def _takesCryptographyObjects() -> bool:
    """
    Whether the installed pyOpenSSL's C{Context.use_certificate} and
    C{use_privatekey} accept C{cryptography} objects (pyOpenSSL 24.3 and
    later; the releases that deprecate passing their own objects all do).
    """
    global _takes
    if _takes is None:
        from OpenSSL import SSL

        key, certificate = _authority()[:2]
        context = SSL.Context(SSL.TLS_METHOD)
        try:
            context.use_certificate(certificate)
            context.use_privatekey(key)
        except TypeError:
            _takes = False
        else:
            _takes = True
    return _takes


def _validity() -> Tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now - datetime.timedelta(days=1), now + datetime.timedelta(days=365)


def _newAuthority() -> KeyAndCertificate:
    """
    A new CA: its private key and self-signed certificate.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    notBefore, notAfter = _validity()
    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "mailclient.testing CA")]
    )
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
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(caKey.public_key()),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    return caKey, caCert


def _subjectAltNames(hostname: str, ipAddresses: Sequence[str]) -> list[GeneralName]:
    """
    The subject alternative names of a server certificate: C{hostname} (as
    an IP address if it is one) and each of C{ipAddresses}, once each.
    """
    from cryptography import x509

    names: list[GeneralName] = []
    addresses = list(ipAddresses)
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        names.append(x509.DNSName(hostname))
    else:
        addresses.insert(0, hostname)
    seen = set()
    for ip in addresses:
        address = ipaddress.ip_address(ip)
        if address not in seen:
            seen.add(address)
            names.append(x509.IPAddress(address))
    return names


def _issue(
    caKey: EllipticCurvePrivateKey | None,
    caCert: Certificate | None,
    hostnames: Sequence[str],
    ipAddresses: Sequence[str],
    selfSigned: bool = False,
) -> KeyAndCertificate:
    """
    A server key and a certificate for C{hostnames} (the first is its
    common name) and C{ipAddresses}, signed by the CA, or by itself.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    notBefore, notAfter = _validity()
    serverKey = ec.generate_private_key(ec.SECP256R1())
    altNames: list[GeneralName] = []
    for i, name in enumerate(hostnames):
        altNames += [n for n in _subjectAltNames(name, ipAddresses if i == 0 else ())
                     if n not in altNames]
    serverName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    builder = (
        x509.CertificateBuilder()
        .subject_name(serverName)
        .public_key(serverKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(notBefore)
        .not_valid_after(notAfter)
        .add_extension(x509.SubjectAlternativeName(altNames), critical=False)
    )
    if selfSigned:
        return serverKey, builder.issuer_name(serverName).sign(serverKey, hashes.SHA256())
    assert caKey is not None and caCert is not None
    caSKI = caCert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    serverCert = (
        builder.issuer_name(caCert.subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
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
    return serverKey, serverCert


def _pem(caCert: Certificate, serverKey: EllipticCurvePrivateKey, serverCert: Certificate,
         hostname: str) -> LocalCertificates:
    from cryptography.hazmat.primitives import serialization

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
    if selfSigned:
        serverKey, serverCert = _issue(None, None, [hostname], ipAddresses, selfSigned=True)
        return _pem(serverCert, serverKey, serverCert, hostname)
    caKey, caCert = _newAuthority()
    serverKey, serverCert = _issue(caKey, caCert, [hostname], ipAddresses)
    return _pem(caCert, serverKey, serverCert, hostname)


_lock = threading.Lock()
_authorityCache: Optional[KeyAndCertificate] = None
_byHostname: dict[str, LocalCertificates] = {}


def _authority() -> KeyAndCertificate:
    """
    This process's CA (private key, certificate), made on the first call.
    """
    global _authorityCache
    with _lock:
        if _authorityCache is None:
            _authorityCache = _newAuthority()
        return _authorityCache


def localCertificates(hostname: str = "localhost") -> LocalCertificates:
    """
    Return this process's certificates for C{hostname}, making them on the
    first call for that name.  All are signed by the same CA (so their
    C{caCertificatePEM} is the same), and each is also valid for
    C{localhost}, C{127.0.0.1} and C{::1}.

    @raise ValueError: if C{hostname} cannot be put in a certificate (a
        name that is not ASCII, for example: give its IDNA form).
    """
    hostname = hostname.lower()
    caKey, caCert = _authority()
    with _lock:
        found = _byHostname.get(hostname)
        if found is None:
            names = [hostname] if hostname == "localhost" else [hostname, "localhost"]
            serverKey, serverCert = _issue(caKey, caCert, names, ("127.0.0.1", "::1"))
            found = _byHostname[hostname] = _pem(caCert, serverKey, serverCert, hostname)
        return found
