"""
The test suite's helpers.

Every helper that more than one test module uses lives here, or in a
C{helpers_<topic>} module next to this one (L{mailclient.test.helpers_interop},
L{mailclient.test.helpers_relay}), never in a C{test_*} module: a test module
imports helpers, never another test module
(L{mailclient.test.test_helpers_rule} checks it).

Drive an SMTP client over an in-memory transport with scripted replies.

Two pieces, both independent of which implementation is under test:

  - L{recording} builds, from any C{SMTPClient} subclass (Twisted's or
    ours, plain or ESMTP), a subclass whose hooks serve a queue of
    L{Message}s and record every hook call with its arguments.

  - L{Session} connects a client to a L{StringTransport}, feeds it server
    replies, pulls the body producer the way a real transport would, and
    delivers C{connectionLost} once the client has closed the connection.
    It keeps the exchange, in order, as C{("C", bytes)} and C{("S", bytes)}
    entries, so two clients can be compared byte for byte.

Nothing here depends on mailclient, so the same script can be run through
C{twisted.mail.smtp.SMTPClient} for differential tests.

Also here: L{TLSStringTransport} and the peer addresses L{LOOPBACK} and
L{REMOTE}, L{render} for transcripts, L{trustCA} for the system trust store
and L{FakeResolver} for DNS.  Importing this module does not install a
reactor.
"""

from __future__ import annotations

import io
import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Type, Union

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.names import dns, error
from twisted.names.common import ResolverBase
from twisted.python.failure import Failure
from zope.interface import alsoProvides

__all__ = [
    "AFTER_AUTH",
    "FakeResolver",
    "LOOPBACK",
    "Message",
    "REMOTE",
    "STRICT_PARSEADDR",
    "Session",
    "TLSStringTransport",
    "describeError",
    "lines",
    "mx",
    "normaliseCalls",
    "recording",
    "render",
    "trustCA",
    "twistedQuoted",
]

Body = Union[bytes, str, Callable[[], Any]]


class Message:
    """
    One message for a recording client to send.

    @ivar sender: What C{getMailFrom} returns.
    @ivar recipients: What C{getMailTo} returns (returned as is, so a test
        can hand back a single string or any iterable).
    @ivar body: C{bytes} (served as L{io.BytesIO}), C{str} (served as
        L{io.StringIO}, a text-mode file) or a zero-argument callable
        returning the file-like object C{getMailData} returns.
    """

    def __init__(self, sender: Any, recipients: Any, body: Body = b"") -> None:
        self.sender = sender
        self.recipients = recipients
        self.body = body

    def open(self) -> Any:
        """
        Return a fresh file-like object holding the body.
        """
        if isinstance(self.body, bytes):
            return io.BytesIO(self.body)
        if isinstance(self.body, str):
            return io.StringIO(self.body)
        return self.body()

    def __repr__(self) -> str:
        return "Message(%r, %r, %r)" % (self.sender, self.recipients, self.body)


class _RecordingHooks:
    """
    The hook bodies of a recording client; mixed in front of the class
    under test by L{recording}.

    @ivar messages: The messages still to send.
    @ivar current: The message being sent, or L{None}.
    @ivar calls: Each hook call as a tuple C{(name, *args)}; the C{log}
        argument of C{sentMail} is recorded as C{log.str()} at call time.
    @ivar errors: The exceptions passed to C{sendError}, in order.
    @ivar delivered: The C{(code, resp)} of each C{sentMail} call.
    """

    messages: List[Message]
    current: Optional[Message]
    calls: List[Tuple[Any, ...]]

    def queue(self, *messages: Message) -> None:
        """
        Add messages to send.
        """
        self.messages.extend(messages)

    def getMailFrom(self) -> Any:
        self.calls.append(("getMailFrom",))
        if not self.messages:
            self.current = None
            return None
        self.current = self.messages.pop(0)
        return self.current.sender

    def getMailTo(self) -> Any:
        self.calls.append(("getMailTo",))
        assert self.current is not None, "getMailTo without a message"
        return self.current.recipients

    def getMailData(self) -> Any:
        self.calls.append(("getMailData",))
        assert self.current is not None, "getMailData without a message"
        return self.current.open()

    def sentMail(
        self, code: int, resp: Any, numOk: int, addresses: Any, log: Any
    ) -> None:
        self.calls.append(
            ("sentMail", code, resp, numOk, [tuple(a) for a in addresses], log.str())
        )

    def sendError(self, exc: Exception) -> None:
        self.calls.append(("sendError", exc))
        # The default behaviour (QUIT or close) is part of what is compared.
        self._baseClass.sendError(self, exc)  # type: ignore[attr-defined]

    @property
    def errors(self) -> List[Exception]:
        return [c[1] for c in self.calls if c[0] == "sendError"]

    @property
    def delivered(self) -> List[Tuple[int, Any]]:
        return [(c[1], c[2]) for c in self.calls if c[0] == "sentMail"]

    def hookNames(self) -> List[str]:
        """
        The names of the hooks called, in order.
        """
        return [c[0] for c in self.calls]


