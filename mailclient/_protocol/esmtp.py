"""
L{ESMTPClient}: EHLO, STARTTLS and AUTH on top of L{SMTPClient}.

Same state handlers, hooks, errors and codes as Twisted's class.  What it
adds (PIPELINING, CHUNKING, SIZE, 8BITMIME, SMTPUTF8, DSN, and with
C{pipelineMessages} two messages in flight) keeps its state in the
client's C{_mailclient} (L{mailclient._wire.state}), and its steps are module
functions, so that subclasses keep every name Twisted's class leaves free.
"""

from __future__ import annotations

import base64
import binascii
import warnings
from collections import deque
from functools import partial
from typing import Any, Callable, List, Optional, Tuple, cast

from twisted.internet import protocol
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailclient._wire.address import extractAddress, quoteaddr
from mailclient._protocol.chunking import ChunkSender
from mailclient._protocol.client import (
    SUCCESS,
    SMTPClient,
    abortConnection,
    beginTransaction,
    binaryFile,
    encodeFor,
    fail,
    internalError,
    invalidAddress,
    messageFile,
    readError,
    recipientList,
    reportOutcome,
    usesPhaseTimeouts,
)
from mailclient._wire.data import DataEncoder
from mailclient._wire.errors import CannotSendError, InvalidAddressError, SMTPClientError
from mailclient._wire.options import (
    CONVERSION_NEEDED,
    DEFAULT_OPTIONS,
    EIGHT_BIT_REFUSED,
    MailOptions,
    OptionError,
    checkDSN,
    checkEightBit,
    fileSize,
    holdsEightBit,
    mailParameters,
    rcptParameters,
)
from mailclient._wire.ehlo import Capabilities, parseCapabilities
from mailclient._wire.errors import (
    AUTHDeclinedError,
    AuthenticationError,
    AUTHRequiredError,
    EHLORequiredError,
    SMTPConnectError,
    SMTPProtocolError,
    TLSError,
    TLSRequiredError,
)
from mailclient._wire.state import Phase, Transaction
from mailclient._protocol.tls import describeTLSFailure, isLoopback, tlsAvailable, tlsRecord
from mailclient._wire.tlspolicy import TLSRecord

_log = Logger()


#: Seekable messages up to this size are read before MAIL to find out
#: whether they hold 8-bit data; larger ones are declared BODY=8BITMIME when
#: the server offers it (always allowed), instead of being read twice.
_SCAN_LIMIT = 1 << 20

_ENVELOPE_EXTENSIONS = (
    b"PIPELINING", b"CHUNKING", b"SIZE", b"8BITMIME", b"SMTPUTF8", b"DSN",
)


def _longest(*limits: Optional[float]) -> Optional[float]:
    """
    The longest of several time limits (L{None}: no limit).
    """
    if any(limit is None for limit in limits):
        return None
    return max(cast(float, limit) for limit in limits)


def _mechanismName(authenticator: Any) -> bytes:
    name = authenticator.getName()
    if isinstance(name, str):
        name = name.encode("ascii")
    return bytes(name).upper()


