"""
Differential tests: where Twisted's C{SMTPClient} behaves correctly,
mailclient's must behave identically.

Each test runs one scripted server conversation through the same recording
subclass body applied to C{twisted.mail.smtp.SMTPClient} and to
C{mailclient.smtp.SMTPClient}, and asserts the same bytes on the wire, the
same hook calls with the same arguments (the C{log} argument compared as
C{log.str()}, errors compared by class name, code, response, transcript,
isFatal and retry) and the same final transcript.

Deliberate differences are tested in L{mailclient.test.test_client}.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

from twisted.mail import smtp as twisted_smtp
from twisted.trial.unittest import SynchronousTestCase

from mailclient import smtp as mailclient_smtp
from mailclient.test.helpers import lines, Message, normaliseCalls, recording, Session

TwistedClient = recording(twisted_smtp.SMTPClient)
MailclientClient = recording(mailclient_smtp.SMTPClient)

IDENTITY = b"client.example"


class Outcome:
    """
    What one implementation did in one conversation.
    """

    def __init__(self, session: Session, calls: List[Tuple[Any, ...]]) -> None:
        self.session = session
        self.client = session.client
        self.exchange = session.exchange
        self.wire = session.written()
        self.calls = calls
        self.transcript = session.client.log.str()
        self.closed = session.closed
        self.lost = session.lost


def _noRecipientsAsBytes(calls: List[Tuple[Any, ...]]) -> List[Tuple[Any, ...]]:
    # Twisted passes the str "No recipients accepted" to sentMail when every
    # recipient was refused; mailclient passes bytes, like every other resp
    # (a deliberate difference, see docs/compatibility.rst).  Compare the
    # two after turning Twisted's str into bytes.
    out = []
    for call in calls:
        if call[0] == "sentMail" and isinstance(call[2], str):
            call = call[:2] + (call[2].encode("ascii"),) + call[3:]
        out.append(call)
    return out


class DifferentialMixin:
    """
    Run a conversation through both clients and compare.
    """

    def runConversation(
        self,
        clientClass: Any,
        messages: Sequence[Message],
        replies: Sequence[bytes],
        prepare: Optional[Callable[[Any], None]] = None,
        then: Optional[Callable[[Session], None]] = None,
        identity: Any = IDENTITY,
    ) -> Outcome:
        client = clientClass(identity)
        if prepare is not None:
            prepare(client)
        # Fresh Message objects: each run consumes its own queue.
        client.queue(*[Message(m.sender, m.recipients, m.body) for m in messages])
        session = Session(client)
        session.converse(replies)
        if then is not None:
            then(session)
        return Outcome(session, _noRecipientsAsBytes(normaliseCalls(client.calls)))

    def assertSameConversation(
        self,
        messages: Sequence[Message],
        replies: Sequence[bytes],
        prepare: Optional[Callable[[Any], None]] = None,
        then: Optional[Callable[[Session], None]] = None,
        identity: Any = IDENTITY,
        classes: Tuple[Any, Any] = (TwistedClient, MailclientClient),
    ) -> Outcome:
        """
        Assert both implementations behave identically; return mailclient's
        outcome for further checks.

        @param prepare: called with each new client before it connects.
        @param then: called with each L{Session} after the replies.
        """
        theirs = self.runConversation(classes[0], messages, replies, prepare, then, identity)
        ours = self.runConversation(classes[1], messages, replies, prepare, then, identity)
        self.assertEqual(ours.exchange, theirs.exchange)  # type: ignore
        self.assertEqual(ours.wire, theirs.wire)  # type: ignore
        self.assertEqual(ours.calls, theirs.calls)  # type: ignore
        self.assertEqual(ours.transcript, theirs.transcript)  # type: ignore
        self.assertEqual(ours.closed, theirs.closed)  # type: ignore
        self.assertEqual(ours.lost, theirs.lost)  # type: ignore
        return ours


ONE = [Message("alice@example.com", ["bob@example.org"], b"Subject: hi\n\nHello.\n")]


class SuccessTests(DifferentialMixin, SynchronousTestCase):
    """
    Conversations where every message is accepted.
    """

    def test_singleMessage(self) -> None:
        """
        One message, one recipient, accepted; then RSET and QUIT.
        """
        out = self.assertSameConversation(
            ONE,
            lines(
                b"220 mx.example.org ESMTP",
                b"250 mx.example.org",
                b"250 sender ok",
                b"250 recipient ok",
                b"354 go ahead",
                b"250 queued as 1",
                b"250 reset",
                b"221 bye",
            ),
        )
        self.assertEqual(
            out.session.commands(),
            [
                b"HELO " + IDENTITY,
                b"MAIL FROM:<alice@example.com>",
                b"RCPT TO:<bob@example.org>",
                b"DATA",
                b"Subject: hi",
                b"",
                b"Hello.",
                b".",
                b"RSET",
                b"QUIT",
            ],
        )
        self.assertEqual(
            [c[:5] for c in out.calls if c[0] == "sentMail"],
            [("sentMail", 250, b"queued as 1", 1, [("bob@example.org", 250, b"recipient ok")])],
        )
        self.assertTrue(out.lost)

    def test_twoMessages(self) -> None:
        """
        getMailFrom returns a second sender, then None: two transactions in
        one session, separated by RSET when C{resetAfterEveryMessage} asks
        for Twisted's wire.
        """
        messages = [
            Message("alice@example.com", ["bob@example.org"], b"first\n"),
            Message("carol@example.com", ["dave@example.org", "erin@example.org"], b"second\n"),
        ]
        out = self.assertSameConversation(
            messages,
            lines(
                b"220 hi",
                b"250 hello",
                b"250 ok",
                b"250 ok",
                b"354 go",
                b"250 one",
                b"250 reset",
                b"250 ok",
                b"250 ok",
                b"251 will forward",
                b"354 go",
                b"250 two",
                b"250 reset",
                b"221 bye",
            ),
            prepare=lambda client: setattr(client, "resetAfterEveryMessage", True),
        )
        self.assertEqual(
            [c[0] for c in out.calls],
            ["getMailFrom", "getMailTo", "getMailData", "sentMail"] * 2 + ["getMailFrom"],
        )
        self.assertEqual(out.session.commands().count(b"RSET"), 2)
        self.assertIn(b"MAIL FROM:<carol@example.com>", out.session.commands())
        sent = [c for c in out.calls if c[0] == "sentMail"]
        self.assertEqual([(c[1], c[2], c[3]) for c in sent], [(250, b"one", 1), (250, b"two", 2)])

    def test_twoMessagesWithoutReset(self) -> None:
        """
        By default no RSET follows a message the server accepted: the next
        MAIL goes at once (one round trip less per message), with the same
        hooks called in the same order and the same outcomes as Twisted's;
        RSET still comes before QUIT.
        """
        messages = [
            Message("alice@example.com", ["bob@example.org"], b"first\n"),
            Message("carol@example.com", ["dave@example.org"], b"second\n"),
        ]
        twisted = self.runConversation(TwistedClient, messages, lines(
            b"220 hi", b"250 hello", b"250 ok", b"250 ok", b"354 go", b"250 one",
            b"250 reset", b"250 ok", b"250 ok", b"354 go", b"250 two", b"250 reset", b"221 bye"))
        ours = self.runConversation(MailclientClient, messages, lines(
            b"220 hi", b"250 hello", b"250 ok", b"250 ok", b"354 go", b"250 one",
            b"250 ok", b"250 ok", b"354 go", b"250 two", b"250 reset", b"221 bye"))
        # The same hooks with the same results (the transcripts differ by
        # the RSET exchange).
        self.assertEqual([c[:5] for c in ours.calls], [c[:5] for c in twisted.calls])
        commands = ours.session.commands()
        self.assertEqual(commands.count(b"RSET"), 1)
        self.assertEqual(commands[commands.index(b"MAIL FROM:<carol@example.com>") - 1], b".")
        self.assertEqual(commands[-2:], [b"RSET", b"QUIT"])
        self.assertEqual([c for c in commands if c != b"RSET"],
                         [c for c in twisted.session.commands() if c != b"RSET"])

    def test_resetAfterFailure(self) -> None:
        """
        After a message that failed, RSET is sent before the next, as by
        Twisted.
        """
        messages = [
            Message("alice@example.com", ["bob@example.org"], b"first\n"),
            Message("carol@example.com", ["dave@example.org"], b"second\n"),
        ]
        out = self.assertSameConversation(messages, lines(
            b"220 hi", b"250 hello", b"250 ok", b"250 ok", b"354 go", b"554 no",
            b"250 reset", b"250 ok", b"250 ok", b"354 go", b"250 two", b"250 reset", b"221 bye"),
            prepare=lambda client: None)
        commands = out.session.commands()
        self.assertEqual(commands[commands.index(b"MAIL FROM:<carol@example.com>") - 1], b"RSET")

    def test_multiLineAndInformationalReplies(self) -> None:
        """
        Multi-line replies are joined with LF; lines whose code starts with
        0 are ignored.
        """
        out = self.assertSameConversation(
            ONE,
            lines(
                b"220-mx.example.org\r\n220-no UCE\r\n220 ready",
                b"050 informational\r\n250 hello",
                b"250-sender\r\n250 ok",
                b"250-recipient\r\n050 thinking\r\n250 ok",
                b"354-go\r\n354 ahead",
                b"250-queued\r\n250-as\r\n250 12345",
                b"250 reset",
                b"221 bye",
            ),
        )
        sent = [c for c in out.calls if c[0] == "sentMail"]
        self.assertEqual(len(sent), 1)
        self.assertEqual(sent[0][1:5], (250, b"queued\nas\n12345", 1, [("bob@example.org", 250, b"recipient\nok")]))

    def test_ordinaryBodies(self) -> None:
        """
        Bodies Twisted encodes correctly (LF line endings, a final LF, no
        line starting with a dot at the start of the body or of a 16 KiB
        read chunk) give identical bytes: LF becomes CRLF, dots inside the
        body are doubled, and the terminator follows.
        """
        bodies = [
            b"Subject: x\n\nline one\nline two\n",
            b"a\n.b\n..c\n.\nend\n",
            b"\n\nblank lines first\n",
            # Larger than one read chunk, no dots.
            b"".join(b"line %05d of a long message\n" % i for i in range(2000)),
        ]
        for body in bodies:
            out = self.assertSameConversation(
                [Message("a@example.com", ["b@example.com"], body)],
                lines(b"220 hi", b"250 hi", b"250 ok", b"250 ok", b"354 go", b"250 done", b"250 ok", b"221 bye"),
            )
            wire = out.wire
            start = wire.index(b"DATA\r\n") + len(b"DATA\r\n")
            end = wire.index(b".\r\nRSET\r\n")
            sentBody = wire[start:end]
            self.assertNotIn(b"\r\r", sentBody)
            self.assertEqual(sentBody.replace(b"\r\n", b"\n").replace(b"\n.", b"\n"), body)


class RefusalTests(DifferentialMixin, SynchronousTestCase):
    """
    Conversations where the server refuses something.
    """

    def test_oneOfTwoRecipientsRefused(self) -> None:
        """
        A refused recipient is reported in C{addresses}; the message goes
        to the other one.
        """
        out = self.assertSameConversation(
            [Message("a@example.com", ["good@example.org", "bad@example.org"], b"hi\n")],
            lines(
                b"220 hi",
                b"250 hi",
                b"250 ok",
                b"250 ok",
                b"550 no such user",
                b"354 go",
                b"250 done",
                b"250 ok",
                b"221 bye",
            ),
        )
        sent = [c for c in out.calls if c[0] == "sentMail"]
        self.assertEqual(
            sent[0][1:5],
            (250, b"done", 1, [("good@example.org", 250, b"ok"), ("bad@example.org", 550, b"no such user")]),
        )

    def test_allRecipientsRefused(self) -> None:
        """
        When no recipient is accepted, DATA is not sent and sentMail gets
        the last RCPT code and "No recipients accepted".
        """
        out = self.assertSameConversation(
            [Message("a@example.com", ["x@example.org", "y@example.org"], b"hi\n")],
            lines(
                b"220 hi",
                b"250 hi",
                b"250 ok",
                b"550 no x",
                b"551 no y",
                b"250 reset",
                b"221 bye",
            ),
        )
        self.assertNotIn(b"DATA", out.session.commands())
        sent = [c for c in out.calls if c[0] == "sentMail"]
        self.assertEqual(
            sent[0][1:5],
            (551, b"No recipients accepted", 0, [("x@example.org", 550, b"no x"), ("y@example.org", 551, b"no y")]),
        )

    def _mailFromRefused(self, reply: bytes) -> Outcome:
        out = self.assertSameConversation(
            ONE,
            lines(b"220 hi", b"250 hi", reply, b"250 reset", b"221 bye"),
        )
        self.assertEqual(
            out.session.commands(),
            [b"HELO " + IDENTITY, b"MAIL FROM:<alice@example.com>", b"RSET", b"QUIT"],
        )
        self.assertEqual(
            [c[0] for c in out.calls], ["getMailFrom", "sentMail", "getMailFrom"]
        )
        return out

    def test_mailFromRefusedPermanently(self) -> None:
        """
        A 5xx reply to MAIL FROM is reported through sentMail; RSET follows.
        """
        out = self._mailFromRefused(b"550 sender rejected")
        self.assertEqual(out.calls[1][1:5], (550, b"sender rejected", 0, []))

    def test_mailFromRefusedTemporarily(self) -> None:
        """
        A 4xx reply to MAIL FROM is reported through sentMail; RSET follows.
        """
        out = self._mailFromRefused(b"451 try later")
        self.assertEqual(out.calls[1][1:5], (451, b"try later", 0, []))

    def test_dataRefused(self) -> None:
        """
        A 554 reply to DATA ends the message: no body, sentMail(554), RSET.
        """
        out = self.assertSameConversation(
            ONE,
            lines(b"220 hi", b"250 hi", b"250 ok", b"250 ok", b"554 no data for you", b"250 reset", b"221 bye"),
        )
        self.assertEqual(
            out.session.commands(),
            [b"HELO " + IDENTITY, b"MAIL FROM:<alice@example.com>", b"RCPT TO:<bob@example.org>", b"DATA", b"RSET", b"QUIT"],
        )
        self.assertEqual(
            [c[0] for c in out.calls], ["getMailFrom", "getMailTo", "sentMail", "getMailFrom"]
        )
        self.assertEqual(out.calls[2][1:4], (554, b"no data for you", 1))

    def test_finalReplyRefusal(self) -> None:
        """
        A 4xx or 5xx reply after the body is reported through sentMail.
        """
        for reply, code in [(b"451 local error", 451), (b"552 too big", 552)]:
            out = self.assertSameConversation(
                ONE,
                lines(b"220 hi", b"250 hi", b"250 ok", b"250 ok", b"354 go", reply, b"250 reset", b"221 bye"),
            )
            sent = [c for c in out.calls if c[0] == "sentMail"]
            self.assertEqual(sent[0][1], code)
            self.assertEqual(sent[0][2], reply[4:])
            self.assertEqual(out.session.commands()[-2:], [b"RSET", b"QUIT"])

    def test_greetingRefused(self) -> None:
        """
        A 421 or 554 greeting is reported through sendError as a fatal
        SMTPConnectError and the connection is closed without a command.
        """
        for greeting in [b"421 too busy", b"554 go away"]:
            out = self.assertSameConversation(ONE, lines(greeting))
            self.assertEqual(out.wire, b"")
            self.assertEqual(len(out.calls), 1)
            hook, name, code, resp, log, isFatal, retry = out.calls[0]
            self.assertEqual(
                (hook, name, code, resp, isFatal, retry),
                ("sendError", "SMTPConnectError", int(greeting[:3]), greeting[4:], True, True),
            )
            self.assertEqual(log, b"<<< " + greeting)
            self.assertTrue(out.lost)


class SessionTests(DifferentialMixin, SynchronousTestCase):
    """
    Timeouts, connection ends, identity and logging.
    """

    FULL = lines(
        b"220 hi", b"250 hello", b"250 ok", b"250 ok", b"354 go", b"250 queued", b"250 reset", b"221 bye"
    )

    def test_bodyWithoutFinalNewline(self) -> None:
        """
        A body that does not end with a newline gets CRLF before the
        end-of-data line.
        """
        for body in [b"no newline", b"two\nlines"]:
            out = self.assertSameConversation([Message("a@example.com", ["b@example.com"], body)], self.FULL)
            self.assertIn(b"DATA\r\n" + body.replace(b"\n", b"\r\n") + b"\r\n.\r\nRSET\r\n", out.wire)

    def test_strAndBytesIdentity(self) -> None:
        """
        A str identity is sent like the same bytes.
        """
        for identity in ["client.example", b"client.example"]:
            out = self.assertSameConversation(ONE, self.FULL, identity=identity)
            self.assertEqual(out.session.commands()[0], b"HELO client.example")
            self.assertEqual(out.client.identity, b"client.example")

    def test_debugOff(self) -> None:
        """
        With C{debug = False} nothing is logged, and sentMail gets an empty
        log.
        """

        def noDebug(client: Any) -> None:
            client.debug = False

        out = self.assertSameConversation(ONE, self.FULL, prepare=noDebug)
        self.assertEqual(out.transcript, b"")
        self.assertEqual([c[5] for c in out.calls if c[0] == "sentMail"], [b""])

    def test_timeoutWaitingForReply(self) -> None:
        """
        With C{timeout} set, a server that stops answering gets one fatal
        SMTPTimeoutError through sendError and the connection closed; not
        before the timeout has passed, and each reply restarts the timer.
        """
        seen = {}

        def setTimeout(client: Any) -> None:
            client.timeout = 30

        def wait(session: Session) -> None:
            session.clock.advance(20)
            # A reply restarts the timer.
            session.step(b"250 rcpt ok\r\n")
            session.clock.advance(29)
            calls = list(session.client.calls)
            closed = session.closed
            session.clock.advance(2)
            seen[type(session.client)] = (calls, closed)
            session.settle()
            session.clock.advance(100)

        out = self.assertSameConversation(
            ONE, lines(b"220 hi", b"250 hello", b"250 ok"), prepare=setTimeout, then=wait
        )
        self.assertEqual(seen[MailclientClient], seen[TwistedClient])
        self.assertEqual(seen[MailclientClient], ([("getMailFrom",), ("getMailTo",)], False))
        self.assertEqual(out.session.commands()[-1], b"DATA")
        errors = [c for c in out.calls if c[0] == "sendError"]
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0][1:3], ("SMTPTimeoutError", -1))
        self.assertEqual(errors[0][5:], (True, True))
        self.assertEqual(out.session.clock.seconds(), 151)
        self.assertTrue(out.lost)

    def test_noTimeoutByDefault(self) -> None:
        """
        Without C{timeout} the client waits for ever.
        """

        def wait(session: Session) -> None:
            session.clock.advance(10**6)

        out = self.assertSameConversation(ONE, lines(b"220 hi", b"250 hello"), then=wait)
        self.assertFalse(out.closed)
        self.assertEqual([c[0] for c in out.calls], ["getMailFrom"])

    def test_serverClosesAfterQUIT(self) -> None:
        """
        The server closing the connection instead of answering QUIT is not
        an error.
        """

        def drop(session: Session) -> None:
            session.loseConnection()

        out = self.assertSameConversation(ONE, self.FULL[:-1], then=drop)
        self.assertEqual(out.session.commands()[-1], b"QUIT")
        self.assertEqual([c[0] for c in out.calls], ["getMailFrom", "getMailTo", "getMailData", "sentMail", "getMailFrom"])

    def test_sendErrorOverrideClosingItself(self) -> None:
        """
        A subclass whose sendError does not call the base class but closes
        the connection itself still gets exactly one sendError call.
        """

        def closing(base: Any) -> Any:
            def sendError(self: Any, exc: Exception) -> None:
                self.calls.append(("sendError", exc))
                self.transport.loseConnection()

            return type("Closing" + base.__name__, (base,), {"sendError": sendError})

        for greeting in [b"421 busy", b"554 go away"]:
            out = self.assertSameConversation(
                ONE,
                lines(greeting),
                classes=(closing(TwistedClient), closing(MailclientClient)),
            )
            self.assertEqual([c[:3] for c in out.calls], [("sendError", "SMTPConnectError", int(greeting[:3]))])
            self.assertTrue(out.lost)
