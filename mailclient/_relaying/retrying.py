"""
What a relaying manager does with a message that failed for now: its
retry schedule, kept by the queue when the queue keeps one (durably: the
directory queue's C{-R} files, the PostgreSQL queue's rows), the one delay
warning (RFC 3464 C{Action: delayed}) once it has waited long enough, and
the back-off of a destination that said "not now" to everyone (421, or a
4.7.x status).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailclient._relaying.attempt import DeliveryOutcome, DeliveryReport
from mailclient._relaying.bounce import DeliveryFailure
from mailclient._relaying.returning import delayWarning
from mailclient._wire.queuestate import RetryState, smartHostDestination
from mailclient._wire.text import displayText

if TYPE_CHECKING:
    from mailclient._relaying.manager import SmartHostSMTPRelayingManager

_log = Logger()


def recordFailure(manager: SmartHostSMTPRelayingManager, message: str,
                  failure: DeliveryFailure | None, now: float) -> None:
    """
    Count a failure for now of C{message} and let it wait again: in the
    queue's schedule when it keeps one (C{recordFailure}), else in the
    manager's C{retries} only (a queue with Twisted's interface), as
    before.  C{manager.retries} mirrors the schedule either way.
    """
    queue = manager.queue
    name = os.path.basename(message)
    record = getattr(queue, "recordFailure", None)
    if record is None:
        count = manager.retries.get(name, (0, now))[0] + 1
        manager.retries[name] = (count, now + manager.retryDelay(count))
        queue.setWaiting(message)
        return
    warning = _warningIfDue(manager, name, failure, now)
    reason = _describe(failure)

    def recorded(state: RetryState) -> None:
        if state.nextAttempt is not None:
            manager.retries[name] = (state.failures, state.nextAttempt)

    def lost(reason: Failure) -> None:
        # A worker of the PostgreSQL queue whose lease was taken over:
        # another worker holds the message now, and its failure is not ours
        # to record.
        _log.warn("Not recording the failure of {message}: {error}", message=name,
                  error=reason.getErrorMessage())

    d = defer.maybeDeferred(record, name, reason, manager.retryDelay, now, warning)
    d.addCallbacks(recorded, lost)
    queue.setWaiting(message)
    _backOffDestination(manager, failure)


def _describe(failure: DeliveryFailure | None) -> str:
    """
    Why a message failed, for its schedule: the server's reply, else the
    reason found here, else the status.
    """
    if failure is None:
        return ""
    if failure.diagnostic:
        said = failure.diagnostic.decode("utf-8", "replace")
        return "%s said: %s" % (failure.remoteMTA, said) if failure.remoteMTA else said
    return failure.reason or failure.status


def _warningIfDue(manager: SmartHostSMTPRelayingManager, name: str,
                  failure: DeliveryFailure | None, now: float) -> tuple[bytes, str] | None:
    """
    The delay warning to queue with this failure, if
    C{manager.delayWarningAfter} has passed since the message was queued
    and none was sent.
    """
    after = getattr(manager, "delayWarningAfter", None)
    queue = manager.queue
    if after is None:
        return None
    state = queue.schedule(name)
    if state is not None and state.warned:
        return None
    queued = queue.queuedAt(name)
    if queued is None or now - queued < after:
        return None
    lifetime = manager.maxQueueLifetime
    until = queued + lifetime if lifetime is not None else now + manager.maxBackoffDelay
    if failure is None:
        failure = DeliveryFailure("", "4.0.0", reason="delivery failed for now")
    return delayWarning(queue, name, failure, manager._reportingMTA(), until)


def _backOffDestination(
    manager: SmartHostSMTPRelayingManager, failure: DeliveryFailure | None
) -> None:
    """
    A destination that answered 421 or a 4.7.x status is left alone by
    every worker for C{manager.destinationBackoff} seconds (a queue shared
    by several workers: C{backOffDestination}).
    """
    backOff = getattr(manager.queue, "backOffDestination", None)
    if backOff is None or failure is None or not manager.destinationBackoff:
        return
    # The server's own answer only: a status decided here (REQUIRETLS with
    # no verified TLS is 4.7.10) says nothing about the destination.
    diagnostic = failure.diagnostic
    if not diagnostic or not (diagnostic.startswith(b"421") or diagnostic[4:8] == b"4.7."):
        return
    key = failure.nextHop
    if key is None:
        host = failure.remoteMTA or ""
        ports = [port for h, port in manager.smartHost or () if h == host]
        key = smartHostDestination(host, ports[0] if ports else manager.PORT)
    d = defer.maybeDeferred(backOff, key, manager.destinationBackoff,
                            diagnostic.decode("utf-8", "replace") or failure.status)
    d.addErrback(lambda f: _log.warn("Cannot back off {destination}: {error}",
                                     destination=key, error=f.getErrorMessage()))


def reportFailure(manager: SmartHostSMTPRelayingManager, message: str, outcome: DeliveryOutcome,
                  failure: DeliveryFailure | None, status: str | None = None,
                  reason: str | None = None) -> None:
    """
    Report (C{manager.reportDelivery}) a message that was not delivered,
    from what its L{DeliveryFailure} says.
    """
    if failure is None:
        failure = DeliveryFailure("", status or "4.0.0")
    manager.reportDelivery(DeliveryReport(
        os.path.basename(message), outcome, getattr(failure, "nextHop", None),
        failure.remoteMTA, getattr(failure, "address", None), getattr(failure, "tls", None),
        status or failure.status, reason if reason is not None else _why(failure),
    ))


def _why(failure: DeliveryFailure) -> str:
    # What the failure says for people, else what the server said.
    if failure.reason:
        return failure.reason
    if failure.diagnostic:
        return "%s said: %s" % (failure.remoteMTA or "the server",
                                displayText(failure.diagnostic).strip())
    return ""
