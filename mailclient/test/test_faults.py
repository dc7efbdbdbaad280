"""
The fault-injection matrix: every step of an SMTP conversation times every
fault a server or a network can produce.

Each combination is its own test method, generated below, so that each is
reported on its own by trial and by pytest.  The conversation runs in memory
against L{mailclient.testing.SMTPTestServer} on a L{MemoryReactorClock}: no
sockets, no real time, so the whole matrix takes a few seconds.

For every combination the tests check that:

  - the outcome is reported exactly once (one C{sendError} or C{sentMail}
    call per message attempt, one firing of the Deferred), with the expected
    result: success with the expected number of accepted recipients, or an
    L{SMTPClientError} subclass;
  - success is reported only for a message the server accepted with its
    final reply (after DATA, or to C{BDAT ... LAST});
  - nothing is logged as an error (no exception reached the reactor);
  - both ends of the connection are closed;
  - no delayed call is left on the clock;
  - no file descriptor was opened and the protocol holds no message file.

Steps (what the server does differently):

  - C{greeting}: instead of its greeting (I{before greeting});
  - C{ehlo}: instead of its reply to the first EHLO or HELO (I{after
    greeting});
  - C{starttls}: instead of its reply to STARTTLS, which follows the EHLO
    reply (I{after EHLO});
  - C{ehloTLS}: instead of its reply to the EHLO that completes STARTTLS,
    the first exchange over TLS (I{during STARTTLS});
  - C{auth}: instead of its reply to AUTH (I{during AUTH});
  - C{mail}, C{rcpt1}, C{rcpt2}: instead of its reply to MAIL, to the first
    and to the second RCPT (I{after MAIL}, I{after each RCPT});
  - C{data}: instead of its reply to DATA, or to the first BDAT chunk with
    CHUNKING (I{after DATA});
  - C{body}: once 1000 bytes of the message content arrived (I{mid-body});
  - C{dataEnd}: instead of its reply to the end of the data or to C{BDAT
    LAST} (I{before the final reply});
  - C{rset}, C{quit}: instead of its reply to RSET and QUIT (no RSET
    follows a delivered message: this is the RSET sent before QUIT).

Faults: C{closed} (FIN), C{reset} (RST), C{4xx}, C{5xx}, C{garbage} (a line
that is not a reply), C{endless} (a reply line that never ends, longer than
the client's line limit), C{timeout} (no reply at all; the clock is advanced
past the client's timeout).

Paths: C{sendmail} through L{mailclient.smtp.sendmail} (and so
L{ESMTPSenderFactory}) with STARTTLS and AUTH required, without
PIPELINING (C{plain}), with PIPELINING (C{pipelined}) and with PIPELINING and
CHUNKING (C{chunking}); C{client}, a bare L{SMTPClient} subclass (plain
SMTP, HELO) sending two messages on one connection, whose C{sentMail} and
C{sendError} calls are checked message by message; and C{overlap}, an
L{ESMTPClient} with C{pipelineMessages} sending three messages over
PIPELINING and CHUNKING, so that a fault meets two messages in flight (the
C{rset} step is then the RSET sent ahead of the second message).
"""

from __future__ import annotations

import base64
import os
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mailclient._protocol.chunking import ChunkSender
from mailclient._protocol.client import SMTPClient
from mailclient._protocol.esmtp import ESMTPClient
from mailclient._protocol.sender import ESMTPSender, ESMTPSenderFactory
from mailclient.smtp import (
    AUTHDeclinedError,
    EHLORequiredError,
    SMTPClientError,
    SMTPConnectError,
    SMTPDeliveryError,
    SMTPProtocolError,
    SMTPTimeoutError,
    TLSError,
    sendmail,
)
from mailclient.testing import (
    DATA_END,
    GREETING,
    Abort,
    Action,
    Disconnect,
    EndlessLine,
    Garbage,
    NoReply,
    Reply,
    SMTPTestServer,
    Trickle,
)

