"""
Envelope addresses: parsing, validation and quoting for MAIL and RCPT.

Pure.  L{quoteaddr} is Twisted's function, made strict: it refuses, with
L{InvalidAddressError}, anything it cannot put on the wire as exactly one
address (lists, trailing junk, CR/LF/NUL, non-ASCII without SMTPUTF8), where
Twisted silently sends the first address or the raw input.
"""

from __future__ import annotations

import re
from functools import lru_cache

from mailclient._wire.errors import AddressError, InvalidAddressError
from mailclient._wire.host import getDNSName
from mailclient._wire.text import strictText

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_UTF8 = "\u0080-\ud7ff\ue000-\U0010ffff"

# What a display name may quote (any text but the line breaks and NUL
# refused before parsing).
_QUOTED = r'"(?:[^"\\\r\n\x00]|\\[^\r\n\x00])*"'


def _quotedLocal(extra: str) -> str:
    # RFC 5321 Quoted-string: qtextSMTP and quoted-pairSMTP, printable ASCII
    # (and, with SMTPUTF8, non-ASCII text: RFC 6531).
    return r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e%s]|\\[\x20-\x7e%s])*"' % (extra, extra)


def _addrSpec(utf8: bool) -> re.Pattern[str]:
    extra = _UTF8 if utf8 else ""
    local = r"(?:[%s%s.]+|%s)" % (_ATEXT, extra, _quotedLocal(extra))
    label = r"[A-Za-z0-9_%s](?:[A-Za-z0-9_\-%s]*)" % (extra, extra)
    # A domain literal: dtext, printable ASCII but for [, ] and \.
    domain = r"(?:%s(?:\.%s)*\.?|\[[\x21-\x5a\x5e-\x7e]+\])" % (label, label)
    return re.compile(r"(?:%s@%s|%s)\Z" % (local, domain, local))


_ASCII_SPEC = _addrSpec(False)
_UTF8_SPEC = _addrSpec(True)
_ANGLE = re.compile(
    r'(?P<name>(?:[^<>"]|%s)*)<(?P<addr>(?:[^<>"]|%s)*)>\s*\Z' % (_QUOTED, _QUOTED)
)
_QUOTED_RE = re.compile(_QUOTED)
_FORBIDDEN = re.compile(r"[\r\n\x00]")
_ANGLES = re.compile(r"[<>]")


def _text(addr: object) -> str:
    if not isinstance(addr, (str, bytes)):
        return str(addr)
    try:
        return strictText(addr)
    except UnicodeDecodeError:
        raise InvalidAddressError(
            "address is not valid UTF-8: %r" % (addr[:200],)
        ) from None


def _idnaDomain(addr: str) -> str:
    """
    Encode a non-ASCII domain as IDNA A-labels when the local part is ASCII.
    """
    local, sep, domain = addr.rpartition("@")
    if not sep or not local.isascii() or domain.isascii() or domain.startswith("["):
        return addr
    try:
        import idna

        ace = idna.encode(domain, uts46=True).decode("ascii")
    except ImportError:  # pragma: no cover - idna comes with the tls extra
        ace = domain.encode("idna").decode("ascii")
    except Exception:
        raise InvalidAddressError(
            "domain cannot be encoded as IDNA: %r" % (domain,)
        ) from None
    return local + "@" + ace


def _extract(addr: object) -> str:
    # L{extractAddress}, without its cache.
    if isinstance(addr, Address):
        return bytes(addr).decode("utf-8")
    text = _text(addr)
    if _FORBIDDEN.search(text):
        raise InvalidAddressError(
            "address contains CR, LF or NUL: %r" % (text[:200],)
        )
    text = text.strip()
    angle = _ANGLE.match(text)
    if angle is not None:
        name = _QUOTED_RE.sub("", angle.group("name"))
        if any(c in name for c in '@,;:"'):
            raise InvalidAddressError(
                "more than one address, or junk around the address: %r"
                % (text[:200],)
            )
        return angle.group("addr").strip()
    if _ANGLES.search(_QUOTED_RE.sub("", text)):
        raise InvalidAddressError("unbalanced <> in address: %r" % (text[:200],))
    return text


def checkAddress(addr: str, utf8: bool = False) -> str:
    """
    Validate one addr-spec; return it, IDNA-encoding the domain if needed.

    @param utf8: whether non-ASCII local parts are allowed (SMTPUTF8).
    @raise InvalidAddressError: if it is not a syntactically valid address.
    """
    if addr == "":
        return addr
    if not utf8:
        addr = _idnaDomain(addr)
    if (_UTF8_SPEC if utf8 else _ASCII_SPEC).match(addr) is None:
        if not utf8 and not addr.isascii() and _UTF8_SPEC.match(addr):
            raise InvalidAddressError(
                "address %r is not ASCII; it can only be sent to a server "
                "that offers SMTPUTF8" % (addr[:200],)
            )
        raise InvalidAddressError("not a valid envelope address: %r" % (addr[:200],))
    return addr


# Pure, and asked several times per message for the same few strings: the
# recent results are remembered (a refusal is raised again, not remembered).
_extractCached = lru_cache(maxsize=512)(_extract)


def extractAddress(addr: object) -> str:
    """
    Return the single envelope address (addr-spec) contained in C{addr}.

    C{addr} may be a bare address, C{<address>} or C{Display Name
    <address>}.  The empty string and C{<>} give the null reverse-path.

    @raise InvalidAddressError: if C{addr} is not exactly one address.
    """
    if type(addr) is str or type(addr) is bytes:
        return _extractCached(addr)
    return _extract(addr)


