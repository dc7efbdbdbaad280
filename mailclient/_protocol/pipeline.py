"""
The pipelined transaction (RFC 2920): the envelope written as one group,
each reply matched to its command, BDAT chunks (RFC 3030), and, with
C{pipelineMessages}, the next message started before the current one is
answered.

These are steps of L{ESMTPClient}'s conversation, written as functions of
the client so that no subclass method can replace one by accident.
"""

from __future__ import annotations

from collections import deque
from functools import partial
from typing import TYPE_CHECKING, cast
from collections.abc import Callable

from twisted.internet.interfaces import IConsumer
from twisted.python.failure import Failure

from mailclient._protocol.chunking import ChunkSender
from mailclient._protocol.client import beginBody, encodeFor, messageFile, phaseTimeouts
from mailclient._protocol.outcome import (
    SUCCESS,
    abortConnection,
    abortTransfer,
    fail,
    internalError,
    readError,
    reportOutcome,
)
from mailclient._wire.data import DataEncoder
from mailclient._wire.errors import SMTPClientError, SMTPConnectError, SMTPProtocolError
from mailclient._wire.status import parseEnhancedStatus
from mailclient._wire.plan import TransactionPlan
from mailclient._wire.state import Phase, Transaction

if TYPE_CHECKING:
    from mailclient._protocol.esmtp import ESMTPClient


def _writeGroup(
    client: ESMTPClient, txn: Transaction, plan: TransactionPlan, sender: bytes,
    recipients: list[object], quoted: list[bytes],
) -> None:
    """
    Write a pipelined envelope (and start the body), as planned.
    """
    early = client._mailclient.early
    client.toAddresses = iter(recipients)
    client.lastAddress = None
    txn.pipeline = deque(plan.group)
    client._expected = range(0, 1000)
    client._okresponse = partial(_pipelinedReply, client)
    if early:
        client.sendLine(b"RSET")
    client.sendLine(b"MAIL FROM:" + sender + client.mailFromParameters())
    for recipient, address in zip(recipients, quoted):
        client.sendLine(b"RCPT TO:" + address + client.rcptToParameters(recipient))
    timeouts = None if early else phaseTimeouts(client)
    if timeouts is not None:
        # The first reply due is the one to MAIL.
        client.setTimeout(timeouts.mail)
    if plan.chunked:
        _startChunks(client, txn)
    elif recipients:
        client.sendLine(b"DATA")
        if timeouts is not None:
            client.setTimeout(timeouts.mail)
    _maybeStartNext(client)


def _refuseMessage(
    client: ESMTPClient, exc: SMTPClientError, action: Callable[[], object]
) -> None:
    """
    Report a message that cannot be started, now or, when it was asked for
    early, once the previous message is reported.
    """
    state = client._mailclient
    if state.early:
        txn = state.transaction
        txn.park(client)
        state.deferredStart = (txn, action, exc)
    else:
        action()


# pipelineMessages: two transactions in flight


def _mayStartNext(client: ESMTPClient) -> bool:
    """
    Whether, with L{ESMTPClient.pipelineMessages}, the next message may be
    started now: the current one is written whole with BDAT, nothing has
    gone wrong with it so far, and no other message is waiting.
    """
    state = client._mailclient
    txn = state.transaction
    transport = client.transport
    return (
        client.pipelineMessages
        and txn.allWritten
        and txn.chunked
        and not txn.reported
        and txn.bdatFailure is None
        and (txn.mailReply is None or txn.mailReply[0] == 250)
        and client._from is not None
        and not (state.early or state.quitting)
        and state.following is None
        and state.deferredStart is None
        and transport is not None
        and not getattr(transport, "disconnecting", False)
    )


