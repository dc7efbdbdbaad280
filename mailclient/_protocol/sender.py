"""
The sender protocols and factories: one message, one Deferred.

Same constructors, attributes and results as Twisted's.  The options are
one L{ClientSettings} (the factory's C{settings}); Twisted's option
attributes (C{timeout}, C{_contextFactory}, C{_heloFallback}, ...) read and
write it.  mailclient's own state of a factory is one object under
C{_mailclient}, and its steps are module functions, so that subclasses keep
every name Twisted's classes leave free.

Retries follow the settings' L{RetryPolicy}: the first retry at once, as in
Twisted, then with growing delays, on the factory's clock, each one logged
as it is scheduled, none left behind once the result has fired.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, cast

from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IAddress, IConnector, IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.util import LineLog
from zope.interface import implementer

from mailclient._wire.address import Address, checkAddress, extractAddress
from mailclient._protocol.client import SUCCESS, SMTPClient
from mailclient._protocol.connect import (
    IAttemptAware,
    claimConnection,
    failedThrough,
    lostThrough,
    refusedProtocol,
    startedThrough,
)
from mailclient._wire.errors import InvalidAddressError, SMTPConnectError, SMTPDeliveryError
from mailclient._protocol.esmtp import ESMTPClient, tlsRecordOf
from mailclient._wire.host import getDNSName
from mailclient._wire.sasl import (
    CramMD5ClientAuthenticator,
    LOGINAuthenticator,
    PLAINAuthenticator,
)
from mailclient._wire.retry import RetryPolicy
from mailclient._wire.settings import ClientSettings, settingsFrom
from mailclient._wire.status import isPermanent, parseEnhancedStatus
from mailclient._protocol.tls import contextForPolicy, verifyingContext
from mailclient._wire.tlspolicy import TLSLevel, TLSPolicy, TLSRecord
from mailclient._wire.types import MessageFile, RecipientResult, Seekable, SendResult, T, Text

_log = Logger()


class SenderMixin:
    """
    Utility class for sending one email, with the envelope and message taken
    from the factory.  Use with L{SMTPSenderFactory} or
    L{ESMTPSenderFactory}.
    """

    done = 0
    factory: "SMTPSenderFactory"

    def getMailFrom(self) -> str | None:
        if not self.done:
            self.done = 1
            return str(self.factory.fromEmail)
        return None

    def getMailTo(self) -> list[bytes]:
        return self.factory.toEmail

    def getMailData(self) -> MessageFile:
        return self.factory.file

    def sendError(self, exc: Exception) -> None:
        # Close the connection with the SMTP server.
        SMTPClient.sendError(cast(SMTPClient, self), exc)
        factory = self.factory
        _recordTLS(factory, self)
        # Do not retry if no retries are left, or if the error is neither
        # retryable nor a temporary (4xx) failure.
        retry = getattr(exc, "retry", False)
        temporary = getattr(exc, "isTemporary", False)
        if factory.retries >= 0 or (not retry and not temporary):
            finish(factory, Failure(exc))

    def sentMail(
        self, code: int, resp: bytes, numOk: int, addresses: list[RecipientResult],
        log: LineLog,
    ) -> None:
        factory = self.factory
        _recordTLS(factory, self)
        # Do not retry: the SMTP server answered the message.
        if code in SUCCESS:
            finish(factory, (numOk, addresses))
            return
        errlog = []
        for addr, acode, aresp in addresses:
            if acode not in SUCCESS:
                raw = addr.encode("utf-8") if isinstance(addr, str) else bytes(cast(bytes, addr))
                errlog.append(raw + b": %03d " % (acode,) + aresp)
        errlog.append(log.str())
        exc = SMTPDeliveryError(code, resp, b"\n".join(errlog), addresses)
        permanentRefusal = any(
            isPermanent(acode, parseEnhancedStatus(acode, aresp))
            for _, acode, aresp in addresses
        )
        if exc.isTemporary and not permanentRefusal and factory.retries < 0:
            # Nothing was accepted and the server said "later": let the
            # factory retry once this connection is closed.
            factory._mailclient.temporaryFailure = exc
            return
        finish(factory, Failure(exc))


class SMTPSender(SenderMixin, SMTPClient):
    """
    SMTP protocol that sends a single email based on information it gets
    from its factory, a L{SMTPSenderFactory}.
    """


class _DefaultDomain:
    """
    The factory's default C{domain}: this host's name, looked up on first
    use rather than at import time.
    """

    def __get__(self, instance: object, owner: type) -> bytes:
        return getDNSName()


def _recipients(toEmail: object) -> list[bytes]:
    addresses: Iterable[object]
    if isinstance(toEmail, (str, bytes)):
        addresses = [toEmail]
    else:
        addresses = cast(Iterable[object], toEmail)
    result = []
    for address in addresses:
        if not isinstance(address, bytes):
            address = str(address).encode("utf-8")
        # Refuse lists, junk and CR/LF now, where the caller can see it.
        text = address.decode("utf-8", "replace")
        checkAddress(extractAddress(text), utf8=True)
        result.append(address)
    return result


class SenderState:
    """
    mailclient's state of a sender factory (C{factory._mailclient}).

    @ivar settings: the factory's L{ClientSettings}.
    @ivar reactor: what the factory connects with and schedules on
        (L{None}: the global reactor).
    @ivar retriesMade: how many retries were scheduled.
    @ivar firstAttempt: when the first attempt began (clock seconds).
    @ivar retryCall: the pending retry.
    @ivar connectHost: the host the connector connects to.
    @ivar temporaryFailure: the last temporary refusal, reported if the
        retries run out.
    @ivar tlsRecord: the TLS the last attempt got.
    """

    __slots__ = (
        "settings", "reactor", "retriesMade", "firstAttempt", "retryCall",
        "connectHost", "temporaryFailure", "tlsRecord",
    )

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.reactor: object | None = None
        self.retriesMade = 0
        self.firstAttempt: float | None = None
        self.retryCall: IDelayedCall | None = None
        self.connectHost: str | None = None
        self.temporaryFailure: SMTPDeliveryError | None = None
        self.tlsRecord: TLSRecord | None = None


def _setting(name: str, doc: str) -> property:
    """
    A factory attribute (Twisted's name for it) that reads and writes the
    option C{name} of the factory's settings.
    """

    def get(factory: SMTPSenderFactory) -> object:
        return getattr(factory._mailclient.settings, name)

    def set(factory: SMTPSenderFactory, value: object) -> None:
        state = factory._mailclient
        state.settings = state.settings.replace(**{name: value})

    return property(get, set, doc=doc)


@implementer(IAttemptAware)
class SMTPSenderFactory(protocol.ClientFactory):
    """
    Utility factory for sending one email.

    Connect it with C{reactor.connectTCP}, as with Twisted, or with
    L{mailclient.smtp.connectSender} to try every IPv6 and IPv4 address of
    a host name (happy eyeballs); it then sees one outcome, whatever the
    number of addresses tried.

    @ivar currentProtocol: The protocol made by L{buildProtocol} for the
        current attempt, or L{None}.
    @ivar sendFinished: True once the message has been sent, or there has
        been an unrecoverable error, or the sending has been cancelled.
    @ivar retries: Twisted's retry counter: minus the retries left.
    """

    # Twisted's attribute (bytes or text, set by callers); by default a
    # descriptor giving this host's name.
    domain: bytes | str = _DefaultDomain()  # type: ignore[assignment]
    protocol: type[SMTPClient] = SMTPSender
    #: No "Starting factory" / "Stopping factory" log lines for every
    #: message (Twisted's factories write both; set True to get them).
    noisy = False

    timeout = _setting("timeout", "Seconds to wait for every server reply (L{None}: "
                       "the per-phase C{timeouts}, if any).")
    timeouts = _setting("timeouts", "Per-phase reply limits (L{Timeouts}), used when "
                        "C{timeout} is L{None}.  (mailclient addition)")

    def __init__(
        self,
        fromEmail: object,
        toEmail: object,
        file: MessageFile,
        deferred: defer.Deferred[SendResult],
        retries: int = 5,
        timeout: float | None = None,
        **options: object,
    ) -> None:
        """
        @param fromEmail: The RFC 2821 address from which to send this
            message.
        @param toEmail: A sequence of RFC 2821 addresses to which to send
            this message (a single string is one address).
        @param file: A file-like object containing the message to send.
        @param deferred: A Deferred to callback or errback when sending of
            this message completes.
        @param retries: The number of times to retry delivery.
        @param timeout: Period, in seconds, for which to wait for server
            responses, or None to wait forever.
        @param options: (mailclient addition, keyword only) any option of
            L{ClientSettings}, such as C{timeouts} or C{retry}.
        @raise InvalidAddressError: if an address is not exactly one valid
            address (CR/LF, a list in one string, trailing junk).
        @raise TypeError: for an unknown option.
        """
        if not isinstance(retries, int):
            raise TypeError("retries must be an int, not %r" % (retries,))
        # (Not a RetryPolicy: refused, by the AttributeError or the settings.)
        retry = cast(RetryPolicy, options.pop("retry", None) or settingsFrom(None).retry)
        if retry.retries != max(0, retries):
            retry = replace(retry, retries=max(0, retries))
        settings = settingsFrom(None, timeout=timeout, retry=retry, **options)
        self._mailclient = SenderState(settings)
        toEmail = _recipients(toEmail)
        self.fromEmail = Address(fromEmail)
        checkAddress(str(self.fromEmail), utf8=True)
        self.nEmails = len(toEmail)
        self.toEmail = toEmail
        self.file = file
        self.result = deferred
        self.result.addBoth(self._removeDeferred)
        self.result.addBoth(self._removeProtocol)
        self.sendFinished = False
        self.currentProtocol: SMTPClient | None = None
        self.retries = -retries

    @property
    def settings(self) -> ClientSettings:
        """
        The options of this delivery.  (mailclient addition)
        """
        return self._mailclient.settings

    @property
    def reactor(self) -> object | None:
        """
        The reactor the retries and reply timers run on (default: the
        global one).  (mailclient addition)
        """
        return self._mailclient.reactor

    @reactor.setter
    def reactor(self, value: object | None) -> None:
        self._mailclient.reactor = value

    @property
    def tlsRecord(self) -> TLSRecord | None:
        """
        The TLS the last attempt got (L{TLSRecord}), once it reached the
        server.  (mailclient addition)
        """
        return self._mailclient.tlsRecord

    def _removeDeferred(self, result: T) -> T:
        del self.result
        return result

    def cancelRetry(self) -> None:
        """
        Cancel a pending retry, if any.  (mailclient addition)
        """
        state = self._mailclient
        call, state.retryCall = state.retryCall, None
        if call is not None and call.active():
            call.cancel()

    def startedConnecting(self, connector: IConnector) -> None:
        # (Each address connectSender tries starts; only the first start is
        # the factory's.)
        outer = startedThrough(self, connector)
        if outer is None:
            return
        state = self._mailclient
        state.connectHost = getattr(outer.getDestination(), "host", None)
        if state.firstAttempt is None:
            state.firstAttempt = _clock(self).seconds()

    def clientConnectionFailed(self, connector: IConnector, err: Failure) -> None:
        # (Only the failure of the last address connectSender tries is the
        # factory's.)
        outer = failedThrough(self, connector, err)
        if outer is not None:
            self._processConnectionError(outer, err)

    def clientConnectionLost(self, connector: IConnector, err: Failure) -> None:
        outer = lostThrough(self, connector, err)
        if outer is not None:
            self._processConnectionError(outer, err)

    def _processConnectionError(self, connector: IConnector, err: Failure) -> None:
        if not isinstance(err, Failure):
            # (Twisted's own tests pass the bare exception.)
            err = Failure(err)
        # A later error (such as a TLS failure) says more than "connection
        # closed cleanly".
        state = self._mailclient
        current = self.currentProtocol
        if current is not None and current._mailclient.failureReason is not None:
            err = cast(Failure, current._mailclient.failureReason)
        self.currentProtocol = None
        if self.sendFinished:
            return
        if self.retries < 0 and _scheduleRetry(self, connector, err):
            return
        if state.temporaryFailure is not None:
            finish(self, Failure(state.temporaryFailure))
            return
        exn = SMTPConnectError(
            -1, "Unable to connect to SMTP server: " + str(err.value)
        )
        exn.__cause__ = err.value
        finish(self, Failure(exn))

    def buildProtocol(self, addr: IAddress | None) -> SMTPClient | None:
        if not claimConnection(self, addr):
            # Another address connected first (happy eyeballs).
            return cast(SMTPClient, refusedProtocol())
        try:
            p = self.protocol(self.domain, self.nEmails * 2 + 2)
        except ValueError as e:
            finish(self, Failure(InvalidAddressError(str(e))))
            return None
        return _configure(self, p)

    def _removeProtocol(self, result: T) -> T:
        self.currentProtocol = None
        return result


# The factories' own steps (functions, out of subclasses' way).


def _clock(factory: SMTPSenderFactory) -> IReactorTime:
    """
    What C{factory}'s timers run on: its reactor when that has a clock,
    else the global reactor (a test double such as C{MemoryReactor} may
    have none).
    """
    reactor = factory._mailclient.reactor
    if reactor is not None and IReactorTime.providedBy(reactor):
        return reactor
    from twisted.internet import reactor as globalReactor

    return cast(IReactorTime, globalReactor)


def finish(factory: SMTPSenderFactory, result: SendResult | Failure) -> None:
    """
    Fire C{factory}'s result Deferred once; later outcomes are ignored, and
    no retry is left pending.
    """
    factory.sendFinished = True
    factory.cancelRetry()
    d = getattr(factory, "result", None)
    if d is None or d.called:
        return
    if isinstance(result, Failure):
        d.errback(result)
    else:
        d.callback(result)


def _refused(err: Failure) -> bool:
    """
    Whether C{err} is a definite, immediate refusal: waiting before trying
    again would only delay the error.
    """
    return bool(err.check(error.ConnectionRefusedError, error.DNSLookupError))


def _scheduleRetry(factory: SMTPSenderFactory, connector: IConnector, err: Failure) -> bool:
    """
    Schedule the next attempt if the retry policy allows one; return
    whether it did.
    """
    state = factory._mailclient
    policy = state.settings.retry
    clock = _clock(factory)
    started = state.firstAttempt if state.firstAttempt is not None else clock.seconds()
    retry = state.retriesMade + 1
    delay = policy.nextDelay(retry, clock.seconds() - started, _refused(err))
    if delay is None or not _rewind(factory):
        return False
    state.retriesMade = retry
    factory.retries += 1
    _log.info(
        "SMTP delivery to {host} failed ({reason}); retry {retry} of {retries} "
        "in {delay:g}s",
        host=state.connectHost,
        reason=err.getErrorMessage(),
        retry=retry,
        retries=policy.retries,
        delay=delay,
    )
    if delay <= 0:
        connector.connect()
    else:
        state.retryCall = clock.callLater(delay, _retry, factory, connector)
    return True


def _retry(factory: SMTPSenderFactory, connector: IConnector) -> None:
    factory._mailclient.retryCall = None
    if not factory.sendFinished:
        connector.connect()


def _rewind(factory: SMTPSenderFactory) -> bool:
    try:
        cast(Seekable, factory.file).seek(0, 0)
    except Exception:
        _log.info("SMTP client cannot retry: the message file cannot be rewound")
        return False
    return True


def _configure(factory: SMTPSenderFactory, p: SMTPClient) -> SMTPClient:
    """
    Give C{p} the factory's settings that every sender has, and make it
    the current protocol.
    """
    settings = factory._mailclient.settings
    p.factory = factory
    p.timeout = settings.timeout
    if settings.timeouts is not None:
        p.timeouts = settings.timeouts
    reactor = factory._mailclient.reactor
    if reactor is not None and IReactorTime.providedBy(reactor):
        # Reply timeouts run on the factory's reactor, like its retries.
        p._mailclient.clock = reactor
    factory.currentProtocol = p
    return p


def _recordTLS(factory: object, client: object) -> None:
    """
    Keep the TLS record of C{client}'s delivery on its factory.
    """
    state = getattr(factory, "_mailclient", None)
    if isinstance(state, SenderState) and isinstance(client, ESMTPClient):
        state.tlsRecord = tlsRecordOf(client)


class ESMTPSender(SenderMixin, ESMTPClient):
    """
    ESMTP protocol that sends a single email, authenticating with CRAM-MD5,
    LOGIN or PLAIN (in that order of preference).
    """

    requireAuthentication = True
    requireTransportSecurity = True

    def __init__(
        self, username: Text | None, secret: Text | None, contextFactory: object = None,
        *args: Any, **kw: Any
    ) -> None:
        self.heloFallback = False
        self.username = username
        self._hostname = kw.pop("hostname", None)
        if contextFactory is None:
            contextFactory = self._getContextFactory()
        ESMTPClient.__init__(self, secret, contextFactory, *args, **kw)
        self._registerAuthenticators()

    def _registerAuthenticators(self) -> None:
        # Most secure first.
        self.registerAuthenticator(CramMD5ClientAuthenticator(self.username))
        self.registerAuthenticator(LOGINAuthenticator(self.username))
        self.registerAuthenticator(PLAINAuthenticator(self.username))

    def _getContextFactory(self) -> object | None:
        if self.context is not None:
            return self.context
        if self._hostname is None:
            return None
        return verifyingContext(self._hostname)


class ESMTPSenderFactory(SMTPSenderFactory):
    """
    Utility factory for sending one email over ESMTP, with TLS and
    authentication required by default.

    The TLS level follows Twisted's arguments (L{TLSPolicy.choose}, table in
    C{docs/security.rst}): with TLS or authentication required, the
    server's certificate is verified for C{hostname}, or, when that is not
    given, for the host name the factory was asked to connect to; with
    nothing required, STARTTLS is used when the server offers it.
    """

    protocol = ESMTPSender

    _contextFactory = _setting("contextFactory", "The caller's TLS context factory.")
    _heloFallback = _setting("heloFallback", "Whether to fall back to HELO.")
    _requireAuthentication = _setting("requireAuthentication", "Whether to require AUTH.")
    _requireTransportSecurity = _setting(
        "requireTransportSecurity", "Whether to require TLS.")
    _hostname = _setting("hostname", "The name the certificate is checked against.")
    mailOptions = _setting(
        "mailOptions", "DSN, 8-bit and binary options (L{MailOptions}).  "
        "(mailclient addition)")

    def __init__(
        self,
        username: Text | None,
        password: Text | None,
        fromEmail: object,
        toEmail: object,
        file: MessageFile,
        deferred: defer.Deferred,
        retries: int = 5,
        timeout: float | None = None,
        contextFactory: object = None,
        heloFallback: bool = False,
        requireAuthentication: bool = True,
        requireTransportSecurity: bool = True,
        hostname: str | bytes | None = None,
        **options: object,
    ) -> None:
        """
        Arguments as Twisted's, plus (mailclient addition, keyword only)
        any option of L{ClientSettings}: C{allowCleartextAuthentication},
        C{authenticators}, C{tls}, C{tlsPolicy}, C{pipelining},
        C{chunking}, C{mailOptions}, C{timeouts}, C{retry}.

        @raise TypeError: for an unknown option.
        """
        SMTPSenderFactory.__init__(
            self, fromEmail, toEmail, file, deferred, retries, timeout,
            contextFactory=contextFactory,
            heloFallback=heloFallback,
            requireAuthentication=requireAuthentication,
            requireTransportSecurity=requireTransportSecurity,
            hostname=hostname,
            **options,
        )
        self.username = username
        self.password = password

    def buildProtocol(self, addr: IAddress | None) -> SMTPClient | None:
        """
        Build an L{ESMTPSender} configured by the factory's settings; this
        sets L{currentProtocol} too.
        """
        if not claimConnection(self, addr):
            # Another address connected first (happy eyeballs).
            return cast(SMTPClient, refusedProtocol())
        settings = self._mailclient.settings
        connectHost = self._mailclient.connectHost
        policy = settings.tlsPolicyFor(connectHost)
        context = contextForPolicy(policy, connectHost)
        try:
            p = self.protocol(
                self.username,
                self.password,
                context,
                self.domain,
                self.nEmails * 2 + 2,
                # (ESMTPSender builds a verifying context from a host name
                # when it has no context: none at level "none".)
                hostname=None if policy.level is TLSLevel.NONE else policy.hostname,
            )
        except ValueError as e:
            finish(self, Failure(InvalidAddressError(str(e))))
            return None
        applySettings(p, settings, policy)
        return _configure(self, p)


def applySettings(p: ESMTPClient, settings: ClientSettings, policy: TLSPolicy) -> None:
    """
    Give an ESMTP client the options of C{settings} and the TLS policy
    C{policy} (whose context the client was built with).
    """
    p.heloFallback = settings.heloFallback
    p.requireAuthentication = settings.requireAuthentication
    # TLS is required when the caller said so, or gave a policy that
    # requires it.  (A level chosen as "verify" because authentication is
    # required leaves the flag alone: without TLS the credentials are
    # refused, with the clearer AUTHRequiredError.)
    explicit = settings.tlsPolicy is not None and settings.tlsPolicy.level.required
    p.requireTransportSecurity = settings.requireTransportSecurity or explicit
    p.allowCleartextAuthentication = settings.allowCleartextAuthentication
    p.pipelining = settings.pipelining
    p.chunking = settings.chunking
    if settings.mailOptions is not None:
        p.mailOptions = settings.mailOptions
    if settings.authenticators is not None:
        p.authenticators = list(settings.authenticators)
    p._mailclient.tlsPolicy = policy


__all__ = [
    "SenderMixin", "SMTPSender", "SMTPSenderFactory", "ESMTPSender",
    "ESMTPSenderFactory", "finish",
]