class ESMTPClient(SMTPClient):
    """
    A client for sending emails over ESMTP.

    @ivar heloFallback: Whether or not to fall back to plain SMTP if the
        C{EHLO} command is not recognised by the server.  Not honoured when
        authentication or (on a connection not yet secured) transport
        security is required.
    @ivar requireAuthentication: If C{True}, refuse to proceed if
        authentication cannot be performed.
    @ivar requireTransportSecurity: If C{True}, refuse to proceed if the
        transport cannot be secured.
    @ivar allowCleartextAuthentication: If C{True}, credentials may be sent
        over an unencrypted connection to a remote host.  By default they are
        only sent over TLS or to a loopback address.  (mailclient addition)
    @ivar context: The TLS context factory (or client connection creator)
        to use for STARTTLS, if desired.
    @ivar capabilities: The extensions of the last EHLO reply
        (case-insensitive mapping), empty before EHLO and after STARTTLS.
    """

    heloFallback = True
    #: Send MAIL, every RCPT and DATA in one group when the server offers
    #: PIPELINING (RFC 2920).  (mailclient addition)
    pipelining = True
    #: Send the body with BDAT when the server offers CHUNKING and
    #: PIPELINING (RFC 3030).  (mailclient addition)
    chunking = True
    #: Start the next message as soon as the current one is written whole,
    #: before its replies arrive, when it went out with BDAT: RSET, then the
    #: next MAIL, RCPT and BDAT join the pipeline (RFC 2920, RFC 3030), so
    #: client and server work at the same time.  Off by default: the next
    #: message's L{getMailFrom}, L{getMailTo} and L{getMailData} are then
    #: called before L{sentMail} (or L{sendError}) reports the previous one.
    #: Outcomes still come one per message, in the order the messages were
    #: started; keep per-message state in a queue, not in one attribute.
    #: (mailclient addition)
    pipelineMessages = False
    #: Send non-ASCII addresses when the server offers SMTPUTF8 (RFC 6531).
    smtputf8 = True
    #: The default L{MailOptions} of every message (see L{getMailOptions}).
    mailOptions: MailOptions = DEFAULT_OPTIONS
    requireAuthentication = False
    requireTransportSecurity = False
    allowCleartextAuthentication = False
    context: Any = None
    _tlsMode = False
    #: The authenticator of the exchange under way (Twisted's name).
    _authinfo: Any

    def __init__(
        self, secret: Any, contextFactory: Any = None, *args: Any, **kw: Any
    ) -> None:
        SMTPClient.__init__(self, *args, **kw)
        self.authenticators: List[Any] = []
        self.secret = secret
        self.context = contextFactory
        self.capabilities: Capabilities = Capabilities()

    @property
    def tlsRecord(self) -> TLSRecord:
        """
        The TLS this connection got (L{TLSRecord}): level, version, cipher,
        whether the certificate verified.  (mailclient addition)
        """
        return tlsRecordOf(self)

    @property
    def tlsMode(self) -> bool:
        """
        Deprecated: whether the connection is over TLS.
        """
        warnings.warn(
            "tlsMode attribute of mailclient.smtp.ESMTPClient is deprecated "
            "(as in Twisted since 13.0)",
            category=DeprecationWarning,
            stacklevel=2,
        )
        return self._tlsMode

    @tlsMode.setter
    def tlsMode(self, value: bool) -> None:
        warnings.warn(
            "tlsMode attribute of mailclient.smtp.ESMTPClient is deprecated "
            "(as in Twisted since 13.0)",
            category=DeprecationWarning,
            stacklevel=2,
        )
        self._tlsMode = value

    # Error hooks: same classes and codes as Twisted.

    def esmtpEHLORequired(self, code: int = -1, resp: Optional[bytes] = None) -> None:
        """
        Fail because the server does not support ESMTP, which is required.
        """
        fail(
            self,
            EHLORequiredError(
                502, b"Server does not support ESMTP Authentication", self.log.str()
            )
        )

    def esmtpAUTHRequired(self, code: int = -1, resp: Optional[bytes] = None) -> None:
        """
        Fail because authentication is required and cannot be performed.

        The message says why: no password was given, no mechanism is
        registered, or the server offers none of ours.
        """
        if not _hasCredentials(self):
            text = b"Authentication is required but no password was given"
            code = -1
        elif not self.authenticators:
            text = b"Authentication is required but no authenticator is registered"
            code = -1
        else:
            names = b", ".join(_mechanismName(a) for a in self.authenticators)
            text = b"Server does not support Client Authentication schemes [%s]" % (
                names,
            )
            code = 502
        fail(self, AUTHRequiredError(code, text, self.log.str()))

    def esmtpTLSRequired(self, code: int = -1, resp: Optional[bytes] = None) -> None:
        """
        Fail because TLS is required and cannot be used; the message says
        whether the server does not offer it or the client has no context.
        """
        if self.context is None and b"STARTTLS" in self.capabilities:
            if tlsAvailable():
                text = (
                    b"TLS is required but the client has no TLS context "
                    b"(pass contextFactory or hostname)"
                )
            else:
                text = (
                    b"TLS is required but TLS support is not installed "
                    b"(pip install mailclient[tls])"
                )
            code = -1
        else:
            text = b"Server does not support secure communication via TLS / SSL"
            code = 502
        fail(self, TLSRequiredError(code, text, self.log.str()))

    def esmtpTLSFailed(self, code: int = -1, resp: Optional[bytes] = None) -> None:
        """
        Fail because TLS could not be started: the server refused STARTTLS,
        or the handshake failed.
        """
        if code > 0 and resp is not None:
            text = b"Server refused STARTTLS: " + resp
        else:
            text = b"Could not complete the SSL/TLS handshake"
        fail(self, TLSError(code, text, self.log.str()))

    def esmtpAUTHDeclined(self, code: int = -1, resp: Optional[bytes] = None) -> None:
        """
        Fail because the authentication was rejected.
        """
        fail(self, AUTHDeclinedError(code, resp or b"", self.log.str()))

    def esmtpAUTHMalformedChallenge(
        self, code: int = -1, resp: Optional[bytes] = None
    ) -> None:
        """
        Fail because the server sent a malformed authentication challenge.
        """
        fail(
            self,
            AuthenticationError(
                501,
                b"Login failed because the SMTP Server returned a malformed "
                b"Authentication Challenge",
                self.log.str(),
            )
        )

    def esmtpAUTHServerError(
        self, code: int = -1, resp: Optional[bytes] = None
    ) -> None:
        """
        Fail because of some other authentication error.
        """
        fail(self, AuthenticationError(code, resp or b"", self.log.str()))

    def registerAuthenticator(self, auth: Any) -> None:
        """
        Register an authenticator.  The client uses the first registered
        mechanism the server offers, so register the most secure first.

        @param auth: an L{IClientAuthentication} provider.
        """
        self.authenticators.append(auth)

    # States

    def connectionMade(self) -> None:
        """
        Called when a connection has been made; the greeting triggers EHLO.
        """
        self._tlsMode = ISSLTransport.providedBy(self.transport)
        SMTPClient.connectionMade(self)
        self._okresponse = self.esmtpState_ehlo

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        state = self._mailclient
        if not (state.transaction.reported or state.quitting):
            tls = describeTLSFailure(reason)
            if tls is not None:
                fail(self, TLSError(-1, tls, self.log.str(), isFatal=True))
        SMTPClient.connectionLost(self, reason)
        # Reporting a message started early put its file back: let it go.
        self.mailFile = None
        state.transaction.pendingFile = None
        state.transaction.chunks = None

    def esmtpState_ehlo(self, code: int, resp: bytes) -> None:
        """
        Send C{EHLO}.  If L{heloFallback} is set and neither TLS nor
        authentication is required, a refused EHLO falls back to C{HELO}.
        """
        self._expected = SUCCESS
        self._okresponse = self.esmtpState_serverConfig
        self._failresponse = self.esmtpEHLORequired
        needTLS = False if self._tlsMode else self.requireTransportSecurity
        if self.heloFallback and not self.requireAuthentication and not needTLS:
            self._failresponse = self.smtpState_helo
        self.sendLine(b"EHLO " + self.identity)

    def esmtpState_serverConfig(self, code: int, resp: bytes) -> None:
        """
        Parse the EHLO reply and take the next step (STARTTLS, AUTH or MAIL).
        """
        self.capabilities = parseCapabilities(resp)
        if self._tlsMode and self._mailclient.tls is None:
            record = tlsRecordOf(self)
            _log.info("SMTP connection to {peer} over TLS: {tls}",
                      peer=_peerOf(self), tls=record.describe(), tlsRecord=record)
        self.tryTLS(code, resp, self.capabilities)

    def tryTLS(self, code: int, resp: bytes, items: Any) -> None:
        """
        Start TLS if it is possible and not in use; fail if it is required
        and impossible; otherwise go on to authentication.
        """
        hasTLS = self._tlsMode
        canTLS = self.context is not None and b"STARTTLS" in items
        mustTLS = self.requireTransportSecurity
        if hasTLS or not (canTLS or mustTLS):
            self.authenticate(code, resp, items)
        elif canTLS:
            self._expected = [220]
            self._okresponse = self.esmtpState_starttls
            self._failresponse = self.esmtpTLSFailed
            self.sendLine(b"STARTTLS")
        else:
            self.esmtpTLSRequired()

    def esmtpState_starttls(self, code: int, resp: bytes) -> None:
        """
        Start TLS after the server's 220, then send EHLO again.
        """
        if self._buffer:
            # Anything after the 220 was sent in clear text before the
            # handshake: a man in the middle may have injected it.
            self._buffer = b""
            fail(
                self,
                SMTPProtocolError(
                    -1,
                    b"Server sent data after its reply to STARTTLS, before the "
                    b"TLS handshake (possible response injection)",
                    self.log.str(),
                ),
            )
            return
        self.capabilities = Capabilities()
        try:
            cast(Any, self.transport).startTLS(self.context)
            self._tlsMode = True
        except Exception as e:
            fail(
                self,
                TLSError(
                    -1,
                    b"Could not start TLS: " + str(e).encode("utf-8", "replace"),
                    self.log.str(),
                    isFatal=True,
                ),
            )
            return
        self.esmtpState_ehlo(code, resp)

    def authenticate(self, code: int, resp: bytes, items: Any) -> None:
        """
        Authenticate with the first registered mechanism the server offers,
        or go on to the mail transaction.
        """
        if _hasCredentials(self) and items.get(b"AUTH"):
            offered = set(items[b"AUTH"].upper().split())
            for auth in self.authenticators:
                name = _mechanismName(auth)
                if name in offered:
                    if not _mayAuthenticate(self):
                        _refuseCleartextAuthentication(self)
                        return
                    _startAuthentication(self, auth, name)
                    return
        if self.requireAuthentication:
            self.esmtpAUTHRequired()
        else:
            self.smtpState_from(code, resp)

    def esmtpState_challenge(self, code: int, resp: bytes) -> None:
        self._authResponse(self._authinfo, resp)

    def _authResponse(self, auth: Any, challenge: bytes) -> None:
        self._failresponse = self.esmtpAUTHDeclined
        try:
            decoded = base64.b64decode(challenge, validate=True)
        except (binascii.Error, ValueError):
            # Illegal challenge: cancel the exchange, then give up.
            self.sendLine(b"*")
            self._okresponse = self.esmtpAUTHMalformedChallenge
            self._failresponse = self.esmtpAUTHMalformedChallenge
            return
        response = auth.challengeResponse(self.secret, decoded)
        self._expected = [235, 334]
        self._okresponse = self.smtpState_maybeAuthenticated
        state = self._mailclient
        state.inSASL = True
        try:
            self.sendLine(base64.b64encode(response))
        finally:
            state.inSASL = False

    def smtpState_maybeAuthenticated(self, code: int, resp: bytes) -> None:
        """
        Handle the reply after a SASL response: success, or another
        challenge.
        """
        if code == 235:
            del self._authinfo
            self.smtpState_from(code, resp)
        else:
            self._authResponse(self._authinfo, resp)

    # The mail transaction: PIPELINING (RFC 2920), CHUNKING (RFC 3030),
    # SIZE (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), DSN (RFC 3461)

    def getMailOptions(self) -> MailOptions:
        """
        Return the L{MailOptions} for the message being started (DSN, 8-bit
        and binary bodies).  Override to vary them per message; the default
        is the C{mailOptions} attribute.
        """
        return self.mailOptions

    def quoteAddress(self, address: Any) -> bytes:
        """
        Quote C{address}, allowing non-ASCII when the server offers SMTPUTF8.
        """
        return quoteaddr(
            address, utf8=self.smtputf8 and b"SMTPUTF8" in self.capabilities
        )

    def mailFromParameters(self) -> bytes:
        """
        The extension parameters of C{MAIL FROM} for the current message.
        Subclasses may add their own: C{return super().mailFromParameters()
        + b" X=Y"}.
        """
        return b"".join(b" " + p for p in self._mailclient.transaction.mailParams)

    def rcptToParameters(self, address: Any) -> bytes:
        """
        The extension parameters of C{RCPT TO} for C{address}.
        """
        raw = extractAddress(address).encode("utf-8")
        options = self._mailclient.transaction.options
        return b"".join(
            b" " + p for p in rcptParameters(options, self.capabilities, raw)
        )

    def smtpState_from(self, code: int, resp: bytes) -> None:
        """
        Start the next message.

        A server that offers none of PIPELINING, CHUNKING, SIZE, 8BITMIME,
        SMTPUTF8 and DSN gets exactly Twisted's conversation.  Otherwise the
        whole envelope (and, when SIZE or 8-bit detection needs it, the
        message file) is gathered first, so that MAIL can carry its
        parameters; with PIPELINING, MAIL, every RCPT and DATA (or the BDAT
        chunks) go out as one group.
        """
        state = self._mailclient
        deferred, state.deferredStart = state.deferredStart, None
        if deferred is not None:
            # This message was asked for early and could not be started;
            # its fate follows the previous message's outcome.
            txn, action, _ = deferred
            if txn is not None:
                state.transaction = txn
                txn.unpark(self)
            action()
            return
        useExtensions, options = _useExtensions(self)
        if not useExtensions:
            # Twisted's conversation, but 8-bit data found while streaming
            # is refused: the server did not offer 8BITMIME (RFC 6152).
            SMTPClient.smtpState_from(self, code, resp)
            state.transaction.refuseEightBit = True
            return
        caps = self.capabilities
        self._from = self.getMailFrom()
        self._failresponse = self.smtpTransferFailed
        if self._from is None:
            if state.early:
                state.deferredStart = (None, self._disconnectFromServer, None)
            else:
                self._disconnectFromServer()
            return
        txn = beginTransaction(self)
        txn.pipelined = self.pipelining and b"PIPELINING" in caps
        try:
            sender = self.quoteAddress(self._from)
            recipients = recipientList(self)
            quoted = [self.quoteAddress(r) for r in recipients]
            if options is None:
                options = self.getMailOptions()
            warning = checkDSN(options, caps)
            chunked = (
                txn.pipelined and self.chunking and b"CHUNKING" in caps
                and bool(recipients)
            )
            eightBit = options.eightBit
            size = None
            if b"SIZE" in caps or chunked or (eightBit is None and recipients):
                txn.pendingFile = binaryFile(self.getMailData())
                size = fileSize(txn.pendingFile)
                if eightBit is None:
                    if b"8BITMIME" in caps and (size is None or size > _SCAN_LIMIT):
                        # Declaring 8BITMIME is always safe: spare a large
                        # message a second read.
                        eightBit = True
                    else:
                        eightBit = holdsEightBit(txn.pendingFile)
            if eightBit is None and b"8BITMIME" in caps:
                # Unknown (unseekable file): declaring it is always safe.
                eightBit = True
            checkEightBit(options, caps, eightBit)
            txn.mailParams = mailParameters(
                options, caps, [sender] + quoted, size, eightBit, chunked
            )
        except InvalidAddressError as e:
            _refuseMessage(self, e, partial(invalidAddress, self, e))
            return
        except OptionError as e:
            txn.pendingFile = None
            refusal = CannotSendError(str(e), self.log.str(), status=e.status)
            _refuseMessage(self, refusal, partial(fail, self, refusal))
            return
        if warning is not None:
            warnings.warn(warning, stacklevel=2)
        txn.options = options
        # Refuse 8-bit data found while streaming unless it may be sent.
        txn.refuseEightBit = (
            eightBit is None
            and b"8BITMIME" not in caps
            and not options.allowEightBitWithout8BITMIME
        )
        if not txn.pipelined:
            txn.pendingRecipients = recipients
            self.sendLine(b"MAIL FROM:" + sender + self.mailFromParameters())
            self._expected = [250]
            self._okresponse = self.smtpState_to
            return
        self.toAddresses = iter(recipients)
        self.lastAddress = None
        txn.chunked = chunked
        group = [(b"MAIL", None)] + [(b"RCPT", r) for r in recipients]
        if recipients and not chunked:
            group.append((b"DATA", None))
        early = state.early
        if early:
            # Whatever became of the previous transaction, this one starts
            # from a clean slate (RFC 3030 asks for RSET after a failed
            # chunk; after a delivered message it is harmless).
            group.insert(0, (b"RSET", None))
        txn.pipeline = deque(group)
        self._expected = range(0, 1000)
        self._okresponse = partial(_pipelinedReply, self)
        if early:
            self.sendLine(b"RSET")
        self.sendLine(b"MAIL FROM:" + sender + self.mailFromParameters())
        for recipient, address in zip(recipients, quoted):
            self.sendLine(b"RCPT TO:" + address + self.rcptToParameters(recipient))
        timeouts = self.timeouts if usesPhaseTimeouts(self) and not early else None
        if timeouts is not None:
            # The first reply due is the one to MAIL.
            self.setTimeout(timeouts.mail)
        if chunked:
            _startChunks(self, txn)
        elif recipients:
            self.sendLine(b"DATA")
            if timeouts is not None:
                self.setTimeout(timeouts.mail)
        _maybeStartNext(self)

    def transformChunk(self, chunk: bytes) -> bytes:
        if self._mailclient.encodingTransaction().refuseEightBit and not chunk.isascii():
            raise OptionError(EIGHT_BIT_REFUSED, CONVERSION_NEEDED)
        return SMTPClient.transformChunk(self, chunk)

    def smtpState_msgSent(self, code: int, resp: bytes) -> None:
        """
        Report the message.  After a pipelined transaction that succeeded,
        go straight on to the next message: RSET is useless there (RFC 5321
        4.1.1.5) and costs a round trip.  With a message already started
        early, its replies come next (it began with its own RSET).
        """
        state = self._mailclient
        if state.following is not None:
            reportOutcome(self, code, resp)
            _activateFollowing(self)
            return
        if state.transaction.pipelined and code in SUCCESS:
            reportOutcome(self, code, resp)
            self.smtpState_from(code, resp)
        else:
            SMTPClient.smtpState_msgSent(self, code, resp)


