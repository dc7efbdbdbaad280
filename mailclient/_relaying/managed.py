"""
Managed relayers: relayers that report each message's outcome to an attempt
manager (L{IAttemptManager}), and the factories that make them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Mapping, Sequence

from twisted.internet import protocol
from twisted.internet.interfaces import IAddress, IConnector
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.python.util import LineLog
from zope.interface import implementer

from mailclient._protocol.client import SUCCESS
from mailclient._protocol.connect import (
    IAttemptAware,
    claimConnection,
    failedThrough,
    lostThrough,
    refusedProtocol,
)
from mailclient._protocol.esmtp import ESMTPClient, tlsRecordOf
from mailclient._protocol.tls import contextForPolicy
from mailclient._relaying.bounce import DeliveryFailure, statusFromReply
from mailclient._relaying.relayer import (
    ESMTPRelayer,
    MessagePath,
    RelayerMixin,
    SMTPRelayer,
    dropCurrent,
)
from mailclient._wire.errors import (
    AUTHDeclinedError,
    AuthenticationError,
    CannotSendError,
    InvalidAddressError,
    SMTPClientError,
    TLSError,
    TLSRequiredError,
)
from mailclient._wire.host import getDNSName
from mailclient._wire.mtasts import STSPolicy
from mailclient._wire.options import MailOptions
from mailclient._wire.queuestate import recipientDomainOf
from mailclient._wire.text import displayText
from mailclient._wire.tlspolicy import TLSLevel, TLSPolicy, TLSRecord
from mailclient._wire.types import RecipientResult
from mailclient.interfaces import IAttemptManager, IDeliveryProgress

if TYPE_CHECKING:
    _RelayerBase = RelayerMixin
else:
    _RelayerBase = object


def recipientDomain(recipient: str | bytes) -> str | None:
    """
    Return the lower-cased domain of an envelope recipient, or L{None} if it
    has none (so the message cannot be routed).
    """
    # Our own parser (the queues route by it too): email.utils.parseaddr
    # refuses domain literals such as user@[192.0.2.1] since Python 3.13.
    return recipientDomainOf(recipient)


class ManagedRelayerMixin(_RelayerBase):
    """
    A relayer that reports the outcome of each message to an attempt
    manager (L{IAttemptManager}): C{notifySuccess} (accepted),
    C{notifyFailure} (refused for good: the manager returns it to its
    sender), C{notifyDone} (the connection is gone; unsent messages wait for
    another attempt).

    A 4xx reply is not a failure: the message stays queued.  An attempt
    manager that also provides L{IDeliveryProgress} (mailclient's) is told
    when each message is about to be sent, refused for now, or gone.

    Works on its own, as Twisted's: given a manager, C{messages}, C{names}
    and a C{factory}, C{sentMail} and C{connectionLost} report to the
    manager.

    @ivar manager: The attempt manager.
    @ivar timeout: Seconds to wait for each server reply (RFC 5321 section
        4.5.3.2 suggests up to ten minutes for the reply to C{DATA}).
    """

    timeout: float | None = 600
    # Twisted's protocol attribute, as Twisted declares it.
    factory: Any = None

    def __init__(self, manager: IAttemptManager) -> None:
        self.manager = manager

    def getMailFrom(self) -> object | None:
        """
        Return the sender of the next message, telling the manager that
        the message is being sent.
        """
        sender = super().getMailFrom()
        if sender is not None:
            progress = IDeliveryProgress(self.manager, None)
            if progress is not None:
                progress.notifySending(self.factory, self.names[0])
        return sender

    def sentMail(
        self, code: int, resp: bytes | None, numOk: int, addresses: list[RecipientResult],
        log: LineLog,
    ) -> None:
        """
        Report the server's answer to the current message to the manager.
        """
        message = self.names[0]
        _noteTLS(self)
        if code in SUCCESS:
            dropCurrent(self)
            self.manager.notifySuccess(self.factory, message)
            return
        for _, rcode, rresp in addresses or ():
            if rcode not in SUCCESS:
                code, resp = rcode, rresp
        if 500 <= code < 600:
            _recordFailure(self, message, statusFromReply(code, resp), _replyText(code, resp))
            dropCurrent(self)
            self.manager.notifyFailure(self.factory, message)
            return
        if code > 0:
            _recordFailure(self, message, statusFromReply(code, resp), _replyText(code, resp))
        dropCurrent(self)
        progress = IDeliveryProgress(self.manager, None)
        if progress is not None:
            progress.notifyTemporaryFailure(self.factory, message)

    def sendError(self, exc: Exception) -> None:
        """
        An address that can never be sent (see L{quoteaddr}), or a message
        this server cannot take (L{CannotSendError}: over its C{SIZE}
        limit, 8-bit data without C{8BITMIME}), fails its message for good;
        any other error leaves it queued.
        """
        _noteTLS(self, exc)
        if isinstance(exc, CannotSendError) and self.names:
            message = self.names[0]
            reason = displayText(exc.resp).strip() or "the server cannot take this message"
            _recordFailure(self, message, exc.status, None, reason)
            dropCurrent(self)
            self.manager.notifyFailure(self.factory, message)
        elif isinstance(exc, InvalidAddressError) and self.names:
            message = self.names[0]
            try:
                self.quoteAddress(self.messages[0][0])
            except InvalidAddressError:
                status = "5.1.7"
            else:
                status = "5.1.3"
            reason = (str(exc).splitlines() or ["invalid address"])[0]
            _recordFailure(self, message, status, None, reason)
            dropCurrent(self)
            self.manager.notifyFailure(self.factory, message)
        elif isinstance(exc, SMTPClientError) and exc.code >= 400:
            # The server refused the session (a declined login, a refused
            # EHLO): every message of the connection waits again, with the
            # server's reply as the reason (deferred, as Postfix does, even
            # for a 5xx: it is about the session, not the message).
            status = statusFromReply(exc.code, exc.resp)
            if isinstance(exc, (AUTHDeclinedError, AuthenticationError)) and status.endswith(".0.0"):
                status = "5.7.8"  # RFC 4954's code for declined credentials
            status = "4" + status[1:]
            for index, message in enumerate(self.names):
                _recordFailure(self, message, status, _replyText(exc.code, exc.resp),
                               index=index)
        super().sendError(exc)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Tell the manager that no more messages will be sent.
        """
        try:
            parent = getattr(super(), "connectionLost", None)
            if parent is not None:
                parent(reason)
        finally:
            self.manager.notifyDone(self.factory)


def _noteTLS(relayer: ManagedRelayerMixin, exc: Exception | None = None) -> None:
    """
    Keep the TLS C{relayer}'s connection got (a L{TLSRecord}) on its
    factory, for the report of each delivery; C{exc}, when TLS failed,
    says why.
    """
    factory: SMTPManagedRelayerFactory | None = relayer.factory
    if factory is None or not hasattr(factory, "tlsRecord"):
        return
    first = factory.tlsRecord is None
    policy = getattr(factory, "tlsPolicy", None)
    level = policy.level if policy is not None else TLSLevel.NONE
    hostname = policy.hostname if policy is not None else None
    source = {"source": policy.source} if policy is not None else {}
    if isinstance(exc, TLSRequiredError):
        factory.tlsRecord = TLSRecord(
            level, hostname=hostname, reason=displayText(exc.resp).strip() or None, **source)
    elif isinstance(exc, TLSError):
        # The handshake failed (or STARTTLS was refused): no TLS to read
        # anything from (but what the check found, when it was ours).
        reason = displayText(exc.resp).strip() or "TLS failed"
        found = tlsRecordOf(relayer).reason if isinstance(relayer, ESMTPClient) else None
        if found and found not in reason:
            reason = "%s (%s)" % (reason, found)
        factory.tlsRecord = TLSRecord(
            level, verified=False, hostname=hostname, reason=reason, **source)
    elif isinstance(relayer, ESMTPClient):
        if exc is None or relayer._tlsMode:
            factory.tlsRecord = tlsRecordOf(relayer)
    elif exc is None:
        factory.tlsRecord = TLSRecord(TLSLevel.NONE)
    observer = getattr(factory, "sessionObserver", None)
    if first and factory.tlsRecord is not None and observer is not None:
        try:
            observer(factory)
        except Exception:
            from twisted.logger import Logger

            Logger().failure("TLS session observer failed")


def _replyText(code: int, resp: bytes | None) -> bytes:
    return b"%03d %s" % (code, resp or b"")


def _recordFailure(
    relayer: ManagedRelayerMixin, message: str, status: str, diagnostic: bytes | None,
    reason: str = "", index: int = 0,
) -> None:
    """
    Keep why C{message} (the relayer's current one, or the one at C{index}
    of those it holds) was refused on the relayer's factory, for the
    manager's bounce or delay report.
    """
    failures = getattr(relayer.factory, "failures", None)
    if failures is not None:
        failures[message] = DeliveryFailure(
            relayer.messages[index][1], status, diagnostic, reason=reason
        )


def _defaultIdentity(args: tuple[object, ...], kw: Mapping[str, object]) -> tuple[object, ...]:
    # Twisted's managers pass no client arguments by default, which makes
    # SMTPClient.__init__ fail; use this host's name as the identity.
    if args or "identity" in kw:
        return args
    return (getDNSName(),)


class SMTPManagedRelayer(ManagedRelayerMixin, SMTPRelayer):
    """
    An SMTP client that relays a set of queued messages and keeps an attempt
    manager informed.

    @ivar factory: The factory that created this relayer.
    """

    def __init__(self, messages: Sequence[MessagePath], manager: IAttemptManager, *args: Any, **kw: Any) -> None:
        """
        @param messages: The base paths of the messages to relay.
        @param manager: The attempt manager.
        @param args: Positional arguments for L{SMTPClient.__init__}
            (C{identity}, C{logsize}); the identity defaults to this host's
            name.
        @param kw: Keyword arguments for L{SMTPClient.__init__}.
        """
        ManagedRelayerMixin.__init__(self, manager)
        SMTPRelayer.__init__(self, messages, *_defaultIdentity(args, kw), **kw)


class ESMTPManagedRelayer(ManagedRelayerMixin, ESMTPRelayer):
    """
    An ESMTP client that relays a set of queued messages and keeps an
    attempt manager informed.
    """

    def __init__(self, messages: Sequence[MessagePath], manager: IAttemptManager, *args: Any, **kw: Any) -> None:
        """
        @param messages: The base paths of the messages to relay.
        @param manager: The attempt manager.
        @param args: Positional arguments for L{ESMTPClient.__init__}
            (C{secret}, C{contextFactory}, C{identity}, C{logsize}).
        @param kw: Keyword arguments for L{ESMTPClient.__init__}.
        """
        ManagedRelayerMixin.__init__(self, manager)
        ESMTPRelayer.__init__(self, messages, *args, **kw)

    def getMailOptions(self) -> MailOptions:
        """
        The options of the next message: REQUIRETLS when the messages of
        this relayer asked for it (their factory's C{requireTLS}).
        """
        options = ESMTPRelayer.getMailOptions(self)
        if getattr(self.factory, "requireTLS", False) and not options.requireTLS:
            options = replace(options, requireTLS=True)
        return options


@implementer(IAttemptAware)
class SMTPManagedRelayerFactory(protocol.ClientFactory):
    """
    Makes an L{SMTPManagedRelayer} for a set of messages.

    @ivar messages: The base paths of the messages to relay.
    @ivar manager: The attempt manager.
    @ivar pArgs: Positional arguments for the relayer's client.
    @ivar pKwArgs: Keyword arguments for the relayer's client.
    @ivar failures: Why messages were refused (for good, or for now), by
        base path, for the manager's bounce.  (mailclient addition)
    @ivar nextHop: The recipient domain of the messages, or L{None} for a
        smart host (set by the relaying manager).  (mailclient addition)
    @ivar tlsPolicy: The L{TLSPolicy} of the exchange being tried (set by
        the relaying manager for each one), or L{None}: the context given,
        as Twisted does.  (mailclient addition)
    @ivar tlsRecord: The L{TLSRecord} of the last connection, once it
        answered a message or failed.  (mailclient addition)
    @ivar peerAddress: The address of the last connection made.
        (mailclient addition)
    @ivar connectionError: Why the last connection could not be made.
        (mailclient addition)
    @ivar requireTLS: The messages asked for REQUIRETLS (RFC 8689): set by
        the relaying manager.  (mailclient addition)
    @ivar stsPolicy: The MTA-STS policy of C{nextHop}, when it has one
        (set by the relaying manager).  (mailclient addition)
    @ivar sessionObserver: Called with the factory once per connection,
        when its TLS record is known (the relaying manager counts sessions
        for TLS-RPT).  (mailclient addition)
    """

    protocol: Callable[..., ManagedRelayerMixin] = SMTPManagedRelayer
    requireTLS: bool = False
    stsPolicy: STSPolicy | None = None
    sessionObserver: Callable[[SMTPManagedRelayerFactory], object] | None = None
    nextHop: str | None = None
    tlsPolicy: TLSPolicy | None = None
    tlsRecord: TLSRecord | None = None
    peerAddress: str | None = None
    connectionError: str | None = None

    def __init__(
        self, messages: list[str], manager: IAttemptManager, *args: Any, **kw: Any
    ) -> None:
        """
        @param messages: The base paths of the messages to relay.
        @param manager: The attempt manager.
        @param args: Positional arguments for L{SMTPClient.__init__}.
        @param kw: Keyword arguments for L{SMTPClient.__init__}.
        """
        self.messages = messages
        self.manager = manager
        self.pArgs = args
        self.pKwArgs = kw
        self.failures: dict[str, DeliveryFailure] = {}

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        """
        Make a relayer for the messages.
        """
        if not claimConnection(self, addr):
            # Another address of the exchange connected first.
            return refusedProtocol()
        _noteConnection(self, addr)
        relayer = self.protocol(self.messages, self.manager, *self.pArgs, **self.pKwArgs)
        relayer.factory = self
        return relayer

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        """
        Tell the attempt manager that the server could not be reached (at
        any of its addresses).
        """
        if failedThrough(self, connector, reason) is None:
            # One address failed; others are still being tried.
            return
        self.connectionError = reason.getErrorMessage()
        self.manager.notifyNoConnection(self)
        self.manager.notifyDone(self)

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        """
        The connection is over (the relayer tells the attempt manager).
        """
        lostThrough(self, connector, reason)


def _noteConnection(factory: SMTPManagedRelayerFactory, addr: IAddress | None) -> None:
    """
    A connection was made: forget what the last one got.
    """
    factory.peerAddress = getattr(addr, "host", None)
    factory.tlsRecord = None
    factory.connectionError = None


class ESMTPManagedRelayerFactory(SMTPManagedRelayerFactory):
    """
    Makes an L{ESMTPManagedRelayer} for a set of messages.

    @ivar secret: L{None}, or a callable taking the server's address and
        returning the password to authenticate with.
    @ivar contextFactory: The TLS context factory for C{STARTTLS}, or
        L{None}.
    """

    protocol: Callable[..., ESMTPManagedRelayer] = ESMTPManagedRelayer

    def __init__(
        self,
        messages: list[str],
        manager: IAttemptManager,
        secret: Callable[[IAddress | None], bytes | str | None] | None = None,
        contextFactory: object = None,
        *args: Any, **kw: Any,
    ) -> None:
        """
        @param messages: The base paths of the messages to relay.
        @param manager: The attempt manager.
        @param secret: See L{secret}.
        @param contextFactory: See L{contextFactory}.
        @param args: Further positional arguments for
            L{ESMTPClient.__init__} (C{identity}, C{logsize}); the identity
            defaults to this host's name.
        @param kw: Keyword arguments for L{ESMTPClient.__init__}.
        """
        self.secret = secret
        self.contextFactory = contextFactory
        SMTPManagedRelayerFactory.__init__(self, messages, manager, *args, **kw)

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        """
        Make a relayer for the messages, with the TLS policy of the exchange
        (L{tlsPolicy}) when the manager gave one: its context (SNI and
        certificate check for the exchange's name), whether TLS is
        required.
        """
        if not claimConnection(self, addr):
            # Another address of the exchange connected first.
            return refusedProtocol()
        _noteConnection(self, addr)
        secret = self.secret and self.secret(addr)
        policy = self.tlsPolicy
        context = self.contextFactory
        if policy is not None:
            context = contextForPolicy(policy, policy.hostname)
        relayer = self.protocol(
            self.messages,
            self.manager,
            secret,
            context,
            *_defaultIdentity(self.pArgs, self.pKwArgs),
            **self.pKwArgs,
        )
        relayer.factory = self
        if policy is not None:
            applyPolicy(relayer, policy)
        return relayer


def applyPolicy(relayer: ESMTPClient, policy: TLSPolicy) -> None:
    """
    Make an ESMTP relayer follow C{policy}: TLS required at levels
    C{encrypt} and C{verify} (no fallback to HELO then), never at level
    C{none}, and the policy recorded for its L{TLSRecord}.
    """
    relayer._mailclient.tlsPolicy = policy
    if policy.level.required:
        relayer.requireTransportSecurity = True
    if policy.level is TLSLevel.NONE:
        relayer.opportunisticTLS = False


