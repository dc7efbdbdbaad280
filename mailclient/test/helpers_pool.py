"""
Helpers for the tests of the connection pool (L{mailclient.pool}): a test
server that counts its connections, a pool on loopback whose timers run on
a L{Clock}, waiting for a condition one reactor turn at a time, capturing
the log events, and messages.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any, Callable, Dict, List, Optional

from twisted.internet import defer, reactor, task
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from mailclient.pool import SMTPPool
from mailclient.testing import SMTPTestServer


class CountingServer(SMTPTestServer):
    """
    An L{SMTPTestServer} that knows how many connections it has now
    (C{live}) and had at most at once (C{peak}).
    """

    def __init__(self, **config: Any) -> None:
        SMTPTestServer.__init__(self, **config)
        self.live = 0
        self.peak = 0

    def buildProtocol(self, addr: Any) -> Any:
        p = SMTPTestServer.buildProtocol(self, addr)
        made, lost = p.connectionMade, p.connectionLost

        def connectionMade() -> None:
            self.live += 1
            self.peak = max(self.peak, self.live)
            made()

        def connectionLost(reason: Failure = Failure(Exception("lost"))) -> None:
            self.live -= 1
            lost(reason)

        p.connectionMade = connectionMade  # type: ignore[method-assign]
        p.connectionLost = connectionLost  # type: ignore[method-assign]
        return p


def startServer(case: Any, **config: Any) -> CountingServer:
    """
    A L{CountingServer} on a free loopback port, stopped when C{case}
    ends (after the pools made later are closed).
    """
    server = CountingServer(**config)
    server.listenTCP(reactor)  # type: ignore[arg-type]
    case.addCleanup(server.stopListening)
    return server


def makePool(case: Any, server: SMTPTestServer, clock: Optional[Clock] = None,
             **options: Any) -> SMTPPool:
    """
    A pool to C{server} without TLS (unless options say otherwise) and
    without metrics, whose timers run on C{clock} (a new L{Clock} by
    default, as C{pool.testClock}); closed at once when C{case} ends.
    """
    clock = clock or Clock()
    options.setdefault("tls", False)
    options.setdefault("metrics", False)
    pool = SMTPPool("127.0.0.1", server.portNumber, reactor=reactor, clock=clock, **options)
    pool.testClock = clock  # type: ignore[attr-defined]

    def close() -> "defer.Deferred[None]":
        d = pool.close(timeout=0)
        clock.advance(0)
        return d

    case.addCleanup(close)
    return pool


@defer.inlineCallbacks
def waitUntil(predicate: Callable[[], bool], checks: int = 20000) -> Any:
    """
    Let the reactor run until C{predicate()} is true, checking it every
    millisecond or so (a small write may wait for a delayed ACK), and give
    up after C{checks} checks.  (Nothing is asserted about time.)
    """
    for _ in range(checks):
        if predicate():
            return
        yield task.deferLater(reactor, 0.001, lambda: None)
    raise AssertionError("condition not met after %d checks" % (checks,))


def dropConnections(server: SMTPTestServer) -> None:
    """
    Make the server close every open connection, as a server does with
    connections that wait too long.
    """
    for p in list(server._live):
        p._close(abort=False)


def captureEvents(case: Any) -> List[Dict[str, Any]]:
    """
    Every log event emitted until C{case} ends.
    """
    events: List[Dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    case.addCleanup(globalLogPublisher.removeObserver, events.append)
    return events


def deliveryEvents(events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [e for e in events if e.get("mailclient_event") == "delivery"]


def retryEvents(events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [e for e in events if e.get("mailclient_event") == "retry"]


def emailMessage(index: int = 0, to: str = "bob@example.net", body: str = "Hello.\n",
                 **headers: str) -> EmailMessage:
    """
    A small L{EmailMessage} from alice@example.com, its subject numbered.
    """
    m = EmailMessage()
    m["From"] = "Alice <alice@example.com>"
    m["To"] = to
    m["Subject"] = "Message %d" % (index,)
    for name, value in headers.items():
        m[name.replace("_", "-")] = value
    m.set_content(body)
    return m


def rawMessage(index: int = 0) -> bytes:
    return b"Subject: message %d\r\n\r\nBody of message %d.\r\n" % (index, index)
