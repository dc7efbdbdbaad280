# -*- test-case-name: mailclient.test.test_testing -*-
"""
L{SMTPTestServer}: the factory users configure and script, which records the
sessions and runs on loopback or in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from twisted.internet import defer, protocol
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IReactorTCP,
    IReactorTime,
)
from twisted.internet.testing import MemoryReactorClock

from mailclient._testing.actions import (
    Action,
    ActionLike,
    Disconnect,
    Text,
    _b,
    _clock,
    _asAction,
    _toAction,
)
from mailclient._testing.certs import (
    LocalCertificates,
    localCertificates,
    privateCertificateOptions,
    tlsAvailable,
)
from mailclient._testing.memory import MemoryConnection
from mailclient._testing.protocol import _SMTPServerProtocol
from mailclient._testing.records import ReceivedMessage, Session
from mailclient._testing.syntax import _parseEHLO

if TYPE_CHECKING:
    from twisted.internet import ssl

    # A factory of server protocols (Twisted's factories are generic only
    # from Twisted 24.7, and only to the type checker).
    _ServerFactory = protocol.ServerFactory[_SMTPServerProtocol]
else:
    _ServerFactory = protocol.ServerFactory

class SMTPTestServer(_ServerFactory):
    """
    A scriptable SMTP server that records everything, for test suites.

    Use it on loopback with L{listenTCP} (and L{stopListening} in cleanup), or
    without sockets with L{connectInMemory}.  Configure it with the
    constructor, script faults with L{script}, L{rcptReply} and
    L{interruptBody}, and inspect L{sessions} and L{messages}.

    @ivar sessions: one L{Session} per connection, in order.
    @ivar hostname: the name in the greeting and the EHLO reply.
    @ivar extensions: the EHLO keyword lines advertised (STARTTLS is left out
        once TLS is on).
    @ivar esmtp: if false, EHLO gets 502 and clients must fall back to HELO.
    @ivar requireAuth: refuse MAIL with 530 until AUTH succeeded.
    @ivar requireTLS: refuse MAIL and AUTH with 530 until STARTTLS.
    @ivar maxSize: refuse messages larger than this many bytes with 552 (at
        MAIL, given a SIZE parameter, and at the end of the data).
    @ivar starttlsInjection: bytes sent in plaintext right after the 220 reply
        to STARTTLS, as a man in the middle would inject them.
    """

    protocol = _SMTPServerProtocol
    noisy = False

    def __init__(
        self,
        hostname: str = "localhost",
        extensions: Iterable[str] | None = None,
        esmtp: bool = True,
        credentials: Mapping[Text, Text] | None = None,
        requireAuth: bool = False,
        requireTLS: bool = False,
        tlsCertificate: Any = None,
        maxSize: int | None = None,
        starttlsInjection: bytes = b"",
        reactor: IReactorTime | None = None,
        starttls: bool | None = None,
    ) -> None:
        """
        @param extensions: the EHLO lines to advertise, such as
            C{["PIPELINING", "STARTTLS", "AUTH PLAIN LOGIN", "SIZE 1000",
            "8BITMIME", "SMTPUTF8", "DSN", "CHUNKING", "ENHANCEDSTATUSCODES",
            "BINARYMIME"]} or any other line.  L{None} advertises
            PIPELINING, 8BITMIME, STARTTLS (if C{cryptography} and pyOpenSSL
            are installed), then C{AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2} if
            C{credentials} are given and C{SIZE maxSize} if C{maxSize} is.
            AUTH and MAIL/RCPT parameters are accepted only if advertised.
        @param starttls: C{True} to advertise STARTTLS (added to
            C{extensions} if they lack it), C{False} never to (removed from
            them), L{None} as C{extensions} say.  (The C{smtp_server} pytest
            fixture passes C{False} unless asked.)
        @param credentials: user name to password (for XOAUTH2, the token).
        @param tlsCertificate: what STARTTLS presents: L{None} for a
            certificate for C{hostname} (and C{localhost}, C{127.0.0.1} and
            C{::1}) signed by L{caCertificatePEM}, an
            L{twisted.internet.ssl.PrivateCertificate}, or server TLS options
            (for example L{twisted.internet.ssl.CertificateOptions}).
        @param reactor: the clock for L{Delay}s on loopback connections
            (default: the one given to L{listenTCP}, else the global reactor).
        """
        self.hostname = hostname
        if extensions is None:
            extensions = ["PIPELINING", "8BITMIME"]
            if starttls or (starttls is None and tlsAvailable()):
                extensions.append("STARTTLS")
            if credentials:
                extensions.append("AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2")
            if maxSize is not None:
                extensions.append(f"SIZE {maxSize}")
        self.extensions: list[str] = list(extensions)
        if starttls is not None:
            offered = [line for line in self.extensions if _isSTARTTLS(line)]
            if starttls and not offered:
                self.extensions.append("STARTTLS")
            elif not starttls:
                self.extensions = [line for line in self.extensions
                                   if not _isSTARTTLS(line)]
        self.esmtp = esmtp
        self._passwords = {_b(k): _b(v) for k, v in (credentials or {}).items()}
        self.requireAuth = requireAuth
        self.requireTLS = requireTLS
        self._tlsCertificate = tlsCertificate
        self._tlsOptions: tuple[str, ssl.CertificateOptions] | None = None
        self.maxSize = maxSize
        self.starttlsInjection = starttlsInjection
        self.reactor = reactor
        self.sessions: list[Session] = []
        self._scripts: dict[str, Action | list[Action | None]] = {}
        self._rcptReplies: dict[bytes, Action] = {}
        self._interrupt: tuple[int, Action] | None = None
        self._port: IListeningPort | None = None
        self._live: set[_SMTPServerProtocol] = set()

    # Scripting.

    def script(self, step: str, action: ActionLike | Sequence[ActionLike],
               text: Text = b"") -> None:
        """
        Script what the server does at C{step}: a command verb (C{"MAIL"},
        C{"RCPT"}, C{"EHLO"}, C{"STARTTLS"}, C{"AUTH"} for the reply to the
        AUTH line, C{"BDAT"}, even an unknown C{"XFOO"}), L{GREETING} or
        L{DATA_END}.

        C{action} is an L{Action}, or a reply code with C{text}; it applies
        to every such step from now on.  A list scripts successive steps, on
        any connection (so retries can be scripted): C{None} in it means the
        default, and once it runs out the default applies.  C{None} alone
        removes the script.

        For example C{server.script("MAIL", 451, b"4.3.0 try later")} or
        C{server.script("RCPT", [None, Reply(452, b"4.5.3 too many")])}.
        """
        step = step.upper()
        if action is None:
            self._scripts.pop(step, None)
        elif isinstance(action, (list, tuple)):
            self._scripts[step] = [_toAction(a) for a in action]
        else:
            self._scripts[step] = _asAction(action, text)

    def rcptReply(self, address: Text, action: Action | int, text: Text = b"") -> None:
        """
        Script the reply to C{RCPT TO:<address>} (compared without case),
        ahead of any C{"RCPT"} script.
        """
        self._rcptReplies[_b(address).lower()] = _asAction(action, text)

    def interruptBody(self, afterBytes: int, action: Action = Disconnect()) -> None:
        """
        Do C{action} (L{Disconnect}, L{Abort} or L{NoReply}) once C{afterBytes}
        bytes of message content (DATA lines or BDAT chunks) have arrived, in
        every transaction from now on.
        """
        self._interrupt = (afterBytes, action)

    def _nextAction(self, step: str) -> Action | None:
        entry = self._scripts.get(step)
        if isinstance(entry, list):
            return entry.pop(0) if entry else None
        return entry

    @property
    def starttls(self) -> bool:
        """
        Whether STARTTLS is advertised.
        """
        return any(_isSTARTTLS(line) for line in self.extensions)

    def _ehloLines(self, tls: bool) -> list[str]:
        return [line for line in self.extensions
                if not (tls and _isSTARTTLS(line))]

    def _offered(self, tls: bool) -> dict[str, list[str]]:
        return _parseEHLO(line.encode("utf-8") for line in self._ehloLines(tls))

    # TLS.

    def _certificates(self) -> LocalCertificates:
        """
        The generated certificates STARTTLS presents: for L{hostname} if a
        certificate can name it, else for C{localhost}.
        """
        try:
            return localCertificates(self.hostname)
        except ValueError:
            return localCertificates()

    @property
    def tlsOptions(self) -> Any:
        """
        The server TLS options STARTTLS uses.
        """
        cert = self._tlsCertificate
        if cert is not None and not (hasattr(cert, "options") and hasattr(cert, "privateKey")):
            return cert
        # Made once (per host name, which a test may change).
        if self._tlsOptions is None or self._tlsOptions[0] != self.hostname:
            if cert is None:
                options = self._certificates().serverOptions()
            else:
                options = privateCertificateOptions(cert)
            self._tlsOptions = (self.hostname, options)
        return self._tlsOptions[1]

    @property
    def caCertificatePEM(self) -> bytes:
        """
        The PEM certificate of the CA that signed the generated server
        certificates (the same for every server of the process); trust it in
        the client under test.
        """
        return self._certificates().caCertificatePEM

    def clientTLSOptions(self, hostname: str | None = None) -> IOpenSSLClientConnectionCreator:
        """
        Client TLS options that trust only L{caCertificatePEM} and check the
        server is C{hostname}: the same as
        C{optionsForClientTLS(hostname, trustRoot=Certificate.loadPEM(pem))}.

        @param hostname: the name to verify; by default the server's
            L{hostname}, which the generated certificate is for (as it is for
            C{localhost}, C{127.0.0.1} and C{::1}).
        """
        certificates = self._certificates()
        return certificates.clientOptions(hostname or certificates.hostname)

    # Records.

    @property
    def messages(self) -> list[ReceivedMessage]:
        """
        The messages accepted on all connections, in order.
        """
        return [m for s in self.sessions for m in s.messages]

    def transcript(self) -> str:
        """
        The transcripts of all sessions, each under a C{--- session N ---}
        header.
        """
        return "\n".join(f"--- session {i} ---\n{s.transcript()}"
                         for i, s in enumerate(self.sessions, 1))

    # Running.

    def buildProtocol(self, addr: IAddress | None) -> _SMTPServerProtocol:
        """
        Make the protocol for one connection.
        """
        p = self.protocol()
        p.factory = self
        p.clock = self.reactor
        return p

    def listenTCP(self, reactor: IReactorTCP | None = None,
                  interface: str = "127.0.0.1", port: int = 0) -> IListeningPort:
        """
        Listen on C{interface}:C{port} (by default a free loopback port) and
        return the L{IListeningPort}; see L{portNumber}.
        """
        if self._port is not None:
            raise RuntimeError("already listening")
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = cast(IReactorTCP, globalReactor)
        if self.reactor is None and IReactorTime.providedBy(reactor):
            self.reactor = cast(IReactorTime, reactor)
        # (listenTCP's annotation takes a factory of any protocol only.)
        self._port = reactor.listenTCP(port, cast(protocol.ServerFactory, self),
                                       interface=interface)
        return self._port

    @property
    def listening(self) -> bool:
        """
        Whether L{listenTCP} was called and L{stopListening} not yet.
        """
        return self._port is not None

    @property
    def portNumber(self) -> int:
        """
        The TCP port L{listenTCP} is listening on.
        """
        if self._port is None:
            raise RuntimeError("not listening")
        return int(cast(IPv4Address, self._port.getHost()).port)

    def stopListening(self) -> "defer.Deferred[None]":
        """
        Stop listening, reset every open loopback connection and cancel
        pending delayed replies.  The L{defer.Deferred} fires once all are
        gone and the reactor has turned once more (so the peers have seen the
        connections close): a test that waits for it leaves a clean reactor.
        """
        waits: list[defer.Deferred[Any]] = []
        if self._port is not None:
            waits.append(defer.maybeDeferred(self._port.stopListening))
            self._port = None
        for p in list(self._live):
            if p.inMemory:
                continue
            d: defer.Deferred[None] = defer.Deferred()
            p._whenLost.append(d)
            waits.append(d)
            p._close(abort=True)
        def settle(_: object) -> "defer.Deferred[None]":
            d: defer.Deferred[None] = defer.Deferred()
            _clock(self.reactor).callLater(0, d.callback, None)
            return d

        return defer.gatherResults(waits).addCallback(settle)

    def connectInMemory(self, client: IProtocol | IProtocolFactory,
                        clock: MemoryReactorClock | None = None) -> MemoryConnection:
        """
        Connect C{client} to this server in memory and return the
        L{MemoryConnection}, already pumped once (so the greeting and
        whatever follows from it have been exchanged).

        @param client: a client protocol, or a factory to build it.  A
            factory's C{startedConnecting}, C{clientConnectionLost} (with a
            connector whose C{connect()} retries) and C{doStart}/C{doStop}
            are called as a reactor would.  A client using
            L{policies.TimeoutMixin} gets its C{callLater} pointed at the
            clock, so its timeouts run on L{MemoryConnection.advance}.
        @param clock: the clock for both sides; a new one by default.
        """
        connection = MemoryConnection(self, client, clock or MemoryReactorClock())
        connection.pump()
        return connection

    def connectPending(self, reactor: MemoryReactorClock) -> MemoryConnection:
        """
        Take the oldest C{connectTCP} call made on C{reactor} (a
        L{MemoryReactorClock} given to the code under test) and connect it to
        this server in memory, on that reactor's clock, as
        L{connectInMemory} does.  Whatever host and port the code asked for
        reach this server.

        @raise IndexError: if no connection attempt is pending.
        """
        host, port, factory = reactor.tcpClients.pop(0)[:3]
        reactor.connectors.pop(0)
        connection = MemoryConnection(self, factory, reactor,
                                      IPv4Address("TCP", host, port), announce=False)
        connection.pump()
        return connection


def _isSTARTTLS(line: str) -> bool:
    return [word.upper() for word in line.split()[:1]] == ["STARTTLS"]
