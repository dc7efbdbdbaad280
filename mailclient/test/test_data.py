"""
Tests for L{mailclient._wire.data}: the streaming DATA encoder.

The expected output is never computed by the encoder itself: the tests decode
what it produces the way an RFC 5321 server does (L{serverDecode}) and compare
with an independent normalisation of the input (L{normalise}).
"""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.mail import smtp as twsmtp
from twisted.trial.unittest import SynchronousTestCase

from mailclient._wire.data import DataEncoder, encodeData

END = b"\r\n.\r\n"


def normalise(data):
    """
    The message as the server should store it: every line ending (CRLF,
    lone CR, lone LF) turned into CRLF, and a final CRLF added when the last
    line has none.  Empty input stays empty.
    """
    if not data:
        return b""
    lines = re.split(rb"\r\n|\r|\n", data)
    if lines[-1] == b"":
        # The input ended with a line ending: no unterminated last line.
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


def serverDecode(wire):
    """
    Read DATA the way RFC 5321, section 4.5.2 tells a server to: lines end
    with CRLF, the line C{.} ends the data, and one leading dot is removed
    from any other line that starts with a dot.

    @return: C{(body, rest)}: the body (lines with CRLF) and whatever
        followed the end-of-data line.
    @raise AssertionError: if the wire bytes never end the data.
    """
    lines = []
    pos = 0
    while True:
        end = wire.find(b"\r\n", pos)
        if end == -1:
            raise AssertionError("no end-of-data line in %r" % (wire,))
        line = wire[pos:end]
        pos = end + 2
        if line == b".":
            return b"".join(x + b"\r\n" for x in lines), wire[pos:]
        if line[:1] == b".":
            line = line[1:]
        lines.append(line)


def encodeChunks(chunks):
    encoder = DataEncoder()
    return b"".join(encoder.encode(c) for c in chunks) + encoder.finish()


def split(data, cuts):
    cuts = sorted(cuts)
    return [data[i:j] for i, j in zip([0] + cuts, cuts + [len(data)])]


# Message bytes that are rich in the characters that matter.
_pieces = st.sampled_from(
    [b"\r", b"\n", b"\r\n", b".", b"..", b"a", b"b c", b"\n.", b"\r.", b"\x00", b"\xff"]
)
messages = st.one_of(
    st.binary(max_size=120),
    st.lists(_pieces, max_size=40).map(b"".join),
)


@st.composite
def chunked(draw):
    data = draw(messages)
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=12))
    return data, split(data, cuts)


BARE_CR = re.compile(rb"\r(?!\n)")
BARE_LF = re.compile(rb"(?<!\r)\n")


class WirePropertyTests(SynchronousTestCase):
    """
    Properties of the encoder's output for any message and any chunking.
    """

    def assertWellFormed(self, data, wire):
        # (1) No bare CR or LF.
        self.assertIsNone(BARE_CR.search(wire), wire)
        self.assertIsNone(BARE_LF.search(wire), wire)
        # (2) A server gets back the normalised message...
        body, rest = serverDecode(wire)
        self.assertEqual(body, normalise(data))
        # (5) ... and nothing follows the one end-of-data marker.
        self.assertEqual(rest, b"")
        if data:
            self.assertTrue(wire.endswith(END), wire)
        else:
            self.assertEqual(wire, b".\r\n")
        # (3) No line before the end is a lone dot.
        lines = wire.split(b"\r\n")
        self.assertEqual(lines[-1], b"")
        self.assertNotIn(b".", lines[:-2])
        self.assertEqual(lines[-2], b".")

    @settings(max_examples=300)
    @given(chunked())
    def test_anyChunking(self, case):
        data, chunks = case
        self.assertWellFormed(data, encodeChunks(chunks))

    @settings(max_examples=200)
    @given(messages)
    def test_oneByteChunks(self, data):
        wire = encodeChunks([data[i : i + 1] for i in range(len(data))])
        self.assertWellFormed(data, wire)

    @settings(max_examples=300)
    @given(chunked())
    def test_chunkingIndependent(self, case):
        """
        (4) The bytes on the wire do not depend on how the message was cut.
        """
        data, chunks = case
        self.assertEqual(encodeChunks(chunks), encodeChunks([data]))
        self.assertEqual(encodeChunks(chunks), encodeData(data))
        self.assertEqual(
            encodeChunks(chunks), encodeChunks([bytes([b]) for b in data])
        )

    @settings(max_examples=300)
    @given(chunked())
    def test_noSmuggledTerminator(self, case):
        """
        No sequence that any server (strict or lenient about line endings)
        could take for the end of data appears before the real end.
        """
        data, chunks = case
        wire = encodeChunks(chunks)
        self.assertEqual(wire.find(END), len(wire) - len(END) if data else -1)
        for pattern in (b"\n.\n", b"\r.\r", b"\r.\n", b"\n.\r"):
            positions = [m.start() for m in re.finditer(re.escape(pattern), wire)]
            allowed = [len(wire) - 4] if pattern == b"\n.\r" and data else []
            self.assertEqual(positions, allowed, (pattern, wire))


