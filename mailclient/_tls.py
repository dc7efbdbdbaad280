"""
TLS helpers: verifying client contexts, loopback detection, and readable
descriptions of handshake failures.
"""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from typing import Any, Optional, Tuple, Union

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.python.failure import Failure


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


def verifyingContext(hostname: Union[str, bytes]) -> Optional[Any]:
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


def _trustStoreVersion() -> Tuple[Any, ...]:
    """
    What identifies the system trust store OpenSSL loads now: where it is,
    and when and how the CA file last changed.
    """
    cafile = os.environ.get("SSL_CERT_FILE") or _defaultCAFile()
    try:
        st = os.stat(cafile)
        stamp: Any = (st.st_mtime_ns, st.st_size, st.st_ino)
    except (OSError, ValueError):
        stamp = None
    return (cafile, os.environ.get("SSL_CERT_DIR"), stamp)


@lru_cache(maxsize=1)
def _defaultCAFile() -> str:
    import ssl

    return ssl.get_default_verify_paths().openssl_cafile


@lru_cache(maxsize=64)
def _optionsFor(hostname: str, trustStore: Tuple[Any, ...]) -> Any:
    from twisted.internet.ssl import optionsForClientTLS

    return optionsForClientTLS(hostname)


def isLoopback(transport: Any) -> bool:
    """
    Whether C{transport} connects to this machine (a loopback address or a
    UNIX socket), where credentials never cross a network.
    """
    try:
        peer = transport.getPeer()
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


def describeTLSFailure(reason: Failure) -> Optional[bytes]:
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
                + str(reason.value).encode("utf-8", "replace")
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
