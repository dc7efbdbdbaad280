"""
Tests for L{mailclient.smtp.SMTPClient} where it deliberately differs from
Twisted's C{SMTPClient}.

Every test runs the same scenario through mailclient's client and through
Twisted's, asserts the correct behaviour of mailclient's, and asserts that
Twisted's behaves differently (the bug mailclient fixes), so each test would
fail if mailclient's class were Twisted's.  Each difference has an entry in
docs/compatibility.rst naming its test.

Behaviour that is the same as Twisted's is tested in
L{mailclient.test.test_client_differential}.
"""

from __future__ import annotations

import gc
import io
import os
import subprocess
import sys
import tempfile
from typing import Any, List, Sequence

from twisted.internet.abstract import FileDescriptor
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer
from twisted.mail import smtp as twisted_smtp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mailclient._protocol.body import BodySender
from mailclient._protocol.client import sendNow
from mailclient import smtp as mailclient_smtp
from mailclient.test.helpers import describeError, lines, Message, recording, Session, twistedQuoted

Twisted = recording(twisted_smtp.SMTPClient)
Ours = recording(mailclient_smtp.SMTPClient)

IDENTITY = b"client.example"
CHUNK = BodySender.CHUNK_SIZE  # the body is read this much at a time


R = lines


# Server turns up to (not including) the reply to DATA, for one recipient.
UP_TO_DATA = R(b"220 mx.example.org", b"250 hello", b"250 sender ok", b"250 rcpt ok")


def connect(cls: Any, *messages: Message, identity: Any = IDENTITY, **attrs: Any) -> Session:
    """
    A client of class C{cls} with C{messages} queued, connected to a
    L{Session}.
    """
    client = cls(identity)
    for name, value in attrs.items():
        setattr(client, name, value)
    client.queue(*messages)
    return Session(client)


def msg(body: Any = b"hello\n", sender: Any = "alice@example.com", to: Any = None) -> Message:
    return Message(sender, ["bob@example.org"] if to is None else to, body)


def bodyOnWire(cls: Any, body: Any) -> bytes:
    """
    Send one message with C{body}; return the bytes written after C{DATA},
    up to the server's final reply.
    """
    s = connect(cls, msg(body))
    s.converse(UP_TO_DATA)
    assert s.written().endswith(b"DATA\r\n"), s.written()
    return s.step(b"354 go ahead\r\n")


def dataSection(lines: Sequence[bytes]) -> bytes:
    """
    The RFC 5321 DATA section for a body made of C{lines}: each line
    dot-stuffed and ended with CRLF, then the end-of-data line.
    """
    return (
        b"".join((b"." + line if line[:1] == b"." else line) + b"\r\n" for line in lines)
        + b".\r\n"
    )


class DotStuffingTests(SynchronousTestCase):
    """
    Every body line that starts with a dot is doubled, wherever it falls.
    """

    def test_firstLineDotStuffed(self) -> None:
        """
        The first body line is dot-stuffed; Twisted only stuffs dots that
        follow a newline inside the same chunk.
        """
        body = b".hidden line\nrest\n"
        self.assertEqual(bodyOnWire(Ours, body), b"..hidden line\r\nrest\r\n.\r\n")
        self.assertEqual(bodyOnWire(Twisted, body), b".hidden line\r\nrest\r\n.\r\n")

    def test_dotAtChunkBoundaryStuffed(self) -> None:
        """
        A line starting exactly at the 16 KiB read-chunk boundary is
        dot-stuffed.
        """
        body = b"x" * (CHUNK - 1) + b"\n" + b".dot at the boundary\nend\n"
        self.assertEqual(body[CHUNK : CHUNK + 1], b".")
        expected = dataSection([b"x" * (CHUNK - 1), b".dot at the boundary", b"end"])
        self.assertEqual(bodyOnWire(Ours, body), expected)
        theirs = bodyOnWire(Twisted, body)
        self.assertNotEqual(theirs, expected)
        self.assertIn(b"\r\n.dot at the boundary\r\n", theirs)

    def test_lineOfOnlyADot(self) -> None:
        """
        A body line that is only C{.} is sent as C{..}, so it cannot end the
        data early: not as the first line, not in the middle, not at a chunk
        boundary.  Twisted ends the message early in the first and last
        case, and sends the rest of the body as commands.
        """
        first = b".\nMAIL FROM:<evil@example.com>\n"
        middle = b"before\n.\nafter\n"
        boundary = b"x" * (CHUNK - 1) + b"\n" + b".\nMAIL FROM:<evil@example.com>\n"
        self.assertEqual(bodyOnWire(Ours, first), dataSection([b".", b"MAIL FROM:<evil@example.com>"]))
        self.assertEqual(bodyOnWire(Ours, middle), dataSection([b"before", b".", b"after"]))
        self.assertEqual(
            bodyOnWire(Ours, boundary),
            dataSection([b"x" * (CHUNK - 1), b".", b"MAIL FROM:<evil@example.com>"]),
        )
        # Twisted: an end-of-data line, then an injected command.
        self.assertTrue(bodyOnWire(Twisted, first).startswith(b".\r\nMAIL FROM:<evil@example.com>\r\n"))
        self.assertIn(b"\r\n.\r\nMAIL FROM:<evil@example.com>\r\n", bodyOnWire(Twisted, boundary))


