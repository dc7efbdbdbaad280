"""
The structured log events of deliveries: one per delivery attempt, one per
retry scheduled.

Every field is made here, by L{deliveryEvent} and L{retryEvent}, so that
every sender that logs an attempt (the connection pool now) logs the same
fields with the same meaning; C{docs/pool.rst} documents them one by one.
An event holds addresses, reply codes and reply texts, sizes and times;
never message content (no header, no body) and never a credential (no user
name, password or token, no transcript: a transcript holds AUTH lines).

Emit them with L{emitDelivery} and L{emitRetry} on any
L{twisted.logger.Logger}; observers find them by their C{mailclient_event}
field (L{DELIVERY_EVENT}, L{RETRY_EVENT}).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from time import time
from typing import Concatenate, ParamSpec

from twisted.logger import Logger, LogLevel

from mailclient._wire.delivery import Outcome, enhancedText
from mailclient._wire.errors import SMTPClientError
from mailclient._wire.tlspolicy import TLSRecord
from mailclient._wire.types import RecipientResult

#: The C{mailclient_event} of a delivery attempt's event.
DELIVERY_EVENT = "delivery"
#: The C{mailclient_event} of a retry's event.
RETRY_EVENT = "retry"

#: The most characters of a reply (or error) text an event keeps.
MAX_TEXT = 500

DELIVERY_FORMAT = "SMTP delivery to {host}:{port}: {outcome} (attempt {attempt}, {summary})"
RETRY_FORMAT = (
    "SMTP {target} to {host}:{port} failed ({reason}); retry {retry} of {retries} "
    "in {delay:g}s"
)


def _text(data: bytes | str | None) -> str | None:
    if data is None:
        return None
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    return data[:MAX_TEXT]


#: One line for a TLS record (the same few records come again and again).
_describe = lru_cache(maxsize=64)(TLSRecord.describe)


def _address(address: object) -> str:
    if isinstance(address, bytes):
        return address.decode("utf-8", "replace")
    return str(address)


def errorText(error: BaseException) -> str:
    """
    What an event says of C{error}: the server's reply or the client's
    explanation, never the transcript that C{str()} of an
    L{SMTPClientError} appends (it holds the commands of the session).
    """
    if isinstance(error, SMTPClientError):
        resp = error.resp.decode("utf-8", "replace")
        text = "%03d %s" % (error.code, resp) if error.code > 0 else resp
    else:
        text = str(error) or type(error).__name__
    return text[:MAX_TEXT]


def recipientFields(results: Sequence[RecipientResult]) -> list[dict[str, object]]:
    """
    The C{recipients} field: one mapping per recipient.
    """
    return [
        {
            "address": _address(address),
            "code": code,
            "status": enhancedText(code, reply),
            "reply": _text(reply),
        }
        for address, code, reply in results
    ]


def deliveryEvent(
    *,
    host: str,
    port: int,
    outcome: Outcome,
    sender: str | None = None,
    results: Sequence[RecipientResult] = (),
    code: int | None = None,
    reply: bytes | None = None,
    address: str | None = None,
    tls: TLSRecord | None = None,
    latency: float | None = None,
    queued: float | None = None,
    retries: int = 0,
    retrying: bool = False,
    error: BaseException | None = None,
    size: int | None = None,
    delivery: int | None = None,
    connection: int | None = None,
    reused: bool = False,
    cancelled: bool = False,
) -> dict[str, object]:
    """
    The fields of the event of one delivery attempt (see C{docs/pool.rst}
    for each).

    @param host: the destination host, as configured.
    @param port: the destination port.
    @param outcome: how the attempt ended.
    @param sender: the envelope sender.
    @param results: C{(address, code, reply)} for each recipient answered.
    @param code: the final reply code to the message, when there was one.
    @param reply: the text of that reply.
    @param address: the IP address of the server, once connected.
    @param tls: what the connection got of TLS, once connected.
    @param latency: seconds from the start of the attempt to its end.
    @param queued: seconds the message waited before this attempt.
    @param retries: how many attempts of this message came before this one.
    @param retrying: whether another attempt was scheduled.
    @param error: the error the attempt ended with, if any.
    @param size: the size of the message in bytes.
    @param delivery: the sender's number for the message.
    @param connection: the sender's number for the connection.
    @param reused: whether the connection carried a message before.
    @param cancelled: whether the caller cancelled the message.
    """
    if code is not None and code > 0:
        status = enhancedText(code, reply or b"")
        summary = "%03d %s" % (code, _text(reply) or "")
    else:
        code = None if code is None or code < 0 else code
        status = None
        summary = errorText(error) if error is not None else "no reply"
    accepted = sum(1 for _, c, _ in results if 200 <= c < 300)
    return {
        "mailclient_event": DELIVERY_EVENT,
        "host": host,
        "port": port,
        "address": address,
        "tls": tls,
        "tlsSummary": _describe(tls) if tls is not None else None,
        "sender": sender,
        "recipients": recipientFields(results),
        "accepted": accepted,
        "code": code,
        "status": status,
        "reply": _text(reply) if code is not None else None,
        "outcome": outcome.value,
        "attempt": retries + 1,
        "retries": retries,
        "retrying": retrying,
        "latency": latency,
        "queued": queued,
        "size": size,
        "delivery": delivery,
        "connection": connection,
        "reused": reused,
        "cancelled": cancelled,
        "error": type(error).__name__ if error is not None else None,
        "errorText": errorText(error) if error is not None else None,
        "summary": summary,
    }


def levelOf(outcome: Outcome) -> LogLevel:
    """
    The log level of an attempt's event: info when the message went, warn
    otherwise.
    """
    return LogLevel.info if outcome is Outcome.DELIVERED else LogLevel.warn


def emit(log: Logger, level: LogLevel, format: str, event: dict[str, object]) -> None:
    """
    Emit the fields C{event} (made by L{deliveryEvent} or L{retryEvent})
    on C{log}, as C{log.emit(level, format, **event)} does.  (The event is
    made once, and the level is known to be valid.)
    """
    event.update(
        log_logger=log, log_level=level, log_namespace=log.namespace,
        log_source=log.source, log_format=format, log_time=time())
    log.observer(event)


P = ParamSpec("P")


def _emitter(
    make: Callable[P, dict[str, object]], level: Callable[[dict[str, object]], LogLevel],
    format: str, name: str, doc: str,
) -> Callable[Concatenate[Logger, P], dict[str, object]]:
    """
    A function that makes an event with C{make} (from the same keyword
    arguments), emits it on a logger at its C{level} and returns it.
    """

    def emitEvent(log: Logger, /, *args: P.args, **fields: P.kwargs) -> dict[str, object]:
        event = make(*args, **fields)
        emit(log, level(event), format, event)
        return event

    emitEvent.__name__ = emitEvent.__qualname__ = name
    emitEvent.__doc__ = doc
    return emitEvent


emitDelivery = _emitter(
    deliveryEvent, lambda event: levelOf(Outcome(event["outcome"])), DELIVERY_FORMAT,
    "emitDelivery", """
    Emit the event of one delivery attempt on C{log}; the keyword
    arguments are those of L{deliveryEvent}.  Return the event.
    """)


def retryEvent(
    *,
    host: str,
    port: int,
    retry: int,
    retries: int | None,
    delay: float,
    reason: str,
    delivery: int | None = None,
    connection: int | None = None,
) -> dict[str, object]:
    """
    The fields of the event of a retry being scheduled.

    @param retry: the number of this retry (1 for the first).
    @param retries: how many retries the policy allows (L{None}: no count).
    @param delay: seconds until it starts.
    @param reason: why the previous attempt failed.
    @param delivery: the message retried (L{None}: a connection is).
    @param connection: the connection that failed, if any.
    """
    return {
        "mailclient_event": RETRY_EVENT,
        "host": host,
        "port": port,
        "retry": retry,
        "retries": "unlimited" if retries is None else retries,
        "delay": float(delay),
        "reason": reason[:MAX_TEXT],
        "target": "connection" if delivery is None else "delivery %d" % (delivery,),
        "delivery": delivery,
        "connection": connection,
    }


emitRetry = _emitter(
    retryEvent, lambda event: LogLevel.info, RETRY_FORMAT, "emitRetry", """
    Emit the event of a retry being scheduled on C{log}; the keyword
    arguments are those of L{retryEvent}.  Return the event.
    """)


__all__ = [
    "DELIVERY_EVENT", "RETRY_EVENT", "deliveryEvent", "retryEvent", "emitDelivery",
    "emitRetry", "emit", "recipientFields", "errorText", "levelOf", "DELIVERY_FORMAT",
    "RETRY_FORMAT",
]
