"""
Tests for L{mailclient._wire.reply}: assembling server lines into replies.
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.mail import smtp as twsmtp
from twisted.trial.unittest import SynchronousTestCase

from mailclient._wire.reply import (
    MAX_REPLY_BYTES,
    MAX_REPLY_LINES,
    MalformedReply,
    Reply,
    ReplyAssembler,
)


def feedAll(lines):
    """
    Feed C{lines} to a new assembler; return the list of non-None results.
    """
    assembler = ReplyAssembler()
    results = []
    for line in lines:
        result = assembler.feed(line)
        if result is not None:
            results.append(result)
    return results


def twistedReplies(lines):
    """
    The (code, text) pairs Twisted's C{SMTPClient.lineReceived} hands to its
    state handlers for C{lines}.
    """
    client = twsmtp.SMTPClient(b"localhost")
    seen = []
    client._expected = range(1000)
    client._okresponse = lambda code, resp: seen.append((code, resp))
    client._failresponse = client._okresponse
    for line in lines:
        client.lineReceived(line)
    return seen


class ReplyTests(SynchronousTestCase):
    def test_singleLine(self):
        self.assertEqual(feedAll([b"250 OK"]), [Reply(250, [b"OK"])])

    def test_codeOnly(self):
        """
        C{250} without separator or text is a complete reply with empty text.
        """
        assembler = ReplyAssembler()
        reply = assembler.feed(b"250")
        self.assertEqual(reply, Reply(250, [b""]))
        self.assertEqual(reply.code, 250)
        self.assertEqual(reply.text, b"")
        self.assertEqual(twistedReplies([b"250"]), [(250, b"")])

    def test_codeAndSpaceOnly(self):
        self.assertEqual(feedAll([b"354 "]), [Reply(354, [b""])])

    def test_multiLine(self):
        assembler = ReplyAssembler()
        self.assertIsNone(assembler.feed(b"250-mx.example.com Hello"))
        self.assertTrue(assembler.pending)
        self.assertIsNone(assembler.feed(b"250-SIZE 1000"))
        self.assertIsNone(assembler.feed(b"250-"))
        reply = assembler.feed(b"250 8BITMIME")
        self.assertFalse(assembler.pending)
        self.assertEqual(
            reply, Reply(250, [b"mx.example.com Hello", b"SIZE 1000", b"", b"8BITMIME"])
        )
        self.assertEqual(reply.text, b"mx.example.com Hello\nSIZE 1000\n\n8BITMIME")

    def test_multiLineEndsWithBareCode(self):
        self.assertEqual(feedAll([b"250-a", b"250"]), [Reply(250, [b"a", b""])])

    def test_consecutiveReplies(self):
        self.assertEqual(
            feedAll([b"220-hi", b"220 there", b"250 OK", b"550-no", b"550 way"]),
            [
                Reply(220, [b"hi", b"there"]),
                Reply(250, [b"OK"]),
                Reply(550, [b"no", b"way"]),
            ],
        )

    def test_informationalIgnored(self):
        assembler = ReplyAssembler()
        self.assertIsNone(assembler.feed(b"050 informational"))
        self.assertFalse(assembler.pending)
        self.assertIsNone(assembler.feed(b"250-a"))
        self.assertIsNone(assembler.feed(b"099-noise"))
        self.assertIsNone(assembler.feed(b"000 more noise"))
        self.assertEqual(assembler.feed(b"250 b"), Reply(250, [b"a", b"b"]))

    def test_textJoinedWithLF(self):
        lines = [b"250-one", b"250-two", b"250 three"]
        (reply,) = feedAll(lines)
        self.assertEqual(reply.text, b"one\ntwo\nthree")
        self.assertEqual(twistedReplies(lines), [(250, reply.text)])

    def test_textKeepsSpaces(self):
        (reply,) = feedAll([b"250  two leading spaces "])
        self.assertEqual(reply.lines, [b" two leading spaces "])

    def test_replyIsTuple(self):
        reply = Reply(250, [b"x"])
        code, lines = reply
        self.assertEqual((code, lines), (250, [b"x"]))

    def test_reset(self):
        assembler = ReplyAssembler()
        assembler.feed(b"250-a")
        self.assertTrue(assembler.pending)
        assembler.reset()
        self.assertFalse(assembler.pending)
        # A different code is fine after the reset.
        self.assertEqual(assembler.feed(b"354 go"), Reply(354, [b"go"]))

    def test_repliesAreIndependent(self):
        """
        A reply's lines are not changed by later lines.
        """
        assembler = ReplyAssembler()
        first = assembler.feed(b"250 a")
        assembler.feed(b"250-b")
        assembler.feed(b"250 c")
        self.assertEqual(first.lines, [b"a"])


class MalformedTests(SynchronousTestCase):
    def assertMalformed(self, *lines):
        assembler = ReplyAssembler()
        for line in lines[:-1]:
            assembler.feed(line)
        self.assertRaises(MalformedReply, assembler.feed, lines[-1])

    def test_isValueError(self):
        self.assertTrue(issubclass(MalformedReply, ValueError))

    def test_nonDigit(self):
        for line in (b"abc", b"25x OK", b"x50 OK", b"OK", b"", b" 250 OK", b"+25 OK",
                     b"-25 OK", b"2 5 OK", b"\xd9\xa2\xd9\xa5\xd9\xa0 OK"):
            self.assertMalformed(line)

    def test_tooShort(self):
        for line in (b"25", b"2", b"25 OK", b"25-OK"):
            self.assertMalformed(line)

    def test_badSeparator(self):
        for line in (b"2500", b"250_OK", b"250\tOK", b"250:OK", b"250OK", b"250.", b"0500"):
            self.assertMalformed(line)

    def test_lineBreakInside(self):
        for line in (b"250 ok\rmore", b"250 \r250 ok", b"250-a\nb", b"220 \r", b"0\r1 x"):
            self.assertMalformed(line)
        self.assertMalformed(b"250-a", b"250 b\r")

    def test_badInformational(self):
        self.assertMalformed(b"0ab info")

    def test_mixedCodes(self):
        self.assertMalformed(b"250-a", b"251 b")
        self.assertMalformed(b"250-a", b"550-b")
        self.assertMalformed(b"250-a", b"250-b", b"354 c")

    def test_tooManyLines(self):
        assembler = ReplyAssembler()
        for i in range(MAX_REPLY_LINES):
            self.assertIsNone(assembler.feed(b"250-x"))
        self.assertRaises(MalformedReply, assembler.feed, b"250-x")

    def test_tooManyLinesLastLine(self):
        assembler = ReplyAssembler()
        for i in range(MAX_REPLY_LINES):
            assembler.feed(b"250-x")
        self.assertRaises(MalformedReply, assembler.feed, b"250 end")

    def test_maximumLinesAccepted(self):
        lines = [b"250-x"] * (MAX_REPLY_LINES - 1) + [b"250 end"]
        (reply,) = feedAll(lines)
        self.assertEqual(len(reply.lines), MAX_REPLY_LINES)

    def test_tooLong(self):
        assembler = ReplyAssembler()
        self.assertRaises(
            MalformedReply, assembler.feed, b"250 " + b"x" * MAX_REPLY_BYTES
        )

    def test_tooLongMultiLine(self):
        assembler = ReplyAssembler()
        chunk = b"250-" + b"x" * 1000
        with self.assertRaises(MalformedReply):
            for i in range(MAX_REPLY_BYTES // len(chunk) + 2):
                assembler.feed(chunk)

    def test_longestAccepted(self):
        line = b"250 " + b"x" * (MAX_REPLY_BYTES - 4)
        (reply,) = feedAll([line])
        self.assertEqual(reply.lines, [line[4:]])


reply_text = st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)
codes = st.integers(100, 999)


@st.composite
def wellFormedReplies(draw):
    """
    A list of replies, and the lines a server would send for them, with
    informational C{0xx} lines sprinkled in.
    """
    replies = draw(st.lists(st.tuples(codes, st.lists(reply_text, min_size=1, max_size=5)), max_size=5))
    lines = []
    for code, texts in replies:
        for i, text in enumerate(texts):
            if draw(st.booleans()):
                lines.append(b"0%02d-info" % (draw(st.integers(0, 99)),))
            sep = b" " if i == len(texts) - 1 else b"-"
            if sep == b" " and text == b"" and draw(st.booleans()):
                sep = b""
            lines.append(b"%d%s%s" % (code, sep, text))
    return replies, lines


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=300)
    @given(wellFormedReplies())
    def test_roundTrip(self, case):
        replies, lines = case
        self.assertEqual(
            [(r.code, r.lines) for r in feedAll(lines)],
            [(code, texts) for code, texts in replies],
        )

    @settings(max_examples=200)
    @given(wellFormedReplies())
    def test_sameAsTwisted(self, case):
        """
        For well-formed input, the (code, text) pairs equal those Twisted's
        C{SMTPClient.lineReceived} passes to its state handlers.
        """
        _, lines = case
        self.assertEqual(
            [(r.code, r.text) for r in feedAll(lines)], twistedReplies(lines)
        )

    @settings(max_examples=300)
    @given(
        st.lists(
            st.one_of(
                st.binary(max_size=12),
                st.tuples(
                    st.sampled_from([b"250", b"251", b"050", b"25", b"2x0", b"999", b"000"]),
                    st.sampled_from([b"", b" ", b"-", b"x", b"\t"]),
                    st.binary(max_size=6),
                ).map(b"".join),
            ),
            max_size=20,
        )
    )
    def test_neverOtherException(self, lines):
        """
        Any sequence of lines gives only replies, None or L{MalformedReply}.
        """
        assembler = ReplyAssembler()
        for line in lines:
            try:
                result = assembler.feed(line)
            except MalformedReply:
                assembler.reset()
                continue
            if result is not None:
                self.assertIsInstance(result, Reply)
                self.assertIsInstance(result.code, int)
                self.assertTrue(100 <= result.code <= 999, result)
                self.assertEqual(line[:3], b"%03d" % (result.code,))
                for text in result.lines:
                    self.assertIsInstance(text, bytes)
