# -*- test-case-name: mailclient.test.test_testing -*-
"""
The server side of SASL: each mechanism is a generator that yields challenges
and returns the user who authenticated (or L{None}).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Callable, Generator, Mapping

SASLExchange = Generator[bytes, bytes, bytes | None]
Passwords = Mapping[bytes, bytes]


def _valid(passwords: Passwords, user: bytes, password: bytes) -> bool:
    expected = passwords.get(user)
    return expected is not None and hmac.compare_digest(expected, password)


def _saslPLAIN(passwords: Passwords, initial: bytes | None, hostname: bytes) -> SASLExchange:
    response = initial if initial is not None else (yield b"")
    parts = response.split(b"\0")
    if len(parts) != 3 or parts[0] not in (b"", parts[1]):
        return None
    return parts[1] if _valid(passwords, parts[1], parts[2]) else None


def _saslLOGIN(passwords: Passwords, initial: bytes | None, hostname: bytes) -> SASLExchange:
    user = initial if initial is not None else (yield b"Username:")
    password = yield b"Password:"
    return user if _valid(passwords, user, password) else None


def _saslCRAMMD5(passwords: Passwords, initial: bytes | None, hostname: bytes) -> SASLExchange:
    if initial is not None:
        return None
    challenge = b"<%d.%d@%s>" % (os.getpid(), time.time_ns(), hostname)
    user, _, digest = (yield challenge).rpartition(b" ")
    password = passwords.get(user)
    if password is None:
        return None
    expected = hmac.new(password, challenge, hashlib.md5).hexdigest().encode()
    return user if hmac.compare_digest(expected, digest.lower()) else None


def _saslXOAUTH2(passwords: Passwords, initial: bytes | None, hostname: bytes) -> SASLExchange:
    response = initial if initial is not None else (yield b"")
    fields = dict(f.split(b"=", 1) for f in response.split(b"\x01") if b"=" in f)
    user, auth = fields.get(b"user"), fields.get(b"auth", b"")
    if user is not None and auth[:7].lower() == b"bearer ":
        if _valid(passwords, user, auth[7:]):
            return user
    # Failure: a JSON error as a challenge, which the client answers with an
    # empty line before the final 535.
    yield b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}'
    return None


_SASL: dict[str, Callable[[Passwords, bytes | None, bytes], SASLExchange]] = {
    "PLAIN": _saslPLAIN,
    "LOGIN": _saslLOGIN,
    "CRAM-MD5": _saslCRAMMD5,
    "XOAUTH2": _saslXOAUTH2,
}


def _unbase64(data: bytes) -> bytes | None:
    if data == b"=":
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
