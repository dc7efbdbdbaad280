"""
L{SMTPClient}: the line-level SMTP client, a drop-in for Twisted's.

The state machine keeps Twisted's shape (C{_expected}, C{_okresponse},
C{_failresponse} and the C{smtpState_*} handlers) because subclasses in the
wild override and set those names.  It is built from the pure wire layer:
reply framing (L{mailclient._wire.reply}), body encoding
(L{mailclient._wire.data}), address checks (L{mailclient._wire.address}),
the per-message state (L{mailclient._wire.state}).  Each message attempt
ends with exactly one outcome.
"""

from __future__ import annotations

from functools import partial
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import cast

from twisted.internet import protocol
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITransport
from twisted.protocols import basic, policies
from twisted.python.failure import Failure
from twisted.python.util import LineLog

from mailclient._protocol.body import (
    BodySender,
    _ProducerStopped,
    _TransferStopped,
    binaryFile,
)
from mailclient._protocol.outcome import (
    SUCCESS,
    _TooSlow,
    abortConnection,
    abortTransfer,
    fail,
    internalError,
    invalidAddress,
    readError,
    reportOutcome,
)
from mailclient._wire.address import quoteaddr
from mailclient._wire.data import DataEncoder
from mailclient._wire.errors import (
    InvalidAddressError,
    SMTPClientError,
    SMTPConnectError,
    SMTPProtocolError,
    SMTPTimeoutError,
)
from mailclient._protocol.transcript import TranscriptLog, redact
from mailclient._wire.reply import MalformedReply
from mailclient._wire.state import ClientState, Phase, Scheduler, Transaction
from mailclient._wire.timeouts import Timeouts
from mailclient._wire.types import BinaryFile, MessageFile, RecipientResult

#: An address as subclasses give it: text, bytes, an Address, or anything
#: whose str() is one.
AddressType = object
StateHandler = Callable[[int, bytes], object]


def checkIdentity(identity: bytes | str | None) -> bytes:
    """
    Return the HELO/EHLO identity as bytes.

    @raise ValueError: if it holds CR, LF or NUL, which would inject commands.
    """
    if isinstance(identity, str):
        text = identity
        try:
            identity = text.encode("ascii")
        except UnicodeEncodeError:
            identity = text.encode("idna")
    identity = identity or b""
    if any(c in identity for c in (b"\r", b"\n", b"\0")):
        raise ValueError("SMTP identity contains CR, LF or NUL: %r" % (identity,))
    return identity


