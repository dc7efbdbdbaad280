"""
Delivery status notifications (RFC 3464) for messages that cannot be
relayed.

Pure: bytes in, bytes out.  The report is C{multipart/report;
report-type=delivery-status} with three parts: a human-readable explanation,
the C{message/delivery-status} fields (per recipient: C{Final-Recipient},
C{Action}, C{Status}, C{Remote-MTA}, C{Diagnostic-Code}), and the original
message (or only its headers, when it is large).  The original is copied as
bytes, never decoded, so any message can be returned.
"""

from __future__ import annotations

import re
import time
from typing import IO, TYPE_CHECKING, Union
from collections.abc import Sequence

from mailclient._wire.status import parseEnhancedStatus
from mailclient._wire.text import displayText
from mailclient._wire.util import messageid, rfc822date

if TYPE_CHECKING:
    from mailclient._wire.tlspolicy import TLSRecord

Text = Union[str, bytes]

#: Messages up to this size are returned whole; larger ones by their headers.
MAX_RETURNED_SIZE = 50000

_BOUNDARY_CHARS = re.compile(r"[^0-9A-Za-z'()+_,./:=?-]")


class DeliveryFailure:
    """
    Why one recipient of a message was not delivered.

    @ivar recipient: The envelope recipient.
    @ivar status: The RFC 3463 status code, such as C{"5.1.1"}.
    @ivar diagnostic: The remote server's reply (C{b"550 5.1.1 No such
        user"}), or L{None} when the failure was found locally.
    @ivar remoteMTA: The host that gave the reply, if any.
    @ivar reason: A short explanation for people.
    @ivar nextHop: The destination (recipient domain, or L{None} for a smart
        host), when known.
    @ivar address: The IP address of C{remoteMTA} connected to, when known.
    @ivar tls: The TLS record of that connection (a C{TLSRecord}), when
        known.
    """

    nextHop: str | None = None
    address: str | None = None
    tls: TLSRecord | None = None

    def __init__(
        self,
        recipient: Text,
        status: str,
        diagnostic: bytes | None = None,
        remoteMTA: str | None = None,
        reason: str = "",
    ) -> None:
        self.recipient = recipient
        self.status = status
        self.diagnostic = diagnostic
        self.remoteMTA = remoteMTA
        self.reason = reason

    def __repr__(self) -> str:
        return "DeliveryFailure(%r, %r, %r, %r, %r)" % (
            self.recipient,
            self.status,
            self.diagnostic,
            self.remoteMTA,
            self.reason,
        )


def statusFromReply(code: int, resp: bytes | None) -> str:
    """
    Return the RFC 3463 status of an SMTP reply: its own enhanced status
    code when it starts with one of the same class, else C{X.0.0}.
    """
    enhanced = parseEnhancedStatus(code, resp or b"") if code > 0 else None
    if enhanced is not None:
        return "%d.%d.%d" % enhanced
    klass = code // 100 if code // 100 in (2, 4, 5) else 5
    return "%d.0.0" % (klass,)


def _field(value: str, limit: int = 900) -> str:
    """
    Make C{value} safe as one header field value: one line, ASCII, bounded.
    Non-ASCII characters are written as RFC 6533 C{\\x{HEX}} escapes.
    """
    value = " ".join(value.split())
    value = "".join(c if " " <= c < "\x7f" else "\\x{%X}" % (ord(c),) for c in value)
    return value[:limit]


def _address(value: Text) -> str:
    text = displayText(value).strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text


def _headersOf(message: IO[bytes]) -> bytes:
    lines = []
    for line in message:
        if line in (b"\n", b"\r\n"):
            break
        lines.append(line)
    return b"".join(lines)


def _original(message: IO[bytes], maxSize: int) -> tuple[bytes, bytes]:
    """
    Return the content type and the bytes of the returned original.
    """
    message.seek(0, 2)
    size = message.tell()
    message.seek(0)
    if size <= maxSize:
        return b"message/rfc822", message.read()
    return b"text/rfc822-headers", _headersOf(message)


def _boundary(now: float) -> str:
    token = messageid(uniq="report").decode("ascii")
    return _BOUNDARY_CHARS.sub("", "=_%d_%s" % (int(now), token))