class LineEndingTests(SynchronousTestCase):
    """
    Any mix of LF, CRLF and CR becomes CRLF; the terminator is exactly one
    CRLF.CRLF.
    """

    def test_crlfInput(self) -> None:
        """
        CRLF line endings are kept as CRLF; Twisted sends CR CR LF.
        """
        self.assertEqual(bodyOnWire(Ours, b"a\r\nb\r\n"), b"a\r\nb\r\n.\r\n")
        self.assertEqual(bodyOnWire(Twisted, b"a\r\nb\r\n"), b"a\r\r\nb\r\r\n.\r\n")

    def test_mixedLineEndings(self) -> None:
        """
        LF, CRLF and CR in one body all become CRLF.
        """
        body = b"a\r\nb\nc\rd\n"
        self.assertEqual(bodyOnWire(Ours, body), dataSection([b"a", b"b", b"c", b"d"]))
        self.assertIn(b"\r\r\n", bodyOnWire(Twisted, body))

    def test_bareCR(self) -> None:
        """
        A bare CR is a line ending and becomes CRLF; Twisted sends it as is.
        """
        self.assertEqual(bodyOnWire(Ours, b"a\rb\r"), b"a\r\nb\r\n.\r\n")
        theirs = bodyOnWire(Twisted, b"a\rb\r")
        self.assertIn(b"a\rb", theirs)

    def test_neverCRCRLF(self) -> None:
        """
        A CRLF split across the 16 KiB read-chunk boundary is one line
        ending, and no input produces CR CR LF on the wire.
        """
        split = b"x" * (CHUNK - 1) + b"\r\ny\n"
        self.assertEqual(split[CHUNK - 1 : CHUNK + 1], b"\r\n")
        self.assertEqual(bodyOnWire(Ours, split), dataSection([b"x" * (CHUNK - 1), b"y"]))
        for body in [split, b"a\r\n", b"a\r\r\n", b"\r\n\r\n", b"a\r", b"\r", b"a\n\r\n"]:
            wire = bodyOnWire(Ours, body)
            self.assertNotIn(b"\r\r\n", wire, body)
            # No bare CR or LF either.
            self.assertEqual(wire.count(b"\r"), wire.count(b"\n"), body)
            self.assertEqual(wire.count(b"\r\n"), wire.count(b"\n"), body)
        self.assertIn(b"\r\r\n", bodyOnWire(Twisted, split))

    def test_emptyBody(self) -> None:
        """
        An empty body is sent as the end-of-data line alone, right after
        DATA; Twisted sends an empty line first.
        """
        s = connect(Ours, msg(b""))
        s.converse(UP_TO_DATA + R(b"354 go ahead"))
        self.assertTrue(s.written().endswith(b"DATA\r\n.\r\n"), s.written())
        s.step(b"250 queued\r\n")
        self.assertEqual(s.client.delivered, [(250, b"queued")])
        self.assertEqual(bodyOnWire(Ours, b""), b".\r\n")
        self.assertEqual(bodyOnWire(Twisted, b""), b"\r\n.\r\n")


