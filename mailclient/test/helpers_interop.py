"""
Real SMTP servers on loopback for the interoperability tests, started by
the tests themselves: Twisted's own C{twisted.mail.smtp.ESMTP} server (with
a cred portal for AUTH LOGIN, PLAIN and CRAM-MD5, and STARTTLS), and
connection tracking, so tests leave a clean reactor.

Used by L{mailclient.test.test_interop}, L{mailclient.test.test_sender} and
L{mailclient.test.test_sendmail}.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from twisted.cred import checkers, portal
from twisted.cred.credentials import CramMD5Credentials
from twisted.internet import defer, protocol, reactor
from twisted.internet.protocol import connectionDone
from twisted.mail import smtp as twisted_smtp
from twisted.mail._cred import PLAINCredentials
from twisted.mail.interfaces import IMessageDelivery
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

USER = b"alice"
PASSWORD = b"Sup3r-secret"
SENDER = "sender@example.com"

#: For Twisted's server, which inserts a blank line before a message whose
#: first line is not a header: the body's first line starts with a dot.
TWISTED_MESSAGE = b"Subject: interop\n\n.body starts with a dot\n..two dots\nno final newline"
TWISTED_RECEIVED = b"Subject: interop\r\n\r\n.body starts with a dot\r\n..two dots\r\nno final newline\r\n"


# Tracking client connections, so tests leave a clean reactor.


class ClientTracker:
    """
    Count the connections a client factory starts and ends, so that a test
    can wait for all of them to be closed.
    """

    def __init__(self) -> None:
        self.started = 0
        self.ended = 0
        self.protocols: List[Any] = []
        self._waiting: List[defer.Deferred] = []

    def watch(self, factory: Any) -> Any:
        """
        Wrap C{factory}'s connection callbacks (on the instance); return it.
        """
        startedConnecting = factory.startedConnecting
        buildProtocol = factory.buildProtocol
        lost = factory.clientConnectionLost
        failed = factory.clientConnectionFailed

        def _started(connector: Any) -> Any:
            self.started += 1
            return startedConnecting(connector)

        def _build(addr: Any) -> Any:
            p = buildProtocol(addr)
            if p is not None:
                self.protocols.append(p)
            return p

        def _ended(original: Callable[..., Any]) -> Callable[..., Any]:
            def callback(connector: Any, reason: Failure) -> Any:
                try:
                    return original(connector, reason)
                finally:
                    self.ended += 1
                    self._check()

            return callback

        factory.startedConnecting = _started
        factory.buildProtocol = _build
        factory.clientConnectionLost = _ended(lost)
        factory.clientConnectionFailed = _ended(failed)
        return factory

    def _idle(self) -> bool:
        return self.ended >= self.started

    def _check(self) -> None:
        if self._idle():
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def whenIdle(self, timeout: float = 5.0) -> defer.Deferred:
        """
        Fire when every connection started has ended.  After C{timeout}
        seconds, abort the connections still open and fail.
        """
        if self._idle():
            return defer.succeed(None)
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)

        def stuck(reason: Failure) -> defer.Deferred:
            reason.trap(defer.TimeoutError)
            for p in self.protocols:
                if p.transport is not None and p.transport.connected:
                    p.transport.abortConnection()
            d2: defer.Deferred = defer.Deferred()
            self._waiting.append(d2)
            self._check()

            def fail(_: Any) -> None:
                raise AssertionError("a client connection was left open")

            return d2.addCallback(fail)

        d.addTimeout(timeout, reactor)
        d.addErrback(stuck)
        return d


class TrackingReactor:
    """
    Stands for the global reactor (as C{sendmail}'s C{reactor} argument) and
    tracks the factories given to C{connectTCP} and C{connectSSL}.
    """

    def __init__(self, tracker: ClientTracker) -> None:
        self.tracker = tracker
        self.factories: List[Any] = []
        self.connections: List[Tuple[str, Any, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)

    def connectTCP(self, host: Any, port: int, factory: Any, *args: Any, **kw: Any) -> Any:
        self.factories.append(self.tracker.watch(factory))
        self.connections.append(("TCP", host, port))
        return reactor.connectTCP(host, port, factory, *args, **kw)

    def connectSSL(self, host: Any, port: int, factory: Any, ctx: Any, *args: Any, **kw: Any) -> Any:
        self.factories.append(self.tracker.watch(factory))
        self.connections.append(("SSL", host, port))
        return reactor.connectSSL(host, port, factory, ctx, *args, **kw)


# Twisted's ESMTP server


@implementer(twisted_smtp.IMessage)
class _StoredMessage:
    def __init__(self, server: "TwistedSMTPServer", origin: Any, recipient: Any) -> None:
        self.server = server
        self.origin = origin
        self.recipient = recipient
        self.lines: List[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def eomReceived(self) -> defer.Deferred:
        self.server.received.append(
            (str(self.origin), str(self.recipient.dest), b"\r\n".join(self.lines) + b"\r\n")
        )
        return defer.succeed(None)

    def connectionLost(self) -> None:
        pass


@implementer(IMessageDelivery)
class _Delivery:
    def __init__(self, server: "TwistedSMTPServer", avatarId: Optional[bytes] = None) -> None:
        self.server = server
        self.avatarId = avatarId

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> None:
        return None

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        if self.server.requireAuth and self.avatarId is None:
            raise twisted_smtp.SMTPBadSender(origin, 530, "Authentication required")
        return origin

    def validateTo(self, user: Any) -> Any:
        if str(user.dest) in self.server.refuse:
            raise twisted_smtp.SMTPBadRcpt(user)
        return lambda: _StoredMessage(self.server, user.orig, user)


@implementer(portal.IRealm)
class _Realm:
    def __init__(self, server: "TwistedSMTPServer") -> None:
        self.server = server

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        if IMessageDelivery in interfaces:
            self.server.logins.append(avatarId)
            return IMessageDelivery, _Delivery(self.server, avatarId), lambda: None
        raise NotImplementedError(interfaces)


class _RecordingESMTP(twisted_smtp.ESMTP):
    def lineReceived(self, line: bytes) -> Any:
        self.factory.server.commands.append(line)
        return twisted_smtp.ESMTP.lineReceived(self, line)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        twisted_smtp.ESMTP.connectionLost(self, reason)
        self.factory.server._lost(self)


CHALLENGERS: Dict[bytes, Callable[[], Any]] = {
    b"CRAM-MD5": lambda: CramMD5Credentials(b"mx.test"),
    b"LOGIN": twisted_smtp.LOGINCredentials,
    b"PLAIN": PLAINCredentials,
}


class _ServerFactory(protocol.ServerFactory):
    def __init__(self, server: "TwistedSMTPServer") -> None:
        self.server = server

    def buildProtocol(self, addr: Any) -> Any:
        s = self.server
        p = _RecordingESMTP(
            {name: CHALLENGERS[name] for name in s.mechanisms}, s.startTLSOptions
        )
        p.factory = self
        p.host = b"mx.test"
        p.timeout = None
        p.portal = s.portal
        p.delivery = _Delivery(s)
        s.protocols.append(p)
        return p


class TwistedSMTPServer:
    """
    Twisted's ESMTP server on 127.0.0.1, an ephemeral port.

    @ivar received: C{(sender, recipient, message bytes)} for each delivery.
    @ivar commands: Every line the server received.
    @ivar logins: The avatar IDs of successful logins.
    """

    def __init__(
        self,
        startTLSOptions: Any = None,
        implicitTLSOptions: Any = None,
        mechanisms: Sequence[bytes] = (b"CRAM-MD5", b"LOGIN", b"PLAIN"),
        requireAuth: bool = False,
        refuse: Sequence[str] = (),
    ) -> None:
        self.startTLSOptions = startTLSOptions
        self.mechanisms = list(mechanisms)
        self.requireAuth = requireAuth
        self.refuse = set(refuse)
        self.received: List[Tuple[str, str, bytes]] = []
        self.commands: List[bytes] = []
        self.logins: List[Any] = []
        self.protocols: List[Any] = []
        self._open: Dict[int, defer.Deferred] = {}
        checker = checkers.InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(USER, PASSWORD)
        self.portal = portal.Portal(_Realm(self), [checker])
        factory = _ServerFactory(self)
        if implicitTLSOptions is not None:
            self.port = reactor.listenSSL(0, factory, implicitTLSOptions, interface="127.0.0.1")
        else:
            self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.portNumber = self.port.getHost().port

    def _lost(self, p: Any) -> None:
        d = self._open.pop(id(p), None)
        if d is not None:
            d.callback(None)

    def stop(self) -> defer.Deferred:
        """
        Stop listening and close every connection still open.
        """
        waits = [defer.maybeDeferred(self.port.stopListening)]
        for p in self.protocols:
            if p.transport is not None and p.transport.connected:
                d: defer.Deferred = defer.Deferred()
                self._open[id(p)] = d
                waits.append(d)
                p.transport.abortConnection()
        return defer.gatherResults(waits).addCallback(lambda _: None)


def startTwistedServer(testCase: TestCase, tracker: ClientTracker, **kw: Any) -> TwistedSMTPServer:
    """
    Start a L{TwistedSMTPServer}; on cleanup stop it, then wait for the
    client connections to be closed.
    """
    server = TwistedSMTPServer(**kw)
    testCase.addCleanup(tracker.whenIdle)
    testCase.addCleanup(server.stop)
    return server
