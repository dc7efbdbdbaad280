"""
L{ESMTPClient}: EHLO, STARTTLS and AUTH on top of L{SMTPClient}.

Same state handlers, hooks, errors and codes as Twisted's class.  Fixed:
EHLO keywords are case-insensitive; bytes the server sends after its reply
to STARTTLS and before the handshake are refused (response injection);
capabilities are forgotten when TLS starts; credentials never cross an
unencrypted, non-loopback connection unless allowed; PLAIN is not retried in
a second form; errors say whether the client or the server is at fault.
"""

from __future__ import annotations

import base64
import binascii
import warnings
from collections import deque
from functools import partial
from operator import attrgetter
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, cast

from twisted.internet import protocol
from twisted.internet.interfaces import ISSLTransport
from twisted.python.failure import Failure

from mailclient._address import extractAddress, quoteaddr
from mailclient._chunking import ChunkSender
from mailclient._client import SUCCESS, SMTPClient, binaryFile
from mailclient._data import DataEncoder
from mailclient._errors import CannotSendError, InvalidAddressError, MessageReadError, SMTPClientError
from mailclient._options import (
    DEFAULT_OPTIONS,
    MailOptions,
    OptionError,
    checkDSN,
    checkEightBit,
    fileSize,
    holdsEightBit,
    mailParameters,
    rcptParameters,
)
from mailclient._ehlo import Capabilities, parseCapabilities
from mailclient._errors import (
    AUTHDeclinedError,
    AuthenticationError,
    AUTHRequiredError,
    EHLORequiredError,
    SMTPConnectError,
    SMTPProtocolError,
    TLSError,
    TLSRequiredError,
)
from mailclient._tls import describeTLSFailure, isLoopback, tlsAvailable


#: Seekable messages up to this size are read before MAIL to find out
#: whether they hold 8-bit data; larger ones are declared BODY=8BITMIME when
#: the server offers it (always allowed), instead of being read twice.
_SCAN_LIMIT = 1 << 20

_ENVELOPE_EXTENSIONS = (
    b"PIPELINING", b"CHUNKING", b"SIZE", b"8BITMIME", b"SMTPUTF8", b"DSN",
)

# What one message's transaction keeps on the protocol instance while its
# replies are awaited.  With pipelineMessages two transactions are in
# flight: the one whose replies come next lives in these attributes, the
# other is kept aside as a dict of them (see ESMTPClient._parked).
_TRANSACTION_STATE = (
    "_from", "_reported", "toAddresses", "toAddressesResult",
    "successAddresses", "lastAddress", "_mailReply", "_bdatFailure",
    "_pipeline", "_pipelined", "_chunked", "_options", "_mailParams",
    "_refuseEightBit", "_chunkSender", "_dataEnded", "_allWritten",
    "mailFile", "_encoder", "_pendingFile", "_pendingRecipients",
    "_expected", "_okresponse", "_failresponse",
)

_getTransaction = attrgetter(*_TRANSACTION_STATE)


def _longest(*limits: Optional[float]) -> Optional[float]:
    """
    The longest of several time limits (L{None}: no limit).
    """
    if any(limit is None for limit in limits):
        return None
    return max(cast(float, limit) for limit in limits)