_cache: dict = {}


def recording(base: Type[Any]) -> Type[Any]:
    """
    Return a subclass of C{base} whose C{getMailFrom}, C{getMailTo},
    C{getMailData}, C{sentMail} and C{sendError} serve queued
    L{Message}s and record their calls.

    C{sendError} calls C{base.sendError} after recording, so the class's own
    error handling (QUIT or close) still runs.  C{__init__} is C{base}'s, so
    this works for classes with any constructor signature; the recording
    state is created on first use.
    """
    try:
        return _cache[base]
    except KeyError:
        pass

    def __getattr__(self: Any, name: str) -> Any:
        # Lazily create the recording state, whatever base.__init__ did.
        if name in ("messages", "calls"):
            value: List[Any] = []
            object.__setattr__(self, name, value)
            return value
        if name == "current":
            return None
        parent = getattr(base, "__getattr__", None)
        if parent is not None:
            return parent(self, name)
        raise AttributeError(name)

    cls = type(
        "Recording" + base.__name__,
        (_RecordingHooks, base),
        {
            "__getattr__": __getattr__,
            "_baseClass": base,
            "__module__": __name__,
        },
    )
    _cache[base] = cls
    return cls


def describeError(exc: Exception) -> Tuple[Any, ...]:
    """
    A comparable summary of an error passed to C{sendError}: class name,
    code, response, transcript, isFatal and retry.
    """
    return (
        type(exc).__name__,
        getattr(exc, "code", None),
        getattr(exc, "resp", None),
        getattr(exc, "log", None),
        getattr(exc, "isFatal", None),
        getattr(exc, "retry", None),
    )


def normaliseCalls(calls: Iterable[Tuple[Any, ...]]) -> List[Tuple[Any, ...]]:
    """
    Replace each C{sendError} exception with L{describeError} of it, so that
    two implementations' exception classes of the same name compare equal.
    """
    out = []
    for call in calls:
        if call[0] == "sendError":
            out.append(("sendError",) + describeError(call[1]))
        else:
            out.append(tuple(call))
    return out


def lines(*replies: bytes) -> List[bytes]:
    """
    Server replies, each given without its CRLF, as L{Session.converse}
    takes them.
    """
    return [r + b"\r\n" for r in replies]