def _maybeStartNext(client: ESMTPClient) -> None:
    """
    Start the next message now if L{_mayStartNext}.
    """
    if not _mayStartNext(client):
        return
    state = client._mailclient
    current = state.transaction
    current.park(client)
    period = client.timeOut
    state.early = True
    try:
        client.smtpState_from(250, b"")
    except Exception:
        # Raised by a hook of the next message: dealt with as the normal
        # path would, once this message is reported.
        state.deferredStart = (None, partial(internalError, client, Failure()), None)
    finally:
        state.early = False
    if state.deferredStart is None:
        following = state.transaction
        following.park(client)
        state.following = following
    state.transaction = current
    current.unpark(client)
    if phaseTimeouts(client) is not None:
        # The reply still due is this message's.
        client.setTimeout(period)


def _activateFollowing(client: ESMTPClient) -> None:
    """
    The previous transaction is reported: its successor's replies come
    next.
    """
    state = client._mailclient
    following, state.following = state.following, None
    assert following is not None
    state.transaction = following
    following.unpark(client)
    timeouts = phaseTimeouts(client)
    if timeouts is not None:
        client.setTimeout(timeouts.finalReply if following.dataEnded else timeouts.mail)
    _maybeStartNext(client)


# CHUNKING


def _startChunks(client: ESMTPClient, txn: Transaction) -> None:
    message = client.mailFile = messageFile(client)
    txn.encoder = DataEncoder(dotStuff=False)
    beginBody(client)
    txn.chunks = ChunkSender(
        # (A transport is a consumer, which ITransport does not say.)
        message, cast(IConsumer, client.transport), partial(encodeFor, client, txn),
        partial(_chunkWritten, client, txn), partial(_chunksFailed, client, txn),
        partial(_chunksDone, client, txn),
    )
    txn.chunks.start()


def _chunkWritten(client: ESMTPClient, txn: Transaction, line: bytes, last: bool) -> None:
    if client.debug:
        client.log.append(b">>> " + line)
    txn.pipeline.append((b"BDAT", last))
    if last:
        timeouts = phaseTimeouts(client)
        if timeouts is not None:
            # The final reply is due now: RFC 5321's limit for it (4.5.3.2.6).
            client.setTimeout(timeouts.finalReply)
        if txn.phase is Phase.OPEN:
            txn.endData()


def _chunksDone(client: ESMTPClient, txn: Transaction) -> None:
    txn.allWritten = True
    if txn is client._mailclient.transaction:
        _maybeStartNext(client)


def _chunksFailed(client: ESMTPClient, txn: Transaction, reason: Failure) -> None:
    exc = readError(client, reason)
    state = client._mailclient
    abortConnection(client)
    txn.chunks = None
    if txn is not state.following:
        fail(client, exc)
        return
    # The message started early failed while the current one awaits its
    # replies: the connection has to go (a chunk is incomplete), which
    # leaves the current message's fate unknown.
    txn.ownError = exc
    fail(
        client,
        SMTPConnectError(
            -1,
            b"Connection closed before the final reply: the next message "
            b"could not be sent (" + exc.resp + b")",
            client.log.str(),
            isFatal=True,
        ),
    )


def _stopChunks(txn: Transaction) -> None:
    chunks, txn.chunks = txn.chunks, None
    if chunks is not None:
        chunks.stop()


