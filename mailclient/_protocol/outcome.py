"""
How a message attempt ends: exactly one report, through C{sentMail}
(L{reportOutcome}) or C{sendError} (L{fail}), whatever went wrong; the
error a body that could not be read or sent becomes (L{readError}); and
stopping the body, or the connection, on the way.

These are steps of L{SMTPClient}'s conversation (and L{ESMTPClient}'s),
written as functions of the client so that no subclass method can replace
one by accident.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from twisted.logger import Logger
from twisted.python.failure import Failure

from mailclient._protocol.body import _TransferStopped
from mailclient._wire.errors import (
    CannotSendError,
    InvalidAddressError,
    MessageReadError,
    SMTPClientError,
    SMTPTimeoutError,
)
from mailclient._wire.options import OptionError
from mailclient._wire.state import Phase, Transaction

if TYPE_CHECKING:
    from twisted.internet.protocol import Protocol

    from mailclient._protocol.client import SMTPClient

# Used for fast success code lookup, as in Twisted.
SUCCESS = dict.fromkeys(range(200, 300))

#: (The namespace of the client's own errors, as before this module was
#: split from L{mailclient._protocol.client}.)
_log = Logger(namespace="mailclient._protocol.client")


class _TooSlow(Exception):
    """
    The transport takes the message body slower than the minimum rate.
    """


def abortConnection(client: Protocol) -> None:
    """
    Drop C{client}'s connection at once, discarding what is not yet sent:
    a half-written body must never be completed by the transport.  (A
    connection that lost the happy-eyeballs race is dropped so too.)
    """
    transport = client.transport
    if transport is None:
        return
    abort = getattr(transport, "abortConnection", None)
    if abort is not None:
        abort()
    else:
        transport.loseConnection()


def internalError(client: SMTPClient, failure: Failure) -> None:
    """
    A hook or handler raised: log it, and fail the message with it.
    """
    _log.failure("Error in the SMTP client", failure)
    fail(
        client,
        SMTPClientError(
            -1,
            "Unexpected error in the SMTP client: %s" % (failure.getErrorMessage(),),
            client.log.str(),
            isFatal=True,
        ),
    )


def fail(client: SMTPClient, exc: SMTPClientError) -> None:
    """
    Report C{exc} for the current message attempt, or, when there is no
    attempt left to report on, just close the connection.

    With C{pipelineMessages}, the message started after the current one
    (or the error that kept it from starting) is reported too: every
    started message gets one report.
    """
    state = client._mailclient
    later: list[tuple[Transaction, SMTPClientError]] = []
    following, state.following = state.following, None
    if following is not None and not following.reported:
        later.append((following, following.ownError or exc))
    deferred, state.deferredStart = state.deferredStart, None
    if deferred is not None and deferred[0] is not None and deferred[2] is not None:
        later.append((deferred[0], deferred[2]))
    txn = state.transaction
    if txn.reported or state.quitting:
        if txn.dataEnded:
            txn.phase = Phase.OPEN
        abortTransfer(client)
        if client.transport is not None:
            client.transport.loseConnection()
    else:
        reportError(client, exc)
    for txn, error in later:
        state.transaction = txn
        txn.unpark(client)
        abortTransfer(client)
        if isinstance(error, InvalidAddressError):
            error.log = client.log.str()
        reportError(client, error)


def reportError(client: SMTPClient, exc: SMTPClientError) -> None:
    """
    Report C{exc} through L{SMTPClient.sendError} as the outcome of the
    current message attempt; an exception from C{sendError} is logged and
    closes the connection.
    """
    client._mailclient.transaction.phase = Phase.REPORTED
    try:
        client.sendError(exc)
    except Exception:
        _log.failure("Error in sendError", Failure())
        if client.transport is not None:
            client.transport.loseConnection()


def invalidAddress(client: SMTPClient, exc: InvalidAddressError) -> None:
    exc.log = client.log.str()
    fail(client, exc)


def readError(client: SMTPClient, reason: Failure) -> SMTPClientError:
    """
    The error a message fails with when its body could not be read or
    encoded: a refusal of its content (L{CannotSendError}, for 8-bit data
    the server cannot take) or a L{MessageReadError}.
    """
    if reason.check(_TooSlow):
        return SMTPTimeoutError(-1, reason.getErrorMessage(), client.log.str())
    if reason.check(OptionError):
        return CannotSendError(
            reason.getErrorMessage(), client.log.str(), isFatal=True,
            status=cast(OptionError, reason.value).status,
        )
    return MessageReadError(
        "Could not read the message to send: %s" % (reason.getErrorMessage(),),
        client.log.str(),
    )


def abortTransfer(client: SMTPClient) -> None:
    """
    Stop writing the current message's body.  A DATA body cut short takes
    the connection with it; a BDAT chunk whose command line went out is
    completed first (the server counts its bytes).
    """
    txn = client._mailclient.transaction
    chunks, txn.chunks = txn.chunks, None
    if chunks is not None and not chunks.finished:
        if chunks.allWritten:
            chunks.stop()
        else:
            chunks.stopProducing()
            abortConnection(client)
    body, txn.body = txn.body, None
    if body is not None:
        body.abort(_TransferStopped())
        abortConnection(client)


def reportOutcome(client: SMTPClient, code: int, resp: bytes) -> None:
    """
    Report the outcome of the current message through
    L{SMTPClient.sentMail}.
    """
    txn = client._mailclient.transaction
    if code in SUCCESS and not txn.dataEnded:
        # Never report a message delivered before its data was sent.
        resp = b"Positive reply from the SMTP server before the end of the data: %03d %s" % (
            code, resp)
        code = -1
    if client._from is not None and not txn.reported:
        # (Not after sendError: replies that arrive while the connection
        # closes after a fatal error must not report a second outcome.)
        txn.phase = Phase.REPORTED
        client.sentMail(
            code, resp, len(client.successAddresses), client.toAddressesResult,
            client.log,
        )
    elif txn.dataEnded:
        txn.phase = Phase.OPEN
    client.toAddressesResult = []
    client._from = None