TIMEOUT = 30
PASSWORD = "matrix-pa55word"
SECRETS = [PASSWORD.encode(), base64.b64encode(b"\0alice\0" + PASSWORD.encode())]
RECIPIENTS = ["first@example.com", "second@example.com"]
#: About 230 KB of text: several producer chunks (64 KiB each on the DATA
#: path), dot-stuffing included.
BODY = b"Subject: matrix\r\n\r\n" + b"".join(
    b"line %05d .with a dot\r\n.leading dot\r\n" % (i,) for i in range(6000)
)
#: The chunk size used on the CHUNKING path, so the body takes several BDATs.
CHUNK = 8192

FAULTS: Dict[str, Callable[[], Action]] = {
    "closed": Disconnect,
    "reset": Abort,
    "4xx": lambda: Reply(451, b"4.3.0 try again later"),
    "5xx": lambda: Reply(554, b"5.3.0 no"),
    "garbage": lambda: Garbage(b"this is not an SMTP reply\r\n"),
    "endless": lambda: EndlessLine(100_000),
    "timeout": NoReply,
    # A stream of informational lines: every one counts against the bound
    # of the reply they come before.
    "informational": lambda: Garbage(b"050 still working\r\n" * 2000),
    # The reply one byte at a time, each well within the deadline, the
    # whole of it not: a trickle never extends a reply's deadline.
    "trickle": lambda: Trickle(TIMEOUT / 4),
}

SENDMAIL_STEPS = [
    "greeting", "ehlo", "starttls", "ehloTLS", "auth", "mail", "rcpt1",
    "rcpt2", "data", "body", "dataEnd", "rset", "quit",
]
CLIENT_STEPS = [
    "greeting", "ehlo", "mail", "rcpt1", "rcpt2", "data", "body", "dataEnd",
    "rset", "quit",
]

PATHS: Dict[str, List[str]] = {
    "plain": ["8BITMIME", "STARTTLS", "AUTH PLAIN"],
    "pipelined": ["PIPELINING", "8BITMIME", "STARTTLS", "AUTH PLAIN"],
    "chunking": ["PIPELINING", "CHUNKING", "8BITMIME", "STARTTLS", "AUTH PLAIN"],
}

#: A reply code fault at these steps fails the message with this class.
REFUSED: Dict[str, Type[SMTPClientError]] = {
    "greeting": SMTPConnectError,
    "ehlo": EHLORequiredError,
    "starttls": TLSError,
    "ehloTLS": EHLORequiredError,
    "auth": AUTHDeclinedError,
    "mail": SMTPDeliveryError,
    "data": SMTPDeliveryError,
    "dataEnd": SMTPDeliveryError,
}

#: The error any step reports for these faults.
FAULT_ERRORS: Dict[str, Type[SMTPClientError]] = {
    "closed": SMTPConnectError,
    "reset": SMTPConnectError,
    "garbage": SMTPProtocolError,
    "endless": SMTPProtocolError,
    "timeout": SMTPTimeoutError,
    "informational": SMTPProtocolError,
    "trickle": SMTPTimeoutError,
}


def openFDs() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # pragma: no cover - not Linux
        return -1


def applyFault(server: SMTPTestServer, step: str, action: Action, path: str) -> None:
    """
    Script C{action} at C{step}, for its first occurrence only.
    """
    if step == "body":
        if isinstance(action, Trickle):
            # No command's default reply applies in the middle of a body.
            action = Trickle(action.interval, Reply(250, b"2.0.0 queued"))
        server.interruptBody(1000, action)
        return
    first: List[Any] = [action]
    second: List[Any] = [None, action]
    where = {
        "greeting": (GREETING, first),
        "ehlo": ("HELO" if path == "client" else "EHLO", first),
        "starttls": ("STARTTLS", first),
        "ehloTLS": ("EHLO", second),
        "auth": ("AUTH", first),
        "mail": ("MAIL", first),
        "rcpt1": ("RCPT", first),
        "rcpt2": ("RCPT", second),
        "data": ("BDAT" if path == "chunking" else "DATA", first),
        "dataEnd": (DATA_END, first),
        "rset": ("RSET", first),
        "quit": ("QUIT", first),
    }
    name, script = where[step]
    server.script(name, script)


# Expected outcomes: ("ok", numOk) or ("error", classes).

Outcome = Tuple[str, Any]


