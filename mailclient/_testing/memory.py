# -*- test-case-name: mailclient.test.test_testing -*-
"""
Connecting a client to the server in memory: iosim's transports with real TLS
and real resets, a connector for client factories that retry, and the
L{MemoryConnection} that pumps bytes between the two sides.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from twisted.internet import error, protocol
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IConnector, IProtocol, IProtocolFactory, ISSLTransport
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols import policies
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import directlyProvides, implementer

if TYPE_CHECKING:
    from OpenSSL import SSL, crypto
    from twisted.protocols.tls import SomeConnectionCreator, TLSMemoryBIOProtocol

    from mailclient._testing.server import SMTPTestServer

_IOSIM_TAKES_CLOCK = "clock" in inspect.signature(iosim.connect).parameters


class _RawSide:
    """
    The transport a TLS layer writes its records to: the in-memory transport
    underneath, bypassing its own TLS routing.
    """

    def __init__(self, transport: "_MemoryTransport") -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        iosim.FakeTransport.write(self._transport, data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        iosim.FakeTransport.loseConnection(self._transport)

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


class _MemoryTransport(iosim.FakeTransport):
    """
    iosim's transport with a real TLS layer for C{startTLS} (iosim's own only
    pretends), a real reset for C{abortConnection}, and a hook for the client
    factory's C{clientConnectionLost}.
    """

    def __init__(self, proto: IProtocol, isServer: bool, host: IPv4Address,
                 peer: IPv4Address) -> None:
        super().__init__(proto, isServer, host, peer)
        self._tlsLayer: TLSMemoryBIOProtocol | None = None
        self.other: _MemoryTransport | None = None
        self.onLost: Callable[[Failure], None] | None = None

    def startTLS(self, contextFactory: SomeConnectionCreator, beNormal: bool = True) -> None:
        from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

        isClient = (not self.isServer) if beNormal else self.isServer
        # (No wrapped factory: the protocol is made here, around the one
        # connected.  Twisted's annotation asks for one.)
        factory = TLSMemoryBIOFactory(contextFactory, isClient, None)  # type: ignore[arg-type]
        # Not factory.protocol: newer Twisted's buffers small writes until a
        # turn of the global reactor, which never comes in memory.
        tlsLayer = self._tlsLayer = TLSMemoryBIOProtocol(factory, self.protocol, False)
        self.protocol = tlsLayer
        directlyProvides(self, ISSLTransport)
        tlsLayer.makeConnection(_RawSide(self))

    def write(self, data: bytes) -> None:
        if self._tlsLayer is not None:
            if not self.disconnecting:
                self._tlsLayer.write(data)
        else:
            super().write(data)

    def loseConnection(self) -> None:
        if self._tlsLayer is not None and not self.disconnecting:
            self._tlsLayer.loseConnection()
        else:
            super().loseConnection()

    def abortConnection(self) -> None:
        self.stream = []
        self.disconnecting = True
        # (iosim's class attribute is a ConnectionDone, so its type says.)
        self.disconnectReason = error.ConnectionAborted()  # type: ignore[assignment]
        if self.other is not None:
            self.other.disconnectReason = error.ConnectionLost(  # type: ignore[assignment]
                "Connection reset by peer")

    # (Asked once TLS is on.)

    def getPeerCertificate(self) -> crypto.X509 | None:
        return cast("TLSMemoryBIOProtocol", self._tlsLayer).getPeerCertificate()

    def getHandle(self) -> SSL.Connection:
        return cast("TLSMemoryBIOProtocol", self._tlsLayer).getHandle()

    def reportDisconnect(self) -> None:
        reason = Failure(self.disconnectReason)
        self.protocol.connectionLost(reason)
        if self.onLost is not None:
            self.onLost(reason)


@implementer(IConnector)
class _MemoryConnector:
    """
    The L{IConnector} a client factory sees in memory.  C{connect()} (a retry)
    is carried out by the next L{MemoryConnection.pump}.
    """

    def __init__(self, destination: IPv4Address) -> None:
        self.destination = destination
        self.state = "connecting"
        self.retry = False
        self.stopped = False
        self.current: _MemoryTransport | None = None

    def connect(self) -> None:
        if not self.stopped:
            self.state, self.retry = "connecting", True

    def disconnect(self) -> None:
        self.stopConnecting()
        if self.current is not None:
            self.current.loseConnection()

    def stopConnecting(self) -> None:
        self.retry = False
        self.stopped = True

    def getDestination(self) -> IPv4Address:
        return self.destination


_clientPorts = itertools.count(40000)


class MemoryConnection:
    """
    A client connected to an L{SMTPTestServer} in memory.  Nothing moves until
    L{pump} or L{advance} is called.

    @ivar server: the L{SMTPTestServer}.
    @ivar client: the client protocol (the latest, if its factory retried).
    @ivar session: the server's L{Session} for the latest connection.
    @ivar clock: the clock both sides' delayed calls run on.
    @ivar clientTransport: the client's transport (an iosim
        C{FakeTransport}); C{serverTransport} is the server's.
    """

    def __init__(self, server: "SMTPTestServer", client: IProtocol | IProtocolFactory,
                 clock: MemoryReactorClock,
                 destination: IPv4Address = IPv4Address("TCP", "127.0.0.1", 25),
                 announce: bool = True) -> None:
        self.server = server
        self.clock = clock
        self.client: Any = None
        self._factory: Any = client if IProtocolFactory.providedBy(client) else None
        self._connector = _MemoryConnector(destination)
        if self._factory is not None:
            self._factory.doStart()
        self._connect(None if self._factory is not None else client, announce)

    def _connect(self, client: Any, announce: bool = True) -> None:
        factory, connector = self._factory, self._connector
        serverAddress = connector.destination
        clientAddress = IPv4Address("TCP", "127.0.0.1", next(_clientPorts))
        if client is None:
            if announce and isinstance(factory, protocol.ClientFactory):
                factory.startedConnecting(connector)
            client = factory.buildProtocol(serverAddress)
        if isinstance(client, policies.TimeoutMixin):
            # Its timeouts would otherwise go to the global reactor.  (Twisted's
            # idiom: the instance's callLater replaced by the clock's.)
            client.callLater = self.clock.callLater  # type: ignore[method-assign,assignment]
        serverProto = self.server.buildProtocol(clientAddress)
        serverProto.clock = self.clock
        serverProto.inMemory = True
        self.serverTransport = _MemoryTransport(serverProto, True, serverAddress, clientAddress)
        self.clientTransport = _MemoryTransport(client, False, clientAddress, serverAddress)
        self.serverTransport.other, self.clientTransport.other = (
            self.clientTransport, self.serverTransport)
        if factory is not None:
            connector.state, connector.current = "connected", self.clientTransport
            self.clientTransport.onLost = self._clientLost
        self.client = client
        self._serverProtocol = serverProto
        # Twisted before 23.x: iosim.connect takes no clock.
        clockArg = {"clock": self.clock} if _IOSIM_TAKES_CLOCK else {}
        self._pump = iosim.connect(serverProto, self.serverTransport, client,
                                   self.clientTransport, greet=False, **clockArg)
        self.session = serverProto.session

    def _clientLost(self, reason: Failure) -> None:
        factory, connector = self._factory, self._connector
        connector.state, connector.current = "disconnected", None
        if isinstance(factory, protocol.ClientFactory):
            factory.clientConnectionLost(connector, reason)
        if connector.state == "disconnected" and factory is not None:
            factory.doStop()

    def pump(self) -> bool:
        """
        Move bytes both ways (and run calls due now) until nothing moves,
        reconnecting if the client factory asked to retry.  Return whether
        anything moved.
        """
        moved = False
        while True:
            moved = self._pump.flush() or moved
            if not self._connector.retry:
                return moved
            self._connector.retry = False
            self._connect(None)
            moved = True

    def advance(self, seconds: float) -> bool:
        """
        Move the clock on by C{seconds} (running what falls due) and pump.
        """
        self.clock.advance(seconds)
        return self.pump()

    @property
    def connected(self) -> bool:
        """
        Whether either side still has the connection open.
        """
        return not (self.clientTransport.disconnected and self.serverTransport.disconnected)

    def abort(self) -> None:
        """
        Reset the connection from the server's side, stop retries and pump
        until both sides have seen it go.
        """
        self._connector.stopConnecting()
        self._serverProtocol._close(abort=True)
        self.pump()
