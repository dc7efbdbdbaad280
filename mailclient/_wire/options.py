"""
Per-message ESMTP options: DSN (RFC 3461), 8BITMIME (RFC 6152), SMTPUTF8
(RFC 6531), SIZE (RFC 1870) and REQUIRETLS (RFC 8689), and the MAIL/RCPT
parameters they become.

Pure: given the options, the server's capabilities and what is known of the
message, compute parameters, or say why the message cannot be sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast
from collections.abc import Sequence

from mailclient._wire.ehlo import Capabilities
from mailclient._wire.types import MessageFile, Seekable
from mailclient._wire.xtext import xtext_encode

_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY", "NEVER"})


#: RFC 3463 statuses of the reasons a message cannot be sent to a server.
TOO_BIG = "5.3.4"  # Message too big for system
CONVERSION_NEEDED = "5.6.3"  # Conversion required but not supported
NOT_CAPABLE = "5.3.3"  # System not capable of selected features
REQUIRETLS_NEEDED = "5.7.30"  # REQUIRETLS support required (RFC 8689)
ENCRYPTION_NEEDED = "5.7.10"  # Encryption needed (RFC 8689: no verified TLS)


class OptionError(ValueError):
    """
    The options cannot be honoured with this server or this message.

    @ivar status: the RFC 3463 status of the refusal (L{TOO_BIG},
        L{CONVERSION_NEEDED}, L{NOT_CAPABLE}).
    """

    def __init__(self, message: str, status: str = NOT_CAPABLE) -> None:
        ValueError.__init__(self, message)
        self.status = status


@dataclass(frozen=True)
class MailOptions:
    """
    What to ask of the server for one message.

    @ivar ret: DSN: return C{"FULL"} message or only C{"HDRS"} in bounces.
    @ivar envid: DSN: an envelope identifier, echoed in notifications.
    @ivar notify: DSN: when to notify, some of C{"SUCCESS"}, C{"FAILURE"},
        C{"DELAY"}, or C{("NEVER",)}.
    @ivar orcpt: DSN: send each recipient's original address (ORCPT).
    @ivar requireDSN: if the server lacks DSN, fail the message instead of
        sending it without the DSN parameters (with a warning).
    @ivar eightBit: the body holds 8-bit data: C{True}, C{False}, or L{None}
        to find out (before sending when the file is seekable, else while
        streaming).
    @ivar allowEightBitWithout8BITMIME: send 8-bit data even to a server
        that did not offer 8BITMIME (what Twisted does).
    @ivar binary: the body is binary (BODY=BINARYMIME, needs CHUNKING).
    @ivar convertEightBit: convert an 8-bit MIME message to 7 bits for a
        server that did not offer 8BITMIME (quoted-printable for text
        parts, base64 for the rest, as Postfix does); a message that cannot
        be converted is refused with 5.6.3.  The relayers set it.
    @ivar requireTLS: REQUIRETLS (RFC 8689): send C{REQUIRETLS} on C{MAIL
        FROM}, and only over TLS whose certificate verified to a server
        that offers REQUIRETLS; otherwise the message is refused (5.7.10
        without verified TLS, 5.7.30 when the server does not offer it).
    """

    ret: str | None = None
    envid: str | None = None
    notify: Sequence[str] | None = None
    orcpt: bool = False
    requireDSN: bool = False
    eightBit: bool | None = None
    allowEightBitWithout8BITMIME: bool = False
    binary: bool = False
    convertEightBit: bool = False
    requireTLS: bool = False

    def __post_init__(self) -> None:
        if self.ret is not None and self.ret.upper() not in ("FULL", "HDRS"):
            raise ValueError("ret must be 'FULL' or 'HDRS', not %r" % (self.ret,))
        if self.notify is not None:
            values = {n.upper() for n in self.notify}
            if not values or not values <= _NOTIFY or ("NEVER" in values and len(values) > 1):
                raise ValueError("invalid DSN notify: %r" % (self.notify,))
        if self.envid is not None:
            if any(ord(c) < 32 or ord(c) > 126 for c in self.envid) or len(self.envid) > 100:
                raise ValueError("envid must be printable ASCII, at most 100 characters")

    @property
    def wantsDSN(self) -> bool:
        """
        Whether any DSN parameter was asked for.
        """
        return bool(self.ret or self.envid or self.notify or self.orcpt)


DEFAULT_OPTIONS = MailOptions()


def _needsUTF8(addresses: Sequence[bytes]) -> bool:
    return any(not a.isascii() for a in addresses)


def mailParameters(
    options: MailOptions,
    caps: Capabilities,
    quotedAddresses: Sequence[bytes],
    size: int | None,
    eightBit: bool | None,
    chunking: bool,
    secure: bool = False,
) -> list[bytes]:
    """
    The parameters for C{MAIL FROM}.

    @param quotedAddresses: the sender and every recipient, quoted.
    @param size: the message size, if known.
    @param eightBit: whether the body holds 8-bit data, if known.
    @param chunking: whether the body will go with BDAT.
    @param secure: whether the connection is over TLS whose certificate
        verified (for REQUIRETLS).
    @raise OptionError: if the message cannot be sent to this server.
    """
    checkRequireTLS(options, caps, secure)
    params: list[bytes] = []
    limit = caps.size()
    if size is not None and b"SIZE" in caps:
        if limit is not None and size > limit:
            raise OptionError(
                "message is %d bytes, more than the server's limit of %d bytes"
                % (size, limit),
                TOO_BIG,
            )
        params.append(b"SIZE=%d" % (size,))
    if options.binary:
        if not (chunking and b"BINARYMIME" in caps):
            raise OptionError(
                "binary body needs a server offering CHUNKING and BINARYMIME",
                CONVERSION_NEEDED,
            )
        params.append(b"BODY=BINARYMIME")
    elif eightBit and b"8BITMIME" in caps:
        params.append(b"BODY=8BITMIME")
    if _needsUTF8(quotedAddresses):
        params.append(b"SMTPUTF8")
    if options.wantsDSN and b"DSN" in caps:
        if options.ret:
            params.append(b"RET=" + options.ret.upper().encode("ascii"))
        if options.envid:
            params.append(b"ENVID=" + xtext_encode(options.envid)[0])
    if options.requireTLS:
        params.append(b"REQUIRETLS")
    return params


def checkRequireTLS(options: MailOptions, caps: Capabilities, secure: bool) -> None:
    """
    Refuse a message that asked for REQUIRETLS (RFC 8689 section 4.2.1)
    when the connection is not over verified TLS (L{ENCRYPTION_NEEDED}),
    or when the server does not offer REQUIRETLS (L{REQUIRETLS_NEEDED}).
    """
    if not options.requireTLS:
        return
    if not secure:
        raise OptionError(
            "REQUIRETLS: the connection is not over TLS with a verified certificate",
            ENCRYPTION_NEEDED)
    if b"REQUIRETLS" not in caps:
        raise OptionError(
            "REQUIRETLS support required: the server does not offer REQUIRETLS",
            REQUIRETLS_NEEDED)


def rcptParameters(options: MailOptions, caps: Capabilities, address: bytes) -> list[bytes]:
    """
    The parameters for C{RCPT TO} of the (unquoted) C{address}.
    """
    if not (options.wantsDSN and b"DSN" in caps):
        return []
    params = []
    if options.notify:
        params.append(b"NOTIFY=" + ",".join(n.upper() for n in options.notify).encode("ascii"))
    if options.orcpt:
        kind = b"utf-8" if not address.isascii() else b"rfc822"
        params.append(b"ORCPT=" + kind + b";" + xtext_encode(address)[0])
    return params


def checkDSN(options: MailOptions, caps: Capabilities) -> str | None:
    """
    Return a warning when DSN was asked for and the server lacks it, or
    raise L{OptionError} when the caller required it.
    """
    if options.wantsDSN and b"DSN" not in caps:
        if options.requireDSN:
            raise OptionError("DSN parameters were required but the server does not offer DSN")
        return "server does not offer DSN; sending without DSN parameters"
    return None


EIGHT_BIT_REFUSED = (
    "message holds 8-bit data but the server does not offer 8BITMIME "
    "(set allowEightBitWithout8BITMIME to send it anyway)"
)


def checkEightBit(options: MailOptions, caps: Capabilities, eightBit: bool | None) -> None:
    """
    Refuse a body known to hold 8-bit data when the server cannot take it.
    """
    if eightBit and b"8BITMIME" not in caps and not options.allowEightBitWithout8BITMIME:
        raise OptionError(EIGHT_BIT_REFUSED, CONVERSION_NEEDED)


def fileSize(message: MessageFile | None) -> int | None:
    """
    The number of bytes left in a seekable file, or L{None}.
    """
    f = cast(Seekable, message)  # (if it is not: the exception below)
    try:
        start = f.tell()
        end = f.seek(0, 2)
        f.seek(start)
    except Exception:
        return None
    if not isinstance(start, int) or not isinstance(end, int):
        return None
    return end - start


def holdsEightBit(message: MessageFile | None, chunkSize: int = 1 << 16) -> bool | None:
    """
    Whether the rest of a seekable file holds a byte above 127 (L{None} if
    the file cannot be rewound), leaving its position unchanged.
    """
    f = cast(Seekable, message)  # (if it is not: the exception below)
    try:
        start = f.tell()
        found = False
        while True:
            chunk = f.read(chunkSize)
            if not chunk:
                break
            if isinstance(chunk, str):
                chunk = chunk.encode("utf-8")
            if not chunk.isascii():
                found = True
                break
        f.seek(start)
    except Exception:
        return None
    return found
