# -*- test-case-name: mailclient.test.test_testing -*-
"""
Command syntax: parsing MAIL and RCPT arguments and EHLO lines, and which
extension makes each parameter legal.
"""

from __future__ import annotations

from collections.abc import Iterable

Params = dict[bytes, bytes | None]

# Which advertised extension makes each MAIL/RCPT parameter legal.
_MAIL_PARAMS = {b"SIZE": "SIZE", b"BODY": "8BITMIME", b"SMTPUTF8": "SMTPUTF8",
                b"REQUIRETLS": "REQUIRETLS",
                b"RET": "DSN", b"ENVID": "DSN", b"AUTH": "AUTH"}
_RCPT_PARAMS = {b"NOTIFY": "DSN", b"ORCPT": "DSN"}
# RFC 2920 section 3.1 (plus AUTH, RFC 4954, and STARTTLS, RFC 3207).
_LAST_IN_GROUP = {"EHLO", "HELO", "DATA", "VRFY", "EXPN", "TURN", "QUIT",
                  "NOOP", "AUTH", "STARTTLS"}


def _parsePath(arg: bytes, prefix: bytes) -> tuple[bytes, Params] | None:
    """
    Parse C{FROM:<addr> params} or C{TO:<addr> params}; L{None} if malformed.
    """
    if arg[: len(prefix)].upper() != prefix:
        return None
    rest = arg[len(prefix):].lstrip(b" ")
    end = rest.find(b">")
    if not rest.startswith(b"<") or end < 0:
        return None
    params: Params = {}
    for word in rest[end + 1:].split():
        key, eq, value = word.partition(b"=")
        params[key.upper()] = value if eq else None
    return rest[1:end], params


def _parseEHLO(lines: Iterable[bytes]) -> dict[str, list[str]]:
    offered: dict[str, list[str]] = {}
    for line in lines:
        words = line.decode("ascii", "replace").split()
        if words:
            offered[words[0].upper()] = [w.upper() for w in words[1:]]
    return offered