def _pipelinedReply(client: ESMTPClient, code: int, resp: bytes) -> None:
    """
    Match one reply to the oldest command of the pipelined group.
    """
    txn = client._mailclient.transaction
    if not txn.pipeline:
        # More replies than commands: the two sides are out of step.
        _outOfStep(client, code, resp, b"a reply to no command")
        return
    verb, detail = txn.pipeline.popleft()
    timeouts = phaseTimeouts(client)
    if txn.pipeline and timeouts is not None:
        # The next reply's deadline: its own command's limit.
        nextVerb, nextDetail = txn.pipeline[0]
        client.setTimeout(timeouts.forReply(nextVerb, bool(nextDetail)))
    if verb == b"RSET":
        # Sent ahead of a message started early; the replies to its own
        # commands decide its outcome.
        return
    if verb == b"MAIL":
        txn.mailReply = (code, resp)
        if not txn.pipeline and not txn.chunked:
            # No recipients: as without pipelining.
            if code == 250:
                client.smtpState_msgSent(0, b"No recipients accepted")
            else:
                client.smtpTransferFailed(code, resp)
        return
    if verb == b"RCPT":
        client.lastAddress = detail
        client.toAddressesResult.append((detail, code, resp))
        if code in SUCCESS:
            client.successAddresses.append(detail)
        return
    mailCode, mailResp = txn.mailReply or (-1, b"")
    if verb == b"BDAT":
        _bdatReply(client, txn, code, resp, bool(detail), mailCode, mailResp)
        return
    # The reply to DATA ends the group.
    if code == 354 and (mailCode != 250 or not client.successAddresses):
        # The server wants the body although the envelope failed.  No QUIT
        # or RSET is possible in the middle of DATA: report, close.
        _envelopeFailed(client, mailCode, mailResp)
        client.smtpState_disconnect(-1, None)
    elif mailCode != 250 or not client.successAddresses:
        _envelopeFailed(client, mailCode, mailResp, rset=True)
    elif code == 354:
        client.smtpState_data(code, resp)
    else:
        client.smtpTransferFailed(code, resp)


def _envelopeFailed(
    client: ESMTPClient, mailCode: int, mailResp: bytes, rset: bool = False
) -> None:
    """
    Report a message whose MAIL or every RCPT was refused, as the
    unpipelined conversation reports it.
    """
    if mailCode != 250:
        client.toAddressesResult = []
        client.successAddresses = []
        code, resp = mailCode, mailResp
    else:
        code, resp = client.toAddressesResult[-1][1], b"No recipients accepted"
    if rset:
        client._mailclient.transaction.pipelined = False
        client.smtpState_msgSent(code, resp)
    else:
        reportOutcome(client, code, resp)


def _bdatReply(
    client: ESMTPClient, txn: Transaction, code: int, resp: bytes, last: bool,
    mailCode: int, mailResp: bytes,
) -> None:
    envelopeOK = mailCode == 250 and bool(client.successAddresses)
    if txn.bdatFailure is None and (not envelopeOK or code not in SUCCESS):
        # RFC 3030: after a failed chunk, send no more.
        txn.bdatFailure = (code, resp)
        _stopChunks(txn)
    if txn.pipeline:
        return
    if txn.chunks is not None and not txn.chunks.allWritten:
        # Replies caught up with the chunks written so far; more to come.
        return
    _stopChunks(txn)
    if not envelopeOK:
        _envelopeFailed(client, mailCode, mailResp, rset=True)
    elif txn.bdatFailure is not None:
        txn.pipelined = False
        client.smtpTransferFailed(*txn.bdatFailure)
    elif last:
        problem = _finalReplyProblem(client, code, resp)
        if problem is not None:
            _outOfStep(client, code, resp, problem)
            return
        client.smtpState_msgSent(code, resp)


def _finalReplyProblem(client: ESMTPClient, code: int, resp: bytes) -> bytes | None:
    """
    Why the 2xx taken as the reply to C{BDAT ... LAST} cannot be it, if it
    cannot: more replies were already received than commands were sent (a
    server that answered a command twice shifted every reply after it),
    or, with enhanced status codes, the reply is about an address (the
    reply to a RCPT, shifted).
    """
    state = client._mailclient
    if state.following is None and client._buffer.strip():
        return b"more replies than commands"
    if b"ENHANCEDSTATUSCODES" in client.capabilities:
        enhanced = parseEnhancedStatus(code, resp)
        if enhanced is not None and enhanced[1] == 1:
            return b"an address status (%d.%d.%d) as the reply to the message" % enhanced
    return None


def _outOfStep(client: ESMTPClient, code: int, resp: bytes, why: bytes) -> None:
    """
    The server's replies do not match the commands sent: fail the message
    (never report it delivered) and drop the connection.
    """
    abortTransfer(client)
    fail(
        client,
        SMTPProtocolError(
            code,
            b"Replies out of step with the commands (" + why + b"): " + resp,
            client.log.str(),
        ),
    )
    abortConnection(client)