# mailclient's own steps of the ESMTP conversation (functions, so that no
# subclass method can replace one by accident).


def _hasCredentials(client: ESMTPClient) -> bool:
    """
    Whether there is something to log in with: a secret, or an
    authenticator holding its own token (OAuth 2.0).
    """
    if client.secret:
        return True
    return any(getattr(a, "token", None) is not None for a in client.authenticators)


def tlsRecordOf(client: ESMTPClient) -> TLSRecord:
    """
    The TLS record of C{client}'s connection (kept once TLS is up).
    """
    state = client._mailclient
    record = state.tls
    if record is None:
        record = tlsRecord(client.transport, state.tlsPolicy, client._tlsMode)
        if client._tlsMode:
            state.tls = record
    return record


def _peerOf(client: ESMTPClient) -> str:
    try:
        peer = client.transport.getPeer()  # type: ignore[union-attr]
    except Exception:
        return "?"
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    if host is None:
        return str(peer)
    return "[%s]:%s" % (host, port) if ":" in host else "%s:%s" % (host, port)


def _mayAuthenticate(client: ESMTPClient) -> bool:
    """
    Whether credentials may be sent: over TLS whose certificate was not
    found unverified, to a loopback address, or when the caller allows it.
    """
    if client.allowCleartextAuthentication or isLoopback(client.transport):
        return True
    return client._tlsMode and tlsRecordOf(client).verified is not False


