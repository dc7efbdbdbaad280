"""
Enhanced status codes (RFC 2034, RFC 3463): C{class.subject.detail} at the
start of a reply's text, such as C{5.1.1} for "bad destination mailbox".

Pure.
"""

from __future__ import annotations

import re

_ENHANCED = re.compile(rb"([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


def parseEnhancedStatus(code: int, text: bytes) -> tuple[int, int, int] | None:
    """
    Return the enhanced status code at the start of C{text}, or L{None}.

    The class digit must agree with the first digit of the basic C{code}
    (RFC 2034), so unrelated text that merely looks like one is ignored.
    """
    match = _ENHANCED.match(text.lstrip())
    if match is None:
        return None
    klass = int(match.group(1))
    if code > 0 and klass != code // 100:
        return None
    return (klass, int(match.group(2)), int(match.group(3)))


def isTemporary(code: int, enhanced: tuple[int, int, int] | None) -> bool:
    """
    Whether a failure with this reply is temporary (worth retrying later).
    """
    if enhanced is not None:
        return enhanced[0] == 4
    return 400 <= code < 500


def isPermanent(code: int, enhanced: tuple[int, int, int] | None) -> bool:
    """
    Whether a failure with this reply is permanent.
    """
    if enhanced is not None:
        return enhanced[0] == 5
    return 500 <= code < 600
