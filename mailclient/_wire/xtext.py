"""
The xtext encoding of RFC 3461 (DSN ENVID and ORCPT), registered as the
C{"xtext"} codec on import, as Twisted does.
"""

from __future__ import annotations

import codecs
import re
import sys
from collections.abc import Sized
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


_HEX2 = re.compile(rb"[0-9A-Fa-f]{2}\Z")


def xtext_encode(s: str | bytes, errors: str | None = None) -> tuple[bytes, int]:
    """
    Encode C{s}: C{+}, C{=}, and bytes outside 33..126 become C{+XX}.
    """
    data = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    out = bytearray()
    for o in data:
        if o < 33 or o > 126 or o in (0x2B, 0x3D):
            out += b"+%02X" % (o,)
        else:
            out.append(o)
    return bytes(out), len(s)


def xtext_decode(s: ReadableBuffer | str, errors: str | None = None) -> tuple[str, int]:
    """
    Decode the xtext-encoded C{s}.  A C{+} not followed by two hex digits is
    kept as it is.
    """
    data = s.encode("ascii") if isinstance(s, str) else bytes(s)
    out = bytearray()
    i = 0
    while i < len(data):
        hexdigits = data[i + 1 : i + 3]
        if data[i] == 0x2B and _HEX2.match(hexdigits):
            out.append(int(hexdigits, 16))
            i += 3
            continue
        out.append(data[i])
        i += 1
    # (Every buffer type has a length: bytes, bytearray, memoryview, array.)
    return out.decode("utf-8", "replace"), len(cast(Sized, s))


class xtextStreamReader(codecs.StreamReader):
    """
    Stream reader of the xtext codec.
    """

    def decode(self, s: ReadableBuffer | str, errors: str = "strict") -> tuple[str, int]:
        return xtext_decode(s)


class xtextStreamWriter(codecs.StreamWriter):
    """
    Stream writer of the xtext codec.
    """

    def encode(self, s: str | bytes, errors: str = "strict") -> tuple[bytes, int]:
        return xtext_encode(s)


def xtext_codec(name: str) -> codecs.CodecInfo | None:
    """
    The codec search function for C{"xtext"}.
    """
    if name == "xtext":
        return codecs.CodecInfo(
            xtext_encode,
            xtext_decode,
            xtextStreamReader,
            xtextStreamWriter,
            name="xtext",
        )
    return None


codecs.register(xtext_codec)
# Twisted registers a codec of the same name that returns a bare tuple (so
# codecs.getwriter fails); if it was imported first, ours must win.
_twisted = sys.modules.get("twisted.mail.smtp")
if _twisted is not None and hasattr(codecs, "unregister"):
    codecs.unregister(_twisted.xtext_codec)
