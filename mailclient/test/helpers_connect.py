"""
Helpers of the connection tests (happy eyeballs): a name resolver double
for C{reactor.nameResolver}, a reactor that resolves with it and records
its connections, an attempt-aware factory that records what it is told, and
a loopback address that never answers (a black hole).
"""

from __future__ import annotations

import socket
from typing import Any, Dict, List, Optional, Sequence, Tuple

from twisted.internet import protocol
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHostnameResolver, IHostResolution
from zope.interface import implementer

from mailclient._protocol.connect import (
    IAttemptAware,
    claimConnection,
    failedThrough,
    lostThrough,
    refusedProtocol,
    startedThrough,
)


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:  # pragma: no cover - not called
        raise NotImplementedError()


@implementer(IHostnameResolver)
class StaticResolver:
    """
    A name resolver answering from a fixed table, at once, or when told
    (C{manual}).

    @ivar hosts: each name's addresses, in the order to give them.
    @ivar queries: C{(name, port, address types)} of each resolution.
    @ivar pending: with C{manual}, the resolutions not yet answered:
        answer them with L{answer}.
    """

    def __init__(self, hosts: Dict[str, Sequence[str]], manual: bool = False) -> None:
        self.hosts = {name.lower(): list(addresses) for name, addresses in hosts.items()}
        self.manual = manual
        self.queries: List[Tuple[str, int, Optional[Tuple[Any, ...]]]] = []
        self.pending: List[Tuple[Any, str, int, Any]] = []

    def resolveHostName(
        self, resolutionReceiver: Any, hostName: str, portNumber: int = 0,
        addressTypes: Optional[Sequence[Any]] = None, transportSemantics: str = "TCP",
    ) -> IHostResolution:
        types = tuple(addressTypes) if addressTypes is not None else None
        self.queries.append((hostName, portNumber, types))
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        if self.manual:
            self.pending.append((resolutionReceiver, hostName, portNumber, types))
        else:
            self._answer(resolutionReceiver, hostName, portNumber, types)
        return resolution

    def answer(self) -> None:
        """
        Answer the oldest pending resolution.
        """
        self._answer(*self.pending.pop(0))

    def _answer(self, receiver: Any, name: str, port: int, types: Any) -> None:
        for address in self.hosts.get(name.lower(), []):
            kind = IPv6Address if ":" in address else IPv4Address
            if types is None or kind in types:
                receiver.addressResolved(kind("TCP", address, port))
        receiver.resolutionComplete()


