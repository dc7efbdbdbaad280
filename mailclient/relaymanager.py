"""
Relaying a queue of messages: the drop-in for C{twisted.mail.relaymanager}.

L{SmartHostSMTPRelayingManager} watches a L{Queue} (call C{checkState}
periodically, for example with L{RelayStateHelper}).  It groups waiting
messages by destination domain, finds each domain's mail exchanges with an
L{MXCalculator} (or sends everything to a configured smart host), and for
each group starts a managed relayer, which sends the messages over one
connection and reports each outcome:

  - accepted (final reply to C{DATA} is 2xx): removed from the queue;
  - refused for good (5xx): returned to the sender as an RFC 3464 delivery
    status notification (queued like any other message), then removed;
  - refused for now (4xx), or no exchange could be reached, or the
    connection failed: left in the queue, and retried after a delay that
    grows with each failure (L{SmartHostSMTPRelayingManager.backoffDelay},
    C{backoffFactor}, C{maxBackoffDelay}); once it has been queued longer
    than C{maxQueueLifetime}, returned to the sender instead (4.4.7).

A message leaves the queue only after the server's reply (or once it is
returned), so if the process dies the message is still queued when it
restarts.  When an exchange cannot be reached, or its session fails before
any message was answered, the next exchange (by MX preference) is tried.

Fixed against Twisted: the module runs on Python 3 (Twisted's manager fails
on C{dict_keys.reverse()}, C{iteritems} and lazy C{map}s); a 4xx reply no
longer bounces the message; the bounce is a real DSN; unreachable exchanges
fail over; deferred messages are retried with growing delays;
C{maxMessagesPerConnection} is honoured; relayers time out.
"""

from __future__ import annotations

import os
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    Type,
    Union,
    cast,
)

from twisted.application import internet
from twisted.internet import defer, protocol
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.components import registerAdapter
from twisted.python.failure import Failure
from zope.interface import implementer

from mailclient._wire.address import extractAddress
from mailclient._relaying.bounce import DeliveryFailure, generateBounce, statusFromReply
from mailclient._protocol.client import SUCCESS
from mailclient._wire.errors import CannotSendError, InvalidAddressError
from mailclient._wire.host import getDNSName
from mailclient._relaying.mx import (
    CanonicalNameChainTooLong,
    CanonicalNameLoop,
    MXCalculator,
    UndeliverableDomain,
    normalName,
)
from mailclient._relaying.queue import (
    EnvelopeError,
    Queue,
    isNullSender,
    loadEnvelope,
    readEnvelope,
    readEnvelopeData,
)
from mailclient.interfaces import (
    IAttemptManager,
    IDeliveryProgress,
    IRelayManagerHooks,
)
from mailclient.relay import ESMTPRelayer, RelayerMixin, SMTPRelayer, dropCurrent

__all__ = [
    "ManagedRelayerMixin",
    "SMTPManagedRelayer",
    "ESMTPManagedRelayer",
    "SMTPManagedRelayerFactory",
    "ESMTPManagedRelayerFactory",
    "Queue",
    "SmartHostSMTPRelayingManager",
    "SmartHostESMTPRelayingManager",
    "RelayStateHelper",
    "MXCalculator",
    "CanonicalNameLoop",
    "CanonicalNameChainTooLong",
    "UndeliverableDomain",
]

# Pickled (inside a relaying manager) under this public path, which does
# not move when the private modules do.
Queue.__module__ = __name__

_log = Logger()

Exchange = Tuple[str, int]
SmartHost = Union[str, Tuple[str, int], Sequence[Union[str, Tuple[str, int]]]]

if TYPE_CHECKING:
    _RelayerBase = RelayerMixin
else:
    _RelayerBase = object


def _text(value: Union[str, bytes]) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def recipientDomain(recipient: Union[str, bytes]) -> Optional[str]:
    """
    Return the lower-cased domain of an envelope recipient, or L{None} if it
    has none (so the message cannot be routed).
    """
    # Our own parser: email.utils.parseaddr refuses domain literals such as
    # user@[192.0.2.1] since Python 3.13.
    try:
        address = extractAddress(_text(recipient))
    except InvalidAddressError:
        return None
    local, at, domain = address.rpartition("@")
    if not (at and local and domain):
        return None
    return domain.lower()


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

    timeout: Optional[float] = 600
    factory: Any = None

    def __init__(self, manager: Any) -> None:
        self.manager = manager

    def getMailFrom(self) -> Optional[Any]:
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
        self, code: int, resp: Optional[bytes], numOk: int, addresses: Any, log: Any
    ) -> None:
        """
        Report the server's answer to the current message to the manager.
        """
        message = self.names[0]
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
        if isinstance(exc, CannotSendError) and self.names:
            message = self.names[0]
            reason = _text(exc.resp).strip() or "the server cannot take this message"
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


