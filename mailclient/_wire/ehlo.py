"""
EHLO reply parsing: the service extensions a server offers.

Pure.  Keywords are case-insensitive (RFC 5321, section 2.4); Twisted matches
them exactly, so a server that says C{starttls} or C{Auth} loses TLS or
authentication there.  The legacy C{AUTH=LOGIN PLAIN} form is merged into
C{AUTH}.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailclient._wire.types import T


class Capabilities(dict[bytes, bytes | None]):
    """
    A mapping of EHLO keyword to its parameters (or L{None}).

    Keys are stored upper-case and looked up case-insensitively, so code
    written for Twisted's plain C{items} dict (C{items[b"AUTH"]},
    C{b"STARTTLS" in items}) keeps working.
    """

    def __getitem__(self, key: bytes) -> bytes | None:
        return dict.__getitem__(self, key.upper())

    def __contains__(self, key: object) -> bool:
        if type(key) is not bytes:
            return isinstance(key, bytes) and dict.__contains__(self, key.upper())
        # Keys are stored upper-case: most lookups hit without upper().
        return dict.__contains__(self, key) or dict.__contains__(self, key.upper())

    def get(self, key: bytes, default: T | None = None) -> bytes | T | None:
        return dict.get(self, key.upper(), default)

    def authMechanisms(self) -> Iterable[bytes]:
        """
        The SASL mechanisms offered, upper-case, in the server's order.
        """
        return (self.get(b"AUTH") or b"").upper().split()

    def size(self) -> int | None:
        """
        The SIZE limit, or None when there is none (or it is 0 / malformed).
        """
        value = self.get(b"SIZE")
        if value and value.strip().isdigit() and int(value) > 0:
            return int(value)
        return None


def parseCapabilities(resp: bytes) -> Capabilities:
    """
    Parse the text of a successful EHLO reply (lines joined with LF).

    The first line is the server's greeting, not a keyword, but Twisted
    includes it in its dict; so do we, for compatibility.
    """
    caps = Capabilities()
    for line in resp.splitlines():
        parts = line.split(None, 1)
        if not parts:
            continue
        keyword = parts[0].upper()
        value = parts[1] if len(parts) > 1 else None
        if keyword.startswith(b"AUTH="):
            # Legacy form used by old Microsoft servers: AUTH=LOGIN PLAIN
            legacy = keyword[5:] + (b" " + value if value else b"")
            keyword, value = b"AUTH", legacy
        if keyword == b"AUTH" and caps.get(b"AUTH"):
            old = caps[b"AUTH"] or b""
            extra = [m for m in (value or b"").split() if m.upper() not in old.upper().split()]
            value = b" ".join([old] + extra) if extra else old
        dict.__setitem__(caps, keyword, value)
    return caps