class Session:
    """
    One client connected to a L{StringTransport}.

    @ivar client: The protocol under test.
    @ivar transport: Its L{StringTransport}.
    @ivar clock: A L{Clock} installed as the client's C{callLater}.
    @ivar exchange: C{("C", bytes)} for what the client wrote and C{("S",
        bytes)} for what the server sent, in order.
    @ivar lostReason: The L{Failure} given to C{connectionLost}, once it
        was delivered.
    """

    def __init__(
        self,
        client: Any,
        transport: Optional[StringTransport] = None,
        clock: Optional[Clock] = None,
        connect: bool = True,
    ) -> None:
        self.client = client
        self.transport = transport if transport is not None else StringTransport()
        self.clock = clock if clock is not None else Clock()
        client.callLater = self.clock.callLater
        self.exchange: List[Tuple[str, bytes]] = []
        self.lostReason: Optional[Failure] = None
        self._seen = 0
        if connect:
            self.client.makeConnection(self.transport)
            self._collect()

    # What the client wrote

    def _collect(self) -> bytes:
        data = self.transport.value()[self._seen :]
        self._seen += len(data)
        if data:
            self.exchange.append(("C", data))
        return data

    def written(self) -> bytes:
        """
        Everything the client has written so far.
        """
        self._collect()
        return self.transport.value()

    def take(self) -> bytes:
        """
        What the client has written since the last call of L{take} (or of
        L{written}, L{receive}, L{pump}).
        """
        before = self._seen
        self._collect()
        return self.transport.value()[before:]

    def commands(self) -> List[bytes]:
        """
        Every line the client wrote, without CRLF.
        """
        return self.written().split(b"\r\n")[:-1]

    # Connection state

    @property
    def closed(self) -> bool:
        """
        Whether the client asked the transport to close (or abort).
        """
        return bool(self.transport.disconnecting)

    @property
    def aborted(self) -> bool:
        """
        Whether the client aborted the connection.
        """
        return bool(self.transport.disconnected)

    @property
    def lost(self) -> bool:
        return self.lostReason is not None

    # Driving the client

    def receive(self, data: bytes) -> bytes:
        """
        Deliver raw bytes from the server; return what the client wrote in
        reaction.  Does not pull the body producer.
        """
        self._collect()
        self.exchange.append(("S", data))
        self.client.dataReceived(data)
        return self.take()

    def reply(self, *lines: bytes) -> bytes:
        """
        Deliver reply lines (CRLF added), all at once.
        """
        return self.receive(b"".join(line + b"\r\n" for line in lines))

    def pump(self, limit: Optional[int] = None) -> int:
        """
        Call C{resumeProducing} on the registered producer until it
        unregisters (or C{limit} calls were made), as a transport with an
        empty write buffer does.  Stops if the connection was aborted.

        @return: The number of C{resumeProducing} calls made.
        """
        n = 0
        while self.transport.producer is not None and not self.aborted:
            if limit is not None and n >= limit:
                break
            producer = self.transport.producer
            producer.resumeProducing()
            n += 1
            if n > 100000:
                raise AssertionError("producer never finished")
        self._collect()
        return n

    def settle(self) -> None:
        """
        Deliver C{connectionLost} if the client closed the connection and a
        real transport would now report it: at once for an abort, after the
        producer finished for a close.
        """
        if self.lost or not self.closed:
            return
        if self.aborted:
            self.loseConnection(Failure(ConnectionAborted()))
        elif self.transport.producer is None:
            self.loseConnection(Failure(ConnectionDone()))

    def loseConnection(self, reason: Optional[Failure] = None) -> None:
        """
        Deliver C{connectionLost} (by default a clean close), once.

        As a real transport does, first call C{stopProducing} on a producer
        that is still registered, then drop it.
        """
        if self.lost:
            return
        self.lostReason = reason if reason is not None else Failure(ConnectionDone())
        self._collect()
        producer = self.transport.producer
        if producer is not None:
            # abstract.FileDescriptor.connectionLost: stop, then forget it.
            producer.stopProducing()
            if self.transport.producer is not None:
                self.transport.unregisterProducer()
        self.client.connectionLost(self.lostReason)
        self._collect()

    def step(self, data: bytes) -> bytes:
        """
        Deliver C{data}, pull the body producer to its end and settle the
        connection; return what the client wrote meanwhile.
        """
        before = self._seen
        if self.lost:
            raise AssertionError("data for a closed connection: %r" % (data,))
        self.receive(data)
        self.pump()
        self.settle()
        self._collect()
        return self.transport.value()[before:]

    def converse(self, replies: Sequence[bytes]) -> List[Tuple[str, bytes]]:
        """
        Send each reply (one or more complete lines, CRLF included) in turn
        with L{step}, stopping early once the connection is lost.

        @return: L{exchange}.
        """
        for data in replies:
            if self.lost:
                break
            self.step(data)
        return self.exchange


#: Since Python 3.13 C{email.utils.parseaddr}, on which Twisted's
#: C{quoteaddr} stands, gives C{("", "")} for address lists, CR/LF and
#: domain literals: Twisted's client then sends the null path C{<>} where it
#: used to send the first address.  Both are wrong; tests of Twisted's
#: behaviour expect whichever this Python gives.
STRICT_PARSEADDR = __import__("email.utils").utils.parseaddr("a@b.com, evil@x.com")[1] == ""


def twistedQuoted(first: bytes) -> bytes:
    """
    What Twisted's C{quoteaddr} makes of an input whose first address is
    C{first}, on this Python (see L{STRICT_PARSEADDR}).
    """
    return b"<>" if STRICT_PARSEADDR else b"<" + first + b">"


# Transports and canned replies


LOOPBACK = IPv4Address("TCP", "127.0.0.1", 25)
REMOTE = IPv4Address("TCP", "192.0.2.7", 25)