def expectedSendmail(path: str, step: str, fault: str) -> Outcome:
    """
    The result the sendmail Deferred should fire with.
    """
    if step in ("rset", "quit"):
        # The message was accepted before: nothing after can undo that.
        return ("ok", 2)
    if step == "body" and fault in ("4xx", "5xx", "garbage", "endless", "informational"):
        if path == "chunking":
            # A reply in the middle of a chunk is the reply to that chunk.
            return ("error", (SMTPDeliveryError, SMTPProtocolError))
        # A reply before the end of the data: the two sides disagree.
        return ("error", (SMTPProtocolError,))
    if fault in FAULT_ERRORS:
        return ("error", (FAULT_ERRORS[fault],))
    if step in ("rcpt1", "rcpt2"):
        return ("ok", 1)
    return ("error", (REFUSED[step],))


def expectedClient(step: str, fault: str) -> List[Outcome]:
    """
    The outcomes the bare client should report, message by message (a
    message whose attempt never started has none).  An error before the
    first message is reported through C{sendError} too.
    """
    first = expectedSendmail("plain", step, fault)
    survives = fault in ("4xx", "5xx") and step in ("mail", "rcpt1", "rcpt2", "data", "dataEnd")
    if step == "ehlo" and fault in ("4xx", "5xx"):
        return [("error", (SMTPConnectError,))]
    if step in ("rset", "quit"):
        # Both messages went before: no RSET follows a delivered message,
        # the one before QUIT comes after the second.
        return [("ok", 2), ("ok", 2)]
    if step == "quit":
        return [("ok", 2), ("ok", 2)]
    if step in ("rcpt1", "rcpt2") and fault in ("4xx", "5xx"):
        return [("ok", 1), ("ok", 2)]
    if survives:
        return [("error", (SMTPDeliveryError,)), ("ok", 2)]
    return [first]


# The instrumented clients.


class CountingSender(ESMTPSender):
    """
    L{ESMTPSender} counting its outcome hooks.
    """

    def sendError(self, exc: Any) -> None:
        self.factory.hooks.append(("sendError", exc))
        ESMTPSender.sendError(self, exc)

    def sentMail(self, code: int, resp: bytes, numOk: int, addresses: Any, log: Any) -> None:
        self.factory.hooks.append(("sentMail", code, numOk))
        ESMTPSender.sentMail(self, code, resp, numOk, addresses, log)


class CountingFactory(ESMTPSenderFactory):
    protocol = CountingSender

    def __init__(self, *args: Any, **kw: Any) -> None:
        ESMTPSenderFactory.__init__(self, *args, **kw)
        self.hooks: List[Tuple[Any, ...]] = []


class ThreeMessages(ESMTPClient):
    """
    An L{ESMTPClient} with C{pipelineMessages} sending three messages on one
    connection, matching each outcome hook to its message through a queue,
    as that mode asks.
    """

    timeout = TIMEOUT
    pipelineMessages = True
    requireAuthentication = False
    requireTransportSecurity = False

    def __init__(self) -> None:
        ESMTPClient.__init__(self, None, None, b"client.example")
        self.queue = [b"one@example.com", b"two@example.com", b"three@example.com"]
        self.startedIds: List[bytes] = []
        self.inFlight: List[bytes] = []
        self.hooks: List[Tuple[Any, ...]] = []

    def getMailFrom(self) -> Any:
        if not self.queue:
            return None
        sender = self.queue.pop(0)
        self.startedIds.append(sender)
        self.inFlight.append(sender)
        return sender

    def getMailTo(self) -> Any:
        return RECIPIENTS

    def getMailData(self) -> Any:
        import io

        return io.BytesIO(BODY)

    def sentMail(self, code: int, resp: bytes, numOk: int, addresses: Any, log: Any) -> None:
        self.hooks.append(("sentMail", self.inFlight.pop(0), code, numOk))

    def sendError(self, exc: Exception) -> None:
        self.hooks.append(("sendError", self.inFlight.pop(0) if self.inFlight else None, exc))
        ESMTPClient.sendError(self, exc)


