"""
A hostile server cannot make the client grow, wait, or talk without bound,
nor report a refused message delivered.

Each class tests one rule, with the exact case that was found from outside
and the rule behind it:

  - every byte the server sends counts against a bound (informational
    lines too);
  - each reply has a deadline that nothing but the reply extends; a body
    must keep a minimum rate; a session may get a fixed limit;
  - a timeout drops the connection at once (a peer that stopped reading
    keeps a closing connection open for ever);
  - an authentication exchange answers a bounded number of challenges;
  - replies out of step with the commands never report a message
    delivered.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mailclient import smtp
from mailclient._wire.reply import MAX_REPLY_BYTES, MAX_REPLY_LINES, MalformedReply, ReplyAssembler
from mailclient._wire.sasl import MAX_CHALLENGES
from mailclient.test.helpers import LOOPBACK, Message, Session, TLSStringTransport, recording

BODY = b"Subject: hi\r\n\r\nHello.\r\n"


class Client(recording(smtp.ESMTPClient)):  # type: ignore[misc]
    pass


class PlainClient(recording(smtp.SMTPClient)):  # type: ignore[misc]
    pass


def start(cls: Any = Client, timeouts: Any = None, timeout: Any = None, body: bytes = BODY,
          secret: Any = None, extensions: bytes = b"") -> Session:
    if cls is PlainClient:
        client = cls(b"client.example")
    else:
        client = cls(secret, None, b"client.example")
    client.queue(Message("alice@example.com", ["bob@example.org"], body))
    client.timeout = timeout
    client.timeouts = timeouts
    session = Session(client, TLSStringTransport(LOOPBACK), Clock())
    return session


class InformationalLinesTests(SynchronousTestCase):
    """
    Every line counts against the bounds of the reply it comes before.
    """

    def test_assemblerCountsThem(self) -> None:
        assembler = ReplyAssembler()
        for _ in range(MAX_REPLY_LINES):
            self.assertIsNone(assembler.feed(b"000 still here"))
        self.assertRaises(MalformedReply, assembler.feed, b"000 still here")
        assembler = ReplyAssembler()
        line = b"050 " + b"x" * 1000
        for _ in range(MAX_REPLY_BYTES // len(line)):
            assembler.feed(line)
        self.assertRaises(MalformedReply, assembler.feed, line)

    def test_aCompleteReplyResetsTheBound(self) -> None:
        assembler = ReplyAssembler()
        for _ in range(3):
            for _ in range(MAX_REPLY_LINES - 1):
                assembler.feed(b"000 x")
            self.assertEqual(assembler.feed(b"250 ok"), (250, [b"ok"]))

    def test_streamOfInformationalLines(self) -> None:
        """
        The exact case: a server streaming C{000} lines; the client stays
        bounded (it kept every one in C{resp}) and fails the message.
        """
        for cls in (Client, PlainClient):
            session = start(cls)
            session.receive(b"220 hi\r\n")
            session.receive(b"000 informational\r\n" * (MAX_REPLY_LINES - 1))
            self.assertLessEqual(len(session.client.resp), 0)
            session.receive(b"000 informational\r\n" * 10)
            [error] = session.client.errors
            self.assertIsInstance(error, smtp.SMTPProtocolError)
            self.assertIn(b"too long", error.resp)
            self.assertTrue(session.closed)

    def test_multiLineReplyIsBounded(self) -> None:
        session = start()
        session.receive(b"220 hi\r\n")
        session.receive(b"250-line\r\n" * (MAX_REPLY_LINES + 1))
        [error] = session.client.errors
        self.assertIsInstance(error, smtp.SMTPProtocolError)
        self.assertLessEqual(len(session.client.resp), MAX_REPLY_LINES)


class DeadlineTests(SynchronousTestCase):
    """
    Each reply has its own deadline: lines that do not complete a reply do
    not extend it.
    """

    def test_informationalLinesDoNotExtend(self) -> None:
        """
        The exact case: one C{0xx} line every 0.5 s against a 2 s timeout.
        """
        for kw in ({"timeout": 2}, {"timeouts": smtp.Timeouts(greeting=2)}):
            session = start(**kw)
            for _ in range(3):
                session.clock.advance(0.5)
                session.receive(b"050 wait\r\n")
            self.assertEqual(session.client.errors, [], kw)
            session.clock.advance(0.5)
            [error] = session.client.errors
            self.assertIsInstance(error, smtp.SMTPTimeoutError)

    def test_trickledReplyDoesNotExtend(self) -> None:
        """
        A reply trickled one byte per 100 ms times out at its deadline.
        """
        session = start(timeouts=smtp.Timeouts(greeting=2))
        for byte in b"220 " + b"x" * 100:
            session.clock.advance(0.1)
            if session.client.errors:
                break
            session.receive(bytes([byte]))
        [error] = session.client.errors
        self.assertIsInstance(error, smtp.SMTPTimeoutError)
        self.assertAlmostEqual(session.clock.seconds(), 2.0, places=5)

    def test_multiLineReplyDoesNotExtend(self) -> None:
        session = start(timeout=2)
        session.receive(b"220 hi\r\n")
        for _ in range(3):
            session.clock.advance(0.5)
            session.receive(b"250-still\r\n")
        session.clock.advance(0.5)
        self.assertIsInstance(session.client.errors[0], smtp.SMTPTimeoutError)

    def test_completeRepliesDo(self) -> None:
        """
        A complete reply starts the next reply's deadline: a slow but
        answering server is not cut off.
        """
        session = start(timeout=2)
        for reply in [b"220 hi", b"250 hello", b"250 ok", b"250 ok", b"354 go"]:
            session.clock.advance(1.9)
            session.receive(reply + b"\r\n")
        session.pump()
        session.clock.advance(1.9)
        session.receive(b"250 queued\r\n")
        self.assertEqual(session.client.delivered, [(250, b"queued")])

    def test_pipelinedRepliesGetTheirOwnDeadline(self) -> None:
        """
        In a pipelined group each reply gets its own command's limit from
        the reply before it.
        """
        session = start(timeouts=smtp.Timeouts(rcpt=50, mail=10, dataInit=20))
        session.receive(b"220 hi\r\n")
        session.receive(b"250-hi\r\n250 PIPELINING\r\n")
        session.clock.advance(9)
        session.receive(b"250 sender ok\r\n")
        # The RCPT reply is due within rcpt=50 of the MAIL reply.
        session.clock.advance(45)
        session.receive(b"250 rcpt ok\r\n")
        session.clock.advance(19)
        self.assertEqual(session.client.errors, [])
        session.clock.advance(1.5)
        self.assertIsInstance(session.client.errors[0], smtp.SMTPTimeoutError)

    def test_sessionLimit(self) -> None:
        """
        L{Timeouts.session} fixes a limit for the whole session: each
        deadline is cut short by it.
        """
        session = start(timeouts=smtp.Timeouts(session=5))
        session.receive(b"220 hi\r\n")
        session.clock.advance(4)
        session.receive(b"250 hello\r\n")
        session.clock.advance(1)
        [error] = session.client.errors
        self.assertIsInstance(error, smtp.SMTPTimeoutError)
        self.assertEqual(session.clock.seconds(), 5)


class BodyRateTests(SynchronousTestCase):
    """
    A body must leave at the minimum rate, averaged from its start, once
    the grace period has passed.
    """

    def startBody(self, rate: float = 1024.0) -> Session:
        session = start(cls=PlainClient, body=b"x" * 1000000,
                        timeouts=smtp.Timeouts(minimumRate=rate, rateGrace=60))
        for reply in [b"220 hi", b"250 hello", b"250 ok", b"250 ok", b"354 go"]:
            session.receive(reply + b"\r\n")
        return session

    def test_trickleFails(self) -> None:
        """
        The transport pulls a 64 KiB chunk every 170 s (under the 180 s
        data-block limit, about 385 bytes/s): the message fails once the
        average is under the minimum.
        """
        session = self.startBody()
        for _ in range(10):
            if session.client.errors:
                break
            session.pump(limit=1)
            session.clock.advance(170)
        [error] = session.client.errors
        self.assertIsInstance(error, smtp.SMTPTimeoutError)
        self.assertIn(b"minimum", error.resp)
        self.assertTrue(session.aborted)
        self.assertEqual(session.client.delivered, [])

    def test_steadyPasses(self) -> None:
        session = self.startBody()
        for _ in range(200):
            if session.transport.producer is None:
                break
            session.pump(limit=1)
            session.clock.advance(1)
        self.assertEqual(session.client.errors, [])

    def test_noMinimum(self) -> None:
        session = self.startBody(rate=None)  # type: ignore[arg-type]
        for _ in range(5):
            session.pump(limit=1)
            session.clock.advance(170)
        self.assertEqual(session.client.errors, [])


class AbortOnTimeoutTests(SynchronousTestCase):
    """
    A timeout drops the connection at once, on every path.
    """

    def test_replyTimeoutAborts(self) -> None:
        session = start(timeout=2)
        session.receive(b"220 hi\r\n")
        session.clock.advance(2)
        self.assertTrue(session.aborted)

    def test_quitTimeoutAborts(self) -> None:
        """
        After the last message, a server that never answers QUIT (and never
        reads) does not keep the connection.
        """
        session = start(cls=PlainClient, timeout=2)
        session.converse([b"220 hi\r\n", b"250 hello\r\n", b"250 ok\r\n", b"250 ok\r\n",
                          b"354 go\r\n", b"250 queued\r\n", b"250 reset\r\n"])
        self.assertTrue(session.written().endswith(b"QUIT\r\n"))
        self.assertFalse(session.aborted)
        session.clock.advance(2)
        self.assertTrue(session.aborted)

    def test_bdatTimeoutAborts(self) -> None:
        """
        The exact case: a reply timeout on the BDAT path, the last chunk
        handed to the transport but not flushed.
        """
        session = start(timeouts=smtp.Timeouts(mail=3, dataTermination=3))
        session.receive(b"220 hi\r\n")
        session.receive(b"250-hi\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
        session.pump()
        self.assertIn(b"BDAT", session.written())
        session.clock.advance(3)
        self.assertIsInstance(session.client.errors[0], smtp.SMTPTimeoutError)
        self.assertTrue(session.aborted)


class SASLTests(SynchronousTestCase):
    """
    An authentication exchange answers at most L{MAX_CHALLENGES}
    challenges.
    """

    def test_endlessChallenges(self) -> None:
        session = start(secret=b"secret")
        session.client.registerAuthenticator(smtp.LOGINAuthenticator(b"alice"))
        session.receive(b"220 hi\r\n")
        session.receive(b"250-hi\r\n250 AUTH LOGIN\r\n")
        for _ in range(1000):
            if session.client.errors:
                break
            session.receive(b"334 UGFzc3dvcmQ6\r\n")
        [error] = session.client.errors
        self.assertIsInstance(error, smtp.AuthenticationError)
        responses = [c for c in session.commands()[2:] if not c.startswith(b"QUIT")]
        # AUTH LOGIN, at most MAX_CHALLENGES responses, then "*".
        self.assertLessEqual(len(responses), MAX_CHALLENGES + 2)
        self.assertEqual(responses[-1], b"*")

    def test_loginStillWorks(self) -> None:
        session = start(secret=b"secret")
        session.client.registerAuthenticator(smtp.LOGINAuthenticator(b"alice"))
        session.converse([b"220 hi\r\n", b"250-hi\r\n250 AUTH LOGIN\r\n",
                          b"334 VXNlcm5hbWU6\r\n", b"334 UGFzc3dvcmQ6\r\n", b"235 ok\r\n"])
        self.assertEqual(session.client.errors, [])
        self.assertIn(b"MAIL FROM:<alice@example.com>", session.written())


class OutOfStepTests(SynchronousTestCase):
    """
    Replies out of step with the commands never report a message
    delivered.
    """

    EHLO = b"250-hi\r\n250-PIPELINING\r\n250 CHUNKING\r\n"

    def test_mailAnsweredTwiceInOneRead(self) -> None:
        """
        The exact case: MAIL answered twice shifts the RCPT reply onto
        C{BDAT LAST}; the server's 554 for the content comes after.
        """
        session = start()
        session.receive(b"220 hi\r\n")
        session.receive(self.EHLO)
        session.pump()
        session.receive(b"250 mail ok\r\n250 mail ok\r\n250 rcpt ok\r\n554 5.7.1 refused\r\n")
        self.assertEqual(session.client.delivered, [])
        [error] = session.client.errors
        self.assertIsInstance(error, smtp.SMTPProtocolError)
        self.assertTrue(session.aborted)

    def test_addressStatusAsTheMessageReply(self) -> None:
        """
        With enhanced status codes, a 2.1.x reply (about an address) cannot
        be the reply to the message, even when it arrives alone.
        """
        session = start()
        session.receive(b"220 hi\r\n")
        session.receive(b"250-hi\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n")
        session.pump()
        session.receive(b"250 2.1.0 sender ok\r\n")
        session.receive(b"250 2.1.0 sender ok\r\n")
        session.receive(b"250 2.1.5 recipient ok\r\n")
        self.assertEqual(session.client.delivered, [])
        self.assertIsInstance(session.client.errors[0], smtp.SMTPProtocolError)

    def test_surplusReply(self) -> None:
        """
        A reply to no command at all (the chunks written so far are all
        answered) is a protocol error, not a crash.
        """
        session = start(body=b"x" * 300000)
        session.receive(b"220 hi\r\n")
        session.receive(self.EHLO)
        session.pump(limit=2)
        self.assertEqual(session.written().count(b"BDAT"), 1)
        session.receive(b"250 mail ok\r\n250 rcpt ok\r\n250 chunk ok\r\n")
        self.assertEqual(session.client.errors, [])
        session.receive(b"250 surplus\r\n")
        [error] = session.client.errors
        self.assertIsInstance(error, smtp.SMTPProtocolError)
        self.assertIn(b"a reply to no command", error.resp)
        self.assertEqual(session.client.delivered, [])

    def test_inStepDelivered(self) -> None:
        session = start()
        session.receive(b"220 hi\r\n")
        session.receive(b"250-hi\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n")
        session.pump()
        session.receive(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued\r\n")
        self.assertEqual(len(session.client.delivered), 1)
        self.assertEqual(session.client.errors, [])