def _refuseCleartextAuthentication(client: ESMTPClient) -> None:
    if client._tlsMode:
        text = (
            b"Refusing to send credentials over TLS whose certificate was not "
            b"verified (" + (tlsRecordOf(client).reason or "").encode("utf-8", "replace")
            + b"); give the server's host name or a TLS context, or set "
            b"allowCleartextAuthentication to allow it"
        )
    else:
        text = (
            b"Refusing to send credentials over an unencrypted connection "
            b"(the server did not offer STARTTLS or no TLS context was "
            b"given); set allowCleartextAuthentication to allow it"
        )
    fail(client, AUTHRequiredError(-1, text, client.log.str()))


def _startAuthentication(client: ESMTPClient, auth: Any, name: bytes) -> None:
    client._authinfo = auth
    reset = getattr(auth, "reset", None)
    if reset is not None:
        reset()
    initial = getattr(auth, "initialResponse", None)
    if initial is not None:
        response = base64.b64encode(initial(client.secret)) or b"="
        client._expected = [235, 334]
        client._okresponse = client.smtpState_maybeAuthenticated
        client._failresponse = client.esmtpAUTHDeclined
        client.sendLine(b"AUTH " + name + b" " + response)
    else:
        client._expected = [334]
        client._okresponse = client.esmtpState_challenge
        client._failresponse = client.esmtpAUTHServerError
        client.sendLine(b"AUTH " + name)


