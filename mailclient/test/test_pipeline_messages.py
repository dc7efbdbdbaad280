"""
L{ESMTPClient.pipelineMessages}: the next message starts before the
previous one's replies arrive.

Exact conversations run over a L{StringTransport} (L{Session}); the last
tests send real mail over loopback TCP to L{SMTPTestServer}.  The fault
matrix in L{mailclient.test.test_faults} runs the same client through every
fault at every step.
"""

from __future__ import annotations

import io
from collections import deque
from typing import Any, Deque, List, Tuple

from twisted.internet import defer, protocol, reactor
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mailclient._protocol.chunking import ChunkSender
from mailclient.smtp import (
    ESMTPClient,
    InvalidAddressError,
    MessageReadError,
    SMTPConnectError,
    SMTPTimeoutError,
)
from mailclient.test.helpers import Message, Session, recording, render
from mailclient.testing import SMTPTestServer

EHLO = (b"250-server.example", b"250-PIPELINING", b"250 CHUNKING")
A = Message(b"a@example.com", [b"x@example.org"], b"first body\r\n")
B = Message(b"b@example.com", [b"y@example.org", b"z@example.org"], b"second\r\n")
C = Message(b"c@example.com", [b"w@example.org"], b"third\r\n")


class Pipelining(recording(ESMTPClient)):  # type: ignore[misc]
    pipelineMessages = True
    requireAuthentication = False
    requireTransportSecurity = False


def start(*messages: Message, cls: Any = Pipelining) -> Tuple[Any, Session]:
    client = cls(None, None, b"client.example")
    client.queue(*messages)
    session = Session(client)
    session.reply(b"220 hello")
    fresh(session)
    session.reply(*EHLO)
    return client, session


def outcomes(client: Any) -> List[Tuple[Any, ...]]:
    """
    The sentMail and sendError calls, in order.
    """
    return [c for c in client.calls if c[0] in ("sentMail", "sendError")]


def fresh(session: Session) -> bytes:
    """
    What the client wrote since the last call (L{Session.pump} and
    L{Session.reply} collect it, so L{Session.take} would miss it).
    """
    written = session.written()
    seen = getattr(session, "_fresh", 0)
    session._fresh = len(written)  # type: ignore[attr-defined]
    return written[seen:]


def bdat(body: bytes, last: bool = True) -> bytes:
    return b"BDAT %d%s\r\n" % (len(body), b" LAST" if last else b"") + body


