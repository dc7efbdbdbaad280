"""
Following one attempt to relay a set of messages: L{_AttemptManager} (the
name Twisted gives it), and what it asks of its relaying manager
(L{IRelayManagerHooks}).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast
from collections.abc import Mapping, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IConnector, IReactorTCP, IReactorTime
from twisted.internet.protocol import ClientFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mailclient._relaying.bounce import DeliveryFailure
from mailclient._relaying.returning import returnToSender
from mailclient._wire.exchanges import Exchange
from mailclient._wire.host import getDNSName
from mailclient._wire.tlspolicy import TLSRecord
from mailclient.interfaces import IAttemptManager, IDeliveryProgress, IRelayManagerHooks

if TYPE_CHECKING:
    from mailclient._relaying.queue import Queue

_log = Logger()


class RelayingManager(Protocol):
    """
    What an attempt manager uses of its relaying manager, as Twisted's
    does: the messages each running relayer factory has yet to relay, and
    the queue.
    """

    @property
    def managed(self) -> dict[object, list[str]]:
        ...

    @property
    def queue(self) -> Queue:
        ...


class DeliveryOutcome(str, enum.Enum):
    """
    What became of a message after one relaying attempt.
    """

    #: The server accepted it; it left the queue.
    DELIVERED = "delivered"
    #: It failed for good and was returned to its sender (a message from the
    #: null sender is dropped instead).
    BOUNCED = "bounced"
    #: It failed for now; it waits to be tried again.
    DEFERRED = "deferred"


@dataclass(frozen=True)
class DeliveryReport:
    """
    The outcome of one message in one relaying attempt, as the relaying
    manager reports it (to its C{deliveryObservers}, and in its log).

    @ivar message: The base name of the queued message.
    @ivar outcome: A L{DeliveryOutcome}.
    @ivar nextHop: The recipient domain, or L{None} for a smart host.
    @ivar exchange: The host name of the mail exchange (or smart host) that
        answered or was tried last, if any.
    @ivar address: The IP address connected to, if a connection was made.
    @ivar tls: The L{TLSRecord} of that connection (L{None}: no connection
        was made).
    @ivar status: The RFC 3463 status of a failure (C{"4.4.1"}, ...).
    @ivar reason: Why, for people, when it was not delivered.
    """

    message: str
    outcome: DeliveryOutcome
    nextHop: str | None = None
    exchange: str | None = None
    address: str | None = None
    tls: TLSRecord | None = None
    status: str | None = None
    reason: str = ""

    def describe(self) -> str:
        """
        One line for the log: C{"msg-1 to example.org via mx.example.org
        [192.0.2.1]: delivered; TLS: TLSv1.3 ..., verified (level may)"}.
        """
        where = self.nextHop or "the smart host"
        if self.exchange is not None:
            where += " via %s" % (self.exchange,)
        if self.address is not None and self.address != self.exchange:
            where += " [%s]" % (self.address,)
        text = "%s to %s: %s" % (self.message, where, self.outcome.value)
        if self.status or self.reason:
            text += " (%s)" % (" ".join(p for p in (self.status, self.reason) if p),)
        tls = self.tls.describe() if self.tls is not None else "no connection"
        if (self.tls is not None and self.tls.reason and not self.tls.encrypted
                and self.tls.reason not in self.reason):
            tls += ": " + self.tls.reason
        return text + "; TLS: " + tls


def annotate(
    failure: DeliveryFailure, relay: object, nextHop: str | None = None
) -> DeliveryFailure:
    """
    Note on C{failure} where the connection of C{relay} (a managed relayer
    factory) went, and the TLS it got.
    """
    if failure.address is None:
        failure.address = getattr(relay, "peerAddress", None)
    if failure.tls is None:
        failure.tls = getattr(relay, "tlsRecord", None)
    if failure.nextHop is None:
        failure.nextHop = nextHop if nextHop is not None else getattr(relay, "nextHop", None)
    return failure


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

    def __init__(
        self, manager: RelayingManager, noisy: bool = True, reactor: IReactorTime | None = None
    ) -> None:
        self.manager = manager
        self.noisy = noisy
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        self.reactor = reactor
        self._hooks: IRelayManagerHooks = IRelayManagerHooks(
            manager, None) or _TwistedManagerHooks(manager, reactor)
        self._completionDeferreds: list[defer.Deferred[None]] | None = []
        self.exchanges: list[Exchange] = []
        self.exchange: Exchange | None = None
        # Why messages were refused for now, for a bounce if they expire.
        self._temporary: dict[str, DeliveryFailure] = {}
        # The messages the current exchange was asked to take.
        self._sending: set[str] = set()
        # Whether the current exchange answered any message, and whether
        # the next one should be tried when this connection is done.
        self._answered = False
        self._failingOver = False

    def getCompletionDeferred(self) -> defer.Deferred[None]:
        """
        Return a Deferred that fires when the attempt is over.
        """
        d: defer.Deferred[None] = defer.Deferred()
        if self._completionDeferreds is None:
            d.callback(None)
        else:
            self._completionDeferreds.append(d)
        return d

    def start(self, exchanges: Sequence[Exchange], relay: object) -> None:
        """
        Try the exchanges, in order, until one can be talked to.
        """
        self.exchanges = list(exchanges)
        self._connectNext(relay)

    def _connectNext(self, relay: object) -> None:
        self.exchange = self.exchanges.pop(0)
        self._answered = False
        self._sending = set()
        # What the last exchange's connection got is not this one's.
        for name in ("tlsRecord", "peerAddress", "connectionError"):
            if getattr(relay, name, None) is not None:
                setattr(relay, name, None)
        pending = self.manager.managed.get(relay, [])
        setattr(relay, "messages", [self.manager.queue.getPath(m) for m in pending])
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

    def _finish(self, relay: object, message: str) -> None:
        name = os.path.basename(message)
        pending = self.manager.managed.get(relay)
        if pending is not None and name in pending:
            pending.remove(name)
        self._hooks.deliveryDone(name)

    def notifySuccess(self, relay: object, message: str) -> None:
        """
        The message was accepted: remove it from the queue.
        """
        if self.noisy:
            _log.info("success sending {message}, removing from queue", message=message)
        self._answered = True
        if self.exchange is not None:
            self._hooks.exchangeWorked(self.exchange[0])
        self._report(relay, message, DeliveryOutcome.DELIVERED)
        self._finish(relay, message)

    def notifyFailure(self, relay: object, message: str) -> None:
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
        returned = self._hooks.returnToSender(
            message, failure.status, failure.diagnostic, remoteMTA, failure.reason
        )
        self._report(relay, message,
                     DeliveryOutcome.BOUNCED if returned else DeliveryOutcome.DEFERRED,
                     failure.status, failure.reason or _diagnosticText(failure.diagnostic))
        if returned:
            self._finish(relay, message)

    def notifySending(self, relay: object, message: str) -> None:
        """
        The message is about to be sent.  (mailclient addition)
        """
        self._sending.add(os.path.basename(message))

    def notifyTemporaryFailure(self, relay: object, message: str) -> None:
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
            self._temporary[name] = annotate(failure, relay)

    def forget(self, relay: object, message: str) -> None:
        """
        The message has left the queue by other means (its files are gone).
        (mailclient addition)
        """
        name = os.path.basename(message)
        pending = self.manager.managed.get(relay)
        if pending is not None and name in pending:
            pending.remove(name)
        self._hooks.forgetMessage(name)

    def notifyDone(self, relay: object) -> None:
        """
        The connection is over.  If the exchange answered nothing and
        another is left, try it; otherwise put the messages left back to
        wait (deferred, if they were tried) and fire the completion
        Deferreds.
        """
        if self._completionDeferreds is None:
            return
        pending = self.manager.managed.get(relay)
        if pending and not self._answered and self.exchanges and self._addressesLeft():
            # Nothing was answered: the session failed, not a message.
            if not self._failingOver and self.exchange is not None:
                self._hooks.exchangeFailed(self.exchange[0])
            self._failingOver = False
            sessionFailures = getattr(relay, "failures", {})
            for path in list(sessionFailures):
                if os.path.basename(path) in pending:
                    del sessionFailures[path]
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
            # Why: the message's own reply, else the session's (a declined
            # login, kept by the relayer), else the lost connection.
            sessionFailures = getattr(relay, "failures", {})

            def why(message: str) -> DeliveryFailure:
                # The relayer keeps them by path, the manager by name.
                failure = next((sessionFailures.pop(path) for path in list(sessionFailures)
                                if os.path.basename(path) == message), None)
                if failure is None:
                    failure = DeliveryFailure("", "4.4.2", None, host, _lostReason(relay, host))
                elif failure.remoteMTA is None:
                    failure.remoteMTA = host
                return annotate(failure, relay)

            failures = {m: self._temporary.get(m) or why(m) for m in tried}
            self._hooks.deferMessages(tried, failures)
        self.manager.managed.pop(relay, None)
        notifications, self._completionDeferreds = self._completionDeferreds, None
        for d in notifications:
            d.callback(None)

    def notifyNoConnection(self, relay: object) -> None:
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
            error = getattr(relay, "connectionError", None)
            if error:
                _log.info("Cannot connect to {host}: {error}", host=self.exchange[0],
                          error=error)
        if self.exchanges and self._addressesLeft():
            self._failingOver = True
            return
        if self.noisy:
            _log.info("Backing off on delivery of {messages}", messages=pending)
        host = self.exchange[0] if self.exchange is not None else None
        reason = "cannot connect to %s" % (host,) if host else "cannot connect"
        failures = {
            m: self._temporary.get(m)
            or annotate(DeliveryFailure("", "4.4.1", None, host, reason), relay)
            for m in pending
        }
        del self.manager.managed[relay]
        self._hooks.deferMessages(pending, failures)


    def _addressesLeft(self) -> bool:
        """
        Whether another exchange may be tried: the manager's cap on
        addresses per attempt (C{maxAddresses}) is not reached.
        """
        left = getattr(self._hooks, "addressesLeft", None)
        return left is None or left() > 0

    def _report(
        self, relay: object, message: str, outcome: DeliveryOutcome, status: str | None = None,
        reason: str = "",
    ) -> None:
        """
        Report a message's outcome to the manager, if it takes reports.
        """
        report = getattr(self._hooks, "reportDelivery", None)
        if report is None:
            return
        exchange = self.exchange[0] if self.exchange is not None else None
        report(DeliveryReport(
            os.path.basename(message), outcome, getattr(relay, "nextHop", None), exchange,
            getattr(relay, "peerAddress", None), getattr(relay, "tlsRecord", None),
            status, reason,
        ))


def _diagnosticText(diagnostic: bytes | None) -> str:
    if not diagnostic:
        return ""
    return diagnostic.decode("utf-8", "replace").strip()[:300]


def _lostReason(relay: object, host: str) -> str:
    tls = getattr(relay, "tlsRecord", None)
    if tls is not None and not tls.encrypted and tls.reason:
        return "connection to %s failed: %s" % (host, tls.reason)
    return "connection to %s lost" % (host,)


@implementer(IRelayManagerHooks)
class _TwistedManagerHooks:
    """
    L{IRelayManagerHooks} for a manager with only Twisted's C{managed} and
    C{queue}: what Twisted's attempt manager does with it.
    """

    #: Twisted lets messages that could not be sent wait this long.
    backoff = 30

    def __init__(self, manager: RelayingManager, reactor: IReactorTime) -> None:
        self.manager = manager
        self.reactor = reactor

    def connectExchange(self, host: str, port: int, factory: object) -> defer.Deferred[IConnector]:
        # As Twisted's managers connect: the reactor's connectTCP, with their
        # relayer factory.
        return defer.maybeDeferred(cast(IReactorTCP, self.reactor).connectTCP, host, port,
                                   cast(ClientFactory, factory))

    def deliveryDone(self, message: str) -> None:
        self.manager.queue.done(message)

    def deferMessages(
        self, messages: Sequence[str], failures: Mapping[str, DeliveryFailure]
    ) -> None:
        def setWaiting(queue: Queue, messages: Sequence[str]) -> None:
            for message in messages:
                queue.setWaiting(message)

        self.reactor.callLater(self.backoff, setWaiting, self.manager.queue, list(messages))

    def returnToSender(
        self, message: str, status: str, diagnostic: bytes | None = None,
        remoteMTA: str | None = None, reason: str = "",
    ) -> bool:
        return returnToSender(
            self.manager.queue, message, DeliveryFailure("", status, diagnostic, remoteMTA, reason),
            getDNSName().decode("ascii"),
        )

    def exchangeWorked(self, host: str) -> None:
        pass

    def exchangeFailed(self, host: str) -> None:
        pass

    def forgetMessage(self, message: str) -> None:
        pass


