"""
What one delivery through a connection pool ends with: its L{Outcome}, the
result a caller gets (L{DeliveryResult}, one L{RecipientStatus} per
recipient) and the two errors only a pool raises
(L{DeliveryStatusUnknownError}, L{PoolClosedError}).

The outcome of an attempt is decided here, from what the server answered
and what the client had written (L{outcomeOf}), so that the pool, its log
event and its metrics agree on one name for it.

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from mailclient._wire.errors import (
    CannotSendError,
    InvalidAddressError,
    MessageReadError,
    SMTPClientError,
)
from mailclient._wire.status import isPermanent, parseEnhancedStatus
from mailclient._wire.tlspolicy import TLSRecord
from mailclient._wire.types import RecipientResult


class Outcome(str, enum.Enum):
    """
    How one delivery attempt ended.

    The values are the strings logged in the C{outcome} field of the
    delivery event and used as the metrics' C{outcome} label.
    """

    #: The server accepted the message for every recipient.
    DELIVERED = "delivered"
    #: The server accepted the message for some recipients and refused the
    #: others.
    PARTIAL = "partial"
    #: The server refused the message (or every recipient) for good.
    REFUSED = "refused"
    #: The server refused the message for now (4xx); see the event's
    #: C{retrying} field for whether it is tried again.
    TEMPORARY = "temporary"
    #: The client refused the message before sending it: an address it
    #: cannot send, a body it could not read, content the server cannot
    #: take.  Never retried.
    INVALID = "invalid"
    #: Not delivered, for a reason on the client's side or the
    #: connection's (lost before the end of the data, timed out, TLS or
    #: authentication failed...): the server cannot have accepted it.
    FAILED = "failed"
    #: The end of the data was written but no final reply came: the server
    #: may or may not have accepted the message.  Never sent again.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class RecipientStatus:
    """
    What the server answered for one recipient.

    @ivar address: the address, as given (or as read from the header).
    @ivar code: the reply code to its C{RCPT TO} (-1 if none came).
    @ivar reply: the text of that reply.
    @ivar enhancedStatus: the enhanced status code at the start of the
        reply (RFC 3463), such as C{"2.1.5"}, or L{None}.
    """

    address: str
    code: int
    reply: bytes
    enhancedStatus: str | None = None

    @property
    def accepted(self) -> bool:
        """
        Whether the server accepted this recipient.
        """
        return 200 <= self.code < 300


@lru_cache(maxsize=256)
def enhancedText(code: int, reply: bytes) -> str | None:
    """
    The enhanced status code of a reply as text (C{"5.1.1"}), or L{None}.
    (Servers give the same few replies again and again: the last ones are
    remembered.)
    """
    found = parseEnhancedStatus(code, reply)
    return None if found is None else "%d.%d.%d" % found


def _addressText(address: object) -> str:
    if isinstance(address, bytes):
        return address.decode("utf-8", "replace")
    return str(address)


def recipientStatuses(results: Sequence[RecipientResult]) -> tuple[RecipientStatus, ...]:
    """
    The L{RecipientStatus} of each C{(address, code, reply)} the client
    recorded.
    """
    return tuple(
        RecipientStatus(_addressText(address), code, reply, enhancedText(code, reply))
        for address, code, reply in results
    )


@dataclass(frozen=True)
class DeliveryResult:
    """
    The result of a message the server accepted (for one recipient at
    least).

    It unpacks as C{sendmail}'s result does::

        numOk, addresses = result

    @ivar code: the server's final reply code to the message (250).
    @ivar reply: the text of that reply (often with the server's queue
        identifier).
    @ivar recipients: the L{RecipientStatus} of each recipient, in the
        order they were sent.
    @ivar tls: the TLS the connection got (L{TLSRecord}), or L{None}.
    @ivar retries: how many times the message was sent again before this
        attempt (0: the first attempt succeeded).
    @ivar latency: seconds from the start of the attempt that succeeded to
        its final reply.
    @ivar host: the host of the pool's destination.
    @ivar port: the port of the pool's destination.
    @ivar address: the IP address the message went to.
    """

    code: int
    reply: bytes
    recipients: tuple[RecipientStatus, ...]
    tls: TLSRecord | None = None
    retries: int = 0
    latency: float = 0.0
    host: str = ""
    port: int = 0
    address: str | None = None

    @property
    def numOk(self) -> int:
        """
        How many recipients the server accepted.
        """
        return sum(1 for r in self.recipients if r.accepted)

    @property
    def addresses(self) -> list[tuple[str, int, bytes]]:
        """
        C{(address, code, reply)} for each recipient: the second item of
        C{sendmail}'s result (addresses here are text).
        """
        return [(r.address, r.code, r.reply) for r in self.recipients]

    @property
    def accepted(self) -> list[str]:
        """
        The recipients the server accepted.
        """
        return [r.address for r in self.recipients if r.accepted]

    @property
    def refused(self) -> list[RecipientStatus]:
        """
        The recipients the server refused, with its replies.
        """
        return [r for r in self.recipients if not r.accepted]

    def __iter__(self) -> Iterator[object]:
        return iter((self.numOk, self.addresses))


class DeliveryStatusUnknownError(SMTPClientError):
    """
    The end of the message data was written, but the server's final reply
    never came (the connection was lost, or the reply timed out or was
    garbled): the server may have accepted the message, or not.

    The pool never sends such a message again (it could arrive twice);
    whether it arrived is for the recipient's side to tell.  The error
    that ended the attempt is C{__cause__} (and L{cause}).

    @ivar cause: the error that ended the attempt.
    """

    def __init__(
        self, resp: bytes | str, log: bytes | str | None = None,
        cause: BaseException | None = None,
    ) -> None:
        SMTPClientError.__init__(self, -1, resp, log, None, isFatal=True, retry=False)
        self.cause = cause
        self.__cause__ = cause


class PoolClosedError(SMTPClientError):
    """
    The pool was closed before this message was sent: it was given after
    C{close()}, or still waiting (or not past its envelope) when the time
    C{close()} allows for draining ran out.  The server did not get it.
    """

    def __init__(self, resp: bytes | str = b"The connection pool is closed",
                 log: bytes | str | None = None) -> None:
        SMTPClientError.__init__(self, -1, resp, log, None, isFatal=False, retry=False)


#: The errors that mean the client refused the message itself: nothing of
#: it reached the server (or, for 8-bit data found while streaming, the
#: server cannot have accepted it).
LOCAL_REFUSALS = (InvalidAddressError, CannotSendError, MessageReadError)


def outcomeOf(
    code: int | None, results: Sequence[RecipientResult] = (),
    error: BaseException | None = None,
) -> Outcome:
    """
    The outcome of an attempt.

    @param code: the final reply code when the server answered the
        message (L{None} when it failed with C{error} instead).
    @param results: C{(address, code, reply)} for each recipient.
    @param error: the error the attempt failed with (for a message the
        server answered, the L{SMTPDeliveryError} made of the reply).
    """
    if isinstance(error, DeliveryStatusUnknownError):
        return Outcome.UNKNOWN
    if code is not None and 200 <= code < 300:
        if all(200 <= c < 300 for _, c, _ in results):
            return Outcome.DELIVERED
        return Outcome.PARTIAL
    if isinstance(error, LOCAL_REFUSALS):
        return Outcome.INVALID
    if code is not None and code > 0:
        if isinstance(error, SMTPClientError) and error.isTemporary and not any(
            isPermanent(c, parseEnhancedStatus(c, r)) for _, c, r in results
        ):
            return Outcome.TEMPORARY
        return Outcome.REFUSED
    return Outcome.FAILED


__all__ = [
    "Outcome", "RecipientStatus", "DeliveryResult", "DeliveryStatusUnknownError",
    "PoolClosedError", "LOCAL_REFUSALS", "outcomeOf", "recipientStatuses", "enhancedText",
]