class SMTPClient(basic.LineReceiver, policies.TimeoutMixin):
    """
    SMTP client for sending emails.

    After the client has connected to the SMTP server, it repeatedly calls
    L{getMailFrom}, L{getMailTo} and L{getMailData} and uses this information
    to send an email.  It then calls L{getMailFrom} again; if it returns
    L{None}, the client will disconnect, otherwise it will continue as normal
    and send a new email.

    Each message attempt ends with exactly one call of L{sentMail} or
    L{sendError}; an error between messages (for example a failed C{RSET})
    only closes the connection.

    mailclient keeps its own state in one attribute, C{_mailclient} (see
    L{mailclient._wire.state}); every other name that Twisted's class does not
    use is free for subclasses.
    """

    #: If enabled then log SMTP client server communication.
    debug: bool = True

    #: Number of seconds to wait for the server before timing out a
    #: connection.  If None, perform no timeout checking.
    timeout: float | None = None

    #: Per-phase limits (L{Timeouts}, RFC 5321 4.5.3.2), used when
    #: C{timeout} is None.  (mailclient addition)
    timeouts: Timeouts | None = None

    #: Send C{RSET} after every message and wait for its reply before the
    #: next one, as Twisted does.  By default mailclient sends it only after
    #: a message that failed: after one the server accepted the transaction
    #: is over (RFC 5321 4.1.1.4, 4.1.1.5), and the round trip would be paid
    #: for every message.  When no message follows a success, C{RSET} is
    #: still sent before C{QUIT}, as by Twisted.  (mailclient addition)
    resetAfterEveryMessage: bool = False

    mailFile: MessageFile | None = None
    toAddresses: Iterator[object] | None = None
    lastAddress: object = None
    _expected: Collection[int]
    _okresponse: StateHandler
    _failresponse: StateHandler
    _mailclient: ClientState

    def __init__(self, identity: bytes | str | None, logsize: int = 10) -> None:
        """
        @param identity: The name to give in C{HELO}/C{EHLO}.
        @param logsize: How many lines of the transcript to keep in C{log}.
        @raise ValueError: if C{identity} holds CR, LF or NUL.
        """
        self.identity: bytes = checkIdentity(identity)
        self.toAddressesResult: list[RecipientResult] = []
        self.successAddresses: list[object] = []
        self._from: object = None
        self.resp: list[bytes] = []
        self.code: int = -1
        self.log: TranscriptLog = TranscriptLog(logsize)
        self._mailclient = ClientState()

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        """
        Schedule a reply timer, on the clock the factory gave (its reactor,
        when that reactor has a clock), else on the global reactor.
        """
        return cast(IDelayedCall, _clock(self).callLater(period, func))

    def setTimeout(self, period: float | None) -> float | None:
        """
        Arm the deadline of the reply awaited, cut short by the session's
        overall limit, if any; L{None} stops the timer.
        """
        if period is not None:
            period = _clampToSession(self, period)
        return policies.TimeoutMixin.setTimeout(self, period)

    def resetTimeout(self) -> None:
        """
        Start the deadline again (the next reply is awaited, or the body
        made progress), cut short by the session's overall limit.
        """
        if self._mailclient.sessionEnd is not None:
            self.setTimeout(self.timeOut)
        else:
            policies.TimeoutMixin.resetTimeout(self)

    def sendLine(self, line: bytes) -> None:
        """
        Send a line to the server, recording it (credentials redacted).
        """
        state = self._mailclient
        if self.debug:
            self.log.append(b">>> " + redact(line, state.inSASL))
        # The deadline of the reply to this command, and the session's.
        timeouts = self.timeouts if self.timeout is None else None
        limit = timeouts.forCommand(line) if timeouts is not None else self.timeout
        if state.sessionEnd is not None:
            limit = _clampToSession(self, limit)
        if limit is not None:
            self.setTimeout(limit)
        # (Sent on a connection only: its transport is set.)
        cast(ITransport, self.transport).write(line + self.delimiter)

    def connectionMade(self) -> None:
        timeouts = phaseTimeouts(self)
        _startSession(self)
        self.setTimeout(self.timeout if timeouts is None else timeouts.greeting)
        _setNoDelay(self.transport)
        self._expected = [220]
        self._okresponse = self.smtpState_helo
        self._failresponse = self.smtpConnectionFailed

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        """
        We are no longer connected.

        If a message attempt was still open, report an L{SMTPConnectError}
        through L{sendError} (Twisted reports nothing, except a bare
        C{Exception} when the body was being sent).
        """
        state = self._mailclient
        state.failureReason = reason
        self.setTimeout(None)
        self.mailFile = None
        body, state.transaction.body = state.transaction.body, None
        if body is not None:
            body.abort(_TransferStopped())
        if not (state.transaction.reported or state.quitting):
            fail(
                self,
                SMTPConnectError(
                    -1,
                    b"Connection to the SMTP server was lost: "
                    + str(reason.value).encode("utf-8", "replace"),
                    self.log.str(),
                ),
            )

    def timeoutConnection(self) -> None:
        """
        Called when the server did not answer in time: the message fails,
        and the connection is dropped at once (a server that stopped
        reading would keep a closing connection open for ever).
        """
        fail(
            self,
            SMTPTimeoutError(
                -1, b"Timeout waiting for SMTP server response", self.log.str()
            ),
        )
        abortConnection(self)

    def dataReceived(self, data: bytes) -> None:
        """
        Take what the server sent; once the client is closing the
        connection, drop it unread (a server that keeps talking must not
        make it buffer without bound).
        """
        transport = self.transport
        if transport is not None and getattr(transport, "disconnecting", False):
            self._buffer = b""
            return
        basic.LineReceiver.dataReceived(self, data)
        sendNow(self.transport)

    def lineLengthExceeded(self, line: bytes) -> None:
        fail(
            self,
            SMTPProtocolError(
                -1,
                b"Reply line from the SMTP server longer than %d bytes"
                % (self.MAX_LENGTH,),
                self.log.str(),
            ),
        )

    def lineReceived(self, line: bytes) -> object:
        if self.debug:
            self.log.append(b"<<< " + line)
        state = self._mailclient
        try:
            reply = state.replies.feed(line)
        except MalformedReply as e:
            if line[:3].isdigit():
                text = "Malformed response from SMTP server: %s" % (e,)
            else:
                text = "Invalid response from SMTP server: %r" % (line[:200],)
            fail(self, SMTPProtocolError(-1, text, self.log.str()))
            return None
        if reply is None:
            # (Informational lines and the lines of a reply not yet complete
            # do not extend the reply's deadline.)
            self.code = int(line[:3])
            self.resp = state.replies.partial
            return None
        # A complete reply: the next reply's deadline starts now.
        self.resetTimeout()
        self.code, self.resp = reply.code, reply.lines
        resp = reply.text
        try:
            if state.transaction.body is not None:
                # The server answered before the end of the body: the two
                # sides no longer agree on where they are.
                abortTransfer(self)
                fail(
                    self,
                    SMTPProtocolError(
                        reply.code,
                        b"Reply received before the end of the message data: "
                        + resp,
                        self.log.str(),
                    ),
                )
                return None
            if reply.code in self._expected:
                return self._okresponse(reply.code, resp)
            return self._failresponse(reply.code, resp)
        except Exception:
            internalError(self, Failure())
            return None
        finally:
            self.code = -1
            self.resp = []

    def smtpConnectionFailed(self, code: int, resp: bytes) -> None:
        fail(self, SMTPConnectError(code, resp, self.log.str()))

    def smtpTransferFailed(self, code: int, resp: bytes) -> None:
        if code in SUCCESS:
            # A positive reply where a failure or 354 was due (2xx to DATA,
            # a 2xx other than 250 to MAIL): the message was not sent, so
            # it must not be reported delivered (Twisted reports success).
            resp = b"Unexpected positive reply from the SMTP server: %03d %s" % (code, resp)
            code = -1
        if code < 0:
            fail(self, SMTPProtocolError(code, resp, self.log.str()))
        else:
            self.smtpState_msgSent(code, resp)

    def smtpState_helo(self, code: int, resp: bytes) -> None:
        self.sendLine(b"HELO " + self.identity)
        self._expected = SUCCESS
        self._okresponse = self.smtpState_from

    def smtpState_from(self, code: int, resp: bytes) -> None:
        self._from = self.getMailFrom()
        self._failresponse = self.smtpTransferFailed
        if self._from is None:
            # All messages have been sent, disconnect
            noMoreMessages(self)
            return
        beginTransaction(self)
        try:
            sender = self.quoteAddress(self._from)
        except InvalidAddressError as e:
            invalidAddress(self, e)
            return
        self.sendLine(b"MAIL FROM:" + sender + self.mailFromParameters())
        self._expected = [250]
        self._okresponse = self.smtpState_to

    def smtpState_disconnect(self, code: int, resp: bytes | None) -> None:
        self._mailclient.quitting = True
        abortTransfer(self)
        if self.transport is not None:
            self.transport.loseConnection()

    def smtpState_to(self, code: int, resp: bytes) -> object:
        try:
            recipients = recipientList(self)
        except InvalidAddressError as e:
            invalidAddress(self, e)
            return None
        self.toAddresses = iter(recipients)
        self.toAddressesResult = []
        self.successAddresses = []
        self._okresponse = self.smtpState_toOrData
        self._expected = range(0, 1000)
        self.lastAddress = None
        return self.smtpState_toOrData(0, b"")

    def smtpState_toOrData(self, code: int, resp: bytes) -> object:
        if self.lastAddress is not None:
            self.toAddressesResult.append((self.lastAddress, code, resp))
            if code in SUCCESS:
                self.successAddresses.append(self.lastAddress)
        try:
            self.lastAddress = next(cast(Iterator[object], self.toAddresses))
        except StopIteration:
            if self.successAddresses:
                self.sendLine(b"DATA")
                self._expected = [354]
                self._okresponse = self.smtpState_data
            else:
                self.smtpState_msgSent(code, b"No recipients accepted")
        else:
            address = self.lastAddress
            known = self._mailclient.transaction.quoted.get(id(address))
            quoted = known[1] if known is not None and known[0] is address else None
            self.sendLine(
                b"RCPT TO:" + (quoted if quoted is not None else self.quoteAddress(address))
                + self.rcptToParameters(address)
            )
        return None

    def smtpState_data(self, code: int, resp: bytes) -> None:
        txn = self._mailclient.transaction
        self.mailFile = messageFile(self)
        txn.encoder = DataEncoder()
        timeouts = phaseTimeouts(self)
        if timeouts is not None:
            self.setTimeout(timeouts.dataBlock)
        beginBody(self)
        body = txn.body = BodySender()
        d = body.beginFileTransfer(
            self.mailFile, self.transport, partial(encodeFor, self, txn)
        )
        d.addCallbacks(partial(_transferDone, self, txn), partial(_transferFailed, self, txn))
        self._expected = SUCCESS
        self._okresponse = self.smtpState_msgSent

    def smtpState_msgSent(self, code: int, resp: bytes) -> None:
        reportOutcome(self, code, resp)
        state = self._mailclient
        if code in SUCCESS and not self.resetAfterEveryMessage:
            if state.quitting or self.transport is None or getattr(
                    self.transport, "disconnecting", False):
                # sentMail closed the connection: nothing follows.
                return
            state.resetOwed = True
            self.smtpState_from(code, resp)
            return
        self.sendLine(b"RSET")
        self._expected = SUCCESS
        self._okresponse = self.smtpState_from
        # Twisted sends RSET again for ever when the server refuses it.
        self._failresponse = partial(_rsetFailed, self)

    # Helpers for the body producer

    def transformChunk(self, chunk: bytes) -> bytes:
        """
        Perform the necessary local to network newline conversion and escape
        leading periods.

        The conversion keeps its state across chunks (see
        L{mailclient._wire.data.DataEncoder}).  This method also resets the idle
        timeout so that as long as progress is being made sending the message
        body, the client will not time out (but the body must keep the
        minimum rate of L{Timeouts}).
        """
        _bodyProgress(self, len(chunk))
        return self._mailclient.encodingTransaction().encoder.encode(chunk)

    def finishedFileTransfer(self, lastsent: bytes) -> None:
        """
        Send the end-of-data marker after the body.

        @param lastsent: The last byte written, or an empty string for an
            empty body.
        """
        # Marked here, where the end of the data is written: for the body
        # sender and for subclasses that send the body themselves, as
        # Twisted's smtpState_data does, and end it with this method.
        self._mailclient.transaction.endData()
        if not lastsent or lastsent == b"\n":
            line = b"."
        else:
            line = b"\r\n."
        self.sendLine(line)

    # Envelope hooks: mailclient additions used by ESMTP extensions.

    def quoteAddress(self, address: AddressType) -> bytes:
        """
        Return the C{<address>} form of C{address} for MAIL or RCPT.

        @raise InvalidAddressError: if it cannot be sent as one address.
        """
        return quoteaddr(address)

    def mailFromParameters(self) -> bytes:
        """
        Return the ESMTP parameters to append to C{MAIL FROM} (with a leading
        space), or C{b""}.  Override to add your own.
        """
        return b""

    def rcptToParameters(self, address: AddressType) -> bytes:
        """
        Return the ESMTP parameters to append to C{RCPT TO} for C{address}
        (with a leading space), or C{b""}.  Override to add your own.
        """
        return b""

    # These methods should be overridden in subclasses

    def getMailFrom(self) -> AddressType | None:
        """
        Return the email address the mail is from, or None when there is no
        more mail to send.
        """
        raise NotImplementedError

    def getMailTo(self) -> object:
        """
        Return a list of emails to send to.
        """
        raise NotImplementedError

    def getMailData(self) -> MessageFile | None:
        """
        Return file-like object containing data of message to be sent.

        Lines in the file may be delimited by LF, CRLF or CR.  A text-mode
        file is sent as UTF-8.
        """
        raise NotImplementedError

    def sendError(self, exc: Exception) -> None:
        """
        If an error occurs before a mail message is sent sendError will be
        called.  This base class method sends a QUIT if the error is
        non-fatal and disconnects the connection.

        @param exc: The SMTPClientError (or child class) raised
        """
        self._mailclient.transaction.phase = Phase.REPORTED
        if isinstance(exc, SMTPClientError) and not exc.isFatal:
            self._disconnectFromServer()
        else:
            # If the error was fatal then the communication channel with the
            # SMTP Server is broken so just close the transport connection
            self.smtpState_disconnect(-1, None)

    def sentMail(
        self, code: int, resp: bytes, numOk: int, addresses: list[RecipientResult],
        log: LineLog,
    ) -> None:
        """
        Called when an attempt to send an email is completed.

        If some addresses were accepted, code and resp are the response
        to the DATA command.  If no addresses were accepted, code is the
        reply to the last command and resp is an informative message.

        @param code: the code returned by the SMTP Server
        @param resp: The string response returned from the SMTP Server
        @param numOk: the number of addresses accepted by the remote host.
        @param addresses: is a list of tuples (address, code, resp) listing
            the response to each RCPT command.
        @param log: is the SMTP session log
        """
        raise NotImplementedError

    def _disconnectFromServer(self) -> None:
        self._mailclient.quitting = True
        self._expected = range(0, 1000)
        self._okresponse = self.smtpState_disconnect
        self.sendLine(b"QUIT")