def _replyText(code: int, resp: Optional[bytes]) -> bytes:
    return b"%03d %s" % (code, resp or b"")


def _recordFailure(
    relayer: Any, message: str, status: str, diagnostic: Optional[bytes], reason: str = ""
) -> None:
    """
    Keep why C{message} was refused on the relayer's factory, for the
    manager's bounce.
    """
    failures = getattr(relayer.factory, "failures", None)
    if failures is not None:
        failures[message] = DeliveryFailure(
            relayer.messages[0][1], status, diagnostic, reason=reason
        )


def _defaultIdentity(args: Tuple[Any, ...], kw: Dict[str, Any]) -> Tuple[Any, ...]:
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

    def __init__(self, messages: Sequence[Any], manager: Any, *args: Any, **kw: Any) -> None:
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

    def __init__(self, messages: Sequence[Any], manager: Any, *args: Any, **kw: Any) -> None:
        """
        @param messages: The base paths of the messages to relay.
        @param manager: The attempt manager.
        @param args: Positional arguments for L{ESMTPClient.__init__}
            (C{secret}, C{contextFactory}, C{identity}, C{logsize}).
        @param kw: Keyword arguments for L{ESMTPClient.__init__}.
        """
        ManagedRelayerMixin.__init__(self, manager)
        ESMTPRelayer.__init__(self, messages, *args, **kw)


class SMTPManagedRelayerFactory(protocol.ClientFactory):
    """
    Makes an L{SMTPManagedRelayer} for a set of messages.

    @ivar messages: The base paths of the messages to relay.
    @ivar manager: The attempt manager.
    @ivar pArgs: Positional arguments for the relayer's client.
    @ivar pKwArgs: Keyword arguments for the relayer's client.
    @ivar failures: Why messages were refused (for good, or for now), by
        base path, for the manager's bounce.  (mailclient addition)
    """

    protocol: Type[Any] = SMTPManagedRelayer

    def __init__(self, messages: List[str], manager: Any, *args: Any, **kw: Any) -> None:
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
        self.failures: Dict[str, DeliveryFailure] = {}

    def buildProtocol(self, addr: Any) -> Any:
        """
        Make a relayer for the messages.
        """
        relayer = self.protocol(self.messages, self.manager, *self.pArgs, **self.pKwArgs)
        relayer.factory = self
        return relayer

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        """
        Tell the attempt manager that the server could not be reached.
        """
        self.manager.notifyNoConnection(self)
        self.manager.notifyDone(self)