def _quote(addr: object, utf8: bool) -> bytes:
    spec = checkAddress(extractAddress(addr), utf8)
    return b"<" + spec.encode("utf-8") + b">"


_quoteCached = lru_cache(maxsize=512)(_quote)

# Most addresses are plain ASCII dot-atoms: for them the checks above all
# pass and the result is the address in angle brackets.  This pattern
# accepts a subset of what they accept (no display name, no quoting, no
# literal, no trailing dot, nothing to encode), so it gives the same result
# in one match.
_PLAIN = r"[%s.]+@[A-Za-z0-9_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_][A-Za-z0-9_\-]*)*" % (_ATEXT,)
_PLAIN_TEXT = re.compile(_PLAIN)
_PLAIN_BYTES = re.compile(_PLAIN.encode("ascii"))


def quoteaddr(addr: object, utf8: bool = False) -> bytes:
    """
    Turn an email address, possibly with a display name, into the C{<...>}
    form of an SMTP envelope.

    @param addr: L{str}, L{bytes} or L{Address}.
    @param utf8: allow non-ASCII addresses (only when the server offers
        SMTPUTF8).
    @raise InvalidAddressError: if C{addr} is not exactly one valid address;
        nothing is silently dropped.
    """
    if type(addr) is str:
        if _PLAIN_TEXT.fullmatch(addr) is not None:
            return b"<" + addr.encode("ascii") + b">"
        return _quoteCached(addr, bool(utf8))
    if type(addr) is bytes:
        if _PLAIN_BYTES.fullmatch(addr) is not None:
            return b"<" + addr + b">"
        return _quoteCached(addr, bool(utf8))
    if not isinstance(addr, (str, bytes, Address)):
        addr = str(addr)
    return _quote(addr, utf8)


# The tokenizer of Address: quoted strings, escaped characters and runs of
# atom characters are tokens; any other character is a token of its own.
# UTF-8 bytes count as atom characters (RFC 6531 atext), so that an
# internationalised address can be held; whether it may be sent is decided
# when it is quoted, by whether the server offers SMTPUTF8.
_ATOM = re.compile(rb"[-A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\xff]")
_TOKENS = re.compile(
    rb'((?:"[^"]*"|\\.|[-A-Za-z0-9!#$%&\'*+/=?^_`{|}~\x80-\xff])+|.)', re.DOTALL
)
_BACKSLASHED = re.compile(rb"\\(.)")


class Address:
    """
    Parse and hold an RFC 2821 address.

    Source routes are stripped and ignored; UUCP-style bang paths and
    %-style routing are not parsed.

    @ivar local: The local ("user") part of this address (L{bytes}).
    @ivar domain: The domain within which this address resides (L{bytes}).
    @ivar addrstr: The text this address was parsed from (L{bytes}).
    """

    local: bytes
    domain: bytes
    addrstr: bytes

    tstring = _TOKENS
    atomre = _ATOM
    dequotebs = _BACKSLASHED

    def __init__(self, addr: object, defaultDomain: bytes | None = None) -> None:
        dest = getattr(addr, "dest", None)
        if dest is not None and not isinstance(addr, (str, bytes)):
            addr = dest
        if isinstance(addr, Address):
            self.__dict__ = addr.__dict__.copy()
            return
        if not isinstance(addr, bytes):
            addr = str(addr).encode("utf-8")
        self.addrstr = addr

        tokens: list[bytes] = [t for t in _TOKENS.split(addr) if t]
        local: list[bytes] = []
        domain: list[bytes] | None = None
        while tokens:
            tok = tokens[0]
            if tok == b"<":
                if tokens[-1] != b">":
                    raise AddressError("Unbalanced <>")
                tokens = tokens[1:-1]
            elif tok == b"@":
                tokens = tokens[1:]
                if not local:
                    # A source route (@a,@b:user@host): skip it.
                    while tokens and tokens[0] != b":":
                        tokens = tokens[1:]
                    if not tokens:
                        raise AddressError("Malformed source route")
                    tokens = tokens[1:]
                elif domain is not None:
                    raise AddressError("Too many @")
                else:
                    domain = []
            elif len(tok) == 1 and tok != b"." and not _ATOM.match(tok):
                raise AddressError(
                    "Parse error at %r of %r" % (tok, (addr, tokens))
                )
            else:
                (local if domain is None else domain).append(tok)
                tokens = tokens[1:]

        self.local = b"".join(local)
        self.domain = b"".join(domain or [])
        if self.local and not self.domain:
            self.domain = getDNSName() if defaultDomain is None else defaultDomain

    def dequote(self, addr: str | bytes) -> bytes:
        """
        Remove RFC 2821 quotes from an address.
        """
        if not isinstance(addr, bytes):
            addr = str(addr).encode("utf-8")
        out = []
        for tok in (t for t in _TOKENS.split(addr) if t):
            if tok[:1] == b'"' and tok[-1:] == b'"' and len(tok) > 1:
                out.append(tok[1:-1])
            elif b"\\" in tok:
                out.append(_BACKSLASHED.sub(rb"\1", tok))
            else:
                out.append(tok)
        return b"".join(out)

    def __bytes__(self) -> bytes:
        if self.local or self.domain:
            return self.local + b"@" + self.domain
        return b""

    def __str__(self) -> str:
        return self.__bytes__().decode("utf-8")

    def __repr__(self) -> str:
        return "%s.%s(%s)" % (
            self.__module__,
            self.__class__.__name__,
            repr(str(self)),
        )
