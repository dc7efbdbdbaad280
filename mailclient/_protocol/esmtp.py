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
import io
import warnings
from functools import partial
from typing import Any, cast

from twisted.internet import protocol
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    ISSLTransport,
    ITLSTransport,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailclient._wire.address import extractAddress, quoteaddr
from mailclient._protocol.client import (
    SMTPClient,
    beginTransaction,
    binaryFile,
    noMoreMessages,
    recipientList,
)
from mailclient._protocol.outcome import SUCCESS, fail, invalidAddress, reportOutcome
from mailclient._wire.errors import CannotSendError, InvalidAddressError
from mailclient._wire.options import (
    CONVERSION_NEEDED,
    DEFAULT_OPTIONS,
    EIGHT_BIT_REFUSED,
    MailOptions,
    OptionError,
    fileSize,
    holdsEightBit,
    rcptParameters,
)
from mailclient._protocol.pipeline import (
    _activateFollowing,
    _refuseMessage,
    _writeGroup,
)
from mailclient._wire.plan import (
    SCAN,
    Switches,
    TransactionPlan,
    eightBitDecision,
    needsConversion,
    needsMessage,
    planTransaction,
    usesExtensions,
)
from mailclient._wire.ehlo import Capabilities, parseCapabilities
from mailclient._wire.errors import (
    AUTHDeclinedError,
    AuthenticationError,
    AUTHRequiredError,
    EHLORequiredError,
    SMTPProtocolError,
    TLSError,
    TLSRequiredError,
)
from mailclient._wire.sasl import MAX_CHALLENGES
from mailclient._wire.sevenbit import MAX_CONVERTED, CannotConvert, toSevenBit
from mailclient._wire.state import Transaction
from mailclient._protocol.tls import (
    contextForPolicy,
    describeTLSFailure,
    isLoopback,
    tlsAvailable,
    tlsRecord,
)
from mailclient._wire.tlspolicy import TLSLevel, TLSPolicy, TLSRecord
from mailclient._wire.types import BinaryFile, MessageFile, Text
from mailclient.interfaces import IClientAuthentication

_log = Logger()