class ESMTPManagedRelayerFactory(SMTPManagedRelayerFactory):
    """
    Makes an L{ESMTPManagedRelayer} for a set of messages.

    @ivar secret: L{None}, or a callable taking the server's address and
        returning the password to authenticate with.
    @ivar contextFactory: The TLS context factory for C{STARTTLS}, or
        L{None}.
    """

    protocol = ESMTPManagedRelayer

    def __init__(
        self,
        messages: List[str],
        manager: Any,
        secret: Optional[Callable[[Any], Any]] = None,
        contextFactory: Any = None,
        *args: Any,
        **kw: Any,
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

    def buildProtocol(self, addr: Any) -> Any:
        """
        Make a relayer for the messages.
        """
        secret = self.secret and self.secret(addr)
        relayer = self.protocol(
            self.messages,
            self.manager,
            secret,
            self.contextFactory,
            *_defaultIdentity(self.pArgs, self.pKwArgs),
            **self.pKwArgs,
        )
        relayer.factory = self
        return relayer


@implementer(IAttemptManager, IDeliveryProgress)
class _AttemptManager:
    """
    Follows one attempt to relay a set of messages (one factory): tries the
    exchanges in turn and updates the queue as outcomes are reported.

    What it needs of its manager beyond Twisted's C{managed} and C{queue}
    it asks through L{IRelayManagerHooks}: mailclient's managers provide
    it; with any other manager it does what Twisted's attempt manager does.

    @ivar manager: The relaying manager.
    @ivar exchanges: The C{(host, port)} still to try after the current one.
    @ivar exchange: The C{(host, port)} being tried.
    """

    def __init__(self, manager: Any, noisy: bool = True, reactor: Any = None) -> None:
        self.manager = manager
        self.noisy = noisy
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self._hooks: Any = IRelayManagerHooks(manager, None) or _TwistedManagerHooks(
            manager, reactor)
        self._completionDeferreds: Optional[List["defer.Deferred[None]"]] = []
        self.exchanges: List[Exchange] = []
        self.exchange: Optional[Exchange] = None
        # Why messages were refused for now, for a bounce if they expire.
        self._temporary: Dict[str, DeliveryFailure] = {}
        # The messages the current exchange was asked to take.
        self._sending: Set[str] = set()
        # Whether the current exchange answered any message, and whether
        # the next one should be tried when this connection is done.
        self._answered = False
        self._failingOver = False

    def getCompletionDeferred(self) -> "defer.Deferred[None]":
        """
        Return a Deferred that fires when the attempt is over.
        """
        d: defer.Deferred[None] = defer.Deferred()
        if self._completionDeferreds is None:
            d.callback(None)
        else:
            self._completionDeferreds.append(d)
        return d

    def start(self, exchanges: Sequence[Exchange], relay: Any) -> None:
        """
        Try the exchanges, in order, until one can be talked to.
        """
        self.exchanges = list(exchanges)
        self._connectNext(relay)

    def _connectNext(self, relay: Any) -> None:
        self.exchange = self.exchanges.pop(0)
        self._answered = False
        self._sending = set()
        pending = self.manager.managed.get(relay, [])
        relay.messages = [self.manager.queue.getPath(m) for m in pending]
        host, port = self.exchange
        d = self._hooks.connectExchange(host, port, relay)

        def unreachable(failure: Failure) -> None:
            _log.warn(
                "Cannot connect to {host}: {error}",
                host=host,
                error=failure.getErrorMessage(),
            )
            self.notifyNoConnection(relay)
            self.notifyDone(relay)

        d.addErrback(unreachable)

    def _finish(self, relay: Any, message: str) -> None:
        name = os.path.basename(message)
        pending = self.manager.managed.get(relay)
        if pending is not None and name in pending:
            pending.remove(name)
        self._hooks.deliveryDone(name)

    def notifySuccess(self, relay: Any, message: str) -> None:
        """
        The message was accepted: remove it from the queue.
        """
        if self.noisy:
            _log.info("success sending {message}, removing from queue", message=message)
        self._answered = True
        if self.exchange is not None:
            self._hooks.exchangeWorked(self.exchange[0])
        self._finish(relay, message)

    def notifyFailure(self, relay: Any, message: str) -> None:
        """
        The message was refused for good: return it to its sender and remove
        it from the queue.
        """
        if self.noisy:
            _log.info("could not relay {message}", message=message)
        self._answered = True
        failure = getattr(relay, "failures", {}).pop(message, None)
        if failure is None:
            failure = DeliveryFailure("", "5.0.0", reason="delivery failed")
        remoteMTA = failure.remoteMTA or (self.exchange and self.exchange[0])
        if self._hooks.returnToSender(
            message, failure.status, failure.diagnostic, remoteMTA, failure.reason
        ):
            self._finish(relay, message)

    def notifySending(self, relay: Any, message: str) -> None:
        """
        The message is about to be sent.  (mailclient addition)
        """
        self._sending.add(os.path.basename(message))

    def notifyTemporaryFailure(self, relay: Any, message: str) -> None:
        """
        The message was refused for now: it will be tried again.
        (mailclient addition)
        """
        if self.noisy:
            _log.info("temporary failure relaying {message}", message=message)
        self._answered = True
        failure = getattr(relay, "failures", {}).pop(message, None)
        if failure is not None:
            name = os.path.basename(message)
            if failure.remoteMTA is None and self.exchange is not None:
                failure.remoteMTA = self.exchange[0]
            self._temporary[name] = failure

    def forget(self, relay: Any, message: str) -> None:
        """
        The message has left the queue by other means (its files are gone).
        (mailclient addition)
        """
        name = os.path.basename(message)
        pending = self.manager.managed.get(relay)
        if pending is not None and name in pending:
            pending.remove(name)
        self._hooks.forgetMessage(name)

    def notifyDone(self, relay: Any) -> None:
        """
        The connection is over.  If the exchange answered nothing and
        another is left, try it; otherwise put the messages left back to
        wait (deferred, if they were tried) and fire the completion
        Deferreds.
        """
        if self._completionDeferreds is None:
            return
        pending = self.manager.managed.get(relay)
        if pending and not self._answered and self.exchanges:
            # Nothing was answered: the session failed, not a message.
            if not self._failingOver and self.exchange is not None:
                self._hooks.exchangeFailed(self.exchange[0])
            self._failingOver = False
            self._connectNext(relay)
            return
        if pending:
            # Messages that were tried (refused for now, or the connection
            # was lost while they were sent) are deferred; those the session
            # never reached wait again at once.  If the session failed
            # before any message, they are all deferred.
            tried = [m for m in pending if m in self._sending or not self._sending]
            for message in pending:
                if message not in tried:
                    self.manager.queue.setWaiting(message)
            if self.noisy:
                _log.info("Deferring {messages}", messages=tried)
            host = self.exchange[0] if self.exchange is not None else "the server"
            failures = {
                m: self._temporary.get(m)
                or DeliveryFailure("", "4.4.2", None, host, "connection to %s lost" % (host,))
                for m in tried
            }
            self._hooks.deferMessages(tried, failures)
        self.manager.managed.pop(relay, None)
        notifications, self._completionDeferreds = self._completionDeferreds, None
        for d in notifications:
            d.callback(None)

    def notifyNoConnection(self, relay: Any) -> None:
        """
        The exchange could not be reached: mark it bad and, if another is
        left, try it when the connection attempt is done; otherwise defer the
        messages (they wait again, to be tried after the manager's
        C{retryDelay}).
        """
        pending = self.manager.managed.get(relay)
        if pending is None:
            _log.warn("notifyNoConnection passed unknown relay!")
            return
        if self.exchange is not None:
            self._hooks.exchangeFailed(self.exchange[0])
        if self.exchanges:
            self._failingOver = True
            return
        if self.noisy:
            _log.info("Backing off on delivery of {messages}", messages=pending)
        host = self.exchange[0] if self.exchange is not None else None
        reason = "cannot connect to %s" % (host,) if host else "cannot connect"
        failures = {
            m: self._temporary.get(m) or DeliveryFailure("", "4.4.1", None, host, reason)
            for m in pending
        }
        del self.manager.managed[relay]
        self._hooks.deferMessages(pending, failures)


@implementer(IRelayManagerHooks)
class _TwistedManagerHooks:
    """
    L{IRelayManagerHooks} for a manager with only Twisted's C{managed} and
    C{queue}: what Twisted's attempt manager does with it.
    """

    #: Twisted lets messages that could not be sent wait this long.
    backoff = 30

    def __init__(self, manager: Any, reactor: Any) -> None:
        self.manager = manager
        self.reactor = reactor

    def connectExchange(self, host: str, port: int, factory: Any) -> "defer.Deferred[Any]":
        return defer.maybeDeferred(self.reactor.connectTCP, host, port, factory)

    def deliveryDone(self, message: str) -> None:
        self.manager.queue.done(message)

    def deferMessages(self, messages: Sequence[str], failures: Mapping[str, Any]) -> None:
        def setWaiting(queue: Any, messages: Sequence[str]) -> None:
            for message in messages:
                queue.setWaiting(message)

        self.reactor.callLater(self.backoff, setWaiting, self.manager.queue, list(messages))

    def returnToSender(
        self, message: str, status: str, diagnostic: Optional[bytes] = None,
        remoteMTA: Optional[str] = None, reason: str = "",
    ) -> bool:
        return returnToSender(
            self.manager.queue, message, status, diagnostic, remoteMTA, reason,
            getDNSName().decode("ascii"),
        )

    def exchangeWorked(self, host: str) -> None:
        pass

    def exchangeFailed(self, host: str) -> None:
        pass

    def forgetMessage(self, message: str) -> None:
        pass


@implementer(IRelayManagerHooks)
class _ManagerHooks:
    """
    L{IRelayManagerHooks} of mailclient's managers.
    """

    def __init__(self, manager: "SmartHostSMTPRelayingManager") -> None:
        self.manager = manager

    def connectExchange(self, host: str, port: int, factory: Any) -> "defer.Deferred[Any]":
        manager = self.manager
        d = manager._resolveExchange(host)
        d.addCallback(manager._cbExchange, port, factory)
        return d

    def deliveryDone(self, message: str) -> None:
        self.manager._done(message)

    def deferMessages(self, messages: Sequence[str], failures: Mapping[str, Any]) -> None:
        self.manager._deferMessages(messages, failures)

    def returnToSender(
        self, message: str, status: str, diagnostic: Optional[bytes] = None,
        remoteMTA: Optional[str] = None, reason: str = "",
    ) -> bool:
        return self.manager._returnToSender(message, status, diagnostic, remoteMTA, reason)

    def exchangeWorked(self, host: str) -> None:
        self.manager._exchangeWorked(host)

    def exchangeFailed(self, host: str) -> None:
        self.manager._exchangeFailed(host)

    def forgetMessage(self, message: str) -> None:
        self.manager.queue.relayed.pop(message, None)


def _smartHosts(value: SmartHost, port: int) -> List[Exchange]:
    if isinstance(value, str):
        return [(value, port)]
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        return [(str(value[0]), value[1])]
    hosts: List[Exchange] = []
    for item in value:
        hosts.extend(_smartHosts(item, port))
    return hosts


class SmartHostSMTPRelayingManager:
    """
    Relays the messages of a L{Queue} over SMTP.

    Call L{checkState} periodically (see L{RelayStateHelper}).

    @ivar queue: The queue.
    @ivar maxConnections: The most connections open at once.
    @ivar maxMessagesPerConnection: The most messages sent over one
        connection.
    @ivar fArgs: Positional arguments for the relayer factory (after the
        messages and the attempt manager): for SMTP C{(identity,)}; for
        ESMTP C{(secret, contextFactory, identity)}.  The identity defaults
        to this host's name.
    @ivar fKwArgs: Keyword arguments for the relayer factory.
    @ivar factory: The relayer factory class.
    @ivar PORT: The port of mail exchanges.
    @ivar mxcalc: The L{MXCalculator}; made on first use (one made so is not
        pickled with the manager, but made again).
    @ivar managed: Each running relayer factory, mapped to the base names of
        the messages it has yet to relay.
    @ivar smartHost: L{None} to send to each domain's mail exchanges, or
        the C{(host, port)} list of smart hosts to send everything through,
        tried in order.  (mailclient addition)
    @ivar backoffDelay: Seconds to wait before a message that could not be
        delivered for now (4xx reply, no exchange reachable, connection
        lost, DNS failure) is tried again, after its first such failure.
    @ivar backoffFactor: What the delay is multiplied by after each further
        failure of the same message.  (mailclient addition)
    @ivar maxBackoffDelay: The longest delay between two attempts.
        (mailclient addition)
    @ivar maxQueueLifetime: Seconds after it was queued (the modification
        time of its C{-D} file) after which a message that fails for now is
        returned to its sender (status 4.4.7) instead of being deferred
        again; L{None}: retry for ever.  RFC 5321 section 4.5.4.1 asks for
        at least 4-5 days.  (mailclient addition)
    @ivar retries: For each deferred message (by base name), how many times
        in a row it failed for now, and the time (on the manager's clock)
        before which it is not tried again.  Pickled with the manager.
        (mailclient addition)
    @ivar reportingMTA: The host name bounces are reported from (default:
        this host's name).  (mailclient addition)
    """

    factory: Type[SMTPManagedRelayerFactory] = SMTPManagedRelayerFactory

    PORT = 25

    mxcalc: Any = None

    backoffDelay: float = 30

    backoffFactor: float = 2

    maxBackoffDelay: float = 60 * 60

    maxQueueLifetime: Optional[float] = 5 * 24 * 60 * 60

    reportingMTA: Optional[str] = None

    def __init__(
        self,
        queue: Queue,
        maxConnections: int = 2,
        maxMessagesPerConnection: int = 10,
        *,
        smartHost: Optional[SmartHost] = None,
        mxcalc: Any = None,
        reactor: Any = None,
        clock: Any = None,
    ) -> None:
        """
        @param queue: The queue to relay.
        @param maxConnections: The most connections open at once.
        @param maxMessagesPerConnection: The most messages for one
            connection.
        @param smartHost: Relay everything through this host: a host name,
            a C{(host, port)} tuple, or a list of them to try in order (the
            port defaults to L{PORT}).  By default each domain's mail
            exchanges are used.
        @param mxcalc: The L{MXCalculator} to use.
        @param reactor: The reactor to connect with (default: the global
            one).
        @param clock: The L{IReactorTime} for delays (default: C{reactor}).
        """
        self.maxConnections = maxConnections
        self.maxMessagesPerConnection = maxMessagesPerConnection
        self.managed: Dict[Any, List[str]] = {}
        self.retries: Dict[str, Tuple[int, float]] = {}
        self.queue = queue
        self.fArgs: Tuple[Any, ...] = ()
        self.fKwArgs: Dict[str, Any] = {}
        self.smartHost: Optional[List[Exchange]] = None
        if smartHost is not None:
            self.smartHost = _smartHosts(smartHost, self.PORT)
            if not self.smartHost:
                raise ValueError("smartHost names no host")
        if mxcalc is not None:
            self.mxcalc = mxcalc
        self.reactor = reactor
        self.clock = clock

    def __getstate__(self) -> Dict[str, Any]:
        """
        Return the non-volatile state of this object.
        """
        state = self.__dict__.copy()
        for volatile in ("managed", "reactor", "clock"):
            state.pop(volatile, None)
        if state.pop("_madeCalculator", False):
            # Made on first use, holding the reactor: made again after.
            state.pop("mxcalc", None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        """
        Restore the non-volatile state and recreate the volatile state.
        """
        self.__dict__.update(state)
        self.__dict__.setdefault("retries", {})
        self.managed = {}
        self.reactor = None
        self.clock = None

    def _reactor(self) -> Any:
        if self.reactor is None:
            from twisted.internet import reactor

            return reactor
        return self.reactor

    def _clock(self) -> Any:
        return self._reactor() if self.clock is None else self.clock

    def checkState(self) -> Optional["defer.Deferred[Any]"]:
        """
        Look at the queue and start relayers for waiting messages, if
        connections are free.

        @return: L{None} if nothing could be started; else a Deferred that
            fires when all the relaying attempts started are over.
        """
        self.queue.readDirectory()
        for message in list(self.retries):
            if message not in self.queue.waiting and message not in self.queue.relayed:
                del self.retries[message]
        if len(self.managed) >= self.maxConnections:
            return None
        now = self._clock().seconds()
        if not any(self._due(m, now) for m in self.queue.getWaiting()):
            return None
        return self._checkStateMX()

    def _due(self, message: str, now: float) -> bool:
        """
        Whether a waiting message may be tried now (it is not deferred, or
        its delay has passed).
        """
        entry = self.retries.get(message)
        return entry is None or entry[1] <= now

    def retryDelay(self, failures: int) -> float:
        """
        Return how long to wait before trying a message again after it
        failed for now C{failures} times in a row: L{backoffDelay}, times
        L{backoffFactor} for each failure after the first, at most
        L{maxBackoffDelay}.  (mailclient addition)
        """
        exponent = max(0, failures - 1)
        try:
            delay = self.backoffDelay * float(self.backoffFactor) ** exponent
        except OverflowError:
            delay = self.maxBackoffDelay
        return float(min(delay, self.maxBackoffDelay))

    def _expired(self, message: str) -> bool:
        if self.maxQueueLifetime is None:
            return False
        try:
            queued = os.stat(self.queue.getPath(message) + "-D").st_mtime
        except OSError:
            return False
        return self._clock().seconds() - queued >= self.maxQueueLifetime

    def _deferMessages(
        self, messages: Sequence[str], failures: Mapping[str, DeliveryFailure]
    ) -> None:
        """
        The messages could not be delivered for now: let them wait again, to
        be tried after L{retryDelay}; return those queued longer than
        L{maxQueueLifetime} to their senders instead.

        @param failures: Why, by message, where known.
        """
        now = self._clock().seconds()
        for message in list(messages):
            failure = failures.get(message)
            if self._expired(message):
                reason = "delivery time expired"
                if failure is not None and failure.reason:
                    reason += " (%s)" % (failure.reason,)
                diagnostic = failure.diagnostic if failure is not None else None
                remoteMTA = failure.remoteMTA if failure is not None else None
                if self._returnToSender(message, "4.4.7", diagnostic, remoteMTA, reason):
                    self._done(message)
                    continue
            count = self.retries.get(message, (0, now))[0] + 1
            self.retries[message] = (count, now + self.retryDelay(count))
            self.queue.setWaiting(message)

    def _done(self, message: str) -> None:
        """
        Remove a message from the queue and forget its retries.
        """
        self.queue.done(message)
        self.retries.pop(os.path.basename(message), None)

    def _batches(self) -> Dict[Optional[str], List[List[str]]]:
        """
        Take waiting messages into batches, one per connection: by domain
        (or all together for a smart host), at most
        C{maxMessagesPerConnection} each, as many as there are free
        connections.  Messages taken are marked as being relayed.
        """
        free = self.maxConnections - len(self.managed)
        perConnection = max(1, self.maxMessagesPerConnection)
        batches: Dict[Optional[str], List[List[str]]] = {}
        started = room = 0
        now = self._clock().seconds()
        for message in self.queue.getWaiting():
            if started >= free and room == 0:
                break
            if not self._due(message, now):
                continue
            try:
                sender, recipient = readEnvelope(self.queue.getPath(message) + "-H")
            except FileNotFoundError:
                # Gone, or a data file written before its envelope.
                continue
            except (OSError, EnvelopeError) as e:
                _log.error(
                    "Quarantining {message}: {error}", message=message, error=e
                )
                self.queue.quarantine(message)
                continue
            domain = recipientDomain(recipient)
            if domain is None:
                self.queue.setRelaying(message)
                if self._returnToSender(
                    message, "5.1.3", reason="Bad destination address syntax"
                ):
                    self._done(message)
                else:
                    self.queue.setWaiting(message)
                continue
            groups = batches.setdefault(None if self.smartHost else domain, [])
            if groups and len(groups[-1]) < perConnection:
                groups[-1].append(message)
                room -= 1
            elif started < free:
                groups.append([message])
                started += 1
                room += perConnection - 1
            else:
                continue
            self.queue.setRelaying(message)
        return batches

    def _checkStateMX(self) -> "defer.Deferred[Any]":
        batches = self._batches()
        if self.mxcalc is None and self.smartHost is None:
            self.mxcalc = MXCalculator(clock=self._clock())
            self._madeCalculator = True
        relays = []
        for domain, groups in batches.items():
            for messages in groups:
                attempt = _AttemptManager(self, self.queue.noisy, self._clock())
                factory = self.factory(
                    [self.queue.getPath(m) for m in messages],
                    attempt,
                    *self.fArgs,
                    **self.fKwArgs,
                )
                self.managed[factory] = list(messages)
                done = attempt.getCompletionDeferred()
                setup = self._exchangesFor(domain)
                setup.addCallback(attempt.start, factory)

                def attemptFailed(
                    failure: Failure, done: "defer.Deferred[None]" = done
                ) -> Failure:
                    done.errback(failure)
                    return failure

                setup.addErrback(attemptFailed)
                setup.addErrback(self._ebExchange, factory, domain)
                relays.append(done)
        return defer.DeferredList(relays, consumeErrors=True)

    def _exchangesFor(self, domain: Optional[str]) -> "defer.Deferred[List[Exchange]]":
        """
        Find the C{(host, port)} to try, in order, for C{domain} (L{None}:
        the smart host).
        """
        if self.smartHost is not None or domain is None:
            return defer.succeed(list(self.smartHost or ()))
        if domain.startswith("[") and domain.endswith("]"):
            literal = domain[1:-1]
            if literal.lower().startswith("ipv6:"):
                literal = literal[5:]
            return defer.succeed([(literal, self.PORT)])
        getExchanges = getattr(self.mxcalc, "getExchanges", None)
        if getExchanges is not None:
            d = getExchanges(domain)
        else:
            d = self.mxcalc.getMX(domain)
            d.addCallback(lambda record: [record])
        d.addCallback(
            lambda records: [(normalName(r.name), self.PORT) for r in records]
        )
        return d

    def _resolveExchange(self, host: str) -> "defer.Deferred[str]":
        """
        Find the address of an exchange host with the MX calculator's
        resolver (the reactor resolves it if there is none).
        """
        if isIPAddress(host) or isIPv6Address(host):
            return defer.succeed(host)
        resolveHost = getattr(self.mxcalc, "resolveHost", None)
        if resolveHost is None:
            return defer.succeed(host)
        return defer.maybeDeferred(resolveHost, host)

    def _cbExchange(self, address: str, port: int, factory: Any) -> None:
        """
        Connect to a mail exchange.

        @param address: Its address (or host name).
        @param port: Its port.
        @param factory: The relayer factory.
        """
        self._reactor().connectTCP(address, port, factory)

    def _ebExchange(self, failure: Failure, factory: Any, domain: Optional[str]) -> None:
        """
        No exchange could be found for C{domain}: return the messages to
        their senders if the domain cannot receive mail; otherwise let them
        be tried again after L{retryDelay}.
        """
        messages = self.managed.pop(factory, [])
        if failure.check(UndeliverableDomain):
            error = cast(UndeliverableDomain, failure.value)
            _log.info("Returning mail for {domain}: {error}", domain=domain, error=error)
            for message in messages:
                if self._returnToSender(message, error.status, reason=str(error)):
                    self._done(message)
                else:
                    self.queue.setWaiting(message)
            return
        _log.warn(
            "Error setting up managed relay factory for {domain}: {error}",
            domain=domain,
            error=failure.getErrorMessage(),
        )
        reason = "cannot find the mail exchanges of %s: %s" % (
            domain,
            failure.getErrorMessage(),
        )
        self._deferMessages(
            messages, {m: DeliveryFailure("", "4.4.3", reason=reason) for m in messages}
        )

    def _exchangeFailed(self, host: str) -> None:
        if self.smartHost is None and self.mxcalc is not None:
            self.mxcalc.markBad(host)

    def _exchangeWorked(self, host: str) -> None:
        if self.smartHost is None and self.mxcalc is not None:
            self.mxcalc.markGood(host)

    def _returnToSender(
        self,
        message: str,
        status: str,
        diagnostic: Optional[bytes] = None,
        remoteMTA: Optional[str] = None,
        reason: str = "",
    ) -> bool:
        """
        Queue a delivery status notification for a message that failed for
        good (see L{returnToSender}).
        """
        return returnToSender(
            self.queue, message, status, diagnostic, remoteMTA, reason, self._reportingMTA()
        )

    def _reportingMTA(self) -> str:
        return self.reportingMTA or getDNSName().decode("ascii")


registerAdapter(_ManagerHooks, SmartHostSMTPRelayingManager, IRelayManagerHooks)


def returnToSender(
    queue: Any,
    message: str,
    status: str,
    diagnostic: Optional[bytes],
    remoteMTA: Optional[str],
    reason: str,
    reportingMTA: str,
) -> bool:
    """
    Queue in C{queue} a delivery status notification (RFC 3464) for a
    message that failed for good; none for a message from the null sender
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
    failure = DeliveryFailure(recipient, status, diagnostic, remoteMTA, reason)
    try:
        with open(queue.getPath(name) + "-D", "rb") as body:
            arrival = os.fstat(body.fileno()).st_mtime
            _, to, report = generateBounce(body, sender, [failure], reportingMTA, arrival)
        _enqueue(queue, "", _text(to), report)
    except OSError as e:
        _log.error("Cannot return {message}: {error}", message=name, error=e)
        return False
    _log.info(
        "Returned {message} to {sender}: {status}",
        message=name,
        sender=_text(sender),
        status=status,
    )
    return True


def _enqueue(queue: Any, sender: str, recipient: str, message: bytes) -> None:
    """
    Put a message in C{queue}: with mailclient's C{enqueue}, or through
    Twisted's C{createNewMessage}.
    """
    enqueue = getattr(queue, "enqueue", None)
    if enqueue is not None:
        enqueue(sender, recipient, message)
        return
    import pickle

    headerFile, receiver = queue.createNewMessage()
    with headerFile:
        pickle.dump([sender, recipient], headerFile)
    for line in message.splitlines():
        receiver.lineReceived(line)
    receiver.eomReceived()


class SmartHostESMTPRelayingManager(SmartHostSMTPRelayingManager):
    """
    Relays the messages of a L{Queue} over ESMTP (see
    L{SmartHostSMTPRelayingManager}).
    """

    factory = ESMTPManagedRelayerFactory


def _checkState(manager: SmartHostSMTPRelayingManager) -> None:
    manager.checkState()


def RelayStateHelper(manager: SmartHostSMTPRelayingManager, delay: float) -> internet.TimerService:
    """
    Return a service that calls C{manager.checkState()} every C{delay}
    seconds.
    """
    return internet.TimerService(delay, _checkState, manager)