class TLSStringTransport(StringTransport):
    """
    A L{StringTransport} that can "start TLS": C{startTLS} records the
    context it was given and the transport then provides L{ISSLTransport}.
    """

    def __init__(self, peerAddress: Any = None, tls: bool = False) -> None:
        StringTransport.__init__(self, peerAddress=peerAddress)
        self.tlsStarted: List[Any] = []
        if tls:
            alsoProvides(self, ISSLTransport)

    def startTLS(self, contextFactory: Any) -> None:
        self.tlsStarted.append(contextFactory)
        alsoProvides(self, ISSLTransport)


AFTER_AUTH = lines(
    b"250 sender ok",
    b"250 recipient ok",
    b"354 go ahead",
    b"250 queued",
    b"250 reset",
    b"221 bye",
)


# Transcripts


def render(exchange: Sequence[Tuple[str, bytes]]) -> str:
    """
    C{C: ...}/C{S: ...} lines, one per protocol line; a message body is
    """
    merged: List[Tuple[str, bytes]] = []
    for who, data in exchange:
        if merged and merged[-1][0] == who:
            merged[-1] = (who, merged[-1][1] + data)
        else:
            merged.append((who, data))
    out = []
    for who, data in merged:
        text = data.decode("utf-8", "backslashreplace")
        lines = text.split("\r\n")
        if lines and lines[-1] == "":
            lines.pop()
        for line in lines:
            out.append("%s: %s" % (who, line))
    return "\n".join(out)


# The system trust store


def trustCA(case: Any, pem: bytes) -> str:
    """
    Make C{pem} the system trust store (through C{SSL_CERT_FILE}) for the
    rest of the test C{case}; return the CA file's path.
    """
    path = case.mktemp()
    with open(path, "wb") as f:
        f.write(pem)
    old = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = path

    def restore() -> None:
        if old is None:
            del os.environ["SSL_CERT_FILE"]
        else:
            os.environ["SSL_CERT_FILE"] = old

    case.addCleanup(restore)
    return path


# DNS


def _name(name: Any) -> str:
    if isinstance(name, bytes):
        name = name.decode("ascii")
    return str(name).rstrip(".").lower()


class FakeResolver(ResolverBase):
    """
    A resolver answering from a fixed list of records.

    A name with no record at all does not exist (NXDOMAIN); a name with
    records of other types answers with no data.  With C{chase} set, the
    records of CNAME targets are added to the answer, as a recursive
    server does.  With C{refuseANY} set, C{ANY} queries get the RFC 8482
    answer (one HINFO record) instead.

    @ivar queries: C{(name, type)} of each query, in order.
    @ivar errors: Failures to give for C{(name, type)}.
    """

    def __init__(self, records: Iterable[Tuple[str, Any]] = (), chase: bool = True) -> None:
        ResolverBase.__init__(self)
        self.records: List[dns.RRHeader] = []
        self.chase = chase
        self.refuseANY = False
        self.queries: List[Tuple[str, int]] = []
        self.errors: Dict[Tuple[str, int], Exception] = {}
        for name, payload in records:
            self.add(name, payload)

    def add(self, name: str, payload: Any) -> None:
        self.records.append(dns.RRHeader(name, payload.TYPE, dns.IN, 60, payload))

    def _answers(self, name: str, type: int, seen: List[str]) -> List[dns.RRHeader]:
        found = [
            r
            for r in self.records
            if _name(r.name) == name and (type == dns.ALL_RECORDS or r.type in (type, dns.CNAME))
        ]
        if self.chase:
            for r in list(found):
                payload: Any = r.payload
                target = _name(payload.name) if r.type == dns.CNAME else None
                if target and target not in seen:
                    found += self._answers(target, type, seen + [target])
        return found

    def _lookup(self, name: Any, cls: int, type: int, timeout: Any) -> "defer.Deferred[Any]":
        name = _name(name)
        self.queries.append((name, type))
        if (name, type) in self.errors:
            return defer.fail(self.errors[(name, type)])
        if type == dns.ALL_RECORDS and self.refuseANY:
            return defer.succeed(
                ([dns.RRHeader(name, dns.HINFO, dns.IN, 60, dns.Record_HINFO(b"RFC8482", b""))], [], [])
            )
        if not any(_name(r.name) == name for r in self.records):
            return defer.fail(error.DNSNameError(name))
        return defer.succeed((self._answers(name, type, [name]), [], []))


def mx(preference: int, name: str) -> dns.Record_MX:
    return dns.Record_MX(preference, name)
