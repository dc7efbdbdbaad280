"""
TLS helpers: the client context each level of the TLS policy
(L{mailclient._wire.tlspolicy}) uses, the record of what a connection got,
loopback detection, and readable descriptions of handshake failures.
"""

from __future__ import annotations

import ipaddress
import os
import weakref
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING, cast

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    ISystemHandle,
    ITransport,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from mailclient._wire.dane import DANEMismatch, TLSARecord, matchChain
from mailclient._wire.tlspolicy import TLSLevel, TLSPolicy, TLSRecord

if TYPE_CHECKING:
    from OpenSSL import SSL


def tlsAvailable() -> bool:
    """
    Whether pyOpenSSL (and so Twisted's TLS support) is installed.
    """
    try:
        from twisted.internet import ssl  # noqa: F401
        import OpenSSL  # noqa: F401
    except ImportError:
        return False
    return True


def verifyingContext(hostname: str | bytes) -> IOpenSSLClientConnectionCreator | None:
    """
    Return client TLS options that verify the server's certificate against
    the system trust store and check that it is valid for C{hostname}, or
    L{None} when TLS support is not installed.

    The options of the last hosts asked for are kept and shared by their
    connections: building them loads and parses the system trust store
    again each time (about 0.2 ms), and every connection still verifies
    its server's certificate.  They are built again when the trust store
    changes: C{SSL_CERT_FILE} or C{SSL_CERT_DIR} set to other paths, or the
    CA file rewritten.
    """
    if not tlsAvailable():
        return None
    if isinstance(hostname, bytes):
        hostname = hostname.decode("idna")
    return _optionsFor(hostname, _trustStoreVersion())


def _trustStoreVersion() -> tuple[object, ...]:
    """
    What identifies the system trust store OpenSSL loads now: where it is,
    and when and how the CA file last changed.
    """
    cafile = os.environ.get("SSL_CERT_FILE") or _defaultCAFile()
    try:
        st = os.stat(cafile)
        stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
    except (OSError, ValueError):
        stamp = None
    return (cafile, os.environ.get("SSL_CERT_DIR"), stamp)


@lru_cache(maxsize=1)
def _defaultCAFile() -> str:
    import ssl

    return ssl.get_default_verify_paths().openssl_cafile


@lru_cache(maxsize=64)
def _optionsFor(hostname: str, trustStore: tuple[object, ...]) -> IOpenSSLClientConnectionCreator:
    from twisted.internet.ssl import optionsForClientTLS

    return optionsForClientTLS(hostname)


def isLoopback(transport: object) -> bool:
    """
    Whether C{transport} connects to this machine (a loopback address or a
    UNIX socket), where credentials never cross a network.
    """
    try:
        peer = cast(ITransport, transport).getPeer()
    except Exception:
        return False
    if isinstance(peer, UNIXAddress):
        return True
    if isinstance(peer, (IPv4Address, IPv6Address)):
        try:
            return ipaddress.ip_address(peer.host.split("%")[0]).is_loopback
        except ValueError:
            return False
    return False


def describeTLSFailure(reason: Failure) -> bytes | None:
    """
    Return a short explanation when C{reason} is a TLS handshake or
    certificate verification failure, else L{None}.
    """
    try:
        from service_identity import VerificationError
    except ImportError:  # pragma: no cover
        pass
    else:
        if reason.check(VerificationError):
            return (
                b"TLS certificate does not match the server host name: "
                + _safeVerificationText(reason.value).encode("utf-8", "replace")
            )
    try:
        from OpenSSL.SSL import Error as SSLError
    except ImportError:  # pragma: no cover
        return None
    if reason.check(SSLError):
        text = str(reason.value)
        if "certificate verify failed" in text:
            return b"TLS certificate verification failed (untrusted or invalid certificate): " + text.encode("utf-8", "replace")
        return b"TLS handshake failed: " + text.encode("utf-8", "replace")
    return None


def _safeVerificationText(error: BaseException | None) -> str:
    # (The class name stays: Twisted's callers and tests look for it.)
    try:
        return "%s: %s" % (type(error).__name__, _verificationText(error))
    except Exception:
        return str(error)


def _verificationText(error: BaseException | None) -> str:
    """
    What a C{service_identity} verification error says, for people: the
    names the certificate is not valid for.
    """
    errors = getattr(error, "errors", None)
    if not isinstance(errors, (list, tuple)) or not errors:
        return str(error)
    texts = []
    for item in errors:
        if isinstance(item, str):
            texts.append(item)
            continue
        wanted = getattr(item, "mismatched_id", None)
        name = getattr(wanted, "hostname", None) or getattr(wanted, "ip", None)
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        texts.append("certificate is not valid for %s" % (name,) if name is not None
                     else str(item))
    return "; ".join(texts)


