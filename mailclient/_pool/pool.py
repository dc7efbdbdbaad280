"""
L{SMTPPool}: connections to one destination, kept open and shared by the
messages given to it.

The pool owns a queue of messages and at most C{maxConnections}
connections (L{mailclient._pool.connection}).  A message given to
L{SMTPPool.send} waits in the queue; a connection that is waiting takes it
at once (after a NOOP when it waited past C{noopAfter}), else a new
connection is opened if the cap allows, else it waits for the first
connection free.  A connection takes messages from the queue until it is
empty, then waits; one that waits C{idleTimeout} is closed with QUIT.

Each message ends once, with a L{DeliveryResult} or a failure, and each
attempt of it is logged as one structured event
(L{mailclient._protocol.events}).  What is tried again, and when, follows
the settings' L{RetryPolicy}:

  - a message whose connection was lost (or timed out) before the end of
    its data was written is sent again on another connection; one whose
    end of data was written fails with L{DeliveryStatusUnknownError} and
    is never sent again (at most once);
  - a message the server refused for now (4xx, no recipient refused for
    good) is sent again later;
  - a connection that cannot be made (refused, greeting, TLS,
    authentication) is tried again for the waiting messages, which fail
    with its error once the policy gives up and no connection is left.

Outcomes are handed to the callers at the end of each event the
connections process (L{mailclient._pool.connections.Turn}): by then a
connection that has nothing more to send is waiting, so a message sent
from a callback reuses it instead of opening another.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Union, cast

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTCP, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailclient._pool.connection import Connection, PooledClient, State
from mailclient._pool.connections import ConnectionManager
from mailclient._pool.message import PreparedMessage, prepareMessage
from mailclient._protocol.client import checkIdentity
from mailclient._protocol.outcome import SUCCESS
from mailclient._protocol.events import (
    DELIVERY_FORMAT,
    deliveryEvent,
    emit,
    emitRetry,
    errorText,
    levelOf,
)
from mailclient._protocol.metrics import DeliveryMetrics, deliveryMetrics
from mailclient._protocol.sendmail import DEFAULT_TIMEOUTS, SMTPS_PORT
from mailclient._protocol.tls import contextForPolicy
from mailclient._wire.delivery import (
    DeliveryResult,
    DeliveryStatusUnknownError,
    Outcome,
    PoolClosedError,
    outcomeOf,
    recipientStatuses,
)
from mailclient._wire.errors import (
    InvalidAddressError,
    MessageReadError,
    SMTPClientError,
    SMTPConnectError,
    SMTPDeliveryError,
    SMTPTLSError,
)
from mailclient._wire.settings import ClientSettings, settingsFrom
from mailclient._wire.text import hostName
from mailclient._wire.tlspolicy import TLSPolicy
from mailclient._wire.types import RecipientResult

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

_log = Logger(namespace="mailclient.pool")

#: What a message's Deferred is fired with.
Reported = Union[DeliveryResult, Failure]


class Stage(enum.Enum):
    """
    Where a message is (L{Delivery.stage}).
    """

    QUEUED = "queued"
    WAITING = "waiting for a retry"
    ACTIVE = "on a connection"
    DONE = "done"


class Delivery:
    """
    One message given to the pool, from L{SMTPPool.send} to its outcome.

    @ivar number: its number in the pool (1 for the first).
    @ivar message: the message, ready to send.
    @ivar deferred: what the caller was given.
    @ivar stage: see L{Stage}.
    @ivar enqueued: when it last entered the queue.
    @ivar started: when its current attempt started.
    @ivar firstAttempt: when its first attempt started.
    @ivar attempts: how many attempts were started.
    @ivar policyRetries: how many retries the retry policy granted.
    @ivar staleResends: how many times it was sent again because a reused
        connection turned out closed (not counted by the policy).
    @ivar connection: the connection of the current attempt.
    @ivar reused: whether that connection had carried a message before.
    @ivar transaction: the client's transaction of the current attempt.
    @ivar dataEnded: whether the end of its data was written in the
        current attempt.
    @ivar cancelled: whether the caller cancelled it while in flight.
    @ivar retryCall: the pending retry.
    """

    __slots__ = (
        "number", "message", "deferred", "stage", "enqueued", "started", "firstAttempt",
        "attempts", "policyRetries", "staleResends", "connection", "reused", "transaction",
        "dataEnded", "cancelled", "retryCall",
    )

    def __init__(self, number: int, message: PreparedMessage, now: float,
                 cancel: Callable[[Delivery], None]) -> None:
        self.number = number
        self.message = message
        # (Twisted drops the canceller once the Deferred fires: a caller
        # keeping the Deferred does not keep the delivery.)
        self.deferred: defer.Deferred[DeliveryResult] = defer.Deferred(
            lambda _: cancel(self))
        self.stage = Stage.QUEUED
        self.enqueued = now
        self.started = now
        self.firstAttempt: float | None = None
        self.attempts = 0
        self.policyRetries = 0
        self.staleResends = 0
        self.connection: Connection | None = None
        self.reused = False
        self.transaction: object = None
        self.dataEnded = False
        self.cancelled = False
        self.retryCall: IDelayedCall | None = None


def _number(name: str, value: object, allowNone: bool, minimum: float = 0) -> None:
    if value is None and allowNone:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ValueError("%s must be a number of at least %s%s, not %r"
                         % (name, minimum, " or None" if allowNone else "", value))


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode("utf-8") if isinstance(value, str) else value


class SMTPPool(ConnectionManager):
    """
    A pool of connections to one SMTP server, for many messages.

    See C{docs/pool.rst}.  Every connection of a pool goes to the same
    destination: C{host} and C{port}, the same TLS policy (the settings'
    L{ClientSettings.tlsPolicyFor}), the same credentials; each does
    STARTTLS and AUTH once, when it is made.
    """

    def __init__(
        self,
        host: str | bytes,
        port: int = 25,
        *,
        username: str | bytes | None = None,
        password: str | bytes | None = None,
        maxConnections: int = 10,
        idleTimeout: float | None = 60.0,
        noopAfter: float | None = 10.0,
        pipelineMessages: bool = True,
        senderDomainName: str | bytes | None = None,
        settings: ClientSettings | None = None,
        reactor: IReactorTCP | None = None,
        clock: IReactorTime | None = None,
        metrics: bool | CollectorRegistry | None = True,
        **options: object,
    ) -> None:
        """
        @param host: the server's host name or IP address (a name is
            resolved for IPv6 and IPv4, happy eyeballs).
        @param port: its port; 465 speaks TLS from the first byte.
        @param username: the user name to log in with (CRAM-MD5, LOGIN,
            PLAIN, in that order of preference).
        @param password: the password; without it there is no
            authentication (unless C{authenticators} hold their own token).
        @param maxConnections: the most connections open at once.
        @param idleTimeout: seconds a connection may wait for a message
            before it is closed (L{None}: never).
        @param noopAfter: a connection that waited this many seconds or more
            is checked with NOOP before its next message (L{None}: never).
        @param pipelineMessages: start the next message before the previous
            one's replies arrive, when the server offers PIPELINING and
            CHUNKING (see L{ESMTPClient.pipelineMessages}).
        @param senderDomainName: the name to give in EHLO (default: this
            host's name).
        @param settings: the options of the deliveries (L{ClientSettings});
            by default those of C{sendmail}: STARTTLS when offered, the
            certificate verified for C{host}, authentication when a password
            is given, RFC 5321's timeouts, the default L{RetryPolicy}.
        @param reactor: what connections are made with (default: the
            global reactor).
        @param clock: what the pool's and the connections' timers run on
            (default: C{reactor}).
        @param metrics: C{True}: count deliveries and their latency in
            C{prometheus_client}'s default registry if it is installed;
            C{False}: no metrics; or the C{CollectorRegistry} to use.
        @param options: (keyword only) any option of L{ClientSettings},
            applied over C{settings}: C{tls}, C{tlsPolicy},
            C{requireTransportSecurity}, C{requireAuthentication},
            C{timeouts}, C{retry}, C{connectTimeout}, ...

        @raise ValueError: for an option out of range, or implicit TLS that
            cannot be had.
        @raise TypeError: for an unknown option.
        """
        if isinstance(host, bytes):
            host = host.decode("idna")
        if not isinstance(maxConnections, int) or isinstance(maxConnections, bool) \
                or maxConnections < 1:
            raise ValueError("maxConnections must be a positive int, not %r" % (maxConnections,))
        _number("idleTimeout", idleTimeout, True)
        _number("noopAfter", noopAfter, True)
        self.host = host
        self.port = port
        self.maxConnections = maxConnections
        self.idleTimeout = idleTimeout
        self.noopAfter = noopAfter
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = cast(IReactorTCP, globalReactor)
        self._reactor = reactor
        self._clock: IReactorTime = clock if clock is not None else cast(IReactorTime, reactor)
        if settings is None:
            settings = ClientSettings(
                heloFallback=True, requireAuthentication=False,
                requireTransportSecurity=False, hostname=hostName(host),
                timeouts=DEFAULT_TIMEOUTS, implicitTLS=port == SMTPS_PORT)
        self.settings = settingsFrom(settings, **options)
        self.tlsPolicy: TLSPolicy = self.settings.tlsPolicyFor(host)
        self._context = contextForPolicy(self.tlsPolicy, host)
        if self.tlsPolicy.implicit and self._context is None:
            raise ValueError("implicit TLS, but TLS is off or TLS support is not installed")
        self._username = _bytes(username)
        self._password = _bytes(password)
        self._identityGiven = None if senderDomainName is None else checkIdentity(
            senderDomainName)
        self._overlap = pipelineMessages
        if metrics is True:
            self._metrics: DeliveryMetrics | None = deliveryMetrics()
        elif metrics is False or metrics is None:
            self._metrics = None
        else:
            self._metrics = deliveryMetrics(metrics)
        self._destination = "%s:%d" % (host, port)
        self._initConnections()
        self._outbox: deque[tuple[defer.Deferred[DeliveryResult], Reported]] = deque()
        self._flushing = False
        self._queue = deque()
        self._waiting: set[Delivery] = set()
        self._deliveries = 0
        self._closed = False
        self._forced = False
        self._closeTimer: IDelayedCall | None = None
        self._closeWaiters: list[defer.Deferred[None]] = []

    def __repr__(self) -> str:
        return "<SMTPPool %s: %d connection(s), %d waiting%s>" % (
            self._destination, len(self._connections), self.waiting,
            ", closed" if self._closed else "")

    # Public API

    @property
    def connections(self) -> int:
        """
        How many connections are open (or being made, or closing).
        """
        return len(self._connections)

    @property
    def idleConnections(self) -> int:
        """
        How many connections are waiting for a message.
        """
        return len(self._free)

    @property
    def waiting(self) -> int:
        """
        How many messages wait to be started (queued, or until a retry).
        """
        return len(self._queue) + len(self._waiting)

    @property
    def closed(self) -> bool:
        """
        Whether L{close} was called.
        """
        return self._closed

    def send(self, message: object, sender: object = None,
             recipients: object = None) -> defer.Deferred[DeliveryResult]:
        """
        Send one message through the pool.

        @param message: an L{email.message.EmailMessage} (any
            L{email.message.Message}), L{bytes}, L{str} (sent as UTF-8) or
            a file, read whole now.
        @param sender: the envelope sender; L{None} for a C{Message} takes
            it from the header (C{Sender}, else C{From}).
        @param recipients: the envelope recipients (an address or a list);
            L{None} for a C{Message} takes them from C{To}, C{Cc} and
            C{Bcc}.  Bcc and Resent-Bcc are never sent.

        @return: a Deferred that fires with a L{DeliveryResult} once the
            server accepted the message for one recipient at least, or
            fails: L{SMTPDeliveryError} (refused), L{InvalidAddressError}
            or L{MessageReadError} (never sent), L{DeliveryStatusUnknownError}
            (the end of the data was written, no final reply came),
            L{SMTPConnectError} and the other L{SMTPClientError}s (not
            delivered), L{PoolClosedError}.  Cancelling it removes a message
            not yet started; one in flight is left to finish (see
            C{docs/pool.rst}).

        @raise TypeError: for bytes, text or a file without a sender and
            recipients, or arguments of the wrong type.
        """
        if self._closed:
            return defer.fail(PoolClosedError(b"The connection pool is closed: message not sent"))
        self._deliveries += 1
        number = self._deliveries
        try:
            prepared = prepareMessage(message, sender, recipients)
        except (InvalidAddressError, MessageReadError) as e:
            self._report(number, None, Outcome.INVALID, error=e)
            return defer.fail(e)
        delivery = Delivery(number, prepared, self._clock.seconds(), self._cancel)
        self._queue.append(delivery)
        if self._depth:
            self._needDispatch = True
        else:
            self._dispatch()
        return delivery.deferred

    def close(self, timeout: float | None = 30.0) -> defer.Deferred[None]:
        """
        Stop taking messages and close the connections once the messages
        given are done; QUIT closes each connection.

        @param timeout: seconds to let the messages in flight and waiting
            finish (L{None}: as long as they take).  Then the ones not
            started fail with L{PoolClosedError}, the connections are
            dropped, and the messages on them fail: with
            L{PoolClosedError} before the end of their data, with
            L{DeliveryStatusUnknownError} after it.
        @return: a Deferred that fires once every connection is closed.
        """
        _number("timeout", timeout, True)
        d: defer.Deferred[None] = defer.Deferred()
        self._closeWaiters.append(d)
        if not self._closed:
            self._closed = True
            with self._turn:
                for connection in list(self._free):
                    self._stopWaiting(connection)
                    cast(PooledClient, connection.client).quit()
                if not self._queue:
                    self._stopConnecting()
                if timeout is not None:
                    self._closeTimer = self._clock.callLater(timeout, self._closeTimedOut)
        self._maybeClosed()
        return d

    # Sending (called by the connections)

    def _take(self, connection: Connection) -> Delivery | None:
        if not self._queue:
            return None
        delivery = self._queue.popleft()
        delivery.stage = Stage.ACTIVE
        delivery.connection = connection
        delivery.reused = connection.carried > 0 or connection.waited
        connection.carried += 1
        now = self._clock.seconds()
        delivery.started = now
        if delivery.firstAttempt is None:
            delivery.firstAttempt = now
        delivery.attempts += 1
        delivery.dataEnded = False
        return delivery

    def _answered(self, connection: Connection, delivery: Delivery, code: int, resp: bytes,
                  addresses: list[RecipientResult], log: bytes) -> None:
        """
        The server answered C{delivery}: accepted, or refused.
        """
        if code in SUCCESS:
            latency = self._clock.seconds() - delivery.started
            result = DeliveryResult(
                code, resp, recipientStatuses(addresses), connection.tls,
                delivery.attempts - 1, latency, self.host, self.port, connection.address)
            outcome = Outcome.DELIVERED
            for _, acode, _ in addresses:
                if acode not in SUCCESS:
                    outcome = Outcome.PARTIAL
            self._ended(delivery, outcome, result, code=code, reply=resp, results=addresses)
            return
        errlog = []
        for address, acode, aresp in addresses:
            if acode not in SUCCESS:
                raw = address.encode("utf-8") if isinstance(address, str) else bytes(
                    cast(bytes, address))
                errlog.append(raw + b": %03d " % (acode,) + aresp)
        errlog.append(log)
        exc = SMTPDeliveryError(code, resp, b"\n".join(errlog), addresses)
        outcome = outcomeOf(code, addresses, exc)
        self._ended(delivery, outcome, Failure(exc), code=code, reply=resp, results=addresses,
                    error=exc, retryable=outcome is Outcome.TEMPORARY)

    def _failed(self, connection: Connection, delivery: Delivery, exc: Exception) -> None:
        """
        C{delivery} could not be completed on C{connection}.
        """
        error: Exception = exc
        if delivery.dataEnded:
            error = DeliveryStatusUnknownError(
                b"The end of the message data was written, but no final reply came ("
                + errorText(exc).encode("utf-8", "replace") + b"): the message may or may "
                b"not have been delivered, and is not sent again",
                getattr(exc, "log", None), cause=exc)
        elif self._forced:
            error = PoolClosedError(b"The connection pool was closed before the end of the "
                                    b"message data: message not sent")
            error.__cause__ = exc
        outcome = outcomeOf(None, (), error)
        retryable = (
            outcome is Outcome.FAILED and isinstance(error, SMTPClientError)
            and not isinstance(error, (SMTPTLSError, PoolClosedError))
            and (error.retry or error.isTemporary))
        stale = (retryable and delivery.reused and delivery.staleResends == 0
                 and isinstance(error, SMTPConnectError))
        self._ended(delivery, outcome, Failure(error), error=error, retryable=retryable,
                    stale=stale)

    def _ended(self, delivery: Delivery, outcome: Outcome, result: Reported, *,
               code: int | None = None, reply: bytes | None = None,
               results: list[RecipientResult] | tuple[()] = (),
               error: BaseException | None = None, retryable: bool = False,
               stale: bool = False) -> None:
        """
        An attempt of C{delivery} ended: log it, then send it again or
        report it.
        """
        connection = delivery.connection
        delay = None
        if retryable and not delivery.cancelled and not self._forced:
            delay = self._retryDelay(delivery, stale)
        now = self._clock.seconds()
        latency = now - delivery.started
        self._report(
            delivery.number, delivery, outcome, code=code, reply=reply, results=results,
            error=error, latency=latency, connection=connection, retrying=delay is not None)
        delivery.connection = None
        if delay is not None:
            assert error is not None
            self._sendAgain(delivery, delay, stale, errorText(error))
            return
        self._finish(delivery, result)

    def _retryDelay(self, delivery: Delivery, stale: bool) -> float | None:
        if stale:
            return 0.0
        policy = self.settings.retry
        started = delivery.firstAttempt if delivery.firstAttempt is not None else 0.0
        return policy.nextDelay(delivery.policyRetries + 1, self._clock.seconds() - started)

    def _sendAgain(self, delivery: Delivery, delay: float, stale: bool, reason: str) -> None:
        if stale:
            # The server closed a connection that waited: the others that
            # wait may be closed too, so each is checked before its reuse.
            delivery.staleResends += 1
            for connection in self._free:
                connection.suspect = True
            reason += "; the connection had carried messages: sent again at once"
        else:
            delivery.policyRetries += 1
        emitRetry(_log, host=self.host, port=self.port, retry=delivery.attempts,
                  retries=self.settings.retry.retries, delay=delay, reason=reason,
                  delivery=delivery.number)
        if delay <= 0:
            self._requeue(delivery)
            return
        delivery.stage = Stage.WAITING
        self._waiting.add(delivery)
        delivery.retryCall = self._clock.callLater(delay, self._retryDue, delivery)

    def _retryDue(self, delivery: Delivery) -> None:
        delivery.retryCall = None
        self._waiting.discard(delivery)
        with self._turn:
            self._requeue(delivery)

    def _requeue(self, delivery: Delivery) -> None:
        delivery.stage = Stage.QUEUED
        delivery.enqueued = self._clock.seconds()
        self._queue.appendleft(delivery)
        self._needDispatch = True
        if not self._depth:
            self._dispatch()

    def _report(self, number: int, delivery: Delivery | None, outcome: Outcome, *,
                code: int | None = None, reply: bytes | None = None,
                results: list[RecipientResult] | tuple[()] = (),
                error: BaseException | None = None, latency: float | None = None,
                connection: Connection | None = None, retrying: bool = False) -> None:
        """
        Log the event of an attempt (or of a message that never made one),
        and count it.
        """
        message = delivery.message if delivery is not None else None
        event = deliveryEvent(
            host=self.host, port=self.port, outcome=outcome,
            sender=message.sender if message is not None else None,
            results=results, code=code, reply=reply,
            address=connection.address if connection is not None else None,
            tls=connection.tls if connection is not None else None,
            latency=latency,
            queued=(delivery.started - delivery.enqueued) if delivery is not None
            and connection is not None else None,
            retries=max(0, delivery.attempts - 1) if delivery is not None else 0,
            retrying=retrying, error=error,
            size=len(message.body) if message is not None else None,
            delivery=number, connection=connection.number if connection is not None else None,
            reused=delivery.reused if delivery is not None and connection is not None else False,
            cancelled=delivery.cancelled if delivery is not None else False)
        emit(_log, levelOf(outcome), DELIVERY_FORMAT, event)
        if self._metrics is not None:
            self._metrics.observe(self._destination, outcome.value, latency)

    def _finish(self, delivery: Delivery, result: Reported) -> None:
        """
        Report C{delivery}'s outcome to its caller (at the end of the turn).
        """
        delivery.stage = Stage.DONE
        delivery.transaction = None
        if not delivery.cancelled:
            self._outbox.append((delivery.deferred, result))
        if not self._depth:
            self._flush()
        self._maybeClosed()

    def _flush(self) -> None:
        if self._flushing:
            return
        self._flushing = True
        try:
            while True:
                while self._outbox:
                    d, result = self._outbox.popleft()
                    if d.called:
                        continue
                    if isinstance(result, Failure):
                        d.errback(result)
                    else:
                        d.callback(result)
                if self._needDispatch and not self._dispatching:
                    self._dispatch()
                if not self._outbox:
                    break
        finally:
            self._flushing = False
        self._maybeClosed()

    def _cancel(self, delivery: Delivery) -> None:
        if delivery.stage is Stage.DONE:
            return
        if delivery.stage is Stage.ACTIVE:
            # On the wire: left to finish (see docs/pool.rst); its event
            # says cancelled, and its caller has the CancelledError.
            delivery.cancelled = True
            return
        if delivery.stage is Stage.QUEUED:
            self._queue.remove(delivery)
        else:
            call, delivery.retryCall = delivery.retryCall, None
            if call is not None and call.active():
                call.cancel()
            self._waiting.discard(delivery)
        delivery.stage = Stage.DONE
        self._maybeClosed()

    # Closing

    def _closeTimedOut(self) -> None:
        self._closeTimer = None
        self._forced = True
        with self._turn:
            if self._hold is not None and self._hold.active():
                self._hold.cancel()
            self._hold = None
            stranded = list(self._queue) + list(self._waiting)
            self._queue.clear()
            for delivery in stranded:
                self._waiting.discard(delivery)
                call, delivery.retryCall = delivery.retryCall, None
                if call is not None and call.active():
                    call.cancel()
                failure = PoolClosedError(
                    b"The connection pool was closed before this message was sent")
                self._report(delivery.number, delivery, Outcome.FAILED, error=failure)
                self._finish(delivery, Failure(failure))
            for connection in list(self._connections):
                if connection.client is not None:
                    connection.client.abort()
                elif connection.connector is not None:
                    connection.state = State.CLOSING
                    connection.connector.disconnect()

    def _maybeClosed(self) -> None:
        if not (self._closed and self._closeWaiters) or self._connections or self._queue \
                or self._waiting or self._depth or self._outbox:
            return
        for timer in (self._closeTimer, self._hold):
            if timer is not None and timer.active():
                timer.cancel()
        self._closeTimer = self._hold = None
        waiters, self._closeWaiters = self._closeWaiters, []
        for d in waiters:
            d.callback(None)
