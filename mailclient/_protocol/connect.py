"""
Connecting to a host by name over IPv6 and IPv4: happy eyeballs (RFC 8305).

L{connectSender} connects a client factory to C{host}:C{port} the way every
connection mailclient opens does (C{sendmail}, the command line, the relay
to mail exchanges and smart hosts):

  - an IP address is connected to with one C{reactor.connectTCP}, as
    Twisted does;
  - a name is resolved with the reactor's name resolver
    (C{reactor.nameResolver}, L{IReactorPluggableNameResolver}), for both
    families at once; its addresses are interleaved, one family then the
    other, starting with the family the resolver put first (RFC 8305
    section 4); the first address is tried at once and each next one when
    the previous has not connected after L{ATTEMPT_DELAY} (250 ms), or as
    soon as it failed; the first connection made wins, and the other
    attempts are stopped;
  - a reactor without a name resolver (Twisted's C{MemoryReactor}, unless
    a test gives it one) connects to the name itself, as Twisted does.

Each address is tried with its own C{reactor.connectTCP} (or
C{connectSSL}, for implicit TLS) carrying the factory itself, so that
C{reactor.tcpClients} of a memory reactor shows the factory, as with
Twisted.  The factory sees one outcome, with a L{HappyEyeballsConnector} as
its connector: C{startedConnecting} once, then C{buildProtocol} for the
winning connection and C{clientConnectionLost} when it ends, or
C{clientConnectionFailed} once when no address could be reached (the last
failure).  C{connector.connect()} in C{clientConnectionFailed} (a retry)
resolves the name again and tries its addresses again.

mailclient's factories (the sender factories, the relayers' factories)
take part themselves (L{IAttemptAware}): their connection methods ask this
module what each event means.  Any other factory is given to each attempt
behind a small proxy that does the same.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol as TypingProtocol, cast

from twisted.internet import error
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IAddress,
    IConnector,
    IDelayedCall,
    IHostnameResolver,
    IHostResolution,
    IReactorTCP,
    IReactorTime,
    IResolutionReceiver,
)
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from mailclient._protocol.outcome import abortConnection
from mailclient._wire.eyeballs import ATTEMPT_DELAY, CONNECT_TIMEOUT, interleave
from mailclient._wire.settings import bindAddresses, addressFamily as family

if TYPE_CHECKING:
    # What a client factory's buildProtocol returns (Twisted 24.7 and later).
    from twisted.internet.protocol import _ProtoWithFactory

_log = Logger()


class _ReactorSSL(TypingProtocol):
    # A reactor given a contextFactory provides IReactorSSL too: connectSSL as
    # reactors take it (IReactorSSL says ClientContextFactory, and no defaults).
    def connectSSL(self, host: str, port: int, factory: ClientFactory, contextFactory: object,
                   timeout: float = ..., bindAddress: tuple[str, int] | None = ..., /
                   ) -> IConnector: ...


class IAttemptAware(Interface):
    """
    A client factory whose C{startedConnecting}, C{buildProtocol},
    C{clientConnectionFailed} and C{clientConnectionLost} call
    L{startedThrough}, L{claimConnection}, L{failedThrough} and
    L{lostThrough}, so that it can be given to each connection attempt of
    a L{HappyEyeballsConnector} itself.
    """


def isIPLiteral(host: str) -> bool:
    """
    Whether C{host} is an IPv4 or IPv6 address (an IPv6 address may carry
    a C{%scope}).
    """
    return isIPAddress(host) or isIPv6Address(host)


class _Attempt:
    """
    One address being tried.

    @ivar state: C{"connecting"}, C{"failed"}, C{"connected"} (the winner),
        C{"lost"} (the winner, disconnected) or C{"abandoned"} (stopped:
        what it reports later is ignored).
    """

    __slots__ = ("race", "address", "round", "_connector", "state", "__weakref__")

    def __init__(self, race: HappyEyeballsConnector, address: str, round: int) -> None:
        self.race = race
        self.address = address
        self.round = round
        self._connector: IConnector | None = None
        self.state = "connecting"

    @property
    def connector(self) -> IConnector | None:
        return self._connector

    @connector.setter
    def connector(self, connector: IConnector | None) -> None:
        self._connector = connector
        if connector is not None:
            try:
                _owners[connector] = self
            except TypeError:
                pass

    def __repr__(self) -> str:
        return "<attempt %s %s>" % (self.address, self.state)


#: The connector of each attempt-aware factory connecting now.
_races: weakref.WeakKeyDictionary[object, HappyEyeballsConnector] = weakref.WeakKeyDictionary()

#: The attempt each connector made by a L{HappyEyeballsConnector} is for.
_owners: weakref.WeakKeyDictionary[object, _Attempt] = weakref.WeakKeyDictionary()


def _raceOf(factory: object) -> HappyEyeballsConnector | None:
    if not _races:
        # (The common case of a factory connected by one connectTCP: no
        # weak reference made for the look-up.)
        return None
    try:
        return _races.get(factory)
    except TypeError:
        return None


@implementer(IConnector)
class HappyEyeballsConnector:
    """
    The connector of a factory connected by L{connectSender} to a host
    name: it tries the host's addresses (RFC 8305) and stands for all of
    them.

    @ivar host: the host name (or address) connected to.
    @ivar port: the port.
    @ivar factory: the client factory.
    @ivar timeout: seconds each attempt may take to connect (and the name
        to resolve).
    @ivar bindAddress: the source address(es) (see L{bindAddresses}).
    @ivar contextFactory: the TLS client connection creator for implicit
        TLS (C{connectSSL}), or L{None} (C{connectTCP}).
    @ivar attemptDelay: seconds before the next address is tried.
    @ivar maxAddresses: the most addresses tried per C{connect()}, or
        L{None}.
    @ivar addresses: the addresses to try, in order: given (the relay
        resolves its exchanges itself), or found by the last resolution.
    @ivar attempted: how many addresses the last C{connect()} tried.
    @ivar address: the address connected to, once connected.
    @ivar state: C{"disconnected"}, C{"connecting"} (resolving or trying) or
        C{"connected"}.
    """

    def __init__(
        self,
        reactor: IReactorTCP,
        host: str,
        port: int,
        factory: ClientFactory,
        timeout: float | None = CONNECT_TIMEOUT,
        bindAddress: object = None,
        *,
        contextFactory: object = None,
        attemptDelay: float = ATTEMPT_DELAY,
        addresses: Sequence[str] | None = None,
        maxAddresses: int | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self.reactor = reactor
        self.host = host
        self.port = port
        self.factory = factory
        self.timeout = timeout
        self.bindAddress = bindAddress
        self._bind = bindAddresses(bindAddress)
        self.contextFactory = contextFactory
        self.attemptDelay = attemptDelay
        self.fixedAddresses = None if addresses is None else list(addresses)
        self.addresses: list[str] = list(addresses or ())
        self.maxAddresses = maxAddresses
        self.clock = clock
        self.attempted = 0
        self.address: str | None = None
        self.state = "disconnected"
        self._round = 0
        self._attempts: list[_Attempt] = []
        self._pending: list[str] = []
        self._timer: IDelayedCall | None = None
        self._resolutionTimer: IDelayedCall | None = None
        self._starting: _Attempt | None = None
        self._announced = False
        self._winner: _Attempt | None = None
        self._lastFailure: Failure | None = None
        self._aware = IAttemptAware.providedBy(factory)

    def __repr__(self) -> str:
        return "<HappyEyeballsConnector %s:%s %s>" % (self.host, self.port, self.state)

    # IConnector

    def getDestination(self) -> IAddress:
        """
        The host and port asked for (the host as given: a name stays a
        name, as Twisted's connectors do).
        """
        if isIPv6Address(self.host):
            return IPv6Address("TCP", self.host, self.port)
        return IPv4Address("TCP", self.host, self.port)

    def connect(self) -> None:
        """
        Resolve the host (unless the addresses were given) and try its
        addresses.
        """
        if self.state != "disconnected":
            raise RuntimeError("can't connect in this state")
        self.state = "connecting"
        self._round += 1
        self._pending = []
        self._winner = None
        self._announced = False
        self.attempted = 0
        self.address = None
        self._lastFailure = None
        if self._aware:
            try:
                _races[self.factory] = self
            except TypeError:
                self._aware = False
        if self.fixedAddresses is not None:
            self._start(self.fixedAddresses)
        elif isIPLiteral(self.host):
            self._start([self.host])
        else:
            self._resolve()

    def stopConnecting(self) -> None:
        """
        Stop resolving and every attempt; the factory's
        C{clientConnectionFailed} is called (with L{error.UserError}), as
        for Twisted's connectors.
        """
        if self.state != "connecting":
            raise error.NotConnectingError("we're not trying to connect")
        self.state = "disconnected"
        self._cancelTimers()
        self._pending = []
        self._abandon(None)
        self._deliverFailure(Failure(error.UserError()))

    def disconnect(self) -> None:
        """
        Stop connecting, or close the connection made.
        """
        if self.state == "connecting":
            self.stopConnecting()
        elif self.state == "connected" and self._winner is not None:
            connector = self._winner.connector
            if connector is not None:
                connector.disconnect()

    # Resolution

    def _resolve(self) -> None:
        resolver = nameResolverOf(self.reactor)
        if resolver is None:
            self._fail(Failure(error.DNSLookupError("no name resolver for %s" % (self.host,))))
            return
        families = set(self._bind) or {4, 6}
        addressTypes = [t for kind, t in ((4, IPv4Address), (6, IPv6Address))
                        if kind in families]
        receiver = _Receiver(self, self._round)
        if self.timeout is not None:
            self._resolutionTimer = self._clock().callLater(
                self.timeout, self._resolutionTimedOut, self._round)
        try:
            resolver.resolveHostName(receiver, self.host, self.port, addressTypes, "TCP")
        except Exception:
            self._resolved(self._round, [], Failure(error.DNSLookupError(
                "cannot resolve %s: %s" % (self.host, Failure().getErrorMessage()))))

    def _resolutionTimedOut(self, round: int) -> None:
        self._resolutionTimer = None
        self._resolved(round, [], Failure(error.DNSLookupError(
            "resolving %s took longer than %ss" % (self.host, self.timeout))))

    def _resolved(self, round: int, addresses: list[str], failure: Failure | None = None) -> None:
        if round != self._round or self.state != "connecting" or self._pending or self.attempted:
            return
        if self._resolutionTimer is not None and self._resolutionTimer.active():
            self._resolutionTimer.cancel()
        self._resolutionTimer = None
        addresses = interleave(addresses)
        if not addresses:
            self._fail(failure or Failure(error.DNSLookupError(
                "no %saddress for %s" % (
                    "IPv%d " % (next(iter(self._bind)),) if len(self._bind) == 1 else "",
                    self.host))))
            return
        self._start(addresses)

    # Attempts

    def _clock(self) -> IReactorTime:
        if self.clock is not None:
            return self.clock
        if IReactorTime.providedBy(self.reactor) or hasattr(self.reactor, "callLater"):
            return cast(IReactorTime, self.reactor)
        from twisted.internet import reactor as globalReactor

        return cast(IReactorTime, globalReactor)

    def _start(self, addresses: Sequence[str]) -> None:
        usable = [a for a in addresses if not self._bind or family(a) in self._bind]
        if self.maxAddresses is not None:
            usable = usable[: max(0, self.maxAddresses)]
        self.addresses = list(usable)
        if not usable:
            self._fail(Failure(error.DNSLookupError(
                "no address of %s to connect to from the bind address" % (self.host,))))
            return
        self._pending = list(usable)
        self._startNext()

    def _startNext(self) -> None:
        """
        Start the next attempt (and, until one connects, schedule the one
        after).  Attempts that fail at once are followed by the next one at
        once.
        """
        while self._pending and self.state == "connecting" and self._winner is None:
            self._cancelTimers()
            address = self._pending.pop(0)
            attempt = _Attempt(self, address, self._round)
            self._attempts.append(attempt)
            self.attempted += 1
            self._starting = attempt
            try:
                connector = self._connectOne(attempt)
            except Exception:
                attempt.state = "failed"
                self._lastFailure = Failure()
                connector = None
            finally:
                self._starting = None
            if attempt.connector is None:
                attempt.connector = connector
            if attempt.state == "connecting":
                if self._pending:
                    self._timer = self._clock().callLater(self.attemptDelay, self._delayOver)
                return
        self._checkExhausted()

    def _delayOver(self) -> None:
        """
        The attempt delay passed without a connection: try the next address.
        """
        self._timer = None
        self._startNext()

    def _connectOne(self, attempt: _Attempt) -> IConnector:
        factory = self.factory if self._aware else _AttemptFactory(self, attempt)
        timeout = CONNECT_TIMEOUT if self.timeout is None else self.timeout
        bind = self._bind.get(family(attempt.address))
        if self.contextFactory is not None:
            return cast(_ReactorSSL, self.reactor).connectSSL(
                attempt.address, self.port, factory, self.contextFactory, timeout, bind)
        return self.reactor.connectTCP(attempt.address, self.port, factory, timeout, bind)

    def _checkExhausted(self) -> None:
        """
        When nothing is pending or in flight any more, report the failure
        (from here: no connector of an attempt is reporting it).
        """
        if self.state != "connecting" or self._winner is not None or self._pending:
            return
        if any(a.state == "connecting" for a in self._current()):
            return
        self._fail(self._lastFailure or Failure(
            error.ConnectError("no address of %s could be tried" % (self.host,))))

    def _current(self) -> list[_Attempt]:
        return [a for a in self._attempts if a.round == self._round]

    def _fail(self, reason: Failure) -> None:
        self.state = "disconnected"
        self._cancelTimers()
        self._deliverFailure(reason)

    def _deliverFailure(self, reason: Failure) -> None:
        self.factory.clientConnectionFailed(self, reason)

    def _cancelTimers(self) -> None:
        for name in ("_timer", "_resolutionTimer"):
            call = getattr(self, name)
            setattr(self, name, None)
            if call is not None and call.active():
                call.cancel()

    def _abandon(self, keep: _Attempt | None) -> None:
        """
        Stop every attempt still connecting but C{keep}.
        """
        for attempt in self._attempts:
            if attempt is keep or attempt.state != "connecting":
                continue
            attempt.state = "abandoned"
            connector = attempt.connector
            if connector is not None:
                try:
                    connector.disconnect()
                except Exception:
                    _log.failure("Stopping the connection attempt to {address}",
                                 address=attempt.address)

    def _bindStarting(self, connector: object) -> _Attempt | None:
        """
        The attempt being started, when C{connector} reports from inside
        its C{connectTCP}, before that returned it.
        """
        starting = self._starting
        if starting is not None and starting.connector is None:
            starting.connector = cast(IConnector, connector)
            return starting
        return None

    # What the attempts report (through an attempt-aware factory, or the
    # proxy of each attempt).

    def attemptStarted(self, attempt: _Attempt) -> IConnector | None:
        if attempt.round != self._round or self._announced or attempt.state != "connecting":
            return None
        self._announced = True
        return self

    def attemptFailed(self, attempt: _Attempt, reason: Failure) -> IConnector | None:
        if attempt.state != "connecting":
            return None
        attempt.state = "failed"
        self._lastFailure = reason
        if attempt is self._starting or attempt.round != self._round:
            return None
        if self.state != "connecting" or self._winner is not None:
            return None
        if self._pending:
            # RFC 8305 section 5: the next attempt starts as soon as one
            # fails.
            self._startNext()
            return None
        if any(a.state == "connecting" for a in self._current()):
            return None
        self.state = "disconnected"
        self._cancelTimers()
        return self

    def attemptConnected(self, attempt: _Attempt | None) -> bool:
        if self.state != "connecting" or self._winner is not None:
            return False
        if attempt is None or attempt.state != "connecting" or attempt.round != self._round:
            return False
        attempt.state = "connected"
        self._winner = attempt
        self.address = attempt.address
        self.state = "connected"
        self._pending = []
        self._cancelTimers()
        self._abandon(attempt)
        return True

    def attemptLost(self, attempt: _Attempt) -> IConnector | None:
        if attempt is not self._winner or attempt.state != "connected":
            return None
        attempt.state = "lost"
        self._winner = None
        self.state = "disconnected"
        return self

    def _connectedAttempt(self, addr: object) -> _Attempt | None:
        """
        Which attempt C{buildProtocol(addr)} is for: the one whose connector
        says it is connected, else the one to C{addr}'s host, else the only
        (or first) one still connecting.
        """
        candidates = [a for a in self._current() if a.state == "connecting"]
        for attempt in candidates:
            if getattr(attempt.connector, "state", None) == "connected":
                return attempt
        host = getattr(addr, "host", None)
        for attempt in candidates:
            if host is not None and attempt.address.split("%")[0] == str(host).split("%")[0]:
                return attempt
        return candidates[0] if candidates else None


@implementer(IResolutionReceiver)
class _Receiver:
    """
    Gathers the addresses the reactor's name resolver finds.
    """

    def __init__(self, connector: HappyEyeballsConnector, round: int) -> None:
        self.connector = connector
        self.round = round
        self.addresses: list[str] = []

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        pass

    def addressResolved(self, address: IAddress) -> None:
        host = getattr(address, "host", None)
        if not isinstance(host, str) or not isIPLiteral(host.split("%")[0]):
            return
        scope = getattr(address, "scopeID", 0)
        if isinstance(address, IPv6Address) and scope and "%" not in host:
            host = "%s%%%s" % (host, scope)
        self.addresses.append(host)

    def resolutionComplete(self) -> None:
        self.connector._resolved(self.round, self.addresses)


class _Refused(Protocol):
    """
    What a connection that lost the race is given: it is closed at once.
    """

    def connectionMade(self) -> None:
        abortConnection(self)


class _AttemptFactory(ClientFactory):
    """
    The factory of one attempt for a factory that is not attempt-aware: it
    passes on what the connector says it means.
    """

    noisy = False

    def __init__(self, connector: HappyEyeballsConnector, attempt: _Attempt) -> None:
        self.race = connector
        self.attempt = attempt

    def doStart(self) -> None:
        self.race.factory.doStart()

    def doStop(self) -> None:
        self.race.factory.doStop()

    def startedConnecting(self, connector: IConnector) -> None:
        if self.attempt.connector is None:
            self.attempt.connector = connector
        outer = self.race.attemptStarted(self.attempt)
        if outer is not None:
            self.race.factory.startedConnecting(outer)

    def buildProtocol(self, addr: IAddress | None) -> _ProtoWithFactory | None:
        if self.race.attemptConnected(self.attempt):
            return self.race.factory.buildProtocol(addr)
        return _Refused()

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        outer = self.race.attemptFailed(self.attempt, reason)
        if outer is not None:
            self.race.factory.clientConnectionFailed(outer, reason)

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        outer = self.race.attemptLost(self.attempt)
        if outer is not None:
            self.race.factory.clientConnectionLost(outer, reason)


# What attempt-aware factories call.  Each returns the connector the
# factory should act on (the L{HappyEyeballsConnector} standing for all the
# attempts, or the connector as given when it is not one of its attempts),
# or L{None} when the event is one attempt's and means nothing to the
# factory.


def _attemptOf(factory: object, connector: object) -> _Attempt | None:
    """
    The attempt C{connector} was made for, if a L{HappyEyeballsConnector}
    made it for C{factory}.
    """
    race = _raceOf(factory)
    if race is None or isinstance(connector, HappyEyeballsConnector):
        # Never connected by a HappyEyeballsConnector (every attempt of one
        # belongs to a factory it was the connector of), or the event is
        # the connector's own.
        return None
    try:
        attempt = _owners.get(connector)
    except TypeError:
        attempt = None
    if attempt is not None:
        return attempt if attempt.race.factory is factory else None
    return race._bindStarting(connector)


def startedThrough(factory: object, connector: IConnector) -> IConnector | None:
    """
    For C{factory.startedConnecting(connector)}: the first attempt's start
    is the connector's; the others' are not reported.
    """
    attempt = _attemptOf(factory, connector)
    if attempt is None:
        return connector
    return attempt.race.attemptStarted(attempt)


def failedThrough(factory: object, connector: IConnector, reason: Failure) -> IConnector | None:
    """
    For C{factory.clientConnectionFailed(connector, reason)}: an attempt's
    failure is the connector's failure only when it was the last hope.
    """
    attempt = _attemptOf(factory, connector)
    if attempt is None:
        return connector
    return attempt.race.attemptFailed(attempt, reason)


def lostThrough(factory: object, connector: IConnector, reason: Failure) -> IConnector | None:
    """
    For C{factory.clientConnectionLost(connector, reason)}: only the
    winning connection's loss is reported.
    """
    attempt = _attemptOf(factory, connector)
    if attempt is None:
        return connector
    return attempt.race.attemptLost(attempt)


def claimConnection(factory: object, addr: object) -> bool:
    """
    For C{factory.buildProtocol(addr)}: whether this connection is the one
    to use (the first made); a factory should refuse the others (return
    L{refusedProtocol}()).
    """
    race = _raceOf(factory)
    if race is None:
        return True
    if race.state != "connecting":
        # Not racing: a second connection while one is up is refused; one
        # made some other way (or by hand, in a test) is the factory's.
        return not (race.state == "connected" and race._winner is not None)
    return race.attemptConnected(race._connectedAttempt(addr))


def refusedProtocol() -> Protocol:
    """
    A protocol that closes its connection at once: what C{buildProtocol}
    returns for a connection that lost the race (whatever wraps it, TLS
    included).
    """
    return _Refused()


def currentConnector(factory: object) -> HappyEyeballsConnector | None:
    """
    The L{HappyEyeballsConnector} of an attempt-aware C{factory}, if it was
    connected by one.
    """
    return _raceOf(factory)


def nameResolverOf(reactor: object) -> IHostnameResolver | None:
    """
    The reactor's name resolver (C{nameResolver}), or L{None} when it has
    none.

    The default resolver of Twisted's C{MemoryReactor} (since Twisted 24),
    which answers C{127.0.0.1} for every name, counts as none: a memory
    reactor sees C{connectTCP(name)}, as before, unless the test installs
    a resolver of its own.
    """
    resolver = getattr(reactor, "nameResolver", None)
    if resolver is None or not callable(getattr(resolver, "resolveHostName", None)):
        return None
    kind = type(resolver)
    if kind.__name__ == "SynchronousResolver" and kind.__module__ == "twisted.internet.testing":
        return None
    return resolver


def connectSender(
    reactor: IReactorTCP,
    host: str | bytes,
    port: int,
    factory: ClientFactory,
    timeout: float | None = None,
    bindAddress: object = None,
    *,
    contextFactory: object = None,
    attemptDelay: float = ATTEMPT_DELAY,
    maxAddresses: int | None = None,
) -> IConnector:
    """
    Connect a client factory (a sender factory, typically) to C{host} on
    C{port}, over IPv6 or IPv4, as C{sendmail} does.

    A host name is resolved with C{reactor.nameResolver} and its addresses
    tried in turn, each started L{ATTEMPT_DELAY} after the previous one
    unless that one has already failed (happy eyeballs, RFC 8305); the
    first connection made is used, the other attempts are stopped.  An IP
    address, or a reactor without a name resolver (Twisted's
    C{MemoryReactor} counts as one unless a test gives it a resolver of its
    own), gets one plain C{reactor.connectTCP(host, port, factory)}, as
    with Twisted.

    The factory sees one outcome: C{startedConnecting} once, then its
    connection (C{buildProtocol}, C{clientConnectionLost}) or one
    C{clientConnectionFailed} once every address failed (with the last
    failure).  The connector it is given retries the whole name when asked
    to C{connect()} again.

    @param reactor: provides L{IReactorTCP} (and L{IReactorSSL} for
        implicit TLS; C{nameResolver} to resolve names; a clock for the
        delays, else the global reactor's).
    @param host: a host name or an IP address.
    @param port: the port.
    @param factory: the client factory.
    @param timeout: seconds each attempt may take to connect; L{None}: the
        factory's C{settings.connectTimeout} if it has settings, else 30.
    @param bindAddress: the local C{(address, port)} to connect from, or
        one per family (a list); addresses of a family without one are not
        tried.  L{None}: the factory's C{settings.bindAddress}, if any.
    @param contextFactory: connect with TLS from the first byte
        (C{connectSSL}), with this client connection creator.
    @param attemptDelay: seconds to wait before trying the next address.
    @param maxAddresses: the most addresses to try.
    @return: the connector (an L{IConnector}).
    """
    if isinstance(host, bytes):
        host = host.decode("idna")
    settings = getattr(factory, "settings", None)
    if timeout is None:
        timeout = getattr(settings, "connectTimeout", None)
    if bindAddress is None:
        bindAddress = getattr(settings, "bindAddress", None)
    if isIPLiteral(host) or nameResolverOf(reactor) is None:
        if bindAddress is None and contextFactory is None and timeout in (None, CONNECT_TIMEOUT):
            # Exactly Twisted's call.
            return reactor.connectTCP(host, port, factory)
        return _plainConnect(reactor, host, port, factory, timeout, bindAddress, contextFactory)
    connector = HappyEyeballsConnector(
        reactor, host, port, factory, timeout, bindAddress,
        contextFactory=contextFactory, attemptDelay=attemptDelay, maxAddresses=maxAddresses,
    )
    connector.connect()
    return connector


def _plainConnect(
    reactor: IReactorTCP, host: str, port: int, factory: ClientFactory,
    timeout: float | None, bindAddress: object, contextFactory: object,
) -> IConnector:
    """
    One C{connectTCP} (or C{connectSSL}) to C{host}, with Twisted's
    arguments when nothing else was asked for.
    """
    binds = bindAddresses(bindAddress)
    bind = None
    if binds:
        bind = binds.get(family(host)) if isIPLiteral(host) else next(iter(binds.values()))
    extra: tuple[()] | tuple[float, tuple[str, int] | None] = ()
    if (timeout is not None and timeout != CONNECT_TIMEOUT) or bind is not None:
        extra = (CONNECT_TIMEOUT if timeout is None else timeout, bind)
    if contextFactory is not None:
        return cast(_ReactorSSL, reactor).connectSSL(host, port, factory, contextFactory, *extra)
    return reactor.connectTCP(host, port, factory, *extra)


__all__ = [
    "ATTEMPT_DELAY", "CONNECT_TIMEOUT", "HappyEyeballsConnector", "IAttemptAware",
    "claimConnection", "connectSender", "failedThrough", "interleave", "lostThrough",
    "refusedProtocol", "startedThrough",
]