def _mechanismName(authenticator: IClientAuthentication) -> bytes:
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
    @ivar opportunisticTLS: Without a C{context}, still use STARTTLS when
        the server offers it (the library's C{may} level: the certificate
        is checked and recorded in L{tlsRecord}, but one that does not
        verify does not stop the mail, which Twisted would have sent in
        clear; credentials are never sent over it).  Set it to C{False} for
        Twisted's behaviour (no STARTTLS without a context).  (mailclient
        addition)
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
    opportunisticTLS = True
    context: object = None
    _tlsMode = False
    #: The authenticator of the exchange under way (Twisted's name).
    _authinfo: IClientAuthentication

    def __init__(
        self, secret: Text | None, contextFactory: object = None, *args: Any, **kw: Any
    ) -> None:
        SMTPClient.__init__(self, *args, **kw)
        self.authenticators: list[IClientAuthentication] = []
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

    def esmtpEHLORequired(self, code: int = -1, resp: bytes | None = None) -> None:
        """
        Fail because the server does not support ESMTP, which is required.
        """
        fail(
            self,
            EHLORequiredError(
                502, b"Server does not support ESMTP Authentication", self.log.str()
            )
        )

    def esmtpAUTHRequired(self, code: int = -1, resp: bytes | None = None) -> None:
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

    def esmtpTLSRequired(self, code: int = -1, resp: bytes | None = None) -> None:
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

    def esmtpTLSFailed(self, code: int = -1, resp: bytes | None = None) -> None:
        """
        Fail because TLS could not be started: the server refused STARTTLS,
        or the handshake failed.
        """
        if code > 0 and resp is not None:
            if _opportunistic(self):
                # Refused by a reply, the session is as it was (RFC 3207):
                # at level "may" the mail goes on in clear, as it would
                # have to a server that does not offer STARTTLS.
                _log.info("STARTTLS refused by {peer} ({reply}); going on without TLS",
                          peer=_peerOf(self), reply=resp.decode("utf-8", "replace")[:200])
                self._mailclient.autoContext = None
                self.authenticate(code, resp, self.capabilities)
                return
            text = b"Server refused STARTTLS: " + resp
        else:
            text = b"Could not complete the SSL/TLS handshake"
        fail(self, TLSError(code, text, self.log.str()))

    def esmtpAUTHDeclined(self, code: int = -1, resp: bytes | None = None) -> None:
        """
        Fail because the authentication was rejected.
        """
        fail(self, AUTHDeclinedError(code, resp or b"", self.log.str()))

    def esmtpAUTHMalformedChallenge(
        self, code: int = -1, resp: bytes | None = None
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
        self, code: int = -1, resp: bytes | None = None
    ) -> None:
        """
        Fail because of some other authentication error.
        """
        fail(self, AuthenticationError(code, resp or b"", self.log.str()))

    def registerAuthenticator(self, auth: IClientAuthentication) -> None:
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

    def tryTLS(self, code: int, resp: bytes, items: Capabilities) -> None:
        """
        Start TLS if it is possible and not in use; fail if it is required
        and impossible; otherwise go on to authentication.
        """
        hasTLS = self._tlsMode
        canTLS = _startTLSContext(self, items) is not None and b"STARTTLS" in items
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
            cast(ITLSTransport, self.transport).startTLS(
                cast(IOpenSSLClientConnectionCreator, _startTLSContext(self, self.capabilities)))
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

    def authenticate(self, code: int, resp: bytes, items: Capabilities) -> None:
        """
        Authenticate with the first registered mechanism the server offers,
        or go on to the mail transaction.
        """
        mechanisms = items.get(b"AUTH")
        if _hasCredentials(self) and mechanisms:
            offered = set(mechanisms.upper().split())
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

    def _authResponse(self, auth: IClientAuthentication, challenge: bytes) -> None:
        self._failresponse = self.esmtpAUTHDeclined
        state = self._mailclient
        state.saslChallenges += 1
        if state.saslChallenges > MAX_CHALLENGES:
            # Each of the mechanisms shipped needs two challenges at most: a
            # server that keeps asking would get the secret again and again.
            self.sendLine(b"*")
            self._okresponse = self._failresponse = partial(_tooManyChallenges, self)
            return
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

    def quoteAddress(self, address: object) -> bytes:
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

    def rcptToParameters(self, address: object) -> bytes:
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
        options = None if usesExtensions(self.capabilities) else self.getMailOptions()
        if options is not None and options == DEFAULT_OPTIONS:
            # Twisted's conversation, but 8-bit data found while streaming
            # is refused: the server did not offer 8BITMIME (RFC 6152).  (Options
            # the caller asked for are checked below, before MAIL, even when
            # the server offers no extension: to refuse, or to warn.)
            SMTPClient.smtpState_from(self, code, resp)
            state.transaction.refuseEightBit = True
            return
        self._from = self.getMailFrom()
        self._failresponse = self.smtpTransferFailed
        if self._from is None:
            if state.early:
                state.deferredStart = (None, self._disconnectFromServer, None)
            else:
                noMoreMessages(self)
            return
        txn = beginTransaction(self)
        try:
            sender = self.quoteAddress(self._from)
            recipients = recipientList(self)
            quoted = [self.quoteAddress(r) for r in recipients]
            if options is None:
                options = self.getMailOptions()
            plan = _plan(self, txn, options, sender, recipients, quoted)
        except InvalidAddressError as e:
            _refuseMessage(self, e, partial(invalidAddress, self, e))
            return
        except OptionError as e:
            txn.pendingFile = None
            refusal = CannotSendError(str(e), self.log.str(), status=e.status)
            _refuseMessage(self, refusal, partial(fail, self, refusal))
            return
        if plan.warning is not None:
            warnings.warn(plan.warning, stacklevel=2)
        txn.options = options
        txn.mailParams = plan.mailParameters
        txn.refuseEightBit = plan.refuseEightBit
        txn.pipelined = plan.pipelined
        txn.chunked = plan.chunked
        if not plan.pipelined:
            txn.pendingRecipients = recipients
            self.sendLine(b"MAIL FROM:" + sender + self.mailFromParameters())
            self._expected = [250]
            self._okresponse = self.smtpState_to
            return
        _writeGroup(self, txn, plan, sender, recipients, quoted)

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
    transport = client.transport
    if transport is None:
        return "?"
    try:
        peer = transport.getPeer()
    except Exception:
        return "?"
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    if host is None:
        return str(peer)
    return "[%s]:%s" % (host, port) if ":" in host else "%s:%s" % (host, port)


