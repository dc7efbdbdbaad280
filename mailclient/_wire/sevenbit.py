"""
Converting an 8-bit MIME message to 7 bits, for a server that did not
offer 8BITMIME (RFC 6152 section 3), as Postfix does: each part whose body
holds 8-bit data is re-encoded, quoted-printable for text, base64 for the
rest.  A message that is not MIME, or whose headers hold 8-bit data,
cannot be converted: it must be refused (RFC 3463 5.6.3).

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import base64
import email
import email.policy
import quopri
from email.message import Message

#: The largest message converted (it is read whole); a larger one is
#: refused like one that cannot be converted.
MAX_CONVERTED = 32 * 1024 * 1024


class CannotConvert(ValueError):
    """
    The message cannot be converted to 7 bits; the reason says why.
    """


def _has8bit(data: bytes) -> bool:
    return not data.isascii()


def _headerSection(message: bytes) -> bytes:
    """
    The header section: up to the first empty line, whichever line ending
    ends it (a CRLF message may hold bare LFs further down).
    """
    ends = [i for i in (message.find(b"\r\n\r\n"), message.find(b"\n\n")) if i >= 0]
    return message[: min(ends)] if ends else message


def toSevenBit(message: bytes) -> bytes:
    """
    Return C{message} with every 8-bit body part re-encoded in 7 bits.

    @raise CannotConvert: if it is not a MIME message, its headers hold
        8-bit data, or it is larger than L{MAX_CONVERTED}.
    """
    if len(message) > MAX_CONVERTED:
        raise CannotConvert(
            "message is larger than %d bytes, too large to convert to 7 bits"
            % (MAX_CONVERTED,))
    if _has8bit(_headerSection(message)):
        raise CannotConvert("the message's headers hold 8-bit data")
    parsed = email.message_from_bytes(message, policy=email.policy.compat32)
    if parsed.get("MIME-Version") is None:
        raise CannotConvert("the message is not MIME: it cannot be converted to 7 bits")
    for part in parsed.walk():
        if part.is_multipart():
            continue
        _convertPart(part)
    converted = parsed.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))
    if _has8bit(converted):
        # A part's own headers (a file name, say) or a body that claims an
        # encoding it does not have: what is left cannot be made 7-bit.
        raise CannotConvert("a part of the message holds 8-bit data that cannot be re-encoded")
    return converted


def _convertPart(part: Message) -> None:
    encoding = (part.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    if encoding in ("base64", "quoted-printable"):
        return
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes) or not _has8bit(payload):
        return
    del part["Content-Transfer-Encoding"]
    if part.get_content_maintype() == "text":
        encoded = quopri.encodestring(payload).decode("ascii")
        part["Content-Transfer-Encoding"] = "quoted-printable"
    else:
        encoded = base64.encodebytes(payload).decode("ascii")
        part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(encoded)
