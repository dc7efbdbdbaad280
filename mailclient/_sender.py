"""
The sender protocols and factories: one message, one Deferred.

Same constructors, attributes and results as Twisted's.  Fixed: an outcome
reported after the Deferred fired is ignored instead of raising
C{AttributeError} or C{AlreadyCalledError}; retries wait with exponential
backoff instead of reconnecting at once, and are not attempted when the
message file cannot be rewound; C{ESMTPSenderFactory} verifies the server's
certificate for the host it connects to even when no C{hostname} is given.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Type, Union

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailclient._address import Address, checkAddress, extractAddress
from mailclient._client import SUCCESS, SMTPClient
from mailclient._errors import InvalidAddressError, SMTPConnectError, SMTPDeliveryError
from mailclient._esmtp import ESMTPClient
from mailclient._host import getDNSName
from mailclient._options import MailOptions
from mailclient._sasl import (
    CramMD5ClientAuthenticator,
    LOGINAuthenticator,
    PLAINAuthenticator,
)
from mailclient._status import isPermanent, parseEnhancedStatus
from mailclient._tls import verifyingContext
from mailclient._timeouts import Timeouts

_log = Logger()


class SenderMixin:
    """
    Utility class for sending one email, with the envelope and message taken
    from the factory.  Use with L{SMTPSenderFactory} or
    L{ESMTPSenderFactory}.
    """

    done = 0
    factory: Any

    def getMailFrom(self) -> Optional[str]:
        if not self.done:
            self.done = 1
            return str(self.factory.fromEmail)
        return None

    def getMailTo(self) -> Any:
        return self.factory.toEmail

    def getMailData(self) -> Any:
        return self.factory.file

    def sendError(self, exc: Any) -> None:
        # Close the connection with the SMTP server.
        SMTPClient.sendError(self, exc)  # type: ignore[arg-type]
        # Do not retry if no retries are left, or if the error is neither
        # retryable nor a temporary (4xx) failure.
        retry = getattr(exc, "retry", False)
        temporary = getattr(exc, "isTemporary", False)
        if self.factory.retries >= 0 or (not retry and not temporary):
            self.factory._finish(Failure(exc))

    def sentMail(
        self, code: int, resp: bytes, numOk: int, addresses: Any, log: Any
    ) -> None:
        # Do not retry: the SMTP server answered the message.
        if code not in SUCCESS:
            errlog = []
            for addr, acode, aresp in addresses:
                if acode not in SUCCESS:
                    if isinstance(addr, str):
                        addr = addr.encode("utf-8")
                    errlog.append(bytes(addr) + b": %03d " % (acode,) + aresp)
            errlog.append(log.str())
            exc = SMTPDeliveryError(code, resp, b"\n".join(errlog), addresses)
            permanentRefusal = any(
                isPermanent(acode, parseEnhancedStatus(acode, aresp))
                for _, acode, aresp in addresses
            )
            if exc.isTemporary and not permanentRefusal and self.factory.retries < 0:
                # Nothing was accepted and the server said "later": let the
                # factory retry once this connection is closed.
                self.factory._temporaryFailure = exc
                return
            self.factory._finish(Failure(exc))
        else:
            self.factory._finish((numOk, addresses))


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

    def __get__(self, instance: Any, owner: Any) -> bytes:
        return getDNSName()


def _recipients(toEmail: Any) -> List[bytes]:
    if isinstance(toEmail, (str, bytes)):
        toEmail = [toEmail]
    result = []
    for address in toEmail:
        if not isinstance(address, bytes):
            address = str(address).encode("utf-8")
        # Refuse lists, junk and CR/LF now, where the caller can see it.
        text = address.decode("utf-8", "replace")
        checkAddress(extractAddress(text), utf8=True)
        result.append(address)
    return result


class SMTPSenderFactory(protocol.ClientFactory):
    """
    Utility factory for sending one email.

    @ivar currentProtocol: The protocol made by L{buildProtocol} for the
        current attempt, or L{None}.
    @ivar sendFinished: True once the message has been sent, or there has
        been an unrecoverable error, or the sending has been cancelled.
    @ivar retryDelay: Seconds before the first retry; each further retry
        waits twice as long, up to L{maxRetryDelay}.  (mailclient addition;
        Twisted reconnects at once.)
    @ivar reactor: The reactor for retry and reply timers (default: the
        global one).
    """

    domain: Any = _DefaultDomain()
    protocol: Type[SMTPClient] = SMTPSender
    #: No "Starting factory" / "Stopping factory" log lines for every
    #: message (Twisted's factories write both; set True to get them).
    noisy = False
    retryDelay: float = 1.0
    maxRetryDelay: float = 60.0
    reactor: Any = None

    def __init__(
        self,
        fromEmail: Any,
        toEmail: Any,
        file: Any,
        deferred: defer.Deferred,
        retries: int = 5,
        timeout: Optional[float] = None,
        *,
        timeouts: Optional[Timeouts] = None,
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
        @param timeouts: Per-phase limits (L{Timeouts}, RFC 5321 4.5.3.2),
            used when C{timeout} is L{None}.  (mailclient addition,
            keyword only)
        @raise InvalidAddressError: if an address is not exactly one valid
            address (CR/LF, a list in one string, trailing junk).
        """
        if not isinstance(retries, int):
            raise TypeError("retries must be an int, not %r" % (retries,))
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
        self.currentProtocol: Optional[SMTPClient] = None
        self.retries = -retries
        self.timeout = timeout
        self.timeouts = timeouts
        self._attempt = 0
        self._retryCall: Optional[IDelayedCall] = None
        self._connectHost: Optional[str] = None
        # The last temporary refusal, reported if retries run out.
        self._temporaryFailure: Optional[SMTPDeliveryError] = None

    def _removeDeferred(self, result: Any) -> Any:
        del self.result
        return result

    def _finish(self, result: Any) -> None:
        """
        Fire the result Deferred once; later outcomes are ignored.
        """
        self.sendFinished = True
        self.cancelRetry()
        d = getattr(self, "result", None)
        if d is None or d.called:
            return
        if isinstance(result, Failure):
            d.errback(result)
        else:
            d.callback(result)

    def cancelRetry(self) -> None:
        """
        Cancel a pending retry, if any.
        """
        call, self._retryCall = self._retryCall, None
        if call is not None and call.active():
            call.cancel()

    def startedConnecting(self, connector: Any) -> None:
        dest = connector.getDestination()
        self._connectHost = getattr(dest, "host", None)

    def clientConnectionFailed(self, connector: Any, err: Failure) -> None:
        self._processConnectionError(connector, err)

    def clientConnectionLost(self, connector: Any, err: Failure) -> None:
        self._processConnectionError(connector, err)

    def _processConnectionError(self, connector: Any, err: Failure) -> None:
        # A later error (such as a TLS failure) says more than "connection
        # closed cleanly".
        current = self.currentProtocol
        if current is not None and current._mailclient.failureReason is not None:
            err = current._mailclient.failureReason
        self.currentProtocol = None
        if self.sendFinished:
            return
        if self.retries < 0 and self._rewind():
            delay = min(self.retryDelay * (2 ** self._attempt), self.maxRetryDelay)
            self._attempt += 1
            self.retries += 1
            _log.info(
                "SMTP client retrying server in {delay}s. Retry: {retry}",
                delay=delay,
                retry=-self.retries + 1,
            )
            self._retryCall = self._getReactor().callLater(
                delay, self._retry, connector
            )
            return
        if self._temporaryFailure is not None:
            self._finish(Failure(self._temporaryFailure))
            return
        exn = SMTPConnectError(
            -1, "Unable to connect to SMTP server: " + str(err.value)
        )
        exn.__cause__ = err.value
        self._finish(Failure(exn))

    def _retry(self, connector: Any) -> None:
        self._retryCall = None
        if not self.sendFinished:
            connector.connect()

    def _rewind(self) -> bool:
        try:
            self.file.seek(0, 0)
        except Exception:
            _log.info("SMTP client cannot retry: the message file cannot be rewound")
            return False
        return True

    def _getReactor(self) -> Any:
        if self.reactor is None:
            from twisted.internet import reactor

            return reactor
        return self.reactor

    def buildProtocol(self, addr: Any) -> Optional[SMTPClient]:
        try:
            p = self.protocol(self.domain, self.nEmails * 2 + 2)  # type: ignore[call-arg]
        except ValueError as e:
            self._finish(Failure(InvalidAddressError(str(e))))
            return None
        return self._configure(p)

    def _configure(self, p: SMTPClient) -> SMTPClient:
        p.factory = self
        p.timeout = self.timeout
        if self.timeouts is not None:
            p.timeouts = self.timeouts
        if self.reactor is not None:
            # Reply timeouts run on the factory's reactor, like its retries.
            p.callLater = self.reactor.callLater  # type: ignore[method-assign]
        self.currentProtocol = p
        return p

    def _removeProtocol(self, result: Any) -> Any:
        self.currentProtocol = None
        return result