# Opportunistic TLS (level "may"): check, record, never fail on the check.

#: Common reasons a certificate chain does not verify (OpenSSL's X509_V_ERR_*).
_VERIFY_ERRORS = {
    2: "unable to get the issuer's certificate",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in the chain",
    20: "unable to get the local issuer's certificate (untrusted issuer)",
    21: "unable to verify the first certificate",
}


class _CertificateCheck:
    """
    What the chain check of one TLS connection found.

    @ivar names: the names the certificate may be valid for (empty: the
        host name).
    @ivar enforce: whether a failed check stops the handshake (level
        C{verify}) instead of being recorded.
    """

    __slots__ = ("errors", "hostname", "names", "enforce", "identityChecked", "tlsa",
                 "daneMatch")

    def __init__(self, hostname: str | None, names: tuple[str, ...] = (),
                 enforce: bool = False, tlsa: tuple[TLSARecord, ...] = ()) -> None:
        self.errors: list[str] = []
        self.hostname = hostname
        self.names = names
        self.enforce = enforce
        self.identityChecked = False
        self.tlsa = tlsa
        self.daneMatch: TLSARecord | None = None

    def callback(self, connection: object, certificate: object, errno: int, depth: int, ok: int) -> bool:
        if self.tlsa:
            # DANE: the trust store plays no part; the chain is matched
            # against the TLSA records once the handshake is done.
            return True
        if not ok:
            reason = _VERIFY_ERRORS.get(errno, "verification error %d" % (errno,))
            self.errors.append("%s (depth %d)" % (reason, depth))
        # Opportunistic: go on whatever the check found; it is recorded.
        # Enforced: a chain that does not verify stops the handshake.
        return bool(ok) if self.enforce else True


#: The checks of the opportunistic connections still alive.
_checks: weakref.WeakKeyDictionary[object, _CertificateCheck] = weakref.WeakKeyDictionary()


def _isName(hostname: str | None) -> bool:
    if not hostname:
        return False
    return not (isIPAddress(hostname) or isIPv6Address(hostname))


@implementer(IOpenSSLClientConnectionCreator)
class RecordingTLS:
    """
    Client TLS that checks the server's certificate against a trust store
    (the system's, or the trust anchors given) and the names allowed (the
    host name, or C{matchNames}), sending C{hostname} as SNI when it is a
    name.

    Without C{enforce} (levels C{may} and C{encrypt}) the result is
    recorded (see L{tlsRecord}) and never fails the handshake; with it
    (level C{verify} with trust anchors or names of its own), a certificate
    that does not verify fails the handshake, as Twisted's own verifying
    options do.

    With C{tlsa} (DANE, RFC 7672), the chain the server presents must
    match one of the TLSA records instead (DANE-EE: the server's own
    certificate, names and dates unchecked; DANE-TA: a certificate above
    it, the server's certificate valid for C{hostname} or C{matchNames});
    the trust store is not used.
    """

    def __init__(
        self,
        hostname: str | None,
        caFile: str | None = None,
        caCertificates: tuple[bytes, ...] = (),
        matchNames: tuple[str, ...] = (),
        enforce: bool = False,
        tlsa: tuple[TLSARecord, ...] = (),
    ) -> None:
        self.hostname = hostname
        self.caFile = caFile
        self.caCertificates = caCertificates
        self.matchNames = matchNames
        self.enforce = enforce or bool(tlsa)
        self.tlsa = tlsa
        self._context: SSL.Context | None = None

    def _getContext(self) -> SSL.Context:
        if self._context is None:
            from OpenSSL import SSL

            context = SSL.Context(SSL.TLS_CLIENT_METHOD)
            if self.tlsa:
                pass
            elif self.caFile is None and not self.caCertificates:
                context.set_default_verify_paths()
            else:
                # Trust anchors of the policy's own replace the system's
                # (as Postfix's smtp_tls_CAfile does by default).
                if self.caFile is not None:
                    context.load_verify_locations(self.caFile)
                _addCertificates(context, self.caCertificates)
            # No SSLv3, no compression, no renegotiation: as Twisted's own
            # client options.
            context.set_options(
                SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3 | SSL.OP_NO_COMPRESSION
                | getattr(SSL, "OP_NO_RENEGOTIATION", 0)
            )
            if self.enforce:
                context.set_info_callback(_checkIdentityWhenDone)
            self._context = context
        return self._context

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        from OpenSSL import SSL

        connection = SSL.Connection(self._getContext(), None)
        connection.set_app_data(tlsProtocol)
        hostname = self.hostname
        if hostname is not None and _isName(hostname):
            connection.set_tlsext_host_name(hostname.encode("idna"))
        check = _CertificateCheck(self.hostname, self.matchNames, self.enforce, self.tlsa)
        _checks[connection] = check
        connection.set_verify(SSL.VERIFY_PEER, check.callback)
        return connection


