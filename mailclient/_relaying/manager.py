"""
The relaying managers: L{SmartHostSMTPRelayingManager} and
L{SmartHostESMTPRelayingManager} (their service, L{RelayStateHelper}, is in
L{mailclient._relaying.service}).
"""

from __future__ import annotations

import os
import random
from typing import Any, Callable, Literal, cast
from collections.abc import Mapping, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IConnector, IReactorTCP, IReactorTime
from twisted.internet.protocol import ClientFactory
from twisted.logger import Logger
from twisted.python.components import registerAdapter
from twisted.python.failure import Failure

from mailclient._protocol.connect import (
    ATTEMPT_DELAY,
    CONNECT_TIMEOUT,
    HappyEyeballsConnector,
    connectSender,
    interleave,
    isIPLiteral,
    nameResolverOf,
)
from mailclient._wire.eyeballs import preferredFamily
from mailclient._protocol.tls import contextForPolicy
from mailclient._relaying.attempt import DeliveryOutcome, DeliveryReport, _AttemptManager
from mailclient._relaying.bounce import DeliveryFailure
from mailclient._relaying.managed import (
    ESMTPManagedRelayerFactory,
    SMTPManagedRelayerFactory,
    recipientDomain,
)
from mailclient._relaying import destinations
from mailclient._relaying.dane import TLSAResolver
from mailclient._relaying.msgoptions import (
    MessageOptionsError,
    readMessageOptions,
    removeMessageOptions,
)
from mailclient._relaying.mtasts import MTASTS
from mailclient._relaying.mx import MXCalculator, UndeliverableDomain, normalName
from mailclient._relaying.tlsrpt import TLSReportCounters
from mailclient._relaying.queue import Queue, QueueBusyError, checkQueueFile, readEnvelope
from mailclient._relaying.retrying import recordFailure, reportFailure
from mailclient._relaying.returning import returnToSender
from mailclient._wire.host import getDNSName
from mailclient._wire.retry import RetryPolicy
from mailclient._wire.settings import bindAddresses
from mailclient._wire.exchanges import (
    Exchange,
    RefusedExchange,
    SmartHost,
    isGlobal,
    smartHosts,
)
from mailclient._wire.tlspolicy import (
    PolicyEntry,
    TLSLevel,
    TLSPolicy,
    TLSPolicyMap,
    hopPolicy,
    policyState,
)
from mailclient.interfaces import IRelayManagerHooks