class ResolvingReactor:
    """
    Stands for a reactor (every attribute but these is the reactor's):
    resolves names with C{resolver} and records the C{connectTCP} and
    C{connectSSL} calls, C{(kind, host, port)}.
    """

    def __init__(self, reactor: Any, resolver: Any) -> None:
        self._reactor = reactor
        self.nameResolver = resolver
        self.connections: List[Tuple[str, str, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def connectTCP(self, host: str, port: int, factory: Any, *args: Any, **kw: Any) -> Any:
        self.connections.append(("TCP", host, port))
        return self._reactor.connectTCP(host, port, factory, *args, **kw)

    def connectSSL(self, host: str, port: int, factory: Any, ctx: Any, *args: Any, **kw: Any) -> Any:
        self.connections.append(("SSL", host, port))
        return self._reactor.connectSSL(host, port, factory, ctx, *args, **kw)


class RedirectingReactor(ResolvingReactor):
    """
    A L{ResolvingReactor} that sends connections to some (documentation)
    addresses to 127.0.0.1 ports instead, so that exchanges at different
    addresses can be tested on loopback alone.

    @ivar ports: the 127.0.0.1 port for each address.
    """

    def __init__(self, reactor: Any, ports: Dict[str, int], resolver: Any = None) -> None:
        ResolvingReactor.__init__(self, reactor, resolver)
        self.ports = ports

    def connectTCP(self, host: str, port: int, factory: Any, *args: Any, **kw: Any) -> Any:
        self.connections.append(("TCP", host, port))
        if host in self.ports:
            host, port = "127.0.0.1", self.ports[host]
        return self._reactor.connectTCP(host, port, factory, *args, **kw)


@implementer(IAttemptAware)
class RecordingFactory(protocol.ClientFactory):
    """
    An attempt-aware client factory that records what it is told:
    C{("started", connector)}, C{("built", addr)},
    C{("failed", connector, reason)}, C{("lost", connector, reason)}.
    """

    noisy = False

    def __init__(self) -> None:
        self.events: List[Tuple[Any, ...]] = []
        self.protocols: List[protocol.Protocol] = []

    def startedConnecting(self, connector: Any) -> None:
        outer = startedThrough(self, connector)
        if outer is not None:
            self.events.append(("started", outer))

    def buildProtocol(self, addr: Any) -> Any:
        if not claimConnection(self, addr):
            return refusedProtocol()
        self.events.append(("built", addr))
        p = protocol.Protocol()
        self.protocols.append(p)
        return p

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        outer = failedThrough(self, connector, reason)
        if outer is not None:
            self.events.append(("failed", outer, reason))

    def clientConnectionLost(self, connector: Any, reason: Any) -> None:
        outer = lostThrough(self, connector, reason)
        if outer is not None:
            self.events.append(("lost", outer, reason))

    def kinds(self) -> List[str]:
        return [event[0] for event in self.events]


class PlainRecordingFactory(protocol.ClientFactory):
    """
    The same record, from a factory that knows nothing of happy eyeballs.
    """

    noisy = False

    def __init__(self) -> None:
        self.events: List[Tuple[Any, ...]] = []

    def startedConnecting(self, connector: Any) -> None:
        self.events.append(("started", connector))

    def buildProtocol(self, addr: Any) -> Any:
        self.events.append(("built", addr))
        return protocol.Protocol()

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self.events.append(("failed", connector, reason))

    def clientConnectionLost(self, connector: Any, reason: Any) -> None:
        self.events.append(("lost", connector, reason))

    def kinds(self) -> List[str]:
        return [event[0] for event in self.events]


class BlackHole:
    """
    A loopback address and port where connections are never answered: a
    listening socket whose accept queue (backlog 0) is already full, so
    that the kernel drops further SYNs and connects hang until they time
    out, as to an unreachable address.

    @ivar host: the address (C{"::1"} or C{"127.0.0.1"}).
    @ivar port: the port.
    """

    def __init__(self, host: str, port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.host = host
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET6:
            self.listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.listener.bind((host, port))
        self.listener.listen(0)
        self.port = int(self.listener.getsockname()[1])
        self.fillers: List[socket.socket] = []
        # Fill the accept queue (one connection with backlog 0), and check
        # that the next connection does hang.
        for _ in range(2):
            filler = socket.socket(family, socket.SOCK_STREAM)
            filler.setblocking(False)
            try:
                filler.connect((host, self.port))
            except BlockingIOError:
                pass
            self.fillers.append(filler)

    def isBlackHole(self) -> bool:
        """
        Whether one more connection hangs (not accepted, not refused)
        rather than being completed: what the kernel does with a full
        accept queue.
        """
        import select

        probe = socket.socket(self.listener.family, socket.SOCK_STREAM)
        probe.setblocking(False)
        try:
            try:
                probe.connect((self.host, self.port))
            except BlockingIOError:
                pass
            except OSError:
                return False
            _, writable, _ = select.select([], [probe], [], 0.2)
            return not writable
        finally:
            probe.close()

    def close(self) -> None:
        for s in self.fillers:
            s.close()
        self.listener.close()


def blackHoleBeside(port: int, host: str = "::1") -> BlackHole:
    """
    A L{BlackHole} on C{host} with the same port number as a server
    listening elsewhere (so that both addresses of one name, tried on one
    port, reach one or the other).
    """
    return BlackHole(host, port)