# mailclient's own steps of the conversation.  They are functions, not
# methods, so that no subclass can replace one by accident with a method
# of the same name.


def phaseTimeouts(client: SMTPClient) -> Timeouts | None:
    """
    The per-phase limits that apply to C{client}'s replies: its
    C{timeouts}, unless Twisted's C{timeout} is set (one limit for every
    reply, set where the reply timer is armed).
    """
    return client.timeouts if client.timeout is None else None


def _setNoDelay(transport: object) -> None:
    # Commands are written whole (and pipelined groups in one write), so
    # Nagle's algorithm only adds delayed-ACK stalls of ~40 ms.
    while transport is not None:
        setter = getattr(transport, "setTcpNoDelay", None)
        if setter is not None:
            try:
                setter(True)
            except Exception:
                pass
            return
        transport = getattr(transport, "transport", None)


def sendNow(transport: object) -> None:
    """
    Send what the replies just read made the client write, in this turn of
    the reactor.

    Twisted's TCP transport keeps what it is given until the reactor's next
    turn finds the socket writable: one more pass through the reactor (a
    poll, the writer registered and removed) for every command of a
    lock-step conversation.  A plain TCP transport (an
    L{IWriteDescriptor} file descriptor) is asked to write now, as the
    reactor would next; if the socket cannot take it all, the rest waits
    for the reactor as before.  Nothing is done while a producer feeds the
    transport (its body has its own pace) or once the connection is
    closing (the reactor closes it after the last write).
    """
    if (isinstance(transport, FileDescriptor) and transport.connected
            and not transport.disconnecting and transport.producer is None):
        transport.doWrite()