class ESMTPSender(SenderMixin, ESMTPClient):
    """
    ESMTP protocol that sends a single email, authenticating with CRAM-MD5,
    LOGIN or PLAIN (in that order of preference).
    """

    requireAuthentication = True
    requireTransportSecurity = True

    def __init__(
        self, username: Any, secret: Any, contextFactory: Any = None, *args: Any, **kw: Any
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

    def _getContextFactory(self) -> Any:
        if self.context is not None:
            return self.context
        if self._hostname is None:
            return None
        return verifyingContext(self._hostname)


class ESMTPSenderFactory(SMTPSenderFactory):
    """
    Utility factory for sending one email over ESMTP, with TLS and
    authentication required by default.

    When no C{contextFactory} is given, the server's certificate is verified
    for C{hostname}, or, when that is not given either, for the host name
    the factory was asked to connect to.
    """

    protocol = ESMTPSender

    def __init__(
        self,
        username: Any,
        password: Any,
        fromEmail: Any,
        toEmail: Any,
        file: Any,
        deferred: defer.Deferred,
        retries: int = 5,
        timeout: Optional[float] = None,
        contextFactory: Any = None,
        heloFallback: bool = False,
        requireAuthentication: bool = True,
        requireTransportSecurity: bool = True,
        hostname: Optional[Union[str, bytes]] = None,
        *,
        allowCleartextAuthentication: bool = False,
        authenticators: Optional[Sequence[Any]] = None,
        tls: bool = True,
        pipelining: bool = True,
        chunking: bool = True,
        mailOptions: Optional[MailOptions] = None,
        timeouts: Optional[Timeouts] = None,
    ) -> None:
        """
        Arguments as Twisted's, plus (keyword only):

        @param allowCleartextAuthentication: allow credentials to be sent
            over an unencrypted connection to a remote host.
        @param authenticators: SASL authenticators to use instead of the
            default CRAM-MD5, LOGIN, PLAIN (for example an
            L{XOAUTH2Authenticator}).
        @param tls: C{False} never uses TLS, even when the server offers it
            (for servers with broken TLS on trusted networks).
        @param pipelining: C{False} never pipelines commands, even when the
            server offers PIPELINING.
        @param chunking: C{False} never sends the body with BDAT, even when
            the server offers CHUNKING.
        @param mailOptions: DSN, 8-bit and binary options for the message
            (L{MailOptions}).
        @param timeouts: Per-phase limits (L{Timeouts}), used when
            C{timeout} is L{None}.
        """
        SMTPSenderFactory.__init__(
            self, fromEmail, toEmail, file, deferred, retries, timeout,
            timeouts=timeouts,
        )
        self.username = username
        self.password = password
        self._contextFactory = contextFactory
        self._heloFallback = heloFallback
        self._requireAuthentication = requireAuthentication
        self._requireTransportSecurity = requireTransportSecurity
        self._hostname = hostname
        self._allowCleartextAuthentication = allowCleartextAuthentication
        self._authenticators = list(authenticators) if authenticators else None
        self._tls = tls
        self._pipelining = pipelining
        self._chunking = chunking
        self.mailOptions = mailOptions

    def buildProtocol(self, addr: Any) -> Optional[SMTPClient]:
        """
        Build an L{ESMTPSender} configured as given to L{__init__}; this sets
        L{currentProtocol} too.
        """
        hostname = (self._hostname or self._connectHost) if self._tls else None
        try:
            p = self.protocol(  # type: ignore[call-arg]
                self.username,
                self.password,
                self._contextFactory if self._tls else None,
                self.domain,
                self.nEmails * 2 + 2,
                hostname=hostname,
            )
        except ValueError as e:
            self._finish(Failure(InvalidAddressError(str(e))))
            return None
        p.heloFallback = self._heloFallback
        p.requireAuthentication = self._requireAuthentication
        p.requireTransportSecurity = self._requireTransportSecurity
        p.allowCleartextAuthentication = self._allowCleartextAuthentication
        p.pipelining = self._pipelining
        p.chunking = self._chunking
        if self.mailOptions is not None:
            p.mailOptions = self.mailOptions
        if self._authenticators is not None:
            p.authenticators = list(self._authenticators)
        return self._configure(p)

