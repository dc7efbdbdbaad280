"""
Text from values that may be bytes: one helper per rule.

  - L{hostName}: a host name; bytes are IDNA, as Twisted's factories and
    C{sendmail} take them.
  - L{envelopeText}: envelope addresses and queue data, which must round
    trip: UTF-8, with undecodable bytes kept as surrogate escapes.
  - L{displayText}: what people read (logs, bounces, error messages):
    UTF-8, with undecodable bytes replaced.
  - L{strictText}: text that must be valid UTF-8 (an address about to be
    sent); raises on anything else.

Pure: no I/O, no Twisted.
"""

from __future__ import annotations


def hostName(value: str | bytes) -> str:
    """
    A host name as text: bytes are decoded as IDNA.
    """
    return value.decode("idna") if isinstance(value, bytes) else value


def envelopeText(value: str | bytes) -> str:
    """
    Envelope or queue text that must round-trip: UTF-8, undecodable bytes
    kept as surrogate escapes.
    """
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def displayText(value: str | bytes) -> str:
    """
    Text for people: UTF-8, undecodable bytes replaced.
    """
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def strictText(value: str | bytes) -> str:
    """
    Text that must be valid UTF-8.

    @raise UnicodeDecodeError: if C{value} is bytes that are not.
    """
    return value.decode("utf-8") if isinstance(value, bytes) else value