class TwoMessages(SMTPClient):
    """
    A bare L{SMTPClient} sending two messages on one connection, recording
    each outcome hook against the message it belongs to.
    """

    timeout = TIMEOUT

    def __init__(self) -> None:
        SMTPClient.__init__(self, b"client.example")
        self.queue = [b"one@example.com", b"two@example.com"]
        self.current: Optional[bytes] = None
        self.hooks: List[Tuple[Any, ...]] = []

    def getMailFrom(self) -> Any:
        self.current = self.queue.pop(0) if self.queue else None
        return self.current

    def getMailTo(self) -> Any:
        return RECIPIENTS

    def getMailData(self) -> Any:
        import io

        return io.BytesIO(BODY)

    def sentMail(self, code: int, resp: bytes, numOk: int, addresses: Any, log: Any) -> None:
        self.hooks.append(("sentMail", self.current, code, numOk))

    def sendError(self, exc: Exception) -> None:
        self.hooks.append(("sendError", self.current, exc))
        SMTPClient.sendError(self, exc)


class FaultMatrixMixin:
    """
    What every generated test does.
    """

    def setUp(self) -> None:
        self.failures: List[Any] = []

        def observer(event: Dict[str, Any]) -> None:
            if event.get("log_failure") is not None or event.get("isError"):
                self.failures.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)  # type: ignore[attr-defined]
        self.patch(ChunkSender, "chunkSize", CHUNK)  # type: ignore[attr-defined]
        # Full chunks go out in a turn of their own after their command
        # line, so faults also land between the two.
        self.patch(ChunkSender, "smallChunk", CHUNK // 2)  # type: ignore[attr-defined]
        # Install the global reactor first: TLS may import it (its fds are
        # not a leak).
        from twisted.internet import reactor  # noqa: F401
        self.fds = openFDs()

    def finish(self, reactor: MemoryReactorClock, connection: Any) -> None:
        """
        Move time on past every timeout, until nothing is left to run.
        """
        for _ in range(10):
            if not reactor.getDelayedCalls() and not connection.connected:
                break
            connection.advance(TIMEOUT + 1)

    def checkClean(self, reactor: MemoryReactorClock, connection: Any, protocol: Any) -> None:
        self.assertEqual(self.failures, [])  # type: ignore[attr-defined]
        self.assertTrue(connection.clientTransport.disconnected, "client transport open")  # type: ignore[attr-defined]
        self.assertTrue(connection.serverTransport.disconnected, "server transport open")  # type: ignore[attr-defined]
        self.assertEqual(reactor.getDelayedCalls(), [])  # type: ignore[attr-defined]
        self.assertIsNone(protocol.mailFile)  # type: ignore[attr-defined]
        txn = protocol._mailclient.transaction  # type: ignore[attr-defined]
        self.assertIsNone(txn.body)  # type: ignore[attr-defined]
        self.assertIsNone(txn.chunks)  # type: ignore[attr-defined]
        self.assertIsNone(getattr(protocol, "_TimeoutMixin__timeoutCall", None))  # type: ignore[attr-defined]
        self.assertEqual(openFDs(), self.fds)  # type: ignore[attr-defined]

    def checkError(self, error: Any, classes: Tuple[type, ...]) -> None:
        self.assertIsInstance(error, SMTPClientError)  # type: ignore[attr-defined]
        self.assertIsInstance(error, classes)  # type: ignore[attr-defined]
        # The error's text is printable and holds no credential.
        for text in (str(error).encode(), repr(error).encode(), bytes(error)):
            for secret in SECRETS:
                self.assertNotIn(secret, text)  # type: ignore[attr-defined]

    def runSendmail(self, path: str, step: str, fault: str) -> None:
        server = SMTPTestServer(extensions=PATHS[path], credentials={"alice": PASSWORD})
        applyFault(server, step, FAULTS[fault](), path)
        reactor = MemoryReactorClock()
        results: List[Any] = []
        d = sendmail(
            "localhost", "sender@example.com", RECIPIENTS, BODY,
            senderDomainName="client.example", reactor=reactor,
            username="alice", password=PASSWORD,
            requireAuthentication=True, requireTransportSecurity=True,
            contextFactory=server.clientTLSOptions(), retries=0, timeout=TIMEOUT,
            _factoryClass=CountingFactory,
        )
        d.addBoth(results.append)
        factory = reactor.tcpClients[0][2]
        connection = server.connectPending(reactor)
        protocol = connection.client
        self.finish(reactor, connection)

        # One outcome, one firing.
        self.assertEqual(len(results), 1, results)  # type: ignore[attr-defined]
        self.assertEqual(len(factory.hooks), 1, factory.hooks)  # type: ignore[attr-defined]
        [result] = results
        kind, detail = expectedSendmail(path, step, fault)
        accepted = server.messages
        if kind == "ok":
            self.assertFalse(isinstance(result, Failure), result)  # type: ignore[attr-defined]
            self.assertEqual(result[0], detail)  # type: ignore[attr-defined]
            self.assertEqual(factory.hooks[0][:2], ("sentMail", 250))  # type: ignore[attr-defined]
            # Delivered means accepted: exactly one message, in full.
            self.assertEqual(len(accepted), 1)  # type: ignore[attr-defined]
            self.assertEqual(accepted[0].data, BODY)  # type: ignore[attr-defined]
            self.assertEqual(len(accepted[0].rcptTo), detail)  # type: ignore[attr-defined]
        else:
            self.assertIsInstance(result, Failure, result)  # type: ignore[attr-defined]
            self.checkError(result.value, detail)
            # Nothing accepted by the server either.
            self.assertEqual(accepted, [], server.transcript())  # type: ignore[attr-defined]
        self.checkClean(reactor, connection, protocol)

    def runOverlap(self, step: str, fault: str) -> None:
        server = SMTPTestServer(extensions=["PIPELINING", "CHUNKING", "8BITMIME"])
        applyFault(server, step, FAULTS[fault](), "chunking")
        reactor = MemoryReactorClock()
        client = ThreeMessages()
        connection = server.connectInMemory(client, reactor)
        self.finish(reactor, connection)

        hooks = client.hooks
        # Every started message has exactly one outcome, in start order;
        # an error before the first message is reported once, for none.
        self.assertEqual(  # type: ignore[attr-defined]
            [h[1] for h in hooks if h[1] is not None], client.startedIds, hooks)
        self.assertLessEqual(len(hooks) - len(client.startedIds), 1, hooks)  # type: ignore[attr-defined]
        delivered = []
        for hook in hooks:
            if hook[0] == "sendError":
                kind = FAULT_ERRORS.get(fault, SMTPClientError)
                self.checkError(hook[2], (kind, SMTPConnectError, SMTPProtocolError))
            elif hook[2] == 250 and hook[3] > 0:
                delivered.append(hook[1])
        # Delivered means accepted, and only those.
        self.assertEqual(  # type: ignore[attr-defined]
            [m.mailFrom for m in server.messages], delivered, server.transcript())
        for m in server.messages:
            self.assertEqual(m.data, BODY)  # type: ignore[attr-defined]
        if fault in ("4xx", "5xx") and step in ("mail", "rcpt1", "rcpt2", "data", "dataEnd", "rset"):
            # A refusal fails one message at most: the others get through.
            self.assertGreaterEqual(len(delivered), 2, hooks)  # type: ignore[attr-defined]
            self.assertEqual(delivered[-2:], [b"two@example.com", b"three@example.com"])  # type: ignore[attr-defined]
        self.checkClean(reactor, connection, client)
        self.assertIsNone(client._mailclient.following)  # type: ignore[attr-defined]

    def runClient(self, step: str, fault: str) -> None:
        server = SMTPTestServer(esmtp=False, extensions=[])
        applyFault(server, step, FAULTS[fault](), "client")
        reactor = MemoryReactorClock()
        client = TwoMessages()
        connection = server.connectInMemory(client, reactor)
        self.finish(reactor, connection)

        expected = expectedClient(step, fault)
        hooks = client.hooks
        self.assertEqual(len(hooks), len(expected), hooks)  # type: ignore[attr-defined]
        delivered = []
        for i, (hook, (kind, detail)) in enumerate(zip(hooks, expected)):
            if hook[0] == "sendError":
                self.assertEqual(kind, "error", hooks)  # type: ignore[attr-defined]
                self.checkError(hook[2], detail)
            else:
                code, numOk = hook[2], hook[3]
                if kind == "ok":
                    self.assertEqual((code, numOk), (250, detail), hooks)  # type: ignore[attr-defined]
                    delivered.append(hook[1])
                else:
                    # Refused with a reply: reported through sentMail.
                    self.assertTrue(400 <= code < 600, hooks)  # type: ignore[attr-defined]
        # Each message attempt got at most one outcome, in order.
        senders = [h[1] for h in hooks if h[1] is not None]
        self.assertEqual(senders, sorted(set(senders)))  # type: ignore[attr-defined]
        # Delivered means accepted, and only those.
        self.assertEqual(  # type: ignore[attr-defined]
            [m.mailFrom for m in server.messages], delivered, server.transcript())
        for m in server.messages:
            self.assertEqual(m.data, BODY)  # type: ignore[attr-defined]
        self.checkClean(reactor, connection, client)


def _sendmailTest(path: str, step: str, fault: str) -> Callable[[Any], None]:
    def test(self: FaultMatrixMixin) -> None:
        self.runSendmail(path, step, fault)

    test.__doc__ = f"sendmail ({path}): {fault} at {step}."
    return test


def _clientTest(step: str, fault: str) -> Callable[[Any], None]:
    def test(self: FaultMatrixMixin) -> None:
        self.runClient(step, fault)

    test.__doc__ = f"SMTPClient, two messages: {fault} at {step}."
    return test


def _overlapTest(step: str, fault: str) -> Callable[[Any], None]:
    def test(self: FaultMatrixMixin) -> None:
        self.runOverlap(step, fault)

    test.__doc__ = f"ESMTPClient with pipelineMessages, three messages: {fault} at {step}."
    return test


def _name(fault: str) -> str:
    return {"4xx": "Temporary", "5xx": "Permanent"}.get(fault, fault.capitalize())


def _generate(namespace: Dict[str, Any], path: str) -> None:
    steps = CLIENT_STEPS if path in ("client", "overlap") else SENDMAIL_STEPS
    for step in steps:
        if path in ("pipelined", "chunking") and step == "rset":
            # A successful pipelined transaction sends no RSET.
            continue
        for fault in FAULTS:
            name = f"test_{step}{_name(fault)}"
            if path == "client":
                namespace[name] = _clientTest(step, fault)
            elif path == "overlap":
                namespace[name] = _overlapTest(step, fault)
            else:
                namespace[name] = _sendmailTest(path, step, fault)


class PlainSendmailFaultTests(FaultMatrixMixin, SynchronousTestCase):
    """
    sendmail without PIPELINING, with STARTTLS and AUTH.
    """

    _generate(locals(), "plain")


class PipelinedSendmailFaultTests(FaultMatrixMixin, SynchronousTestCase):
    """
    sendmail with PIPELINING, STARTTLS and AUTH.
    """

    _generate(locals(), "pipelined")


class ChunkingSendmailFaultTests(FaultMatrixMixin, SynchronousTestCase):
    """
    sendmail with PIPELINING, CHUNKING (BDAT), STARTTLS and AUTH.
    """

    _generate(locals(), "chunking")


class ClientFaultTests(FaultMatrixMixin, SynchronousTestCase):
    """
    A bare SMTPClient sending two messages over one connection.
    """

    _generate(locals(), "client")


class OverlapFaultTests(FaultMatrixMixin, SynchronousTestCase):
    """
    An ESMTPClient with pipelineMessages sending three messages over one
    connection with PIPELINING and CHUNKING.
    """

    _generate(locals(), "overlap")


#: The number of generated combinations (for docs/reliability.rst).
MATRIX_SIZE = sum(
    len([n for n in vars(c) if n.startswith("test_")])
    for c in (PlainSendmailFaultTests, PipelinedSendmailFaultTests,
              ChunkingSendmailFaultTests, ClientFaultTests, OverlapFaultTests)
)


class RegressionTests(SynchronousTestCase):
    """
    Bugs the matrix found.
    """

    def test_replyMidBodyThenMoreReplies(self) -> None:
        """
        A server that answers in the middle of the body and then keeps
        answering gets one outcome reported: the protocol error, not also a
        C{sentMail} for the reply that follows (the client used to call
        C{sendError} and then C{sentMail} for the same message).
        """
        from mailclient.test.helpers import Message, Session, recording

        client = recording(SMTPClient)(b"client.example")
        client.queue(Message(b"a@example.com", [b"b@example.com"], lambda: _Slow()))
        session = Session(client)
        session.reply(b"220 hi")
        session.reply(b"250 hello")
        session.reply(b"250 sender ok")
        session.reply(b"250 recipient ok")
        session.reply(b"354 go ahead")
        session.pump(limit=1)  # the first chunk only: the body is not over
        session.receive(b"554 5.3.0 no\r\n")
        # More bytes that were already on their way (a transport may still
        # deliver what it had read or decrypted).
        session.receive(b"554 5.3.0 no\r\n")
        self.assertEqual(client.hookNames().count("sendError"), 1)
        self.assertNotIn("sentMail", client.hookNames())
        self.assertIsInstance(client.errors[0], SMTPProtocolError)
        self.assertTrue(session.closed)


class _Slow:
    """
    A message body of several producer chunks.
    """

    def __init__(self) -> None:
        import io

        self._f = io.BytesIO(b"x" * 100_000)

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)