def generateBounce(
    message: IO[bytes],
    failedFrom: Text,
    failures: Sequence[DeliveryFailure],
    reportingMTA: str,
    arrivalDate: float | None = None,
    now: float | None = None,
    maxReturnedSize: int = MAX_RETURNED_SIZE,
    delayedUntil: float | None = None,
) -> tuple[bytes, bytes, bytes]:
    """
    Build a delivery status notification for an undeliverable message, or
    (with C{delayedUntil}) the warning that a message is delayed and will
    still be tried until then (RFC 3464 C{Action: delayed}, with only the
    original's headers).

    @param message: The undeliverable message, a binary file.
    @param failedFrom: The envelope sender of that message; the report is
        addressed to it.
    @param failures: One entry per recipient that failed.
    @param reportingMTA: This host's name, for C{Reporting-MTA} and the
        C{From} address (C{MAILER-DAEMON@reportingMTA}).
    @param arrivalDate: When the message was queued (seconds since the
        epoch), if known.
    @param now: The time of the report (default: now).
    @param maxReturnedSize: Messages larger than this are returned as
        C{text/rfc822-headers}.
    @return: The envelope sender (the null reverse-path, C{b""}), the
        envelope recipient, and the report, with LF line endings; as
        Twisted's C{bounce.generateBounce} returns them.
    """
    if now is None:
        now = time.time()
    reportingMTA = _field(reportingMTA) or "localhost"
    sender = _address(failedFrom)
    boundary = _boundary(now)
    delayed = delayedUntil is not None
    contentType, original = _original(message, -1 if delayed else maxReturnedSize)

    head = [
        "From: Mail Delivery System <MAILER-DAEMON@%s>" % (reportingMTA,),
        "To: <%s>" % (_field(sender),),
        "Subject: " + ("Delayed Mail (still being retried)" if delayed
                       else "Undelivered Mail Returned to Sender"),
        "Date: %s" % (rfc822date(time.localtime(now)).decode("ascii"),),
        "Message-ID: %s" % (messageid(uniq="bounce").decode("ascii"),),
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        ' boundary="%s"' % (boundary,),
        "",
        "This is a MIME-encapsulated delivery status notification.",
        "",
        "--" + boundary,
        "Content-Description: Notification",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "This is the mail system at host %s." % (reportingMTA,),
        "",
    ]
    if delayed:
        head += [
            "Your message could not be delivered to one or more recipients yet.",
            "Delivery will be tried again until %s; you do not need to send it"
            % (rfc822date(time.localtime(delayedUntil)).decode("ascii"),),
            "again.  Its headers are below.",
            "",
        ]
    else:
        head += [
            "Your message could not be delivered to one or more recipients.",
            "It has been returned below; delivery will not be retried.",
            "",
        ]
    for failure in failures:
        explanation = failure.reason or "delivery failed"
        if failure.diagnostic is not None:
            said = _field(failure.diagnostic.decode("utf-8", "replace"))
            host = failure.remoteMTA or "the remote server"
            explanation = "%s said: %s" % (_field(host), said)
        head.append(
            "<%s>: %s" % (_field(_address(failure.recipient)), _field(explanation))
        )
    head += [
        "",
        "--" + boundary,
        "Content-Description: Delivery report",
        "Content-Type: message/delivery-status",
        "",
        "Reporting-MTA: dns; %s" % (reportingMTA,),
    ]
    if arrivalDate is not None:
        head.append(
            "Arrival-Date: %s" % (rfc822date(time.localtime(arrivalDate)).decode("ascii"),)
        )
    for failure in failures:
        recipient = _address(failure.recipient)
        addressType = "rfc822" if recipient.isascii() else "utf-8"
        head += [
            "",
            "Final-Recipient: %s; %s" % (addressType, _field(recipient)),
            "Action: " + ("delayed" if delayed else "failed"),
            "Status: %s" % (_field(failure.status),),
        ]
        if failure.remoteMTA:
            head.append("Remote-MTA: dns; %s" % (_field(failure.remoteMTA),))
        if failure.diagnostic is not None:
            head.append(
                "Diagnostic-Code: smtp; %s"
                % (_field(failure.diagnostic.decode("utf-8", "replace")),)
            )
        head.append(
            "Last-Attempt-Date: %s" % (rfc822date(time.localtime(now)).decode("ascii"),)
        )
        if delayed:
            head.append("Will-Retry-Until: %s"
                        % (rfc822date(time.localtime(delayedUntil)).decode("ascii"),))
    head += [
        "",
        "--" + boundary,
        "Content-Description: " + ("Delayed message" if delayed else "Undelivered message"),
        "Content-Type: " + contentType.decode("ascii"),
    ]
    if not original.isascii():
        head.append("Content-Transfer-Encoding: 8bit")
    head.append("")
    report = "\n".join(head).encode("ascii") + b"\n" + original
    if not report.endswith(b"\n"):
        report += b"\n"
    report += b"\n--" + boundary.encode("ascii") + b"--\n"
    return b"", sender.encode("utf-8"), report