class InjectionTests(SynchronousTestCase):
    """
    Nothing the caller passes can add a command to the conversation, and an
    address is sent exactly as given or not at all.
    """

    BAD = ["\r\n", "\n", "\r", "\0"]

    def test_identityWithLineBreakOrNUL(self) -> None:
        """
        An identity holding CR, LF or NUL is refused at construction;
        Twisted sends it, injecting a command.
        """
        for c in self.BAD:
            for identity in ["client" + c + "MAIL FROM:<evil@example.com>",
                             ("client" + c + "MAIL FROM:<evil@example.com>").encode("ascii")]:
                self.assertRaises(ValueError, Ours, identity)
        s = connect(Twisted, identity=b"client\r\nMAIL FROM:<evil@example.com>")
        s.step(b"220 hi\r\n")
        self.assertEqual(s.commands(), [b"HELO client", b"MAIL FROM:<evil@example.com>"])

    def _refused(self, message: Message, replies: List[bytes], expectedWire: bytes, badText: bytes) -> None:
        """
        Assert mailclient refuses C{message}: one non-fatal
        InvalidAddressError, nothing with the bad address on the wire, QUIT.
        """
        s = connect(Ours, message)
        s.converse(replies)
        self.assertEqual(s.written(), expectedWire)
        self.assertNotIn(badText, s.written())
        self.assertEqual(s.client.hookNames()[-1], "sendError")
        [exc] = s.client.errors
        self.assertIsInstance(exc, mailclient_smtp.InvalidAddressError)
        self.assertIsInstance(exc, mailclient_smtp.SMTPClientError)
        self.assertEqual((exc.code, exc.isFatal, exc.retry), (-1, False, False))
        self.assertFalse(s.closed)
        s.step(b"221 bye\r\n")
        self.assertTrue(s.lost)
        self.assertEqual(len(s.client.errors), 1)
        self.assertEqual(s.client.delivered, [])

    def test_senderWithLineBreakOrNUL(self) -> None:
        """
        A sender holding CR, LF or NUL is refused with InvalidAddressError;
        Twisted sends another address, or the NUL, instead.
        """
        for c in self.BAD:
            for sender in ["alice@example.com" + c + "RCPT TO:<evil@example.com>",
                           ("alice@example.com" + c + "RCPT TO:<evil@example.com>").encode("ascii")]:
                self._refused(
                    msg(sender=sender),
                    R(b"220 hi", b"250 hello"),
                    b"HELO " + IDENTITY + b"\r\nQUIT\r\n",
                    b"evil",
                )
        s = connect(Twisted, msg(sender="alice@example.com\r\nRCPT TO:<evil@example.com>"))
        s.converse(R(b"220 hi", b"250 hello"))
        self.assertEqual(s.client.errors, [])
        self.assertIn(b"MAIL FROM:" + twistedQuoted(b"alice@example.com") + b"\r\n", s.written())
        s = connect(Twisted, msg(sender="alice@exa\0mple.com"))
        s.converse(R(b"220 hi", b"250 hello"))
        self.assertIn(b"MAIL FROM:<alice@exa\0mple.com>\r\n", s.written())

    def test_recipientWithLineBreakOrNUL(self) -> None:
        """
        If any recipient holds CR, LF or NUL the message is refused before
        the first RCPT; Twisted sends a different address, or the NUL.
        """
        for c in self.BAD:
            bad = "carol@example.org" + c + "DATA"
            for recipients in [[bad], ["bob@example.org", bad], [bad.encode("ascii"), "bob@example.org"]]:
                self._refused(
                    msg(to=recipients),
                    R(b"220 hi", b"250 hello", b"250 sender ok"),
                    b"HELO " + IDENTITY + b"\r\nMAIL FROM:<alice@example.com>\r\nQUIT\r\n",
                    b"carol",
                )
        s = connect(Twisted, msg(to=["bob@example.org", "carol@example.org\r\nDATA"]))
        s.converse(R(b"220 hi", b"250 hello", b"250 sender ok", b"250 ok"))
        self.assertEqual(s.client.errors, [])
        self.assertIn(b"RCPT TO:" + twistedQuoted(b"carol@example.org") + b"\r\n", s.written())

    def test_listOfAddressesInOneString(self) -> None:
        """
        C{"a@b.com, evil@x.com"} is refused as sender and as recipient;
        Twisted silently sends the first address only.
        """
        both = "a@b.com, evil@x.com"
        self._refused(
            msg(sender=both), R(b"220 hi", b"250 hello"), b"HELO " + IDENTITY + b"\r\nQUIT\r\n", b"a@b.com"
        )
        self._refused(
            msg(to=[both]),
            R(b"220 hi", b"250 hello", b"250 ok"),
            b"HELO " + IDENTITY + b"\r\nMAIL FROM:<alice@example.com>\r\nQUIT\r\n",
            b"a@b.com",
        )
        s = connect(Twisted, msg(sender=both, to=[both]))
        s.converse(R(b"220 hi", b"250 hello", b"250 ok"))
        first = twistedQuoted(b"a@b.com")
        self.assertEqual(s.commands()[1:], [b"MAIL FROM:" + first, b"RCPT TO:" + first])

    def test_getMailToSingleString(self) -> None:
        """
        getMailTo returning one string means one recipient; Twisted sends
        one RCPT per character.
        """
        for to in ["bob@example.org", b"bob@example.org"]:
            s = connect(Ours, msg(to=to))
            s.converse(UP_TO_DATA)
            self.assertEqual(s.commands()[2:], [b"RCPT TO:<bob@example.org>", b"DATA"])
        s = connect(Twisted, msg(to="bob@example.org"))
        s.converse(R(b"220 hi", b"250 hello", b"250 ok"))
        self.assertEqual(s.commands()[2:], [b"RCPT TO:<b>"])