# A message asked for early that could not be started: its saved state
# (None when there is no message to report on), what to do once the
# previous message is reported, and the error it is to be reported with.
_DeferredStart = Tuple[Optional[Dict[str, Any]], Callable[[], Any], Optional[SMTPClientError]]


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

    def __init__(
        self, secret: Any, contextFactory: Any = None, *args: Any, **kw: Any
    ) -> None:
        SMTPClient.__init__(self, *args, **kw)
        self.authenticators: List[Any] = []
        self.secret = secret
        self.context = contextFactory
        self.capabilities: Capabilities = Capabilities()
        # Commands of the current pipelined group still waiting for a reply.
        self._pipeline: Deque[Tuple[bytes, Any]] = deque()
        self._pipelined = False
        self._chunked = False
        self._mailReply: Optional[Tuple[int, bytes]] = None
        self._bdatFailure: Optional[Tuple[int, bytes]] = None
        self._chunkSender: Optional[ChunkSender] = None
        self._options: MailOptions = DEFAULT_OPTIONS
        self._mailParams: List[bytes] = []
        self._refuseEightBit = False
        # pipelineMessages: whether every command and chunk of the current
        # transaction is written; the next transaction, written before the
        # replies to this one came; a next message that could not be
        # started early, to be dealt with once this one is reported.
        self._allWritten = False
        self._parked: Optional[Dict[str, Any]] = None
        self._deferredStart: Optional[_DeferredStart] = None
        self._early = False

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
        self._fail(
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
        if not self._hasCredentials():
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
        self._fail(AUTHRequiredError(code, text, self.log.str()))

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
        self._fail(TLSRequiredError(code, text, self.log.str()))

    def esmtpTLSFailed(self, code: int = -1, resp: Optional[bytes] = None) -> None:
        """
        Fail because TLS could not be started: the server refused STARTTLS,
        or the handshake failed.
        """
        if code > 0 and resp is not None:
            text = b"Server refused STARTTLS: " + resp
        else:
            text = b"Could not complete the SSL/TLS handshake"
        self._fail(TLSError(code, text, self.log.str()))

    def esmtpAUTHDeclined(self, code: int = -1, resp: Optional[bytes] = None) -> None:
        """
        Fail because the authentication was rejected.
        """
        self._fail(AUTHDeclinedError(code, resp or b"", self.log.str()))

    def esmtpAUTHMalformedChallenge(
        self, code: int = -1, resp: Optional[bytes] = None
    ) -> None:
        """
        Fail because the server sent a malformed authentication challenge.
        """
        self._fail(
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
        self._fail(AuthenticationError(code, resp or b"", self.log.str()))

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
        if not (self._reported or self._quitting):
            tls = describeTLSFailure(reason)
            if tls is not None:
                self._fail(TLSError(-1, tls, self.log.str(), isFatal=True))
        SMTPClient.connectionLost(self, reason)
        # Reporting a message started early put its file back: let it go.
        self.mailFile = None
        self._pendingFile = None
        self._chunkSender = None

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
            self._fail(
                SMTPProtocolError(
                    -1,
                    b"Server sent data after its reply to STARTTLS, before the "
                    b"TLS handshake (possible response injection)",
                    self.log.str(),
                )
            )
            return
        self.capabilities = Capabilities()
        try:
            cast(Any, self.transport).startTLS(self.context)
            self._tlsMode = True
        except Exception as e:
            self._fail(
                TLSError(
                    -1,
                    b"Could not start TLS: " + str(e).encode("utf-8", "replace"),
                    self.log.str(),
                    isFatal=True,
                )
            )
            return
        self.esmtpState_ehlo(code, resp)

    def _hasCredentials(self) -> bool:
        """
        Whether there is something to log in with: a secret, or an
        authenticator holding its own token (OAuth 2.0).
        """
        if self.secret:
            return True
        return any(getattr(a, "token", None) is not None for a in self.authenticators)

    def authenticate(self, code: int, resp: bytes, items: Any) -> None:
        """
        Authenticate with the first registered mechanism the server offers,
        or go on to the mail transaction.
        """
        if self._hasCredentials() and items.get(b"AUTH"):
            offered = set(items[b"AUTH"].upper().split())
            for auth in self.authenticators:
                name = _mechanismName(auth)
                if name in offered:
                    if not self._mayAuthenticate():
                        self._refuseCleartextAuthentication()
                        return
                    self._startAuthentication(auth, name)
                    return
        if self.requireAuthentication:
            self.esmtpAUTHRequired()
        else:
            self.smtpState_from(code, resp)

    def _mayAuthenticate(self) -> bool:
        return (
            self._tlsMode
            or self.allowCleartextAuthentication
            or isLoopback(self.transport)
        )

    def _refuseCleartextAuthentication(self) -> None:
        self._fail(
            AUTHRequiredError(
                -1,
                b"Refusing to send credentials over an unencrypted connection "
                b"(the server did not offer STARTTLS or no TLS context was "
                b"given); set allowCleartextAuthentication to allow it",
                self.log.str(),
            )
        )

    def _startAuthentication(self, auth: Any, name: bytes) -> None:
        self._authinfo = auth
        reset = getattr(auth, "reset", None)
        if reset is not None:
            reset()
        initial = getattr(auth, "initialResponse", None)
        if initial is not None:
            response = base64.b64encode(initial(self.secret)) or b"="
            self._expected = [235, 334]
            self._okresponse = self.smtpState_maybeAuthenticated
            self._failresponse = self.esmtpAUTHDeclined
            self.sendLine(b"AUTH " + name + b" " + response)
        else:
            self._expected = [334]
            self._okresponse = self.esmtpState_challenge
            self._failresponse = self.esmtpAUTHServerError
            self.sendLine(b"AUTH " + name)

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
        self._inSASL = True
        try:
            self.sendLine(base64.b64encode(response))
        finally:
            self._inSASL = False

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
        return b"".join(b" " + p for p in self._mailParams)

    def rcptToParameters(self, address: Any) -> bytes:
        """
        The extension parameters of C{RCPT TO} for C{address}.
        """
        raw = extractAddress(address).encode("utf-8")
        return b"".join(
            b" " + p for p in rcptParameters(self._options, self.capabilities, raw)
        )

    def _useExtensions(self) -> Tuple[bool, Optional[MailOptions]]:
        """
        Whether this message takes the extension path, and the message's
        options if they had to be asked for to decide.
        """
        caps = self.capabilities
        if any(k in caps for k in _ENVELOPE_EXTENSIONS):
            return True, None
        # Options the caller asked for are checked before MAIL even when
        # the server offers no extension (to refuse, or to warn).
        options = self.getMailOptions()
        return options != DEFAULT_OPTIONS, options

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
        deferred, self._deferredStart = self._deferredStart, None
        if deferred is not None:
            # This message was asked for early and could not be started;
            # its fate follows the previous message's outcome.
            state, action, _ = deferred
            if state is not None:
                self._restoreTransaction(state)
            action()
            return
        self._options = DEFAULT_OPTIONS
        self._mailParams = []
        self._chunked = False
        self._allWritten = False
        useExtensions, options = self._useExtensions()
        if not useExtensions:
            # Twisted's conversation, but 8-bit data found while streaming
            # is refused: the server did not offer 8BITMIME (RFC 6152).
            self._pipelined = False
            self._refuseEightBit = True
            SMTPClient.smtpState_from(self, code, resp)
            return
        caps = self.capabilities
        self._pipelined = self.pipelining and b"PIPELINING" in caps
        self._from = self.getMailFrom()
        self._failresponse = self.smtpTransferFailed
        if self._from is None:
            if self._early:
                self._deferredStart = (None, self._disconnectFromServer, None)
            else:
                self._disconnectFromServer()
            return
        self._reported = False
        self.toAddressesResult = []
        self.successAddresses = []
        self._mailReply = None
        self._bdatFailure = None
        try:
            sender = self.quoteAddress(self._from)
            recipients = self._recipientList()
            quoted = [self.quoteAddress(r) for r in recipients]
            if options is None:
                options = self.getMailOptions()
            warning = checkDSN(options, caps)
            chunked = (
                self._pipelined and self.chunking and b"CHUNKING" in caps
                and bool(recipients)
            )
            eightBit = options.eightBit
            size = None
            if b"SIZE" in caps or chunked or (eightBit is None and recipients):
                self._pendingFile = binaryFile(self.getMailData())
                size = fileSize(self._pendingFile)
                if eightBit is None:
                    if b"8BITMIME" in caps and (size is None or size > _SCAN_LIMIT):
                        # Declaring 8BITMIME is always safe: spare a large
                        # message a second read.
                        eightBit = True
                    else:
                        eightBit = holdsEightBit(self._pendingFile)
            if eightBit is None and b"8BITMIME" in caps:
                # Unknown (unseekable file): declaring it is always safe.
                eightBit = True
            checkEightBit(options, caps, eightBit)
            self._mailParams = mailParameters(
                options, caps, [sender] + quoted, size, eightBit, chunked
            )
        except InvalidAddressError as e:
            self._refuseMessage(e, partial(self._invalidAddress, e))
            return
        except OptionError as e:
            self._pendingFile = None
            refusal = CannotSendError(str(e), self.log.str())
            self._refuseMessage(refusal, partial(self._fail, refusal))
            return
        if warning is not None:
            warnings.warn(warning, stacklevel=2)
        self._options = options
        # Refuse 8-bit data found while streaming unless it may be sent.
        self._refuseEightBit = (
            eightBit is None
            and b"8BITMIME" not in caps
            and not options.allowEightBitWithout8BITMIME
        )
        if not self._pipelined:
            self._pendingRecipients = recipients
            self.sendLine(b"MAIL FROM:" + sender + self.mailFromParameters())
            self._expected = [250]
            self._okresponse = self.smtpState_to
            return
        self.toAddresses = iter(recipients)
        self.lastAddress = None
        self._chunked = chunked
        group = [(b"MAIL", None)] + [(b"RCPT", r) for r in recipients]
        if recipients and not chunked:
            group.append((b"DATA", None))
        if self._early:
            # Whatever became of the previous transaction, this one starts
            # from a clean slate (RFC 3030 asks for RSET after a failed
            # chunk; after a delivered message it is harmless).
            group.insert(0, (b"RSET", None))
        self._pipeline = deque(group)
        self._expected = range(0, 1000)
        self._okresponse = self._pipelinedReply
        if self._early:
            self.sendLine(b"RSET")
        self.sendLine(b"MAIL FROM:" + sender + self.mailFromParameters())
        for recipient, address in zip(recipients, quoted):
            self.sendLine(b"RCPT TO:" + address + self.rcptToParameters(recipient))
        timeouts = self.timeouts if self.timeout is None and not self._early else None
        if timeouts is not None:
            # The first reply due is the one to MAIL.
            self.setTimeout(timeouts.mail)
        if chunked:
            self._startChunks()
        elif recipients:
            self.sendLine(b"DATA")
            if timeouts is not None:
                self.setTimeout(timeouts.mail)
        self._maybeStartNext()

    def _refuseMessage(self, exc: SMTPClientError, action: Callable[[], Any]) -> None:
        """
        Report a message that cannot be started, now or, when it was asked
        for early, once the previous message is reported.
        """
        if self._early:
            self._deferredStart = (self._saveTransaction(), action, exc)
        else:
            action()

    # pipelineMessages: two transactions in flight

    def _saveTransaction(self) -> Dict[str, Any]:
        return dict(zip(_TRANSACTION_STATE, _getTransaction(self)))

    def _restoreTransaction(self, state: Dict[str, Any]) -> None:
        # Plain instance attributes all: no descriptor to go through.
        self.__dict__.update(state)

    def _maybeStartNext(self) -> None:
        """
        With L{pipelineMessages}, start the next message now if the current
        one is written whole and nothing has gone wrong with it so far.
        """
        if not (
            self.pipelineMessages
            and self._allWritten
            and self._chunked
            and not self._early
            and self._parked is None
            and self._deferredStart is None
            and self._from is not None
            and not self._reported
            and not self._quitting
            and self._bdatFailure is None
            and (self._mailReply is None or self._mailReply[0] == 250)
            and self.transport is not None
            and not getattr(self.transport, "disconnecting", False)
        ):
            return
        current = self._saveTransaction()
        period = self.timeOut
        self._early = True
        try:
            self.smtpState_from(250, b"")
        except Exception:
            # Raised by a hook of the next message: dealt with as the
            # normal path would, once this message is reported.
            self._deferredStart = (None, partial(self._internalError, Failure()), None)
        finally:
            self._early = False
        if self._deferredStart is None:
            self._parked = self._saveTransaction()
        self._restoreTransaction(current)
        if self.timeout is None and self.timeouts is not None:
            # The reply still due is this message's.
            self.setTimeout(period)

    def _activateParked(self) -> None:
        """
        The previous transaction is reported: its successor's replies come
        next.
        """
        parked, self._parked = self._parked, None
        assert parked is not None
        self._restoreTransaction(parked)
        timeouts = self.timeouts
        if self.timeout is None and timeouts is not None:
            self.setTimeout(
                _longest(timeouts.mail, timeouts.dataTermination) if self._dataEnded
                else timeouts.mail
            )
        self._maybeStartNext()

    def _fail(self, exc: SMTPClientError) -> None:
        """
        Report C{exc} for the current message and, with L{pipelineMessages},
        for the message already started after it (or the error that kept
        it from starting): every started message gets one report.
        """
        later: List[Tuple[Dict[str, Any], SMTPClientError]] = []
        parked, self._parked = self._parked, None
        if parked is not None and not parked["_reported"]:
            later.append((parked, parked.pop("_ownError", None) or exc))
        deferred, self._deferredStart = self._deferredStart, None
        if deferred is not None and deferred[0] is not None and deferred[2] is not None:
            later.append((deferred[0], deferred[2]))
        SMTPClient._fail(self, exc)
        for state, error in later:
            self._restoreTransaction(state)
            self._abortTransfer()
            if isinstance(error, InvalidAddressError):
                error.log = self.log.str()
            self._reportError(error)

    def transformChunk(self, chunk: bytes) -> bytes:
        if self._refuseEightBit and not chunk.isascii():
            raise OptionError(
                "message holds 8-bit data but the server does not offer "
                "8BITMIME (set allowEightBitWithout8BITMIME to send it anyway)"
            )
        return SMTPClient.transformChunk(self, chunk)

    def _transferFailed(self, reason: Failure) -> None:
        if reason.check(OptionError):
            self._sender = None
            self._abortConnection()
            self._fail(
                CannotSendError(
                    reason.getErrorMessage(), self.log.str(), isFatal=True
                )
            )
            return
        SMTPClient._transferFailed(self, reason)

    def _abortConnection(self) -> None:
        transport: Any = self.transport
        if transport is not None and hasattr(transport, "abortConnection"):
            transport.abortConnection()

    # CHUNKING

    def _startChunks(self) -> None:
        self.mailFile = self._messageFile()
        self._encoder = DataEncoder(dotStuff=False)
        # The callbacks name their transaction by its pipeline: with
        # pipelineMessages it may be the one kept aside when they run.
        pipeline = self._pipeline
        self._chunkSender = ChunkSender(
            self.mailFile, self.transport, self.transformChunk,
            partial(self._chunkWritten, pipeline), partial(self._chunksFailed, pipeline),
            partial(self._chunksDone, pipeline),
        )
        self._chunkSender.start()

    def _transactionOf(self, pipeline: Deque[Tuple[bytes, Any]]) -> Optional[Dict[str, Any]]:
        """
        The transaction kept aside whose pipeline is C{pipeline}, if any.
        """
        parked = self._parked
        if parked is not None and parked["_pipeline"] is pipeline:
            return parked
        return None

    def _chunkWritten(self, pipeline: Deque[Tuple[bytes, Any]], line: bytes, last: bool) -> None:
        if self.debug:
            self.log.append(b">>> " + line)
        pipeline.append((b"BDAT", last))
        if last:
            timeouts = self.timeouts
            if self.timeout is None and timeouts is not None:
                # The final reply is due now: RFC 5321's limit for it (4.5.3.2.6).
                self.setTimeout(_longest(timeouts.mail, timeouts.dataTermination))
            parked = self._transactionOf(pipeline)
            if parked is not None:
                parked["_dataEnded"] = True
            else:
                self._dataEnded = True

    def _chunksDone(self, pipeline: Deque[Tuple[bytes, Any]]) -> None:
        parked = self._transactionOf(pipeline)
        if parked is not None:
            parked["_allWritten"] = True
        elif pipeline is self._pipeline:
            self._allWritten = True
            self._maybeStartNext()

    def _chunksFailed(self, pipeline: Deque[Tuple[bytes, Any]], reason: Failure) -> None:
        if reason.check(OptionError):
            exc: SMTPClientError = CannotSendError(
                reason.getErrorMessage(), self.log.str(), isFatal=True
            )
        else:
            exc = MessageReadError(
                "Could not read the message to send: %s" % (reason.getErrorMessage(),),
                self.log.str(),
            )
        parked = self._transactionOf(pipeline)
        self._abortConnection()
        if parked is None:
            self._chunkSender = None
            self._fail(exc)
            return
        # The message started early failed while the current one awaits its
        # replies: the connection has to go (a chunk is incomplete), which
        # leaves the current message's fate unknown.
        parked["_chunkSender"] = None
        parked["_ownError"] = exc
        self._fail(
            SMTPConnectError(
                -1,
                b"Connection closed before the final reply: the next message "
                b"could not be sent (" + exc.resp + b")",
                self.log.str(),
                isFatal=True,
            )
        )

    def _stopChunks(self) -> None:
        sender, self._chunkSender = self._chunkSender, None
        if sender is not None:
            sender.stop()

    def _abortTransfer(self) -> None:
        sender, self._chunkSender = self._chunkSender, None
        if sender is not None and not sender.finished:
            if sender.allWritten:
                sender.stop()
            else:
                sender.stopProducing()
                self._abortConnection()
        SMTPClient._abortTransfer(self)

    def _pipelinedReply(self, code: int, resp: bytes) -> None:
        """
        Match one reply to the oldest command of the pipelined group.
        """
        verb, detail = self._pipeline.popleft()
        if verb == b"RSET":
            # Sent ahead of a message started early; the replies to its own
            # commands decide its outcome.
            return
        if verb == b"MAIL":
            self._mailReply = (code, resp)
            if not self._pipeline and not self._chunked:
                # No recipients: as without pipelining.
                if code == 250:
                    self.smtpState_msgSent(0, b"No recipients accepted")
                else:
                    self.smtpTransferFailed(code, resp)
            return
        if verb == b"RCPT":
            self.lastAddress = detail
            self.toAddressesResult.append((detail, code, resp))
            if code in SUCCESS:
                self.successAddresses.append(detail)
            return
        mailCode, mailResp = self._mailReply or (-1, b"")
        if verb == b"BDAT":
            self._bdatReply(code, resp, bool(detail), mailCode, mailResp)
            return
        # The reply to DATA ends the group.
        if code == 354 and (mailCode != 250 or not self.successAddresses):
            # The server wants the body although the envelope failed.  No
            # QUIT or RSET is possible in the middle of DATA: report, close.
            self._envelopeFailed(mailCode, mailResp)
            self.smtpState_disconnect(-1, None)
        elif mailCode != 250 or not self.successAddresses:
            self._envelopeFailed(mailCode, mailResp, rset=True)
        elif code == 354:
            self.smtpState_data(code, resp)
        else:
            self.smtpTransferFailed(code, resp)

    def _envelopeFailed(self, mailCode: int, mailResp: bytes, rset: bool = False) -> None:
        """
        Report a message whose MAIL or every RCPT was refused, as the
        unpipelined conversation reports it.
        """
        if mailCode != 250:
            self.toAddressesResult = []
            self.successAddresses = []
            code, resp = mailCode, mailResp
        else:
            code, resp = self.toAddressesResult[-1][1], b"No recipients accepted"
        if rset:
            self._pipelined = False
            self.smtpState_msgSent(code, resp)
        else:
            self._reportOutcome(code, resp)

    def _bdatReply(
        self, code: int, resp: bytes, last: bool, mailCode: int, mailResp: bytes
    ) -> None:
        envelopeOK = mailCode == 250 and bool(self.successAddresses)
        if self._bdatFailure is None and (not envelopeOK or code not in SUCCESS):
            # RFC 3030: after a failed chunk, send no more.
            self._bdatFailure = (code, resp)
            self._stopChunks()
        if self._pipeline:
            return
        if self._chunkSender is not None and not self._chunkSender.allWritten:
            # Replies caught up with the chunks written so far; more to come.
            return
        self._stopChunks()
        if not envelopeOK:
            self._envelopeFailed(mailCode, mailResp, rset=True)
        elif self._bdatFailure is not None:
            self._pipelined = False
            self.smtpTransferFailed(*self._bdatFailure)
        elif last:
            self.smtpState_msgSent(code, resp)

    def smtpState_msgSent(self, code: int, resp: bytes) -> None:
        """
        Report the message.  After a pipelined transaction that succeeded,
        go straight on to the next message: RSET is useless there (RFC 5321
        4.1.1.5) and costs a round trip.  With a message already started
        early, its replies come next (it began with its own RSET).
        """
        if self._parked is not None:
            self._reportOutcome(code, resp)
            self._activateParked()
            return
        if self._pipelined and code in SUCCESS:
            self._reportOutcome(code, resp)
            self.smtpState_from(code, resp)
        else:
            SMTPClient.smtpState_msgSent(self, code, resp)