#: The minimum body rate and the session limit when the client waits per
#: Twisted's one C{timeout}: RFC 5321's defaults.
_DEFAULT_LIMITS = Timeouts()


def _limits(client: SMTPClient) -> Timeouts | None:
    """
    The limits of C{client}'s body rate and session: its per-phase
    C{timeouts}, the defaults when Twisted's one C{timeout} is set, L{None}
    when it waits for ever.
    """
    if client.timeout is not None:
        return _DEFAULT_LIMITS
    return client.timeouts


_globalReactor: list[Scheduler] = []


def _clock(client: SMTPClient) -> Scheduler:
    clock = client._mailclient.clock
    if clock is not None:
        return clock
    if not _globalReactor:
        # The global reactor, imported when first needed (importing it
        # installs the default reactor).
        from twisted.internet import reactor

        _globalReactor.append(cast(Scheduler, reactor))
    return _globalReactor[0]


def _now(client: SMTPClient) -> float:
    """
    The time on the clock C{client}'s timers run on: the factory's clock,
    or the clock whose C{callLater} a test installed on the client (the
    Twisted idiom: C{client.callLater = clock.callLater}).
    """
    installed = getattr(client.__dict__.get("callLater"), "__self__", None)
    if installed is not None and IReactorTime.providedBy(installed):
        return installed.seconds()
    return cast(IReactorTime, _clock(client)).seconds()