class ConversationTests(SynchronousTestCase):
    def test_nextMessageBeforeReplies(self) -> None:
        """
        Once a message is written whole, the next one follows at once,
        behind an RSET, before any reply; the one after waits for the
        first outcome (two transactions in flight at most).
        """
        client, session = start(A, B, C)
        session.pump()
        self.assertEqual(
            fresh(session),
            b"MAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.org>\r\n"
            + bdat(A.body)  # type: ignore[arg-type]
            + b"RSET\r\nMAIL FROM:<b@example.com>\r\nRCPT TO:<y@example.org>\r\n"
            + b"RCPT TO:<z@example.org>\r\n"
            + bdat(B.body),  # type: ignore[arg-type]
        )
        self.assertEqual(
            client.hookNames(),
            ["getMailFrom", "getMailTo", "getMailData"] * 2,
        )
        # The first message's replies: its outcome, then the third starts.
        session.reply(b"250 sender ok", b"250 rcpt ok", b"250 queued as 1")
        session.pump()
        self.assertEqual(outcomes(client)[0][:4], ("sentMail", 250, b"queued as 1", 1))
        self.assertEqual(
            fresh(session),
            b"RSET\r\nMAIL FROM:<c@example.com>\r\nRCPT TO:<w@example.org>\r\n"
            + bdat(C.body),  # type: ignore[arg-type]
        )
        session.reply(
            b"250 reset", b"250 sender ok", b"250 rcpt ok", b"550 no such user",
            b"250 queued as 2",
        )
        # The second message's own replies, not the first's, are reported.
        self.assertEqual(
            outcomes(client)[1][:5],
            ("sentMail", 250, b"queued as 2", 1,
             [(b"y@example.org", 250, b"rcpt ok"), (b"z@example.org", 550, b"no such user")]),
        )
        self.assertEqual(fresh(session), b"")
        session.reply(b"250 reset", b"250 sender ok", b"250 rcpt ok", b"250 queued as 3")
        self.assertEqual(outcomes(client)[2][:3], ("sentMail", 250, b"queued as 3"))
        self.assertEqual(client.calls[-1], ("sentMail",) + outcomes(client)[2][1:])
        self.assertEqual(client.calls[-2], ("getMailFrom",))
        # No message left: QUIT only now, after the last outcome.
        self.assertEqual(fresh(session), b"QUIT\r\n")

    def test_offByDefault(self) -> None:
        """
        Without the flag, the next message waits for the previous outcome.
        """
        client, session = start(A, B, cls=recording(ESMTPClient))
        session.pump()
        self.assertNotIn(b"b@example.com", session.written())
        self.assertEqual(client.hookNames(), ["getMailFrom", "getMailTo", "getMailData"])

    def test_notBeforeDrained(self) -> None:
        """
        The next message starts only once the transport has passed the
        last chunk on, not while it is still buffered.
        """
        client, session = start(A, B)
        session.pump(limit=1)
        self.assertEqual(client.hookNames(), ["getMailFrom", "getMailTo", "getMailData"])
        session.pump()
        self.assertIn(b"MAIL FROM:<b@example.com>", session.written())

    def test_refusedMessageThenNext(self) -> None:
        """
        A message refused at its final reply is reported with that reply;
        the next one, which began with its own RSET, is unaffected and no
        further RSET is sent.
        """
        client, session = start(A, B)
        session.pump()
        fresh(session)
        session.reply(b"250 ok", b"250 ok", b"554 5.7.1 rejected")
        self.assertEqual(outcomes(client)[0][:3], ("sentMail", 554, b"5.7.1 rejected"))
        self.assertEqual(fresh(session), b"")
        session.reply(b"250 reset", b"250 ok", b"250 ok", b"250 ok", b"250 queued")
        self.assertEqual(outcomes(client)[1][:4], ("sentMail", 250, b"queued", 2))
        self.assertEqual(fresh(session), b"QUIT\r\n")

    def test_senderRefusedThenNext(self) -> None:
        """
        A refused MAIL fails its message only.
        """
        client, session = start(A, B)
        session.pump()
        session.reply(b"550 bad sender", b"503 no sender", b"503 no sender")
        self.assertEqual(outcomes(client)[0][:4], ("sentMail", 550, b"bad sender", 0))
        session.reply(b"250 reset", b"250 ok", b"250 ok", b"250 ok", b"250 queued")
        self.assertEqual(outcomes(client)[1][:4], ("sentMail", 250, b"queued", 2))

    def test_connectionLostTwoInFlight(self) -> None:
        """
        A connection lost with two messages in flight reports each of them
        through sendError, in the order they were started.
        """
        client, session = start(A, B)
        session.pump()
        session.loseConnection(Failure(ConnectionLost()))
        self.assertEqual(client.hookNames()[6:], ["sendError", "sendError"])
        for error in client.errors:
            self.assertIsInstance(error, SMTPConnectError)

    def test_lostAfterFirstOutcome(self) -> None:
        """
        After the first outcome, a lost connection fails the second message
        only.
        """
        client, session = start(A, B)
        session.pump()
        session.reply(b"250 ok", b"250 ok", b"250 queued")
        session.loseConnection(Failure(ConnectionLost()))
        # (The next message was asked for: there was none.)
        self.assertEqual(client.hookNames()[6:], ["sentMail", "getMailFrom", "sendError"])

    def test_timeoutTwoInFlight(self) -> None:
        """
        A server that stops answering fails both messages once.
        """
        client, session = start(A, B)
        client.timeout = 30
        client.setTimeout(30)
        session.pump()
        session.clock.advance(31)
        session.settle()
        self.assertEqual(client.hookNames()[6:], ["sendError", "sendError"])
        for error in client.errors:
            self.assertIsInstance(error, SMTPTimeoutError)
        self.assertEqual(session.clock.getDelayedCalls(), [])

    def test_invalidNextAddress(self) -> None:
        """
        A next message that cannot be started (an address that cannot be
        sent) is reported after the previous message's outcome, as it would
        have been without pipelining.
        """
        bad = Message(b"b@example.com", [b"bad\r\naddress@example.org"], b"x\r\n")
        client, session = start(A, bad)
        session.pump()
        self.assertNotIn(b"b@example.com", session.written())
        session.reply(b"250 ok", b"250 ok", b"250 queued")
        self.assertEqual(client.hookNames()[3:], ["getMailFrom", "getMailTo", "sentMail", "sendError"])
        self.assertIsInstance(client.errors[0], InvalidAddressError)

    def test_hookRaisesForNextMessage(self) -> None:
        """
        An exception from a hook of the next message does not escape into
        the transport's producer call; the previous message is still
        reported, then the error is logged and the connection closed, as
        without pipelining.
        """

        class Raising(Pipelining):
            def getMailData(self) -> Any:
                if self.current is B:
                    raise RuntimeError("no data")
                return Pipelining.getMailData(self)

        client, session = start(A, B, cls=Raising)
        session.pump()
        session.reply(b"250 ok", b"250 ok", b"250 queued")
        self.assertEqual([c[0] for c in outcomes(client)], ["sentMail"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(session.closed)

    def test_sentMailClosesConnection(self) -> None:
        """
        A sentMail that closes the connection leaves the message started
        early with one outcome.
        """

        class Closing(Pipelining):
            def sentMail(self, *args: Any) -> None:
                Pipelining.sentMail(self, *args)
                self.transport.loseConnection()

        client, session = start(A, B, cls=Closing)
        session.pump()
        session.reply(b"250 ok", b"250 ok", b"250 queued")
        session.settle()
        self.assertEqual(client.hookNames()[6:], ["sentMail", "sendError"])

    def test_largeNextMessage(self) -> None:
        """
        A next message of several chunks is written while the first one's
        replies come in; each reply goes to its own message.
        """
        self.patch(ChunkSender, "chunkSize", 4)
        small = Message(b"a@example.com", [b"x@example.org"], b"abcd")
        big = Message(b"b@example.com", [b"y@example.org"], b"0123456789")
        client, session = start(small, big)
        # The first message's one chunk, its drain (which starts the second
        # message), the second message's first chunk; then one more chunk.
        session.pump(limit=3)
        session.pump(limit=1)
        self.assertTrue(fresh(session).endswith(b"BDAT 4\r\n0123BDAT 4\r\n4567"))
        session.reply(b"250 ok", b"250 ok", b"250 queued")
        self.assertEqual(outcomes(client)[0][:3], ("sentMail", 250, b"queued"))
        session.pump()
        self.assertTrue(session.written().endswith(
            b"BDAT 4\r\n0123BDAT 4\r\n4567BDAT 2 LAST\r\n89"))
        session.reply(b"250 reset", b"250 ok", b"250 ok", b"250 a", b"250 b", b"250 done")
        self.assertEqual(outcomes(client)[1][:3], ("sentMail", 250, b"done"))

    def test_nextMessageUnreadable(self) -> None:
        """
        When the message started early cannot be read halfway through, the
        connection is aborted (a chunk is incomplete): that message fails
        with the read error, and the one still awaiting its final reply
        with a lost connection, since its fate is unknown.
        """
        self.patch(ChunkSender, "chunkSize", 4)

        class Broken(io.BytesIO):
            def read(self, size: Any = -1) -> bytes:
                if self.tell() >= 8:
                    raise OSError("disk on fire")
                return io.BytesIO.read(self, size)

        small = Message(b"a@example.com", [b"x@example.org"], b"abcd")
        broken = Message(b"b@example.com", [b"y@example.org"], lambda: Broken(b"0123456789abcdef"))
        client, session = start(small, broken)
        session.pump()
        self.assertTrue(session.aborted)
        session.settle()
        self.assertEqual(client.hookNames()[6:], ["sendError", "sendError"])
        first, second = client.errors
        self.assertIsInstance(first, SMTPConnectError)
        self.assertIn(b"disk on fire", first.resp)
        self.assertIsInstance(second, MessageReadError)
        self.assertEqual(len(self.flushLoggedErrors()), 0)


class FIFOClient(ESMTPClient):
    """
    A client as the documentation of pipelineMessages asks for: outcomes
    are matched to messages through a queue.
    """

    pipelineMessages = True
    requireAuthentication = False
    requireTransportSecurity = False

    def __init__(self, messages: List[Tuple[str, List[str], bytes]]) -> None:
        ESMTPClient.__init__(self, None, None, b"client.example")
        self.toSend = deque(messages)
        self.started: Deque[Tuple[str, List[str], bytes]] = deque()
        self.outcomes: List[Tuple[str, Any]] = []

    def getMailFrom(self) -> Any:
        if not self.toSend:
            return None
        self.started.append(self.toSend.popleft())
        return self.started[-1][0]

    def getMailTo(self) -> Any:
        return self.started[-1][1]

    def getMailData(self) -> Any:
        return io.BytesIO(self.started[-1][2])

    def sentMail(self, code: int, resp: bytes, numOk: int, addresses: Any, log: Any) -> None:
        self.outcomes.append((self.started.popleft()[0], code))

    def sendError(self, exc: Exception) -> None:
        self.outcomes.append((self.started.popleft()[0], exc))
        ESMTPClient.sendError(self, exc)


class LoopbackTests(TestCase):
    """
    Real mail over loopback TCP.
    """

    @defer.inlineCallbacks
    def send(self, messages: List[Tuple[str, List[str], bytes]], extensions: List[str]) -> Any:
        server = SMTPTestServer(extensions=extensions)
        port = server.listenTCP()
        self.addCleanup(port.stopListening)
        done: defer.Deferred = defer.Deferred()
        client = FIFOClient(messages)

        class Factory(protocol.ClientFactory):
            def buildProtocol(self, addr: Any) -> Any:
                client.factory = self
                return client

            def clientConnectionLost(self, connector: Any, reason: Any) -> None:
                done.callback(None)

            def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
                done.errback(reason)

        reactor.connectTCP("127.0.0.1", port.getHost().port, Factory())
        yield done
        return client, server

    def messages(self, n: int) -> List[Tuple[str, List[str], bytes]]:
        return [
            ("sender%d@example.com" % i, ["rcpt%d@example.org" % i],
             b"Subject: %d\r\n\r\n" % i + b".dot line\r\n" * (i % 7) + b"body %d\r\n" % i)
            for i in range(n)
        ]

    @defer.inlineCallbacks
    def test_manyMessages(self) -> Any:
        """
        Every message is delivered once, byte for byte, and reported in
        the order it was started.
        """
        messages = self.messages(60)
        client, server = yield self.send(messages, ["PIPELINING", "CHUNKING", "8BITMIME"])
        self.assertEqual(client.outcomes, [(m[0], 250) for m in messages])
        received = server.messages
        self.assertEqual([m.mailFrom for m in received], [m[0].encode() for m in messages])
        self.assertEqual([m.data for m in received], [m[2] for m in messages])
        # It did pipeline: RSET went ahead of every message but the first,
        # and within what RFC 2920 allows in a group.
        self.assertEqual(server.transcript().count("RSET"), len(messages) - 1)
        self.assertEqual([s.pipeliningViolations for s in server.sessions], [[]])

    @defer.inlineCallbacks
    def test_withoutChunking(self) -> Any:
        """
        Without CHUNKING the flag changes nothing: DATA waits for 354.
        """
        messages = self.messages(5)
        client, server = yield self.send(messages, ["PIPELINING"])
        self.assertEqual(client.outcomes, [(m[0], 250) for m in messages])
        self.assertEqual([m.data for m in server.messages], [m[2] for m in messages])


def documentedConversation() -> str:
    """
    The transcript shown in C{docs/extensions.rst}: two messages, the
    second started before the first one's replies.
    """
    first = Message("alice@example.com", ["bob@example.org"], b"Subject: one\r\n\r\nHello.\r\n")
    second = Message("alice@example.com", ["carol@example.org"], b"Subject: two\r\n\r\nHi.\r\n")
    client = Pipelining(None, None, b"client.example")
    client.queue(first, second)
    session = Session(client)
    session.reply(b"220 mx.example ESMTP")
    session.reply(b"250-mx.example", b"250-PIPELINING", b"250 CHUNKING")
    session.pump()
    session.reply(b"250 2.1.0 ok", b"250 2.1.5 ok", b"250 2.0.0 queued as A1")
    session.pump()
    session.reply(b"250 2.0.0 reset", b"250 2.1.0 ok", b"250 2.1.5 ok", b"250 2.0.0 queued as A2")
    session.reply(b"221 bye")
    session.settle()
    return render(session.exchange)


class DocumentationTests(SynchronousTestCase):
    def test_transcript(self) -> None:
        """
        The overlapping conversation in the extensions page is what the
        client sends.
        """
        import os

        doc = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "extensions.rst")
        with open(doc, encoding="utf-8") as f:
            text = f.read()
        block = "\n".join("    " + line for line in documentedConversation().splitlines())
        self.assertIn(".. code-block:: none\n\n" + block + "\n", text)


if __name__ == "__main__":
    print(documentedConversation())