def _opportunistic(client: ESMTPClient) -> bool:
    """
    Whether the connection's TLS is opportunistic (level C{may}, nothing
    requiring it to verify): then a server that refuses STARTTLS gets the
    mail in clear, as one that does not offer it would.
    """
    policy = client._mailclient.tlsPolicy
    return (
        policy is not None and policy.level is TLSLevel.MAY and not policy.verifyWhenUsed
        and not client.requireTransportSecurity
    )


def _startTLSContext(client: ESMTPClient, items: Capabilities) -> object:
    """
    The context STARTTLS uses: the client's own, or, when it has none, an
    opportunistic one (level C{may}, see L{ESMTPClient.opportunisticTLS})
    if the server offers STARTTLS and nothing requires TLS (a requirement
    without a context stays an error, as in Twisted: there is no name to
    verify).
    """
    if client.context is not None:
        return client.context
    state = client._mailclient
    if state.autoContext is None and (
        client.opportunisticTLS and not client.requireTransportSecurity
        and state.tlsPolicy is None and b"STARTTLS" in items
    ):
        policy = TLSPolicy(level=TLSLevel.MAY)
        state.autoContext = contextForPolicy(policy)
        if state.autoContext is not None:
            state.tlsPolicy = policy
    return state.autoContext


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


def _tooManyChallenges(client: ESMTPClient, code: int, resp: bytes) -> None:
    fail(
        client,
        AuthenticationError(
            -1,
            b"Authentication failed: the server sent more than %d challenges"
            % (MAX_CHALLENGES,),
            client.log.str(),
        ),
    )


def _startAuthentication(client: ESMTPClient, auth: IClientAuthentication, name: bytes) -> None:
    client._authinfo = auth
    client._mailclient.saslChallenges = 0
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


def _plan(
    client: ESMTPClient, txn: Transaction, options: MailOptions, sender: bytes,
    recipients: list[object], quoted: list[bytes],
) -> TransactionPlan:
    """
    Ask the transaction plan, reading what it needs of the message first
    (its size, whether it holds 8-bit data).

    @raise OptionError: if the message cannot be sent to this server.
    """
    caps = client.capabilities
    switches = Switches(client.pipelining, client.chunking)
    size = None
    eightBit = options.eightBit
    if needsMessage(caps, switches, options, len(recipients)):
        txn.pendingFile = binaryFile(client.getMailData())
        size = fileSize(txn.pendingFile)
        decision = eightBitDecision(caps, options, size)
        eightBit = holdsEightBit(txn.pendingFile) if decision is SCAN else decision
        if needsConversion(caps, options, eightBit):
            txn.pendingFile = _converted(txn.pendingFile)
            size, eightBit = fileSize(txn.pendingFile), False
    secure = options.requireTLS and client._tlsMode and tlsRecordOf(client).verified is not False
    return planTransaction(
        caps, switches, options, sender, recipients, quoted, size, eightBit,
        client._mailclient.early, secure,
    )


def _converted(message: MessageFile | None) -> BinaryFile:
    """
    The message converted to 7 bits (see L{mailclient._wire.sevenbit}).

    @raise OptionError: if it cannot be (status 5.6.3).
    """
    data = message.read(MAX_CONVERTED + 1) if message is not None else b""
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        return io.BytesIO(toSevenBit(data))
    except CannotConvert as e:
        raise OptionError(
            "message holds 8-bit data, the server does not offer 8BITMIME, and %s" % (e,),
            CONVERSION_NEEDED,
        ) from None