def _startSession(client: SMTPClient) -> None:
    """
    Start the session's fixed overall limit, if L{Timeouts.session} sets
    one.  (Without one, the session is bounded by construction: each wait
    has its own deadline that nothing extends, and bodies keep the
    minimum rate.)
    """
    timeouts = _limits(client)
    state = client._mailclient
    if timeouts is not None and timeouts.session is not None:
        state.sessionEnd = _now(client) + timeouts.session


def _clampToSession(client: SMTPClient, period: float | None) -> float | None:
    """
    A reply deadline of C{period} seconds, cut short by the session's end.
    """
    end = client._mailclient.sessionEnd
    if end is None:
        return period
    left = max(0.0, end - _now(client))
    return left if period is None else min(period, left)


def beginBody(client: SMTPClient) -> None:
    """
    A message body starts: measure its rate from now.
    """
    state = client._mailclient
    state.bodyStart = _now(client)
    state.bodySent = 0


def _bodyProgress(client: SMTPClient, size: int) -> None:
    """
    The transport took C{size} more bytes of the body: the data-block
    deadline starts again, the session may last as long as these bytes
    take at the minimum rate, and the body must keep that rate.

    @raise _TooSlow: if it does not.
    """
    client.resetTimeout()
    timeouts = _limits(client)
    if timeouts is None:
        return
    state = client._mailclient
    sent, elapsed = state.bodySent, _now(client) - state.bodyStart
    state.bodySent = sent + size
    if timeouts.tooSlow(sent, elapsed):
        raise _TooSlow(
            "the server took the message data at %d bytes/s, under the minimum "
            "of %d bytes/s" % (sent / elapsed, timeouts.minimumRate or 0)
        )