class ReplyTests(SynchronousTestCase):
    """
    Anything that is not a well-formed reply is a fatal protocol error.
    """

    def assertProtocolError(self, s: Session) -> mailclient_smtp.SMTPProtocolError:
        """
        Assert exactly one fatal, not retried SMTPProtocolError was passed to
        sendError and the connection is gone; return it.
        """
        [exc] = s.client.errors
        self.assertIsInstance(exc, mailclient_smtp.SMTPProtocolError)
        self.assertTrue(exc.isFatal)
        self.assertFalse(exc.retry)
        self.assertTrue(s.closed)
        self.assertTrue(s.lost)
        self.assertEqual(len(s.client.errors), 1)
        return exc

    def test_garbageReply(self) -> None:
        """
        A line that does not start with three digits and a space, a hyphen
        or nothing is a protocol error.  Twisted accepts C{250x}, C{25 } or
        C{2500} as a reply code and goes on.
        """
        for garbage in [b"hello there", b"250x ok", b"25 ok", b"2500 ok", b"+25 ok"]:
            s = connect(Ours, msg())
            s.converse(R(b"220 hi", garbage))
            self.assertProtocolError(s)
            self.assertEqual(s.commands(), [b"HELO " + IDENTITY])
            self.assertEqual(s.client.hookNames(), ["sendError"])
        for garbage in [b"250x ok", b"2500 ok"]:
            s = connect(Twisted, msg())
            s.converse(R(b"220 hi", garbage))
            self.assertEqual(s.client.errors, [])
            self.assertEqual(s.commands(), [b"HELO " + IDENTITY, b"MAIL FROM:<alice@example.com>"])

    def test_lineBreakInsideReply(self) -> None:
        """
        A bare CR or LF inside a reply line is a protocol error: after the
        data, C{220 \\r250 ok} is not the server accepting the message.
        Twisted takes it for a 2xx reply and reports the message delivered.
        (Found by the fuzz target.)
        """
        replies = [b"220 hi\r\n", b"250 hello\r\n", b"250 ok\r\n", b"250 ok\r\n",
                   b"354 go\r\n"]
        for broken in [b"220 \r250 ok\r\n", b"250 ok\nmore\r\n"]:
            s = connect(Ours, msg())
            s.converse(replies + [broken])
            self.assertProtocolError(s)
            self.assertNotIn("sentMail", s.client.hookNames())
            t = connect(Twisted, msg())
            t.converse(replies + [broken])
            self.assertEqual(t.client.delivered[0][0] // 100, 2)

    def test_lineTooLong(self) -> None:
        """
        A reply line longer than MAX_LENGTH is reported as a protocol error
        through sendError; Twisted silently disconnects.
        """
        for tooLong in [b"250 " + b"x" * Ours.MAX_LENGTH + b"\r\n", b"250-" + b"x" * (Ours.MAX_LENGTH + 10)]:
            s = connect(Ours, msg())
            s.converse([b"220 hi\r\n", tooLong])
            self.assertProtocolError(s)
            s = connect(Twisted, msg())
            s.converse([b"220 hi\r\n", tooLong])
            self.assertTrue(s.lost)
            self.assertEqual(s.client.calls, [])

    def test_mixedCodesInMultiLineReply(self) -> None:
        """
        A multi-line reply whose lines carry different codes is a protocol
        error, not a reply with the last code; Twisted reports the message
        as refused with code 550.
        """
        s = connect(Ours, msg())
        s.converse(UP_TO_DATA + R(b"354 go", b"250-queued\r\n550 not really"))
        self.assertProtocolError(s)
        self.assertEqual(s.client.delivered, [])
        s = connect(Twisted, msg())
        s.converse(UP_TO_DATA + R(b"354 go", b"250-queued\r\n550 not really"))
        self.assertEqual(s.client.delivered, [(550, b"queued\nnot really")])

    def test_replyWhileSendingBody(self) -> None:
        """
        A reply that arrives before the body was sent is a fatal protocol
        error: the connection is aborted, no end-of-data line is sent and
        sentMail is not called.  Twisted takes it as the final reply, calls
        sentMail, then finishes the body and sends RSET into it.
        """
        body = b"line\n" * (3 * CHUNK // 5)
        s = connect(Ours, msg(body))
        s.converse(UP_TO_DATA)
        s.receive(b"354 go ahead\r\n")
        self.assertEqual(s.pump(limit=1), 1)
        self.assertIsNot(s.transport.producer, None)
        s.step(b"554 stop right there\r\n")
        exc = self.assertProtocolError(s)
        self.assertEqual(exc.code, 554)
        self.assertTrue(s.aborted)
        self.assertIs(s.transport.producer, None)
        # Exactly the first chunk of the body went out, nothing after it.
        self.assertEqual(s.written().split(b"DATA\r\n", 1)[1], body[:CHUNK].replace(b"\n", b"\r\n"))
        self.assertEqual(s.client.delivered, [])

        s = connect(Twisted, msg(body))
        s.converse(UP_TO_DATA)
        s.receive(b"354 go ahead\r\n")
        s.pump(limit=1)
        s.step(b"554 stop right there\r\n")
        self.assertEqual(s.client.delivered, [(554, b"stop right there")])
        after = s.written().split(b"DATA\r\n", 1)[1]
        # RSET in the middle of the body, then the rest of it and the end.
        self.assertLess(after.index(b"RSET\r\n"), after.rindex(b"line\r\n"))
        self.assertTrue(after.endswith(b"line\r\n.\r\n"))

    def test_refusedRSETDoesNotLoop(self) -> None:
        """
        When the server refuses the RSET after a message, the client sends
        QUIT; Twisted sends RSET again for every refusal.
        """
        done = UP_TO_DATA + R(b"354 go", b"250 queued")
        s = connect(Ours, msg())
        s.converse(done + R(b"502 no RSET here", b"221 bye"))
        self.assertEqual(s.commands()[-2:], [b"RSET", b"QUIT"])
        self.assertEqual(s.commands().count(b"RSET"), 1)
        self.assertEqual(s.client.errors, [])
        self.assertEqual(s.client.delivered, [(250, b"queued")])
        self.assertTrue(s.lost)
        s = connect(Twisted, msg())
        s.converse(done + R(b"502 no", b"502 no", b"502 no"))
        self.assertEqual(s.commands().count(b"RSET"), 4)
        self.assertNotIn(b"QUIT", s.commands())

    def test_garbageAfterMessageReported(self) -> None:
        """
        A protocol error after the message was reported (here in the reply
        to RSET) only closes the connection: the message got its outcome
        through sentMail already.  Twisted calls sendError as well.
        """
        replies = UP_TO_DATA + R(b"354 go", b"250 queued", b"garbage")
        s = connect(Ours, msg())
        s.converse(replies)
        # The next message is asked for as soon as this one succeeded (no
        # RSET between messages); there is none, so RSET goes before QUIT.
        self.assertEqual(s.client.hookNames(),
                         ["getMailFrom", "getMailTo", "getMailData", "sentMail", "getMailFrom"])
        self.assertTrue(s.lost)
        s = connect(Twisted, msg())
        s.converse(replies)
        self.assertEqual(s.client.hookNames()[-2:], ["sentMail", "sendError"])


class TranscriptTests(SynchronousTestCase):
    """
    The session log never holds credentials.
    """

    SECRET = b"dXNlcgB1c2VyAHBhc3M="

    def test_authInitialResponseRedacted(self) -> None:
        """
        An AUTH command's initial response is replaced by C{<redacted>}.
        """
        for cls, redacted in [(Ours, True), (Twisted, False)]:
            s = connect(cls)
            s.step(b"220 hi\r\n")
            s.client.sendLine(b"AUTH PLAIN " + self.SECRET)
            # The server still gets the real line.
            self.assertTrue(s.written().endswith(b"AUTH PLAIN " + self.SECRET + b"\r\n"))
            log = s.client.log.str()
            if redacted:
                self.assertNotIn(self.SECRET, log)
                self.assertIn(b">>> AUTH PLAIN <redacted>", log)
            else:
                self.assertIn(self.SECRET, log)

    def test_saslResponsesRedacted(self) -> None:
        """
        Lines sent while a SASL response is being sent are logged as
        C{<redacted>} (Twisted logs them as they are).
        """
        for cls, redacted in [(Ours, True), (Twisted, False)]:
            s = connect(cls)
            s.step(b"220 hi\r\n")
            state = getattr(s.client, "_mailclient", s.client)
            state.inSASL = True
            s.client.sendLine(b"c2VjcmV0")
            state.inSASL = False
            s.client.sendLine(b"NOOP")
            log = s.client.log.str()
            self.assertTrue(s.written().endswith(b"c2VjcmV0\r\nNOOP\r\n"))
            self.assertIn(b">>> NOOP", log)
            if redacted:
                self.assertNotIn(b"c2VjcmV0", log)
                self.assertIn(b">>> <redacted>\n>>> NOOP", log)
            else:
                self.assertIn(b"c2VjcmV0", log)


class ConnectionLossTests(SynchronousTestCase):
    """
    Each message attempt gets exactly one outcome, however the connection
    ends.
    """

    def test_lostMidTransaction(self) -> None:
        """
        Losing the connection while waiting for a reply reports one
        SMTPConnectError (fatal, retry); Twisted reports nothing.
        """
        s = connect(Ours, msg())
        s.converse(R(b"220 hi", b"250 hello"))
        s.loseConnection(Failure(ConnectionLost("gone")))
        self.assertEqual(s.client.hookNames(), ["getMailFrom", "sendError"])
        [exc] = s.client.errors
        self.assertIsInstance(exc, mailclient_smtp.SMTPConnectError)
        self.assertTrue(exc.isFatal)
        self.assertTrue(exc.retry)
        self.assertIn(b"MAIL FROM:<alice@example.com>", exc.log)
        s = connect(Twisted, msg())
        s.converse(R(b"220 hi", b"250 hello"))
        s.loseConnection(Failure(ConnectionLost("gone")))
        self.assertEqual(s.client.hookNames(), ["getMailFrom"])

    def test_lostMidBody(self) -> None:
        """
        Losing the connection while the body is being sent (the transport
        stops the producer, then calls connectionLost) reports one
        SMTPConnectError, leaves no unhandled error in a Deferred and does
        not call sentMail.  Twisted passes a bare C{Exception} to sendError.
        """
        body = b"y" * (3 * CHUNK)
        s = connect(Ours, msg(body))
        s.converse(UP_TO_DATA)
        s.receive(b"354 go\r\n")
        s.pump(limit=1)
        s.loseConnection(Failure(ConnectionLost("gone")))
        gc.collect()  # An unhandled error in a Deferred is logged when collected.
        self.assertEqual(s.client.delivered, [])
        self.assertEqual(len(s.client.errors), 1)
        self.assertEqual(describeError(s.client.errors[0])[0], "SMTPConnectError")
        self.assertFalse(s.written().endswith(b".\r\n"))

        # A transport that calls connectionLost without stopping the
        # producer first: the same single report.
        s = connect(Ours, msg(body))
        s.converse(UP_TO_DATA)
        s.receive(b"354 go\r\n")
        s.pump(limit=1)
        s.client.connectionLost(Failure(ConnectionLost("gone")))
        gc.collect()
        self.assertEqual(s.client.delivered, [])
        self.assertEqual([describeError(e)[0] for e in s.client.errors], ["SMTPConnectError"])
        self.assertIs(s.transport.producer, None)

        s = connect(Twisted, msg(body))
        s.converse(UP_TO_DATA)
        s.receive(b"354 go\r\n")
        s.pump(limit=1)
        s.loseConnection(Failure(ConnectionLost("gone")))
        [exc] = s.client.errors
        self.assertNotIsInstance(exc, twisted_smtp.SMTPClientError)

    def test_timeoutAfterLastMessage(self) -> None:
        """
        A timeout while waiting for the reply to QUIT calls neither
        sendError nor sentMail; Twisted calls sendError.
        """
        replies = UP_TO_DATA + R(b"354 go", b"250 queued", b"250 reset")
        for cls in (Ours, Twisted):
            s = connect(cls, msg(), timeout=30)
            s.converse(replies)
            self.assertEqual(s.commands()[-1], b"QUIT")
            before = list(s.client.calls)
            s.clock.advance(31)
            s.settle()
            self.assertTrue(s.lost)
            if cls is Ours:
                self.assertEqual(s.client.calls, before)
            else:
                self.assertEqual(s.client.hookNames()[len(before):], ["sendError"])


class BrokenHookTests(SynchronousTestCase):
    """
    An exception raised by a hook does not escape lineReceived.
    """

    def brokenClient(self, cls: Any, hook: str) -> Any:
        def broken(self: Any, *args: Any) -> Any:
            self.calls.append((hook,) + args)
            raise ZeroDivisionError("broken " + hook)

        return type("Broken", (cls,), {hook: broken})

    def test_hooksRaising(self) -> None:
        """
        getMailFrom, getMailTo and getMailData raising: the error is logged
        and reported as a fatal SMTPClientError through sendError, and the
        connection closed.  Twisted lets the exception out of dataReceived.
        """
        for hook, replies in [
            ("getMailFrom", R(b"220 hi", b"250 hello")),
            ("getMailTo", R(b"220 hi", b"250 hello", b"250 ok")),
            ("getMailData", UP_TO_DATA + R(b"354 go")),
        ]:
            s = connect(self.brokenClient(Ours, hook), msg())
            s.converse(replies)
            self.assertEqual(s.client.hookNames()[-2:], [hook, "sendError"])
            [exc] = s.client.errors
            self.assertIsInstance(exc, mailclient_smtp.SMTPClientError)
            self.assertTrue(exc.isFatal)
            self.assertIn(b"broken " + hook.encode("ascii"), exc.resp)
            self.assertTrue(s.lost)
            self.assertEqual(len(s.client.errors), 1)
            logged = self.flushLoggedErrors(ZeroDivisionError)
            self.assertEqual([str(f.value) for f in logged], ["broken " + hook])

            s = connect(self.brokenClient(Twisted, hook), msg())
            s.converse(replies[:-1])
            self.assertRaises(ZeroDivisionError, s.receive, replies[-1])

    def test_sentMailRaising(self) -> None:
        """
        sentMail raising: the message was already reported, so the error is
        logged and the connection closed without calling sendError.
        """
        s = connect(self.brokenClient(Ours, "sentMail"), msg())
        s.converse(UP_TO_DATA + R(b"354 go", b"250 queued"))
        self.assertEqual(s.client.hookNames()[-1], "sentMail")
        self.assertEqual(s.client.errors, [])
        self.assertTrue(s.lost)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

        s = connect(self.brokenClient(Twisted, "sentMail"), msg())
        s.converse(UP_TO_DATA + R(b"354 go"))
        self.assertRaises(ZeroDivisionError, s.receive, b"250 queued\r\n")

    def test_readErrorMidBody(self) -> None:
        """
        A body whose read() fails after the first chunk: MessageReadError
        through sendError, connection aborted, no end-of-data line, no
        sentMail.  Twisted lets the exception out of resumeProducing.
        """

        class Failing(io.RawIOBase):
            reads = 0

            def readable(self) -> bool:
                return True

            def read(self, size: int = -1) -> bytes:
                self.reads += 1
                if self.reads > 1:
                    raise OSError("disk on fire")
                return b"z" * size

        s = connect(Ours, msg(Failing))
        s.converse(UP_TO_DATA + R(b"354 go"))
        [exc] = s.client.errors
        self.assertIsInstance(exc, mailclient_smtp.MessageReadError)
        self.assertIsInstance(exc, mailclient_smtp.SMTPClientError)
        self.assertIn(b"disk on fire", exc.resp)
        self.assertTrue(s.aborted)
        self.assertTrue(s.lost)
        self.assertEqual(len(s.client.errors), 1)
        self.assertEqual(s.client.delivered, [])
        self.assertTrue(s.written().endswith(b"z" * CHUNK))

        s = connect(Twisted, msg(Failing))
        s.converse(UP_TO_DATA)
        s.receive(b"354 go\r\n")
        s.pump(limit=1)
        self.assertRaises(OSError, s.pump)


class BodyTurnsTests(SynchronousTestCase):
    """
    How many producer turns a body takes: a short read of an in-memory or
    buffered file ends it in the same turn, so the end of data leaves with
    the last chunk; any other file is read until it returns nothing, as by
    Twisted.
    """

    def test_inMemoryBodyEndsInOneTurn(self) -> None:
        s = connect(Ours, msg(b"hello\nworld\n"))
        s.converse(UP_TO_DATA)
        s.receive(b"354 go\r\n")
        self.assertEqual(s.pump(), 1)
        self.assertTrue(s.written().endswith(b"DATA\r\nhello\r\nworld\r\n.\r\n"))

    def test_bufferedFileEndsInOneTurn(self) -> None:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"from a file\n")
        body = open(path, "rb")
        self.addCleanup(body.close)
        s = connect(Ours, msg(lambda: body))
        s.converse(UP_TO_DATA)
        s.receive(b"354 go\r\n")
        self.assertEqual(s.pump(), 1)
        self.assertTrue(s.written().endswith(b"from a file\r\n.\r\n"))

    def test_largeBodyChunks(self) -> None:
        """
        A body over one chunk takes one turn per chunk; the last, short,
        one ends it.
        """
        body = b"x" * 99 + b"\n"
        s = connect(Ours, msg(body * (CHUNK // 100 * 2 + 1)))
        s.converse(UP_TO_DATA)
        s.receive(b"354 go\r\n")
        self.assertEqual(s.pump(), 3)
        self.assertTrue(s.written().endswith(b"x\r\n.\r\n"))

    def test_otherFilesUntilEmpty(self) -> None:
        """
        A file of another kind (whose short read may not be the end) is
        read until it returns nothing: two turns, as with Twisted.
        """

        class Trickle:
            def __init__(self) -> None:
                self.parts = [b"a\n", b"b\n"]

            def read(self, size: int = -1) -> bytes:
                return self.parts.pop(0) if self.parts else b""

        source = Trickle()
        s = connect(Ours, msg(lambda: source))
        s.converse(UP_TO_DATA)
        s.receive(b"354 go\r\n")
        self.assertEqual(s.pump(), 3)
        self.assertTrue(s.written().endswith(b"DATA\r\na\r\nb\r\n.\r\n"))


class _Descriptor(FileDescriptor):
    """
    A file descriptor transport whose socket takes everything at once.
    """

    def __init__(self, reactor: MemoryReactor) -> None:
        FileDescriptor.__init__(self, reactor)
        self.connected = 1
        self.sent: List[bytes] = []

    def writeSomeData(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return len(data)


class SendNowTests(SynchronousTestCase):
    """
    What the replies read in one turn of the reactor make the client write
    leaves in that turn, on a file descriptor transport (plain TCP): not
    left for the reactor's next turn.  Not while a producer feeds the
    transport, nor once it is closing.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.transport = _Descriptor(self.reactor)

    def test_commandSentInTheSameTurn(self) -> None:
        client = Ours(IDENTITY)
        client.queue(msg())
        client.makeConnection(self.transport)
        client.dataReceived(b"220 mx.example.org\r\n")
        self.assertEqual(self.transport.sent, [b"HELO client.example\r\n"])
        self.assertNotIn(self.transport, self.reactor.getWriters())
        client.dataReceived(b"250 hello\r\n")
        self.assertEqual(self.transport.sent[1:], [b"MAIL FROM:<alice@example.com>\r\n"])

    def test_bufferedWithoutSendNow(self) -> None:
        """
        The transport itself keeps a write for the reactor's next turn
        (what L{sendNow} saves).
        """
        self.transport.write(b"NOOP\r\n")
        self.assertEqual(self.transport.sent, [])
        self.assertIn(self.transport, self.reactor.getWriters())
        sendNow(self.transport)
        self.assertEqual(self.transport.sent, [b"NOOP\r\n"])
        self.assertNotIn(self.transport, self.reactor.getWriters())

    def test_notWhileClosing(self) -> None:
        self.transport.write(b"QUIT\r\n")
        self.transport.loseConnection()
        sendNow(self.transport)
        self.assertEqual(self.transport.sent, [])
        self.assertIn(self.transport, self.reactor.getWriters())

    def test_notWithAProducer(self) -> None:
        calls: List[str] = []

        @implementer(IPushProducer)
        class Producer:
            def pauseProducing(self) -> None:
                calls.append("pause")

            def resumeProducing(self) -> None:
                calls.append("resume")

            def stopProducing(self) -> None:
                calls.append("stop")

        self.transport.registerProducer(Producer(), True)
        self.transport.write(b"body\r\n")
        sendNow(self.transport)
        self.assertEqual((self.transport.sent, calls), ([], []))

    def test_otherTransportsLeftAlone(self) -> None:
        transport = StringTransport()
        transport.write(b"NOOP\r\n")
        sendNow(transport)
        self.assertEqual(transport.value(), b"NOOP\r\n")


class TextFileTests(SynchronousTestCase):
    """
    A text-mode file is sent as UTF-8.
    """

    TEXT = "Subject: Grüße\n\nZweite Zeile – ½ €\r\nEnde"

    def expected(self) -> bytes:
        lines = ["Subject: Grüße", "", "Zweite Zeile – ½ €", "Ende"]
        return dataSection([line.encode("utf-8") for line in lines])

    def test_stringIO(self) -> None:
        """
        An io.StringIO body with non-ASCII text is sent as UTF-8 with CRLF;
        Twisted fails with TypeError inside the producer.
        """
        self.assertEqual(bodyOnWire(Ours, self.TEXT), self.expected())
        self.assertRaises(TypeError, bodyOnWire, Twisted, self.TEXT)

    def test_textModeFile(self) -> None:
        """
        A file opened in text mode is sent as UTF-8.
        """
        # tempfile, not self.mktemp(): under pytest the latter writes into
        # the working directory.
        fd, path = tempfile.mkstemp(suffix=".eml")
        self.addCleanup(os.remove, path)
        with open(fd, "w", encoding="utf-8", newline="") as f:
            f.write(self.TEXT)

        def opener() -> Any:
            f = open(path, "r", encoding="utf-8", newline="")
            self.addCleanup(f.close)
            return f

        self.assertEqual(bodyOnWire(Ours, opener), self.expected())
        self.assertRaises(TypeError, bodyOnWire, Twisted, opener)

    def test_bigTextFile(self) -> None:
        """
        Multi-byte characters cut by the read-chunk size come out whole.
        """
        text = "ü" * (CHUNK + 7) + "\n"
        self.assertEqual(bodyOnWire(Ours, text), dataSection([("ü" * (CHUNK + 7)).encode("utf-8")]))
        self.assertRaises(TypeError, bodyOnWire, Twisted, text)


class IdentityTests(SynchronousTestCase):
    """
    The HELO identity.
    """

    def test_nonASCIIIdentity(self) -> None:
        """
        A non-ASCII str identity is IDNA-encoded; Twisted raises
        UnicodeEncodeError.
        """
        s = connect(Ours, identity="bücher.example")
        s.step(b"220 hi\r\n")
        self.assertEqual(s.commands(), [b"HELO xn--bcher-kva.example"])
        self.assertRaises(UnicodeEncodeError, Twisted, "bücher.example")


class EnvelopeTests(SynchronousTestCase):
    """
    Envelope details.
    """

    def test_nonASCIIDomainIDNA(self) -> None:
        """
        An address with an ASCII local part and a non-ASCII domain is sent
        with the domain IDNA-encoded; Twisted cannot encode it.
        """
        s = connect(Ours, msg(sender="alice@bücher.example", to=["bob@bücher.example"]))
        s.converse(R(b"220 hi", b"250 hello", b"250 ok"))
        self.assertEqual(
            s.commands()[1:],
            [b"MAIL FROM:<alice@xn--bcher-kva.example>", b"RCPT TO:<bob@xn--bcher-kva.example>"],
        )
        s = connect(Twisted, msg(sender="alice@bücher.example"))
        self.assertRaises(UnicodeEncodeError, s.converse, R(b"220 hi", b"250 hello"))

    def test_numOkOfRefusedSecondMessage(self) -> None:
        """
        When the second message of a session is refused at MAIL FROM,
        sentMail reports no accepted recipients and no RCPT results, not
        those of the first message.  Twisted reports the first message's
        count.
        """
        messages = [msg(b"one\n"), msg(b"two\n", sender="carol@example.com")]
        replies = UP_TO_DATA + R(b"354 go", b"250 one", b"550 no carol", b"250 reset", b"221 bye")
        s = connect(Ours, *messages)
        s.converse(replies)
        sent = [c for c in s.client.calls if c[0] == "sentMail"]
        self.assertEqual([c[1:5] for c in sent], [(250, b"one", 1, [("bob@example.org", 250, b"rcpt ok")]), (550, b"no carol", 0, [])])
        s = connect(Twisted, *messages)
        s.converse(UP_TO_DATA + R(b"354 go", b"250 one", b"250 reset", b"550 no carol", b"250 reset", b"221 bye"))
        sent = [c for c in s.client.calls if c[0] == "sentMail"]
        self.assertEqual(sent[1][1:4], (550, b"no carol", 1))

    def test_noRecipientsAcceptedIsBytes(self) -> None:
        """
        When every recipient is refused, sentMail's resp is the bytes
        C{b"No recipients accepted"}, like every other resp; Twisted passes
        a str.
        """
        replies = R(b"220 hi", b"250 hello", b"250 ok", b"550 no")
        for cls, expected in [(Ours, b"No recipients accepted"), (Twisted, "No recipients accepted")]:
            s = connect(cls, msg())
            s.converse(replies)
            [(code, resp)] = s.client.delivered
            self.assertEqual((code, resp), (550, expected))
            self.assertIs(type(resp), type(expected))


class ModuleTests(SynchronousTestCase):
    """
    Module-level behaviour.
    """

    def importCountingFQDN(self, module: str) -> int:
        """
        Import C{module} in a fresh interpreter; return how many times it
        called C{socket.getfqdn} (or C{socket.gethostname}) while importing.
        """
        code = (
            "import socket\n"
            "calls = []\n"
            "def counting(real):\n"
            "    def f(*a):\n"
            "        calls.append(a)\n"
            "        return real(*a)\n"
            "    return f\n"
            "socket.getfqdn = counting(socket.getfqdn)\n"
            "socket.gethostname = counting(socket.gethostname)\n"
            "import %s\n"
            "print(len(calls))\n" % (module,)
        )
        # The directory holding the mailclient package (trial runs tests
        # from _trial_temp, so the working directory will not do).
        root = os.path.dirname(os.path.dirname(os.path.abspath(mailclient_smtp.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, timeout=120
        )
        self.assertEqual(out.returncode, 0, out.stderr.decode("utf-8", "replace"))
        return int(out.stdout.strip().splitlines()[-1])

    def test_dnsNameLazy(self) -> None:
        """
        Importing mailclient.smtp does not look up the host name; C{DNSNAME}
        is computed on first use.  Twisted looks it up at import time.
        """
        self.assertEqual(self.importCountingFQDN("mailclient.smtp"), 0)
        self.assertGreater(self.importCountingFQDN("twisted.mail.smtp"), 0)
        self.assertIsInstance(mailclient_smtp.DNSNAME, bytes)
        self.assertEqual(mailclient_smtp.DNSNAME, twisted_smtp.DNSNAME)