def _useExtensions(client: ESMTPClient) -> Tuple[bool, Optional[MailOptions]]:
    """
    Whether this message takes the extension path, and the message's
    options if they had to be asked for to decide.
    """
    caps = client.capabilities
    if any(k in caps for k in _ENVELOPE_EXTENSIONS):
        return True, None
    # Options the caller asked for are checked before MAIL even when the
    # server offers no extension (to refuse, or to warn).
    options = client.getMailOptions()
    return options != DEFAULT_OPTIONS, options


def _refuseMessage(
    client: ESMTPClient, exc: SMTPClientError, action: Callable[[], Any]
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
    transport: Any = client.transport
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
    if usesPhaseTimeouts(client):
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
    timeouts = client.timeouts
    if usesPhaseTimeouts(client):
        assert timeouts is not None
        client.setTimeout(
            _longest(timeouts.mail, timeouts.dataTermination) if following.dataEnded
            else timeouts.mail
        )
    _maybeStartNext(client)


# CHUNKING


def _startChunks(client: ESMTPClient, txn: Transaction) -> None:
    client.mailFile = messageFile(client)
    txn.encoder = DataEncoder(dotStuff=False)
    txn.chunks = ChunkSender(
        client.mailFile, client.transport, partial(encodeFor, client, txn),
        partial(_chunkWritten, client, txn), partial(_chunksFailed, client, txn),
        partial(_chunksDone, client, txn),
    )
    txn.chunks.start()


def _chunkWritten(client: ESMTPClient, txn: Transaction, line: bytes, last: bool) -> None:
    if client.debug:
        client.log.append(b">>> " + line)
    txn.pipeline.append((b"BDAT", last))
    if last:
        timeouts = client.timeouts
        if usesPhaseTimeouts(client):
            assert timeouts is not None
            # The final reply is due now: RFC 5321's limit for it (4.5.3.2.6).
            client.setTimeout(_longest(timeouts.mail, timeouts.dataTermination))
        if txn.phase is Phase.OPEN:
            txn.phase = Phase.DATA_ENDED


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
    verb, detail = txn.pipeline.popleft()
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
        client.smtpState_msgSent(code, resp)