def _addCertificates(context: SSL.Context, pems: tuple[bytes, ...]) -> None:
    """
    Trust the PEM certificates C{pems} in C{context}.
    """
    if not pems:
        return
    from cryptography import x509
    from OpenSSL import crypto

    store = context.get_cert_store()
    assert store is not None
    for pem in pems:
        for certificate in x509.load_pem_x509_certificates(pem):
            store.add_cert(crypto.X509.from_cryptography(certificate))


def _checkIdentityWhenDone(connection: SSL.Connection, where: int, ret: int) -> None:
    """
    The info callback of enforcing L{RecordingTLS} contexts: once the
    handshake is done, fail the connection unless the certificate is valid
    for one of the names allowed (as Twisted's C{ClientTLSOptions} does for
    its one host name).
    """
    from OpenSSL import SSL

    if not where & SSL.SSL_CB_HANDSHAKE_DONE:
        return
    try:
        check = _checks.get(connection)
        if check is None or not check.enforce or check.identityChecked:
            return
        check.identityChecked = True
        if check.tlsa:
            problem = _daneProblem(connection, check)
        else:
            problem = _identityProblem(connection, check.hostname, check.names)
        if problem is None:
            return
        from service_identity import VerificationError

        check.errors.append(problem)
        # (service_identity's errors are its mismatch objects; a text says
        # as much here.)
        error = VerificationError(errors=[problem])  # type: ignore[list-item]
        connection.get_app_data().failVerification(Failure(error))
    except Exception:
        # Never raise into OpenSSL; a check that cannot be made fails the
        # connection rather than letting it through.
        try:
            connection.get_app_data().failVerification(Failure())
        except Exception:
            pass


@lru_cache(maxsize=64)
def _recordingFor(
    hostname: str | None,
    trustStore: tuple[object, ...],
    caFile: str | None = None,
    caCertificates: tuple[bytes, ...] = (),
    matchNames: tuple[str, ...] = (),
    enforce: bool = False,
    tlsa: tuple[TLSARecord, ...] = (),
) -> RecordingTLS:
    # Kept per host name, trust store and names, as verifyingContext's
    # options.
    return RecordingTLS(hostname, caFile, caCertificates, matchNames, enforce, tlsa)


def _daneProblem(connection: SSL.Connection, check: _CertificateCheck) -> str | None:
    """
    Why the server's chain matches none of C{check}'s TLSA records, or
    L{None} (the record that matched is kept on C{check}).
    """
    from cryptography.hazmat.primitives import serialization

    chain = connection.get_peer_cert_chain(as_cryptography=True) or []
    ders = [c.public_bytes(serialization.Encoding.DER) for c in chain]
    names = check.names or ((check.hostname,) if check.hostname else ())
    try:
        check.daneMatch = matchChain(check.tlsa, ders, names)
    except DANEMismatch as e:
        return "DANE: %s" % (e,)
    return None