class ExplicitCaseTests(SynchronousTestCase):
    """
    Hand-checked encodings of the cases that are easy to get wrong.
    """

    def test_empty(self):
        self.assertEqual(encodeChunks([]), b".\r\n")
        self.assertEqual(encodeChunks([b"", b""]), b".\r\n")
        self.assertEqual(encodeData(b""), b".\r\n")

    def test_noFinalNewline(self):
        self.assertEqual(encodeData(b"hello"), b"hello\r\n.\r\n")
        self.assertEqual(encodeData(b"a\nb"), b"a\r\nb\r\n.\r\n")

    def test_finalNewline(self):
        self.assertEqual(encodeData(b"hello\n"), b"hello\r\n.\r\n")
        self.assertEqual(encodeData(b"hello\r\n"), b"hello\r\n.\r\n")
        self.assertEqual(encodeData(b"hello\r"), b"hello\r\n.\r\n")

    def test_lineEndings(self):
        self.assertEqual(encodeData(b"a\rb\nc\r\nd"), b"a\r\nb\r\nc\r\nd\r\n.\r\n")

    def test_crCrLf(self):
        """
        C{\\r\\r\\n} is a lone CR followed by CRLF: two line endings.
        """
        self.assertEqual(encodeData(b"a\r\r\nb"), b"a\r\n\r\nb\r\n.\r\n")
        self.assertEqual(encodeChunks([b"a\r", b"\r\n", b"b"]), b"a\r\n\r\nb\r\n.\r\n")
        self.assertEqual(encodeChunks([b"a\r\r", b"\nb"]), b"a\r\n\r\nb\r\n.\r\n")

    def test_firstLineDot(self):
        self.assertEqual(encodeData(b".hidden\n"), b"..hidden\r\n.\r\n")
        self.assertEqual(encodeData(b"."), b"..\r\n.\r\n")
        self.assertEqual(encodeData(b".\n"), b"..\r\n.\r\n")

    def test_dotLines(self):
        self.assertEqual(
            encodeData(b"a\n.\n..\n.b\nc.\n"),
            b"a\r\n..\r\n...\r\n..b\r\nc.\r\n.\r\n",
        )

    def test_dotAtChunkBoundary(self):
        self.assertEqual(encodeChunks([b"a\n", b".b\n"]), b"a\r\n..b\r\n.\r\n")
        self.assertEqual(encodeChunks([b"a\r\n", b"."]), b"a\r\n..\r\n.\r\n")
        self.assertEqual(encodeChunks([b"a\r", b".b"]), b"a\r\n..b\r\n.\r\n")
        self.assertEqual(encodeChunks([b"", b".b"]), b"..b\r\n.\r\n")

    def test_dotNotAtLineStart(self):
        self.assertEqual(encodeChunks([b"a", b".b"]), b"a.b\r\n.\r\n")

    def test_crLfSplitAcrossChunks(self):
        self.assertEqual(encodeChunks([b"a\r", b"\nb"]), b"a\r\nb\r\n.\r\n")
        self.assertEqual(encodeChunks([b"a\r", b"\n", b"b"]), b"a\r\nb\r\n.\r\n")
        self.assertEqual(encodeChunks([b"a\r", b"", b"\nb"]), b"a\r\nb\r\n.\r\n")
        self.assertEqual(encodeChunks([b"a\r", b"\n.b"]), b"a\r\n..b\r\n.\r\n")
        # Only one LF is swallowed: the second is a line ending of its own.
        self.assertEqual(encodeChunks([b"a\r", b"\n\nb"]), b"a\r\n\r\nb\r\n.\r\n")

    def test_lfChunkAfterSplitCrLf(self):
        """
        A chunk that is only the LF of a split CRLF completes that line
        ending; an LF in the chunk after it is a new (empty) line.
        """
        expected = b"a\r\n\r\nb\r\n.\r\n"
        self.assertEqual(encodeData(b"a\r\n\nb"), expected)
        self.assertEqual(encodeChunks([b"a\r", b"\n", b"\nb"]), expected)
        self.assertEqual(encodeChunks([b"a", b"\r", b"\n", b"\n", b"b"]), expected)

    def test_encodeReturnsNothingForEmpty(self):
        encoder = DataEncoder()
        self.assertEqual(encoder.encode(b""), b"")
        self.assertEqual(encoder.encode(b"x\r"), b"x\r\n")
        self.assertEqual(encoder.encode(b"\n"), b"")
        self.assertEqual(encoder.finish(), b".\r\n")

    def test_terminator(self):
        self.assertEqual(DataEncoder.terminator(True), b".\r\n")
        self.assertEqual(DataEncoder.terminator(False), b"\r\n.\r\n")

    def test_smuggling(self):
        """
        The sequences used in SMTP smuggling attacks come out as ordinary,
        dot-stuffed lines and never end the data early.
        """
        for seq in (b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r\n.\r", b"\r\n.\r\n"):
            data = b"Subject: x\r\n\r\nbody" + seq + b"MAIL FROM:<evil@x>\r\n"
            for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
                wire = encodeChunks(chunks)
                self.assertEqual(wire.find(END), len(wire) - len(END), (seq, wire))
                body, rest = serverDecode(wire)
                self.assertEqual(rest, b"")
                self.assertEqual(body, normalise(data))
                self.assertIn(b"\r\n..\r\nMAIL FROM", wire)


class TwistedDifferenceTests(SynchronousTestCase):
    """
    Twisted's C{SMTPClient.transformChunk} stuffs dots per chunk and only
    after a newline, so it leaves a dot on the first line and at the start
    of a chunk unstuffed, and turns CRLF into CR CR LF.  These tests record
    why mailclient does not copy it.
    """

    def twistedEncode(self, chunks):
        client = twsmtp.SMTPClient(b"localhost")
        return b"".join(client.transformChunk(c) for c in chunks)

    def test_firstLineDot(self):
        data = b".hidden line\n"
        twisted = self.twistedEncode([data])
        self.assertEqual(twisted, b".hidden line\r\n")
        # A server strips the dot Twisted should have added: the message
        # changes in transit.
        self.assertNotEqual(serverDecode(twisted + b".\r\n")[0], normalise(data))
        self.assertEqual(serverDecode(encodeData(data))[0], normalise(data))

    def test_firstLineLoneDot(self):
        """
        A message whose first line is C{.} ends the data at once in Twisted.
        """
        twisted = self.twistedEncode([b".\nrest\n"])
        self.assertTrue(twisted.startswith(b".\r\n"))
        self.assertEqual(serverDecode(twisted + b".\r\n"), (b"", b"rest\r\n.\r\n"))
        self.assertEqual(serverDecode(encodeData(b".\nrest\n")), (b".\r\nrest\r\n", b""))

    def test_dotAtChunkBoundary(self):
        chunks = [b"a\n", b".\n", b"b\n"]
        twisted = self.twistedEncode(chunks)
        self.assertEqual(twisted, b"a\r\n.\r\nb\r\n")
        self.assertEqual(serverDecode(twisted + b".\r\n"), (b"a\r\n", b"b\r\n.\r\n"))
        ours = encodeChunks(chunks)
        self.assertNotEqual(ours, twisted + b".\r\n")
        self.assertEqual(serverDecode(ours), (b"a\r\n.\r\nb\r\n", b""))

    def test_crlfInput(self):
        twisted = self.twistedEncode([b"a\r\nb\r\n"])
        self.assertEqual(twisted, b"a\r\r\nb\r\r\n")
        self.assertIsNotNone(BARE_CR.search(twisted))
        self.assertEqual(encodeData(b"a\r\nb\r\n"), b"a\r\nb\r\n.\r\n")
