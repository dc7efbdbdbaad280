"""
DANE for SMTP (RFC 7672): TLSA records and their matching against the
certificate chain a server presents.

  - L{parseTLSA} reads the RDATA of a TLSA record (type 52, RFC 6698
    section 2.1): certificate usage, selector, matching type, data;
  - L{usable} keeps the records SMTP can use (RFC 7672 section 3.1):
    usages DANE-TA(2) and DANE-EE(3), selectors 0 (the certificate) and 1
    (its public key), matching types 0 (full), 1 (SHA-256), 2 (SHA-512);
  - L{matchChain} says which record the chain (DER certificates, the
    server's first) matches, or why none does.

DANE-EE(3) matches the server's own certificate: its names and dates are
not checked (RFC 7672 section 3.1.1).  DANE-TA(2) matches a certificate
of the chain above the server's: the chain from the server's certificate
up to it must be signed link by link, the server's certificate must be
valid now and for one of the names given (the MX host name; RFC 7672
section 3.2.2).

Pure: no I/O, no Twisted (certificates are read with C{cryptography}).
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING
from collections.abc import Iterable, Sequence

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

#: The record type of TLSA (RFC 6698).
TLSA_TYPE = 52

DANE_TA = 2
DANE_EE = 3

_USAGES = {0: "PKIX-TA", 1: "PKIX-EE", 2: "DANE-TA", 3: "DANE-EE"}
_DIGESTS = {1: hashlib.sha256, 2: hashlib.sha512}


class TLSAError(ValueError):
    """
    A TLSA record's RDATA that cannot be read.
    """


@dataclass(frozen=True)
class TLSARecord:
    """
    One TLSA record (RFC 6698 section 2.1).

    @ivar usage: the certificate usage (0 to 3).
    @ivar selector: 0: the whole certificate; 1: its SubjectPublicKeyInfo.
    @ivar matchingType: 0: the data itself; 1: its SHA-256; 2: its SHA-512.
    @ivar data: the certificate association data.
    """

    usage: int
    selector: int
    matchingType: int
    data: bytes

    @property
    def usable(self) -> bool:
        """
        Whether SMTP can use the record (RFC 7672 section 3.1).
        """
        if self.usage not in (DANE_TA, DANE_EE) or self.selector not in (0, 1):
            return False
        size = {1: 32, 2: 64}.get(self.matchingType)
        if self.matchingType == 0:
            return bool(self.data)
        return size is not None and len(self.data) == size

    def __str__(self) -> str:
        """
        Presentation form: C{"3 1 1 9f86d0..."}.
        """
        return "%d %d %d %s" % (self.usage, self.selector, self.matchingType, self.data.hex())

    def describe(self) -> str:
        """
        C{"DANE-EE(3) 1 1 9f86d081884c..."}: for records and logs (the data
        shortened).
        """
        data = self.data.hex()
        if len(data) > 24:
            data = data[:24] + "..."
        return "%s(%d) %d %d %s" % (_USAGES.get(self.usage, "usage"), self.usage,
                                    self.selector, self.matchingType, data)


def parseTLSA(rdata: bytes) -> TLSARecord:
    """
    Read the RDATA of a TLSA record.

    @raise TLSAError: if it is shorter than its three fixed octets plus one
        of data.
    """
    if not isinstance(rdata, (bytes, bytearray)) or len(rdata) < 4:
        raise TLSAError("TLSA RDATA too short (%d octets)" % (len(rdata or b""),))
    return TLSARecord(rdata[0], rdata[1], rdata[2], bytes(rdata[3:]))


def usable(records: Iterable[TLSARecord]) -> tuple[TLSARecord, ...]:
    """
    The records SMTP can use, in order, without duplicates.
    """
    return tuple(dict.fromkeys(r for r in records if r.usable))


def tlsaName(host: str, port: int = 25) -> str:
    """
    The name of the TLSA records of C{host}'s SMTP service:
    C{_25._tcp.mx.example.com}.
    """
    return "_%d._tcp.%s" % (port, host.strip().lower().rstrip("."))


class DANEMismatch(Exception):
    """
    The chain matches none of the records.
    """


def _selected(certificate: Certificate, selector: int) -> bytes:
    from cryptography.hazmat.primitives import serialization

    if selector == 0:
        return bytes(certificate.public_bytes(serialization.Encoding.DER))
    return bytes(certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def recordMatches(record: TLSARecord, certificate: Certificate) -> bool:
    """
    Whether C{record}'s data is the certificate (a C{cryptography}
    certificate) as its selector and matching type say.
    """
    if not record.usable:
        return False
    selected = _selected(certificate, record.selector)
    if record.matchingType == 0:
        return selected == record.data
    return _DIGESTS[record.matchingType](selected).digest() == record.data


def _load(chain: Sequence[bytes]) -> list[Certificate]:
    from cryptography import x509

    certificates = []
    for der in chain:
        try:
            certificates.append(x509.load_der_x509_certificate(bytes(der)))
        except ValueError as e:
            raise DANEMismatch("the server's certificate chain cannot be read: %s" % (e,)) from None
    return certificates


def matchChain(
    records: Sequence[TLSARecord], chain: Sequence[bytes], names: Sequence[str] = (),
    now: datetime.datetime | None = None,
) -> TLSARecord:
    """
    The record the server's chain matches.

    @param chain: the certificates (DER) the server presented, its own
        first.
    @param names: the names a DANE-TA(2) match needs the server's
        certificate to be valid for (the MX host name).
    @param now: the time a DANE-TA(2) match checks the server's
        certificate's dates against (default: now).
    @raise DANEMismatch: saying why none matches.
    """
    if not chain:
        raise DANEMismatch("the server presented no certificate")
    certificates = _load(chain)
    leaf = certificates[0]
    problems = []
    for record in records:
        if record.usage == DANE_EE and recordMatches(record, leaf):
            return record
    for record in records:
        if record.usage != DANE_TA:
            continue
        for depth in range(1, len(certificates)):
            if not recordMatches(record, certificates[depth]):
                continue
            problem = _trustedPath(certificates[: depth + 1], names, now)
            if problem is None:
                return record
            problems.append(problem)
    if problems:
        raise DANEMismatch("DANE-TA certificate found, but " + problems[0])
    raise DANEMismatch("no TLSA record matches the server's certificate chain (%s)"
                       % (", ".join(r.describe() for r in records) or "no usable record",))


def _trustedPath(path: list[Certificate], names: Sequence[str], now: datetime.datetime | None) -> str | None:
    """
    Why the path from the server's certificate to the trust anchor matched
    (its last) cannot be trusted, or L{None}.
    """
    for child, issuer in zip(path, path[1:]):
        try:
            child.verify_directly_issued_by(issuer)
        except Exception:
            return "the chain is not signed by it"
    leaf = path[0]
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    if not leaf.not_valid_before_utc <= moment <= leaf.not_valid_after_utc:
        return "the server's certificate has expired or is not yet valid"
    if names and not any(certificateNames(leaf, name) for name in names):
        return "the server's certificate is not valid for %s" % (" or ".join(names),)
    return None


def certificateNames(certificate: Certificate, name: str) -> bool:
    """
    Whether the certificate's DNS names (subject alternative names; a
    wildcard covers one left-most label) include C{name}.
    """
    from cryptography import x509

    wanted = name.strip().lower().rstrip(".")
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    for value in extension.value.get_values_for_type(x509.DNSName):
        value = value.lower().rstrip(".")
        if value == wanted:
            return True
        if value.startswith("*.") and "." in wanted:
            first, _, rest = wanted.partition(".")
            if first and rest == value[2:]:
                return True
    return False
