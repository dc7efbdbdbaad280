"""
The session transcript, and the rule that keeps credentials out of it.

Errors carry the transcript (C{exc.log}) and print it in C{str(exc)}, so a
line holding a password would leak wherever errors are logged.  L{redact}
rewrites outgoing lines before they are recorded.
"""

from __future__ import annotations

from typing import SupportsIndex, cast, overload
from collections.abc import Iterator

from twisted.python import util

REDACTED = b"<redacted>"


def redact(line: bytes, inSASL: bool) -> bytes:
    """
    Return the form of an outgoing line that may be written to the log.

    @param line: The line about to be sent, without CRLF.
    @param inSASL: Whether an authentication exchange is in progress, in
        which case every client line is a (secret) SASL response.
    """
    if inSASL:
        return REDACTED
    if line[:4].upper() != b"AUTH":
        return line
    parts = line.split(None, 2)
    if len(parts) > 2 and parts[0].upper() == b"AUTH":
        return parts[0] + b" " + parts[1] + b" " + REDACTED
    return line


class TranscriptLog(util.LineLog):
    """
    A bounded log of the last lines exchanged, compatible with Twisted's
    C{LineLog} (C{.str()}, C{bytes()}, C{.clear()}).
    """

    @overload
    def __getitem__(self, item: SupportsIndex) -> bytes: ...

    @overload
    def __getitem__(self, item: slice) -> list[bytes]: ...

    def __getitem__(self, item: SupportsIndex | slice) -> bytes | list[bytes]:
        return list(self)[item]

    def __iter__(self) -> Iterator[bytes]:
        lines = cast(list[bytes | None], self.log)
        return (line for line in lines if line)