_log = Logger()

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
    @ivar maxAddresses: The most mail exchanges tried for one message in
        one attempt (Postfix's C{smtp_mx_address_limit}): a domain with a
        thousand MX records costs five connections, not a thousand.
        (mailclient addition)
    @ivar refusePrivateAddresses: Refuse to connect to a mail exchange
        whose address is loopback, private, link-local or otherwise not
        global, so that DNS under an attacker's control cannot point the
        relay at internal services.  Off by default, as in Twisted (whose
        own tests relay to an MX at 127.0.0.1; corporate relays use private
        MX addresses); smart hosts are never refused.  (mailclient addition)
    @ivar tlsPolicies: The TLS policy of each destination (a
        L{TLSPolicyMap}, Postfix's C{smtp_tls_policy_maps}): recipient
        domains (C{"example.com"}, C{".example.com"} for its subdomains)
        and smart hosts (C{"[smtp.example.com]:587"}).  (mailclient
        addition)
    @ivar tlsSecurityLevel: The level of destinations the map does not
        name (Postfix's C{smtp_tls_security_level}); L{None} (the default)
        is C{may} for mail exchanges, and for smart hosts C{may}, or
        C{verify} when credentials (C{secret}) or trust anchors
        (C{tlsCAFile}, C{tlsCACertificates}) are given.  (mailclient
        addition)
    @ivar tlsCAFile: A PEM file of the certificates to trust, instead of
        the system's, for smart hosts and for the map's policies that name
        none (Postfix's C{smtp_tls_CAfile}).  (mailclient addition)
    @ivar tlsCACertificates: PEM certificates to trust likewise.
        (mailclient addition)
    @ivar smartHostImplicitTLS: Whether smart hosts are spoken to over TLS
        from the first byte (SMTPS, RFC 8314; Postfix's
        C{smtp_tls_wrappermode}); L{None}: on port 465.  (mailclient
        addition)
    @ivar connectTimeout: Seconds each connection attempt (one address) may
        take (Postfix's C{smtp_connect_timeout}).  (mailclient addition)
    @ivar bindAddress: The local C{(address, port)} to connect from, or a
        list of one per family (Postfix's C{smtp_bind_address},
        C{smtp_bind_address6}); addresses of other families are not
        tried.  (mailclient addition)
    @ivar addressPreference: Which family of an exchange's addresses is
        tried first (Postfix's C{smtp_address_preference}): C{"ipv6"}
        (RFC 8305), C{"ipv4"} or C{"any"}; the families then alternate.
        (mailclient addition)
    @ivar connectionAttemptDelay: Seconds before the next address of an
        exchange is tried while the previous one has not connected (RFC
        8305's 250 ms).  (mailclient addition)
    @ivar delayWarningAfter: Seconds after it was queued when a message
        still waiting gets its one delay warning (RFC 3464 C{Action:
        delayed}, headers only) to its sender; L{None} (the default, as
        Postfix's C{delay_warning_time}): none.  Needs a queue that keeps
        a schedule (mailclient's).  (mailclient addition)
    @ivar destinationBackoff: Seconds every worker of a shared queue (the
        PostgreSQL queue) leaves a destination alone after it answered 421
        or a 4.7.x status.  (mailclient addition)
    @ivar deliveryObservers: Callables given a L{DeliveryReport} for each
        message when its attempt is over: delivered, bounced or deferred,
        where it went and the L{TLSRecord} of its connection.  Each report
        is also logged.  Not pickled.  (mailclient addition)
    @ivar mtaSTS: The L{MTASTS} policies of recipient domains (RFC 8461),
        or L{None} (the default): not used.  C{True} when constructing:
        one looking up records with the MX calculator's resolver, caching
        policies in the queue's directory.  Not pickled.  (mailclient
        addition)
    @ivar daneResolver: The DNSSEC-validating resolver trusted for TLSA
        records (a L{DNSSECResolver}; RFC 7672), or L{None} (the default):
        no DANE.  Not pickled.  (mailclient addition)
    @ivar tlsReport: The L{TLSReportCounters} of sessions to mail
        exchanges (RFC 8460).  Not pickled.  (mailclient addition)
    """

    factory: type[SMTPManagedRelayerFactory] = SMTPManagedRelayerFactory

    PORT = 25

    mxcalc: MXCalculator | None = None

    backoffDelay: float = 30

    backoffFactor: float = 2

    maxBackoffDelay: float = 60 * 60

    maxQueueLifetime: float | None = 5 * 24 * 60 * 60

    delayWarningAfter: float | None = None

    destinationBackoff: float = 300

    reportingMTA: str | None = None

    maxAddresses: int = 5

    refusePrivateAddresses: bool = False

    tlsSecurityLevel: TLSLevel | None = None

    tlsCAFile: str | None = None

    tlsCACertificates: tuple[bytes, ...] = ()

    smartHostImplicitTLS: bool | None = None

    connectTimeout: float = CONNECT_TIMEOUT

    bindAddress: tuple[str, int] | Sequence[tuple[str, int]] | None = None

    addressPreference: str = "ipv6"

    connectionAttemptDelay: float = ATTEMPT_DELAY

    mtaSTS: MTASTS | None = None

    daneResolver: TLSAResolver | None = None

    def __init__(
        self,
        queue: Queue,
        maxConnections: int = 2,
        maxMessagesPerConnection: int = 10,
        *,
        smartHost: SmartHost | None = None,
        mxcalc: MXCalculator | None = None,
        reactor: IReactorTCP | None = None,
        clock: IReactorTime | None = None,
        tlsPolicies: Mapping[str, PolicyEntry] | None = None,
        tlsSecurityLevel: TLSLevel | str | None = None,
        tlsCAFile: str | None = None,
        bindAddress: tuple[str, int] | Sequence[tuple[str, int]] | None = None,
        connectTimeout: float | None = None,
        mtaSTS: MTASTS | Literal[True] | None = None,
        daneResolver: TLSAResolver | None = None,
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
        @param tlsPolicies: See L{tlsPolicies}: destination to L{TLSPolicy}
            or level name.
        @param tlsSecurityLevel: See L{tlsSecurityLevel}.
        @param tlsCAFile: See L{tlsCAFile}.
        @param bindAddress: See L{bindAddress}.
        @param connectTimeout: See L{connectTimeout}.
        @param mtaSTS: See L{mtaSTS}.
        @param daneResolver: See L{daneResolver}.
        """
        self.maxConnections = maxConnections
        self.maxMessagesPerConnection = maxMessagesPerConnection
        self.managed: dict[object, list[str]] = {}
        self.retries: dict[str, tuple[int, float]] = {}
        self.queue = queue
        self.fArgs: tuple[object, ...] = ()
        self.fKwArgs: dict[str, object] = {}
        self.smartHost: list[Exchange] | None = None
        if smartHost is not None:
            self.smartHost = smartHosts(smartHost, self.PORT)
            if not self.smartHost:
                raise ValueError("smartHost names no host")
        if mxcalc is not None:
            self.mxcalc = mxcalc
        self.reactor = reactor
        self.clock = clock
        self.tlsPolicies = TLSPolicyMap(tlsPolicies or {})
        if tlsSecurityLevel is not None:
            self.tlsSecurityLevel = TLSLevel(tlsSecurityLevel)
        if tlsCAFile is not None:
            self.tlsCAFile = tlsCAFile
        if bindAddress is not None:
            bindAddresses(bindAddress)
            self.bindAddress = bindAddress
        if connectTimeout is not None:
            self.connectTimeout = connectTimeout
        self.deliveryObservers: list[Callable[[DeliveryReport], object]] = []
        self.mtaSTS = destinations.defaultMTASTS(self) if mtaSTS is True else mtaSTS
        self.daneResolver = daneResolver
        self.tlsReport = TLSReportCounters()
        # Whether "another manager holds the queue" was logged.
        self._busyLogged = False

    def __getstate__(self) -> dict[str, object]:
        """
        Return the non-volatile state of this object.
        """
        state = self.__dict__.copy()
        for volatile in ("managed", "reactor", "clock", "_busyLogged", "deliveryObservers",
                         "mtaSTS", "daneResolver", "tlsReport"):
            state.pop(volatile, None)
        # The TLS settings as plain data, so that a pickle names no private
        # module.
        policies = state.pop("tlsPolicies", None)
        if policies:
            state["tlsPolicies"] = [(key, policyState(policy)) for key, policy in policies.items()]
        if isinstance(state.get("tlsSecurityLevel"), TLSLevel):
            state["tlsSecurityLevel"] = state["tlsSecurityLevel"].value
        if state.pop("_madeCalculator", False):
            # Made on first use, holding the reactor: made again after.
            state.pop("mxcalc", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """
        Restore the non-volatile state and recreate the volatile state.
        """
        state = dict(state)
        policies = state.pop("tlsPolicies", None) or []
        self.__dict__.update(state)
        self.__dict__.setdefault("retries", {})
        if isinstance(policies, TLSPolicyMap):
            self.tlsPolicies = policies
        else:
            self.tlsPolicies = TLSPolicyMap(
                [(key, TLSPolicy(**fields)) for key, fields in policies])
        if isinstance(self.__dict__.get("tlsSecurityLevel"), str):
            self.tlsSecurityLevel = TLSLevel(self.__dict__["tlsSecurityLevel"])
        self.deliveryObservers = []
        self.tlsReport = TLSReportCounters()
        self.managed = {}
        self.reactor = None
        self.clock = None
        self._busyLogged = False

    def _reactor(self) -> IReactorTCP:
        if self.reactor is None:
            from twisted.internet import reactor

            return reactor
        return self.reactor

    def _clock(self) -> IReactorTime:
        # A reactor is a clock too (IReactorTime).
        return cast(IReactorTime, self._reactor()) if self.clock is None else self.clock

    def checkState(self) -> defer.Deferred[list[tuple[bool, None]]] | None:
        """
        Look at the queue and start relayers for waiting messages, if
        connections are free.

        The first call takes the queue's relaying lock (mailclient's
        L{Queue}): while another manager holds it, nothing is relayed and
        the refusal is logged once.

        @return: L{None} if nothing could be started; else a Deferred that
            fires when all the relaying attempts started are over.
        """
        if not self._holdQueue():
            return None
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

    def _holdQueue(self) -> bool:
        """
        Take the queue's relaying lock, if the queue has one; return
        whether this manager may relay it.
        """
        acquire = getattr(self.queue, "acquireRelayLock", None)
        if acquire is None:
            return True
        try:
            acquire()
        except QueueBusyError as e:
            if not self._busyLogged:
                self._busyLogged = True
                _log.error("Not relaying: {error}", error=str(e))
            return False
        self._busyLogged = False
        return True

    def _due(self, message: str, now: float) -> bool:
        """
        Whether a waiting message may be tried now (it is not deferred, or
        its delay has passed).
        """
        isDue = getattr(self.queue, "isDue", None)
        if isDue is not None:
            # The queue's durable schedule (a restarted manager resumes it).
            return bool(isDue(message, now))
        entry = self.retries.get(message)
        return entry is None or entry[1] <= now

    def retryDelay(self, failures: int) -> float:
        """
        Return how long to wait before trying a message again after it
        failed for now C{failures} times in a row: L{backoffDelay}, times
        L{backoffFactor} for each failure after the first, at most
        L{maxBackoffDelay}: the back-off of L{RetryPolicy}.  (mailclient
        addition)
        """
        policy = RetryPolicy(
            retries=None, immediate=0, delay=self.backoffDelay,
            factor=self.backoffFactor, maxDelay=self.maxBackoffDelay, deadline=None,
        )
        return policy.backoff(failures)

    def _expired(self, message: str) -> bool:
        if self.maxQueueLifetime is None:
            return False
        queuedAt = getattr(self.queue, "queuedAt", None)
        try:
            queued = (queuedAt(message) if queuedAt is not None
                      else os.stat(self.queue.getPath(message) + "-D").st_mtime)
        except OSError:
            return False
        if queued is None:
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
            if self._requiresTLS(message):
                failure = destinations.requireTLSFailure(failure)
            if self._expired(message):
                reason = "delivery time expired"
                if failure is not None and failure.reason:
                    reason += " (%s)" % (failure.reason,)
                diagnostic = failure.diagnostic if failure is not None else None
                remoteMTA = failure.remoteMTA if failure is not None else None
                if self._returnToSender(
                    message, DeliveryFailure("", "4.4.7", diagnostic, remoteMTA, reason)
                ):
                    self._done(message)
                    reportFailure(self, message, DeliveryOutcome.BOUNCED, failure,
                                        "4.4.7", reason)
                    continue
            recordFailure(self, message, failure, now)
            reportFailure(self, message, DeliveryOutcome.DEFERRED, failure)

    def reportDelivery(self, report: DeliveryReport) -> None:
        """
        The outcome of one message in one attempt: log it, and give it to
        each of L{deliveryObservers}.  (mailclient addition)
        """
        _log.info("Relaying {description}", description=report.describe(),
                  deliveryReport=report, tlsRecord=report.tls, tlsSource=(
                      report.tls.source if report.tls is not None else None))
        for observer in list(self.deliveryObservers):
            try:
                observer(report)
            except Exception:
                _log.failure("Delivery observer {observer} failed", observer=observer)

    def _done(self, message: str) -> None:
        """
        Remove a message from the queue and forget its retries.
        """
        self.queue.done(message)
        removeMessageOptions(self.queue.getPath(os.path.basename(message)))
        self.retries.pop(os.path.basename(message), None)

    def _requiresTLS(self, message: str) -> bool:
        try:
            return readMessageOptions(self.queue.getPath(os.path.basename(message))).requireTLS
        except MessageOptionsError:
            return True

    def _batches(self) -> dict[tuple[str | None, bool], list[list[str]]]:
        """
        Take waiting messages into batches, one per connection: by domain
        (or all together for a smart host), at most
        C{maxMessagesPerConnection} each, as many as there are free
        connections; messages that asked for REQUIRETLS go apart (their
        hops must verify).  Messages taken are marked as being relayed.
        """
        free = self.maxConnections - len(self.managed)
        perConnection = max(1, self.maxMessagesPerConnection)
        batches: dict[tuple[str | None, bool], list[list[str]]] = {}
        started = room = 0
        now = self._clock().seconds()
        for message in self.queue.getWaiting():
            if started >= free and room == 0:
                break
            if not self._due(message, now):
                continue
            try:
                sender, recipient = readEnvelope(self.queue.getPath(message) + "-H")
                checkQueueFile(self.queue.getPath(message) + "-D")
                requireTLS = readMessageOptions(self.queue.getPath(message)).requireTLS
            except FileNotFoundError:
                # Gone, or a data file written before its envelope.
                continue
            except Exception as e:
                # Whatever one queue file holds, it stops only its own
                # message: the others are relayed.
                _log.error(
                    "Quarantining {message}: {error}", message=message,
                    error=str(e)[:300] or type(e).__name__,
                )
                self.queue.quarantine(message)
                continue
            domain = recipientDomain(recipient)
            if domain is None:
                self.queue.setRelaying(message)
                if self._returnToSender(
                    message, DeliveryFailure("", "5.1.3", reason="Bad destination address syntax")
                ):
                    self._done(message)
                else:
                    self.queue.setWaiting(message)
                continue
            if requireTLS and not issubclass(self.factory, ESMTPManagedRelayerFactory):
                # A plain SMTP relayer has no TLS at all.
                self.queue.setRelaying(message)
                reason = "REQUIRETLS support required: an SMTP relayer has no TLS"
                if self._returnToSender(message, DeliveryFailure("", "5.7.30", reason=reason)):
                    self._done(message)
                    self.reportDelivery(DeliveryReport(
                        message, DeliveryOutcome.BOUNCED, domain, status="5.7.30", reason=reason))
                else:
                    self.queue.setWaiting(message)
                continue
            groups = batches.setdefault((None if self.smartHost else domain, requireTLS), [])
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

    def _checkStateMX(self) -> defer.Deferred[list[tuple[bool, None]]]:
        batches = self._batches()
        if self.mxcalc is None and self.smartHost is None:
            self.mxcalc = MXCalculator(clock=self._clock())
            self._madeCalculator = True
        relays = []
        for (domain, requireTLS), groups in batches.items():
            for messages in groups:
                attempt = _AttemptManager(self, self.queue.noisy, self._clock())
                factory = self.factory(
                    [self.queue.getPath(m) for m in messages],
                    attempt,
                    *self.fArgs,
                    **self.fKwArgs,
                )
                self.managed[factory] = list(messages)
                try:
                    factory.nextHop = domain
                    factory.requireTLS = requireTLS
                    factory.sessionObserver = self._countSession
                except AttributeError:
                    pass
                done = attempt.getCompletionDeferred()
                setup = self._exchangesFor(domain, factory)
                setup.addCallback(attempt.start, factory)

                def attemptFailed(
                    failure: Failure, done: defer.Deferred[None] = done,
                    factory: SMTPManagedRelayerFactory = factory, domain: str | None = domain,
                ) -> None:
                    # The messages are dealt with (and reported) before the
                    # attempt is said to be over.
                    try:
                        self._ebExchange(failure, factory, domain)
                    finally:
                        done.errback(failure)

                setup.addErrback(attemptFailed)
                relays.append(done)
        return defer.DeferredList(relays, consumeErrors=True)

    def _countSession(self, factory: SMTPManagedRelayerFactory) -> None:
        destinations.countSession(self, factory)

    def _exchangesFor(self, domain: str | None, factory: SMTPManagedRelayerFactory | None = None
                      ) -> defer.Deferred[list[Exchange]]:
        """
        Find the C{(host, port)} to try, in order, for C{domain} (L{None}:
        the smart host): those its MTA-STS policy allows, if it has one in
        mode C{enforce} (see L{mtaSTS}).
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
            # A calculator with Twisted's interface (made by now: see
            # _checkStateMX).
            d = cast(MXCalculator, self.mxcalc).getMX(domain)
            d.addCallback(lambda record: [record])
        d.addCallback(lambda records: [(normalName(r.name), self.PORT) for r in records])
        if factory is not None:
            d.addCallback(destinations.applySTS, self, domain, factory)
        d.addCallback(lambda exchanges: exchanges[: max(1, self.maxAddresses)])
        return d

    def tlsPolicyFor(
        self, nextHop: str | None, host: str, port: int, factory: object = None
    ) -> TLSPolicy:
        """
        The TLS policy of a connection to C{host}:C{port} for mail to
        C{nextHop} (a recipient domain; L{None}: the smart host C{host}).
        (mailclient addition)

          - the entry of L{tlsPolicies} for the destination, with the
            manager's trust anchors when it names none;
          - else, when the relayers were given a TLS context (Twisted's
            C{contextFactory} argument, in C{fArgs}): that context, used
            when the server offers STARTTLS;
          - else L{tlsSecurityLevel}, by default C{may} (opportunistic
            STARTTLS, the certificate checked and recorded), or C{verify}
            for a smart host when credentials or trust anchors are given.

        The certificate is checked against C{host} (the exchange's name),
        which is also sent as SNI, unless the policy names another.
        Implicit TLS is used to a smart host on port 465 (see
        L{smartHostImplicitTLS}) or when the policy says so.
        """
        entry = (self.tlsPolicies.forHost(host, port) if nextHop is None
                 else self.tlsPolicies.forDomain(nextHop))
        return hopPolicy(
            entry, host, port, smartHost=nextHop is None,
            context=getattr(factory, "contextFactory", None),
            level=self.tlsSecurityLevel,
            credentials=getattr(factory, "secret", None) is not None,
            caFile=self.tlsCAFile, caCertificates=tuple(self.tlsCACertificates),
            implicit=self.smartHostImplicitTLS,
        )

    def _exchangeAddresses(self, host: str) -> defer.Deferred[list[str] | None]:
        """
        Find every address (AAAA and A) of an exchange host with the MX
        calculator's resolver; L{None} when there is no calculator (a smart
        host): the reactor's name resolver is used.
        """
        if isIPLiteral(host):
            return defer.succeed([host])
        resolveAddresses = getattr(self.mxcalc, "resolveAddresses", None)
        if resolveAddresses is not None:
            return defer.maybeDeferred(resolveAddresses, host)
        resolveHost = getattr(self.mxcalc, "resolveHost", None)
        if resolveHost is not None:
            return defer.maybeDeferred(resolveHost, host).addCallback(lambda a: [a])
        return defer.succeed(None)

    def _connectExchange(
        self, addresses: list[str] | None, host: str, port: int, factory: ClientFactory, limit: int
    ) -> IConnector:
        """
        Connect to a mail exchange (or smart host), trying its addresses in
        the order of L{addressPreference}, at most C{limit} of them (happy
        eyeballs, RFC 8305).

        @param addresses: Its addresses, or L{None} to resolve C{host} with
            the reactor's name resolver.
        @return: The connector.
        @raise RefusedExchange: if L{refusePrivateAddresses} refuses every
            address.
        """
        smart = self.smartHost is not None
        if addresses is not None:
            if self.refusePrivateAddresses and not smart:
                allowed = [a for a in addresses if isGlobal(a)]
                if not allowed:
                    raise RefusedExchange(
                        "not connecting to %s (%s): not a global address "
                        "(refusePrivateAddresses)" % (host, ", ".join(addresses)))
                addresses = allowed
            addresses = interleave(addresses, preferredFamily(self.addressPreference, _chooser))
        policy = getattr(factory, "tlsPolicy", None)
        context = None
        if isinstance(policy, TLSPolicy) and policy.implicit:
            context = contextForPolicy(policy, host)
            if context is None:
                raise RefusedExchange(
                    "not connecting to %s: implicit TLS, but TLS support is not installed"
                    % (host,))
        reactor = self._reactor()
        if addresses is None and nameResolverOf(reactor) is None:
            return connectSender(reactor, host, port, factory, self.connectTimeout,
                                 self.bindAddress, contextFactory=context)
        connector = HappyEyeballsConnector(
            reactor, host, port, factory, self.connectTimeout, self.bindAddress,
            contextFactory=context, attemptDelay=self.connectionAttemptDelay,
            addresses=addresses, maxAddresses=limit,
        )
        connector.connect()
        return connector

    def _ebExchange(
        self, failure: Failure, factory: SMTPManagedRelayerFactory, domain: str | None
    ) -> None:
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
                if self._returnToSender(message, DeliveryFailure("", error.status, reason=str(error))):
                    self._done(message)
                    self.reportDelivery(DeliveryReport(
                        os.path.basename(message), DeliveryOutcome.BOUNCED, domain,
                        status=error.status, reason=str(error)))
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
        failures = {}
        for m in messages:
            failures[m] = DeliveryFailure("", "4.4.3", reason=reason)
            failures[m].nextHop = domain
        self._deferMessages(messages, failures)

    def _exchangeFailed(self, host: str) -> None:
        if self.smartHost is None and self.mxcalc is not None:
            self.mxcalc.markBad(host)

    def _exchangeWorked(self, host: str) -> None:
        if self.smartHost is None and self.mxcalc is not None:
            self.mxcalc.markGood(host)

    def _returnToSender(self, message: str, failure: DeliveryFailure) -> bool:
        """
        Queue a delivery status notification for a message that failed for
        good, for C{failure} (see L{returnToSender}).
        """
        return returnToSender(self.queue, message, failure, self._reportingMTA())

    def _reportingMTA(self) -> str:
        return self.reportingMTA or getDNSName().decode("ascii")


from mailclient._relaying.hooks import _ManagerHooks  # noqa: E402

registerAdapter(_ManagerHooks, SmartHostSMTPRelayingManager, IRelayManagerHooks)

#: Chooses the first family for C{addressPreference = "any"}.
_chooser = random.Random()


class SmartHostESMTPRelayingManager(SmartHostSMTPRelayingManager):
    """
    Relays the messages of a L{Queue} over ESMTP (see
    L{SmartHostSMTPRelayingManager}).
    """

    factory = ESMTPManagedRelayerFactory
