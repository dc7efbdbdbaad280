"""
Helpers of the relaying tests: a small SMTP server on loopback that records
the messages relayers deliver (L{RelayTestServer}), and child Python
processes that import this mailclient (L{spawnPython}).

Used by L{mailclient.test.test_relay}, L{mailclient.test.test_relaymanager}
and L{mailclient.test.test_relaying_docs}.
"""

from __future__ import annotations

import os
import sys
import textwrap
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from twisted.internet import defer, protocol, reactor
from twisted.protocols import basic
from twisted.trial.unittest import TestCase

import mailclient

Policy = Union[bytes, str, None]

#: A body no text-mode reader survives: invalid UTF-8, NUL, high bytes, a
#: leading dot, UTF-8 text and a line ending in a bare LF.
BINARY_BODY = (
    b"Subject: binary\n"
    b"Content-Transfer-Encoding: 8bit\n"
    b"\n"
    b"caf\xc3\xa9 \xe2\x98\x83 UTF-8\n"
    b"\xff\xfe\x00\x80 not UTF-8\n"
    b".leading dot\n"
    b"last line\n"
)


def wire(body: bytes) -> bytes:
    """
    The message as the server reassembles it: LF becomes CRLF.
    """
    return body.replace(b"\n", b"\r\n")


class Received:
    """
    A message the test server accepted.
    """

    def __init__(self, sender: bytes, recipients: List[bytes], data: bytes) -> None:
        self.sender = sender
        self.recipients = recipients
        self.data = data

    def __repr__(self) -> str:
        return "Received(%r, %r, %d bytes)" % (self.sender, self.recipients, len(self.data))