def _fileVersion(path: str) -> tuple[object, ...]:
    """
    What identifies the contents of the CA file C{path} now.
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return (path, None)
    return (path, st.st_mtime_ns, st.st_size, st.st_ino)


def contextForPolicy(policy: TLSPolicy, connectHost: str | None = None) -> object | None:
    """
    The client TLS context that C{policy} uses to reach C{connectHost}
    (L{None}: no TLS, TLS support not installed, or no host name to verify
    a certificate against).

      - the caller's own context, when the policy has one;
      - when a certificate that does not verify must stop the delivery: a
        verifying context for the policy's host name (or C{connectHost}),
        against the system trust store, or, when the policy names trust
        anchors or names of its own, an enforcing L{RecordingTLS};
      - otherwise a L{RecordingTLS}, which checks and records.

    SNI is the policy's host name, else C{connectHost}, when it is a name.
    """
    if policy.level is TLSLevel.NONE:
        return None
    if policy.context is not None:
        return policy.context
    if not tlsAvailable():
        return None
    hostname = policy.hostname or connectHost
    if policy.tlsa:
        return _recordingFor(hostname, (), None, (), policy.matchNames, True, policy.tlsa)
    own = policy.hasTrustAnchors or bool(policy.matchNames)
    if policy.verifies and not own:
        return verifyingContext(hostname) if hostname is not None else None
    if policy.verifies and hostname is None and not policy.matchNames:
        return None
    trustStore = (_fileVersion(policy.caFile) if policy.caFile is not None
                  else () if policy.caCertificates else _trustStoreVersion())
    return _recordingFor(hostname, trustStore, policy.caFile, policy.caCertificates,
                         policy.matchNames, policy.verifies)


def _tlsConnection(transport: object) -> SSL.Connection | None:
    """
    The pyOpenSSL connection under C{transport}, or L{None}.
    """
    try:
        from OpenSSL import SSL
    except ImportError:  # pragma: no cover
        return None
    while transport is not None:
        try:
            handle = cast(ISystemHandle, transport).getHandle()
        except Exception:
            handle = None
        if isinstance(handle, SSL.Connection):
            return handle
        transport = getattr(transport, "transport", None)
    return None


def tlsRecord(transport: object, policy: TLSPolicy | None, encrypted: bool) -> TLSRecord:
    """
    The record of the TLS C{transport} got under C{policy} (L{None}: the
    caller's own settings, Twisted's way).
    """
    level = policy.level if policy is not None else (
        TLSLevel.MAY if encrypted else TLSLevel.NONE)
    hostname = policy.hostname if policy is not None else None
    if policy is not None:
        return replace(_tlsRecord(transport, policy, encrypted, level, hostname),
                       source=policy.source)
    return _tlsRecord(transport, policy, encrypted, level, hostname)


def _tlsRecord(transport: object, policy: TLSPolicy | None, encrypted: bool,
               level: TLSLevel, hostname: str | None) -> TLSRecord:
    if not encrypted:
        return TLSRecord(level, hostname=hostname)
    connection = _tlsConnection(transport)
    protocol = cipher = None
    if connection is not None:
        try:
            protocol = connection.get_protocol_version_name()
            cipher = connection.get_cipher_name()
        except Exception:
            pass
    protocol = protocol or "TLS"
    check = _checks.get(connection) if connection is not None else None
    if check is not None and connection is not None:
        # Ours, opportunistic: the chain was checked while connecting; the
        # name is checked now.
        errors = list(check.errors)
        if check.tlsa:
            if check.daneMatch is None and not errors:
                problem = _daneProblem(connection, check)
                if problem is not None:
                    errors.append(problem)
        elif not errors:
            problem = _identityProblem(connection, check.hostname, check.names)
            if problem is not None:
                errors.append(problem)
        match = str(check.daneMatch) if check.daneMatch is not None and not errors else None
        return TLSRecord(
            level, protocol, cipher, verified=not errors,
            hostname=check.hostname, reason="; ".join(errors) or None, daneMatch=match,
        )
    if policy is not None and policy.verifies and policy.context is None:
        return TLSRecord(level, protocol, cipher, verified=True, hostname=hostname)
    return TLSRecord(level, protocol, cipher, verified=None, hostname=hostname)


def _identityProblem(
    connection: SSL.Connection, hostname: str | None, names: tuple[str, ...] = ()
) -> str | None:
    """
    Why the server's certificate is not valid for C{hostname} (a name or
    an IP address), or, when C{names} are given, for any of them (a name
    starting with a dot stands for any name under it); L{None} when it is.
    """
    if names:
        for name in names:
            if (_suffixMatch(connection, name) if name.startswith(".")
                    else _identityProblem(connection, name) is None):
                return None
        return "certificate is not valid for %s" % (" or ".join(names),)
    if not hostname:
        return "no host name to check the certificate against"
    try:
        from service_identity import VerificationError
        from service_identity.pyopenssl import verify_hostname, verify_ip_address
    except ImportError:  # pragma: no cover
        return "the certificate's host name could not be checked"
    try:
        if _isName(hostname):
            verify_hostname(connection, hostname)
        else:
            verify_ip_address(connection, hostname)
    except VerificationError:
        return "certificate is not valid for %s" % (hostname,)
    except Exception as e:
        return "the certificate could not be checked for %s: %s" % (hostname, e)
    return None


def _suffixMatch(connection: SSL.Connection, suffix: str) -> bool:
    """
    Whether the server's certificate names (in its subject alternative
    names) a host under C{suffix} (C{".example.com"}), wildcards included.
    """
    from cryptography import x509

    peer = connection.get_peer_certificate()
    if peer is None:
        return False
    try:
        san = peer.to_cryptography().extensions.get_extension_for_class(
            x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    for name in san.value.get_values_for_type(x509.DNSName):
        name = name.lower().rstrip(".")
        if name.endswith(suffix) and len(name) > len(suffix):
            return True
    return False