class PositiveReplyTooEarlyTests(SynchronousTestCase):
    """
    A 2xx reply where the client expected 354 or a failure used to be
    reported as a delivered message (as Twisted does), though the body was
    never sent.  Found by test_fuzz.
    """

    def converse(self, client: Any, replies: List[bytes]) -> Any:
        from mailclient.test.helpers import Message, Session

        client.queue(Message(b"a@example.com", [b"b@example.com"], BODY))
        session = Session(client)
        session.converse(replies)
        return session

    def test_dataAnswered250(self) -> None:
        from mailclient.test.helpers import recording

        client = recording(SMTPClient)(b"client.example")
        session = self.converse(client, [b"220 hi\r\n", b"250 hi\r\n", b"250 ok\r\n",
                                         b"250 ok\r\n", b"250 ok\r\n"])
        self.assertEqual(client.delivered, [])
        [error] = client.errors
        self.assertIsInstance(error, SMTPProtocolError)
        self.assertNotIn(b"\r\n.\r\n", session.written())

    def test_mailAnswered251Pipelined(self) -> None:
        from mailclient._protocol.esmtp import ESMTPClient
        from mailclient.test.helpers import recording

        client = recording(ESMTPClient)(None, None, b"client.example")
        self.converse(client, [b"220 hi\r\n", b"250-hi\r\n250 PIPELINING\r\n",
                               b"251 odd\r\n250 ok\r\n354 go\r\n"])
        for code, resp in client.delivered:
            self.assertFalse(200 <= code < 300, client.calls)

    def test_sendmailDataAnswered250(self) -> None:
        server = SMTPTestServer(extensions=["PIPELINING"])
        server.script("DATA", 250, b"2.0.0 sure")
        reactor = MemoryReactorClock()
        results: List[Any] = []
        sendmail("localhost", "a@example.com", ["b@example.com"], BODY, reactor=reactor,
                 retries=0, tls=False, senderDomainName="c.example").addBoth(results.append)
        server.connectPending(reactor)
        self.assertIsInstance(results[0], Failure)
        self.assertIsInstance(results[0].value, SMTPClientError)
        self.assertEqual(server.messages, [])

    def test_subclassSendingItsOwnBody(self) -> None:
        """
        A subclass that sends the body itself, as Twisted's C{smtpState_data}
        does, and ends it with C{finishedFileTransfer}, still gets its
        message reported delivered.
        """
        from twisted.protocols import basic

        from mailclient.test.helpers import recording

        class OwnBody(recording(SMTPClient)):  # type: ignore[misc]
            def smtpState_data(self, code: int, resp: bytes) -> None:
                s = basic.FileSender()
                d = s.beginFileTransfer(self.getMailData(), self.transport,
                                        self.transformChunk)
                d.addCallback(self.finishedFileTransfer)
                self._expected = range(200, 300)
                self._okresponse = self.smtpState_msgSent

        client = OwnBody(b"client.example")
        self.converse(client, [b"220 hi\r\n", b"250 hi\r\n", b"250 ok\r\n", b"250 ok\r\n",
                               b"354 go\r\n", b"250 done\r\n"])
        self.assertEqual(client.delivered, [(250, b"done")])