class _ServerProtocol(basic.LineReceiver):
    factory: "RelayTestServer"
    transport: Any
    MAX_LENGTH = 1 << 20

    def connectionMade(self) -> None:
        self.factory._opened(self)
        self._reset()
        self.inData = False
        self.sendLine(self.factory.greeting)
        if not self.factory.greeting.startswith(b"2"):
            self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.factory._closed(self)

    def _reset(self) -> None:
        self.sender: Optional[bytes] = None
        self.recipients: List[bytes] = []
        self.lines: List[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        if self.inData:
            if line == b".":
                self.inData = False
                self._endOfData()
            else:
                self.lines.append(line[1:] if line.startswith(b".") else line)
            return
        verb, _, arg = line.partition(b" ")
        verb = verb.upper()
        self.factory.commands.append(line)
        if verb == b"EHLO":
            self.sendLine(b"250-relay.test\r\n250-8BITMIME\r\n250 PIPELINING")
        elif verb == b"HELO":
            self.sendLine(b"250 relay.test")
        elif verb == b"MAIL":
            self._reset()
            self.sender = arg.partition(b":")[2].strip().strip(b"<>")
            self.sendLine(b"250 2.1.0 ok")
        elif verb == b"RCPT":
            address = arg.partition(b":")[2].strip().strip(b"<>")
            reply = self.factory.policy("rcpt", address)
            if reply is None:
                self.recipients.append(address)
                reply = b"250 2.1.5 ok"
            self.sendLine(reply)
        elif verb == b"DATA":
            if not self.recipients:
                self.sendLine(b"503 5.5.1 no valid recipients")
            else:
                self.inData = True
                self.sendLine(b"354 go ahead")
        elif verb == b"RSET":
            self._reset()
            self.sendLine(b"250 2.0.0 ok")
        elif verb == b"NOOP":
            self.sendLine(b"250 2.0.0 ok")
        elif verb == b"QUIT":
            self.sendLine(b"221 2.0.0 bye")
            self.transport.loseConnection()
        else:
            self.sendLine(b"502 5.5.2 unknown command")

    def _endOfData(self) -> None:
        data = b"".join(line + b"\r\n" for line in self.lines)
        reply: Policy = None
        for address in self.recipients:
            reply = reply or self.factory.policy("data", address)
        self.factory.atEndOfData(self)
        if reply == "drop":
            self.transport.abortConnection()
            return
        if reply == "stall":
            self.factory._stall()
            return
        if reply is None:
            self.factory.messages.append(Received(self.sender or b"", self.recipients, data))
            reply = b"250 2.0.0 queued"
        assert isinstance(reply, bytes)
        self.sendLine(reply)
        self._reset()


class RelayTestServer(protocol.ServerFactory):
    """
    A small SMTP server that records the messages it accepts.

    @ivar rcptReplies: A reply line (or L{None}: accept) for C{RCPT} to an
        address.
    @ivar dataReplies: The final reply to C{DATA} for a message to an
        address: a reply line, C{"drop"} (abort the connection) or
        C{"stall"} (never answer).
    @ivar messages: The accepted messages.
    @ivar connections: How many connections were made.
    @ivar maxActive: The most connections open at once.
    @ivar atEndOfData: Called with the protocol when a body ends.
    """

    protocol = _ServerProtocol  # type: ignore[assignment]

    def __init__(self, greeting: bytes = b"220 relay.test ESMTP") -> None:
        self.greeting = greeting
        self.rcptReplies: Dict[bytes, bytes] = {}
        self.dataReplies: Dict[bytes, Union[bytes, str]] = {}
        self.messages: List[Received] = []
        self.commands: List[bytes] = []
        self.connections = 0
        self.active = 0
        self.maxActive = 0
        self.atEndOfData: Callable[[Any], None] = lambda proto: None
        self._idle: List[defer.Deferred[None]] = []
        self._stalls: List[defer.Deferred[None]] = []
        self._protocols: List[_ServerProtocol] = []
        self.port: Any = None

    def policy(self, step: str, address: bytes) -> Policy:
        table: Dict[bytes, Any] = self.rcptReplies if step == "rcpt" else self.dataReplies
        return table.get(address.lower())

    def _opened(self, proto: _ServerProtocol) -> None:
        self.connections += 1
        self.active += 1
        self.maxActive = max(self.maxActive, self.active)
        self._protocols.append(proto)

    def _closed(self, proto: _ServerProtocol) -> None:
        self.active -= 1
        self._protocols.remove(proto)
        if self.active == 0:
            waiting, self._idle = self._idle, []
            for d in waiting:
                d.callback(None)

    def _stall(self) -> None:
        waiting, self._stalls = self._stalls, []
        for d in waiting:
            d.callback(None)

    def stalled(self) -> "defer.Deferred[None]":
        """
        A Deferred that fires when a body ends and its reply is withheld.
        """
        d: defer.Deferred[None] = defer.Deferred()
        self._stalls.append(d)
        return d

    def idle(self) -> "defer.Deferred[None]":
        """
        A Deferred that fires once no connection is open.
        """
        d: defer.Deferred[None] = defer.Deferred()
        if self.active == 0:
            d.callback(None)
        else:
            self._idle.append(d)
        return d

    def abortAll(self) -> None:
        """
        Abort every open connection.
        """
        for proto in list(self._protocols):
            proto.transport.abortConnection()

    def recipients(self) -> List[bytes]:
        """
        The recipients of the accepted messages, in order.
        """
        return [r for m in self.messages for r in m.recipients]


def startServer(
    testCase: TestCase,
    server: Optional[RelayTestServer] = None,
    interface: str = "127.0.0.1",
    port: int = 0,
) -> RelayTestServer:
    """
    Listen with C{server} on a loopback port; stop listening, abort open
    connections and wait for them to close when the test ends.
    """
    server = server or RelayTestServer()
    server.port = reactor.listenTCP(port, server, interface=interface)  # type: ignore[attr-defined]

    def stop() -> "defer.Deferred[Any]":
        server.abortAll()
        return defer.gatherResults([server.port.stopListening(), server.idle()])

    testCase.addCleanup(stop)
    return server


def portOf(server: RelayTestServer) -> int:
    return int(server.port.getHost().port)


def queueFiles(directory: str) -> List[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(("-D", "-H")))


# Child Python processes


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(mailclient.__file__)))


def pythonEnv() -> Dict[str, str]:
    """
    The environment for a child Python that imports this mailclient.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


class _ChildProcess(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: defer.Deferred[Any] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value)


def spawnPython(source: str, *args: str) -> Tuple[_ChildProcess, Any]:
    """
    Run C{source} in a child Python with C{args} as C{sys.argv[1:]}.
    """
    child = _ChildProcess()
    transport = reactor.spawnProcess(  # type: ignore[attr-defined]
        child,
        sys.executable,
        [sys.executable, "-c", textwrap.dedent(source)] + list(args),
        env=pythonEnv(),
    )
    return child, transport
