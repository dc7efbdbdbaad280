"""
The plan of one mail transaction: what the client sends, decided before it
sends anything.

Given the server's capabilities, the client's switches, the message's
options and what is known of the message, L{planTransaction} decides:

  - whether the envelope goes out as one pipelined group (RFC 2920);
  - whether the body goes with BDAT (RFC 3030) or DATA;
  - the parameters of MAIL FROM (SIZE, BODY, SMTPUTF8, RET, ENVID,
    REQUIRETLS);
  - whether 8-bit data found while streaming must stop the message;
  - the commands of the pipelined group, in the order their replies come;

or refuses the message (L{OptionError}, with the RFC 3463 status of the
refusal).  L{messageProbe} says beforehand what must be learnt of the
message file (its size, whether it holds 8-bit data) for the plan.

The protocol (C{mailclient._protocol.esmtp}) asks, writes the commands
through its hooks (C{mailFromParameters}, C{rcptToParameters}, which
subclasses may override) and arms its timers.

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from collections.abc import Sequence

from mailclient._wire.ehlo import Capabilities
from mailclient._wire.options import (
    MailOptions,
    checkDSN,
    checkEightBit,
    mailParameters,
)

#: Seekable messages up to this size are read before MAIL to find out
#: whether they hold 8-bit data; larger ones are declared BODY=8BITMIME when
#: the server offers it (always allowed), instead of being read twice.
SCAN_LIMIT = 1 << 20

#: The extensions whose use changes the transaction; a server that offers
#: none of them (and options that ask for nothing) gets Twisted's
#: conversation, one command at a time.
ENVELOPE_EXTENSIONS = (
    b"PIPELINING", b"CHUNKING", b"SIZE", b"8BITMIME", b"SMTPUTF8", b"DSN",
)


def usesExtensions(caps: Capabilities) -> bool:
    """
    Whether the server offers an extension that changes the transaction.
    """
    return any(keyword in caps for keyword in ENVELOPE_EXTENSIONS)


@dataclass(frozen=True)
class Switches:
    """
    What the client allows itself (its C{pipelining} and C{chunking}
    attributes).
    """

    pipelining: bool = True
    chunking: bool = True


def needsMessage(
    caps: Capabilities, switches: Switches, options: MailOptions, recipients: int
) -> bool:
    """
    Whether the message must be asked for before MAIL: for SIZE, for BDAT,
    or to find out whether it holds 8-bit data.
    """
    return (
        b"SIZE" in caps
        or _chunked(caps, switches, recipients)
        or (options.eightBit is None and recipients > 0)
    )


class Scan(enum.Enum):
    """
    L{eightBitDecision}'s answer when the message must be read through.
    """

    SCAN = "scan"


SCAN = Scan.SCAN


def eightBitDecision(
    caps: Capabilities, options: MailOptions, size: int | None
) -> bool | Scan:
    """
    Whether a message asked for before MAIL holds 8-bit data, as far as the
    plan needs to know: what the options say; C{True} (declared) when the
    server offers 8BITMIME and the message is large or of unknown size
    (declaring 8BITMIME is always safe, and spares a second read); else
    L{SCAN}: read it through.
    """
    if options.eightBit is not None:
        return options.eightBit
    if b"8BITMIME" in caps and (size is None or size > SCAN_LIMIT):
        return True
    return SCAN


def _pipelined(caps: Capabilities, switches: Switches) -> bool:
    return switches.pipelining and b"PIPELINING" in caps


def _chunked(caps: Capabilities, switches: Switches, recipients: int) -> bool:
    return (
        _pipelined(caps, switches) and switches.chunking and b"CHUNKING" in caps
        and recipients > 0
    )


def needsConversion(caps: Capabilities, options: MailOptions, eightBit: bool | None) -> bool:
    """
    Whether the message must be converted to 7 bits before it is sent: it
    holds 8-bit data, the server did not offer 8BITMIME, and the options
    ask for conversion rather than refusal (or Twisted's raw sending).
    """
    return (
        bool(eightBit)
        and b"8BITMIME" not in caps
        and options.convertEightBit
        and not options.allowEightBitWithout8BITMIME
    )


@dataclass(frozen=True)
class TransactionPlan:
    """
    What the client sends for one message.

    @ivar pipelined: the envelope goes out as one group.
    @ivar chunked: the body goes with BDAT.
    @ivar mailParameters: the parameters of MAIL FROM.
    @ivar refuseEightBit: 8-bit data found while streaming stops the
        message (the server did not offer 8BITMIME and nothing allows it).
    @ivar warning: what to warn the caller about (DSN asked for, not
        offered), or L{None}.
    @ivar group: for a pipelined envelope, the commands whose replies come,
        in order: C{(b"RSET", None)} before a message started early,
        C{(b"MAIL", None)}, C{(b"RCPT", recipient)} for each recipient, and
        C{(b"DATA", None)} when the body goes with DATA.  (BDAT chunks are
        added as they are written.)
    """

    pipelined: bool
    chunked: bool
    mailParameters: list[bytes]
    refuseEightBit: bool
    warning: str | None = None
    group: list[tuple[bytes, object]] = field(default_factory=list)


def planTransaction(
    caps: Capabilities,
    switches: Switches,
    options: MailOptions,
    quotedSender: bytes,
    recipients: Sequence[object],
    quotedRecipients: Sequence[bytes],
    size: int | None,
    eightBit: bool | None,
    early: bool = False,
    secure: bool = False,
) -> TransactionPlan:
    """
    Plan one transaction.

    @param recipients: the recipients as the hooks returned them (kept in
        the group, for the per-recipient results).
    @param size: the message size, if known.
    @param eightBit: whether the body holds 8-bit data, if known.
    @param early: the message is started before the previous one was
        answered (it begins with RSET).
    @param secure: the connection is over TLS whose certificate verified
        (REQUIRETLS needs it).
    @raise OptionError: if the message cannot be sent to this server.
    """
    warning = checkDSN(options, caps)
    pipelined = _pipelined(caps, switches)
    chunked = _chunked(caps, switches, len(recipients))
    if eightBit is None and b"8BITMIME" in caps:
        # Unknown (unseekable file): declaring it is always safe.
        eightBit = True
    checkEightBit(options, caps, eightBit)
    parameters = mailParameters(
        options, caps, [quotedSender, *quotedRecipients], size, eightBit, chunked, secure
    )
    refuseEightBit = (
        eightBit is None
        and b"8BITMIME" not in caps
        and not options.allowEightBitWithout8BITMIME
    )
    group: list[tuple[bytes, object]] = []
    if pipelined:
        if early:
            # Whatever became of the previous transaction, this one starts
            # from a clean slate (RFC 3030 asks for RSET after a failed
            # chunk; after a delivered message it is harmless).
            group.append((b"RSET", None))
        group.append((b"MAIL", None))
        group.extend((b"RCPT", r) for r in recipients)
        if recipients and not chunked:
            group.append((b"DATA", None))
    return TransactionPlan(pipelined, chunked, parameters, refuseEightBit, warning, group)