def noMoreMessages(client: SMTPClient) -> None:
    """
    C{getMailFrom} returned L{None}: end the session.  After a success
    that no C{RSET} followed, one is sent first and C{QUIT} on its reply,
    as on Twisted's wire.
    """
    state = client._mailclient
    owed, state.resetOwed = state.resetOwed, False
    if owed:
        client.sendLine(b"RSET")
        client._expected = range(0, 1000)
        client._okresponse = client._failresponse = partial(_rsetFailed, client)
        return
    client._disconnectFromServer()


def beginTransaction(client: SMTPClient) -> Transaction:
    """
    Start a new message attempt: its state, and Twisted's per-message
    attributes.
    """
    client._mailclient.resetOwed = False
    txn = client._mailclient.transaction = Transaction()
    client.toAddressesResult = []
    client.successAddresses = []
    return txn


def messageFile(client: SMTPClient) -> BinaryFile | None:
    """
    The message of the current transaction (from C{getMailData}, unless
    it was already asked for), as a binary file.
    """
    txn = client._mailclient.transaction
    f, txn.pendingFile = txn.pendingFile, None
    return f if f is not None else binaryFile(client.getMailData())


def recipientList(client: SMTPClient) -> list[object]:
    """
    Call C{getMailTo} (unless it was already called for this message) and
    check every address.

    @raise InvalidAddressError: if one of them cannot be sent.
    """
    txn = client._mailclient.transaction
    if txn.pendingRecipients is not None:
        recipients, txn.pendingRecipients = txn.pendingRecipients, None
        return recipients
    given = client.getMailTo()
    if isinstance(given, (bytes, str)):
        # A single address, not a sequence of one-character addresses.
        recipients = [given]
    else:
        recipients = list(cast(Iterable[object], given))
    quoted = txn.quoted
    for address in recipients:
        quoted[id(address)] = (address, client.quoteAddress(address))
    return recipients


def encodeFor(client: SMTPClient, txn: Transaction, chunk: bytes) -> bytes:
    """
    Encode a chunk of C{txn}'s body with the client's C{transformChunk}
    hook, whichever transaction's replies are awaited meanwhile.
    """
    state = client._mailclient
    state.encoding = txn
    try:
        return client.transformChunk(chunk)
    finally:
        state.encoding = None


def _transferDone(client: SMTPClient, txn: Transaction, lastsent: bytes) -> None:
    txn.body = None
    client.finishedFileTransfer(lastsent)


def _transferFailed(client: SMTPClient, txn: Transaction, reason: Failure) -> None:
    txn.body = None
    if reason.check(_TransferStopped) or txn is not client._mailclient.transaction:
        # Whoever stopped it reports the message.
        return
    abortConnection(client)
    if reason.check(_ProducerStopped):
        fail(
            client,
            SMTPConnectError(
                -1,
                b"The connection stopped taking the message data before its end",
                client.log.str(),
            ),
        )
        return
    fail(client, readError(client, reason))


def _rsetFailed(client: SMTPClient, code: int, resp: bytes) -> None:
    client._disconnectFromServer()
