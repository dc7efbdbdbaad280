"""
Tests for L{mailclient._wire.xtext}: the RFC 3461 xtext codec.
"""

import codecs
import os
import re
import subprocess
import sys
from io import BytesIO

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.mail import smtp as twsmtp
from twisted.trial.unittest import SynchronousTestCase

from mailclient._wire.xtext import (
    xtext_codec,
    xtext_decode,
    xtext_encode,
    xtextStreamReader,
    xtextStreamWriter,
)

# RFC 3461, section 4: xtext = *( xchar / hexchar ); xchar is "!" to "~"
# except "+" and "="; hexchar is "+" and two upper-case hex digits.
XTEXT = re.compile(rb"(?:[!-*,-<>-~]|\+[0-9A-F]{2})*\Z")


class EncodeTests(SynchronousTestCase):
    def test_examples(self):
        self.assertEqual(xtext_encode("a+b=c"), (b"a+2Bb+3Dc", 5))
        self.assertEqual(xtext_encode("hello world"), (b"hello+20world", 11))
        self.assertEqual(xtext_encode("\x00\x7f~!"), (b"+00+7F~!", 4))
        self.assertEqual(xtext_encode(""), (b"", 0))

    def test_bytes(self):
        self.assertEqual(xtext_encode(b"a+b=c\xff"), (b"a+2Bb+3Dc+FF", 6))

    def test_bytesPlusEncoded(self):
        """
        Unlike Twisted, C{+} and C{=} in bytes input are encoded too.
        """
        self.assertEqual(twsmtp.xtext_encode(b"a+b")[0], b"a+b")
        self.assertEqual(xtext_encode(b"a+b")[0], b"a+2Bb")

    def test_nonAsciiIsUTF8(self):
        self.assertEqual(xtext_encode("\u00e9"), (b"+C3+A9", 1))
        self.assertEqual(xtext_encode("\u20ac"), (b"+E2+82+AC", 1))

    @settings(max_examples=300)
    @given(st.text(alphabet=st.characters(max_codepoint=127), max_size=50))
    def test_sameAsTwistedForAscii(self, text):
        self.assertEqual(xtext_encode(text), twsmtp.xtext_encode(text))

    @settings(max_examples=300)
    @given(st.one_of(st.text(max_size=50), st.binary(max_size=50)))
    def test_outputIsXtext(self, value):
        encoded, consumed = xtext_encode(value)
        self.assertIsInstance(encoded, bytes)
        self.assertEqual(consumed, len(value))
        self.assertIsNotNone(XTEXT.match(encoded), encoded)


class DecodeTests(SynchronousTestCase):
    def test_examples(self):
        self.assertEqual(xtext_decode(b"a+2Bb+3Dc"), ("a+b=c", 9))
        self.assertEqual(xtext_decode("hello+20world"), ("hello world", 13))
        self.assertEqual(xtext_decode(b""), ("", 0))
        self.assertEqual(xtext_decode(b"+c3+a9"), ("\u00e9", 6))

    def test_sameAsTwistedForAscii(self):
        for encoded in [b"a+2Bb+3Dc", b"hello+20world", b"+00+7F~!", b"plain"]:
            self.assertEqual(xtext_decode(encoded), twsmtp.xtext_decode(encoded))

    def test_malformedKept(self):
        """
        A C{+} not followed by two hex digits is kept as it is, and nothing
        raises.
        """
        for encoded in [b"+", b"a+", b"+4", b"+ZZ", b"+4G", b"+G4", b"++", b"+\xff1", b"+\x00\x00"]:
            decoded, consumed = xtext_decode(encoded)
            self.assertEqual(consumed, len(encoded))
            self.assertEqual(decoded, encoded.decode("utf-8", "replace"))

    def test_malformedNotHex(self):
        """
        Only hex digits make an escape: C{int()}'s leniency about white
        space, signs and underscores must not turn these into bytes.
        """
        for encoded in [b"+ 1", b"+1 ", b"+-0", b"++1", b"+-1", b"+\t1", b"+0_", b"+_0"]:
            self.assertEqual(xtext_decode(encoded), (encoded.decode("ascii"), len(encoded)))

    def test_twistedRaisesOnMalformed(self):
        self.assertRaises(Exception, twsmtp.xtext_decode, b"+ZZ")
        self.assertEqual(xtext_decode(b"+ZZ"), ("+ZZ", 3))

    @settings(max_examples=300)
    @given(
        st.one_of(
            st.binary(max_size=30),
            st.lists(st.sampled_from([b"+", b"2B", b"G", b"a", b" ", b"-", b"\xff", b"0"]), max_size=15).map(b"".join),
        )
    )
    def test_neverRaises(self, encoded):
        decoded, consumed = xtext_decode(encoded)
        self.assertIsInstance(decoded, str)
        self.assertEqual(consumed, len(encoded))


