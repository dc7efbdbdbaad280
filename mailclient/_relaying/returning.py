"""
Returning a message that failed for good to its sender: an RFC 3464
delivery status notification, queued in any queue with Twisted's interface.
"""

from __future__ import annotations

import os
import pickle
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.logger import Logger

from mailclient._relaying.bounce import DeliveryFailure, generateBounce
from mailclient._wire.text import envelopeText
from mailclient._relaying.queuefiles import (
    EnvelopeError,
    openQueueFile,
    isNullSender,
    loadEnvelope,
    readEnvelopeData,
)

if TYPE_CHECKING:
    from mailclient._relaying.queue import Queue

_log = Logger()


def returnToSender(
    queue: Queue, message: str, failure: DeliveryFailure, reportingMTA: str
) -> bool:
    """
    Queue in C{queue} a delivery status notification (RFC 3464) for a
    message that failed for good (C{failure}: its status, the server's
    reply, the server, the reason); none for a message from the null sender
    (bounces are not bounced).

    @return: Whether the message may now be removed from the queue
        (C{False} if the notification could not be written).
    """
    name = os.path.basename(message)
    try:
        with queue.getEnvelopeFile(name) as f:
            sender, recipient = loadEnvelope(readEnvelopeData(f, name))
    except (OSError, EnvelopeError) as e:
        _log.error("Cannot return {message}: {error}", message=name, error=e)
        return False
    if isNullSender(sender):
        _log.info(
            "Discarding undeliverable {message} from the null sender", message=name
        )
        return True
    notice = DeliveryFailure(recipient, failure.status, failure.diagnostic, failure.remoteMTA,
                             failure.reason)
    try:
        with openQueueFile(queue.getPath(name) + "-D") as body:
            arrival = os.fstat(body.fileno()).st_mtime
            _, to, report = generateBounce(body, sender, [notice], reportingMTA, arrival)
        returnMessage = getattr(queue, "returnMessage", None)
        if returnMessage is not None:
            # Queued and the original removed together (in one transaction
            # for the PostgreSQL queue): never two bounces for one message.
            # The directory queue's raises OSError (a full disk): the
            # message stays.  The PostgreSQL queue's fires later; if its
            # transaction fails, the message stays leased, and comes back.
            result = returnMessage(name, report, envelopeText(to))
            if isinstance(result, defer.Deferred):
                result.addErrback(
                    lambda f: _log.failure("Cannot return {message}", f, message=name))
        else:
            _enqueue(queue, "", envelopeText(to), report)
    except OSError as e:
        _log.error("Cannot return {message}: {error}", message=name, error=e)
        return False
    _log.info(
        "Returned {message} to {sender}: {status}",
        message=name,
        sender=envelopeText(sender),
        status=failure.status,
    )
    return True


def _enqueue(queue: Queue, sender: str, recipient: str, message: bytes) -> None:
    """
    Put a message in C{queue}: with mailclient's C{enqueue}, or through
    Twisted's C{createNewMessage}.
    """
    enqueue = getattr(queue, "enqueue", None)
    if enqueue is not None:
        enqueue(sender, recipient, message)
        return
    headerFile, receiver = queue.createNewMessage()
    with headerFile:
        pickle.dump([sender, recipient], headerFile)
    for line in message.splitlines():
        receiver.lineReceived(line)
    receiver.eomReceived()


def delayWarning(
    queue: Queue, message: str, failure: DeliveryFailure, reportingMTA: str, until: float,
) -> tuple[bytes, str] | None:
    """
    The RFC 3464 warning that a message is delayed and will be tried until
    C{until}: C{(report, recipient)} to queue from the null sender, or
    L{None} for a message from the null sender (or one that cannot be
    read).
    """
    name = os.path.basename(message)
    try:
        with queue.getEnvelopeFile(name) as f:
            sender, recipient = loadEnvelope(readEnvelopeData(f, name))
        if isNullSender(sender):
            return None
        notice = DeliveryFailure(recipient, failure.status, failure.diagnostic,
                                 failure.remoteMTA, failure.reason)
        with openQueueFile(queue.getPath(name) + "-D") as body:
            arrival = os.fstat(body.fileno()).st_mtime
            _, to, report = generateBounce(body, sender, [notice], reportingMTA, arrival,
                                           delayedUntil=until)
    except (OSError, EnvelopeError) as e:
        _log.error("Cannot warn of the delay of {message}: {error}", message=name, error=e)
        return None
    return report, envelopeText(to)