class RoundTripTests(SynchronousTestCase):
    @settings(max_examples=300)
    @given(st.text(max_size=50))
    def test_text(self, text):
        encoded, _ = xtext_encode(text)
        self.assertEqual(xtext_decode(encoded), (text, len(encoded)))

    @settings(max_examples=300)
    @given(st.text(max_size=50).map(lambda t: t.encode("utf-8")))
    def test_utf8Bytes(self, data):
        encoded, _ = xtext_encode(data)
        self.assertEqual(xtext_decode(encoded)[0].encode("utf-8"), data)

    @settings(max_examples=300)
    @given(st.binary(max_size=50))
    def test_anyBytes(self, data):
        """
        Any bytes survive encoding exactly: decoding the escapes by hand
        (independently of L{xtext_decode}) gives them back.
        """
        encoded, _ = xtext_encode(data)
        raw = re.sub(rb"\+([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), encoded)
        self.assertEqual(raw, data)
        self.assertEqual(xtext_decode(encoded)[0], data.decode("utf-8", "replace"))


class CodecTests(SynchronousTestCase):
    def test_lookupAfterImport(self):
        import mailclient.smtp

        info = codecs.lookup("xtext")
        self.assertEqual(info.encode("a b"), xtext_encode("a b"))
        self.assertEqual(info.decode(b"a+20b"), xtext_decode(b"a+20b"))
        self.assertIs(mailclient.smtp.xtext_codec, xtext_codec)
        self.assertIs(mailclient.smtp.xtext_encode, xtext_encode)
        self.assertIs(mailclient.smtp.xtext_decode, xtext_decode)

    def test_twistedImportedFirst(self):
        """
        The codec works even when C{twisted.mail.smtp} (whose search function
        returns a plain tuple, with a stream writer that cannot encode) was
        imported first.  Run in a fresh interpreter to control import order.
        """
        import mailclient

        code = (
            "import codecs, io, twisted.mail.smtp, mailclient.smtp\n"
            "info = codecs.lookup('xtext')\n"
            "assert isinstance(info, codecs.CodecInfo), type(info)\n"
            "w = codecs.getwriter('xtext')(io.BytesIO())\n"
            "w.write('a+b')\n"
            "assert w.stream.getvalue() == b'a+2Bb', w.stream.getvalue()\n"
            "assert b'+ZZ'.decode('xtext') == '+ZZ'\n"
        )
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.abspath(mailclient.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, timeout=60
        )
        self.assertEqual(result.returncode, 0, result.stderr.decode("utf-8", "replace"))

    def test_strMethods(self):
        self.assertEqual("a+b c".encode("xtext"), b"a+2Bb+20c")
        self.assertEqual(b"a+2Bb+20c".decode("xtext"), "a+b c")
        self.assertEqual(codecs.encode("x=y", "xtext"), b"x+3Dy")
        self.assertEqual(codecs.decode(b"x+3Dy", "xtext"), "x=y")

    def test_searchFunction(self):
        self.assertIsNone(xtext_codec("utf-8"))
        self.assertIsNone(xtext_codec("xtext2"))
        self.assertEqual(
            xtext_codec("xtext"),
            (xtext_encode, xtext_decode, xtextStreamReader, xtextStreamWriter),
        )

    def test_streamWriter(self):
        stream = BytesIO()
        writer = codecs.getwriter("xtext")(stream)
        self.assertIsInstance(writer, xtextStreamWriter)
        writer.write("a b")
        writer.write("+")
        self.assertEqual(stream.getvalue(), b"a+20b+2B")

    def test_streamReader(self):
        reader = codecs.getreader("xtext")(BytesIO(b"a+20b+2B"))
        self.assertIsInstance(reader, xtextStreamReader)
        self.assertEqual(reader.read(), "a b+")
