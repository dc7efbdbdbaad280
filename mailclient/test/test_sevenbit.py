"""
Tests for L{mailclient._wire.sevenbit}: the 8-bit to 7-bit conversion a
relay performs for a server without 8BITMIME (RFC 6152 section 3).
"""

from __future__ import annotations

import email
import email.policy

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mailclient._wire import sevenbit
from mailclient._wire.sevenbit import CannotConvert, toSevenBit


def _mime(body: bytes, ctype: bytes = b"text/plain; charset=utf-8", cte: bytes = b"8bit") -> bytes:
    return (
        b"From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: " + ctype
        + b"\r\nContent-Transfer-Encoding: " + cte + b"\r\n\r\n" + body
    )


def _parts(message: bytes) -> list[tuple[str, bytes]]:
    parsed = email.message_from_bytes(message, policy=email.policy.compat32)
    return [
        (part.get_content_type(), part.get_payload(decode=True))
        for part in parsed.walk() if not part.is_multipart()
    ]


class ConversionTests(SynchronousTestCase):
    """
    Every 8-bit body part is re-encoded; what cannot be re-encoded is
    refused, never sent half-converted.
    """

    def test_textBecomesQuotedPrintable(self) -> None:
        body = "h\u00e9llo\r\n.\r\nw\u00f6rld\r\n".encode()
        out = toSevenBit(_mime(body))
        self.assertTrue(out.isascii())
        self.assertIn(b"Content-Transfer-Encoding: quoted-printable", out)
        self.assertEqual(_parts(out), [("text/plain", body)])

    def test_binaryBecomesBase64(self) -> None:
        body = bytes(range(256)).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"
        out = toSevenBit(_mime(body, b"application/octet-stream"))
        self.assertTrue(out.isascii())
        self.assertIn(b"Content-Transfer-Encoding: base64", out)
        self.assertEqual(_parts(out)[0][1], body)

    def test_multipartOnlyEightBitPartsChange(self) -> None:
        message = (
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
            b"--XX\r\nContent-Type: text/plain\r\n\r\nplain ascii\r\n"
            b"--XX\r\nContent-Type: text/plain; charset=latin-1\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9\r\n"
            b"--XX--\r\n"
        )
        out = toSevenBit(message)
        self.assertTrue(out.isascii())
        self.assertEqual(
            _parts(out),
            [("text/plain", b"plain ascii"), ("text/plain", b"caf\xe9")],
        )
        self.assertEqual(out.count(b"quoted-printable"), 1)

    def test_alreadySevenBitUnchangedInContent(self) -> None:
        message = _mime(b"only ascii\r\n", cte=b"7bit")
        self.assertEqual(_parts(toSevenBit(message)), _parts(message))

    def test_notMIMERefused(self) -> None:
        with self.assertRaises(CannotConvert) as caught:
            toSevenBit(b"Subject: x\r\n\r\ncaf\xe9\r\n")
        self.assertIn("not MIME", str(caught.exception))

    def test_eightBitHeadersRefused(self) -> None:
        with self.assertRaises(CannotConvert) as caught:
            toSevenBit(b"MIME-Version: 1.0\r\nSubject: caf\xe9\r\n\r\nbody\r\n")
        self.assertIn("headers", str(caught.exception))

    def test_eightBitHeadersBareLFBody(self) -> None:
        """
        The header section ends at the first empty line whichever line
        ending it uses: a CRLF message whose body holds a bare LF pair is
        still judged by its headers alone.
        """
        message = _mime(b"line\n\ncaf\xc3\xa9\r\n")
        self.assertTrue(toSevenBit(message).isascii())

    def test_partHeadersEightBitRefused(self) -> None:
        """
        A part whose own headers are 8-bit (a raw UTF-8 file name) cannot
        be made 7-bit: refused rather than sent with 8-bit data left in.
        """
        message = (
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
            b"--XX\r\nContent-Type: application/pdf; name=\"r\xc3\xa9sum\xc3\xa9.pdf\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--XX--\r\n"
        )
        with self.assertRaises(CannotConvert):
            toSevenBit(message)

    def test_falseEncodingClaimRefused(self) -> None:
        """
        A part that claims base64 but holds raw 8-bit bytes is not passed
        through as if it were 7-bit.
        """
        with self.assertRaises(CannotConvert):
            toSevenBit(_mime(b"caf\xc3\xa9\r\n", cte=b"base64"))

    def test_tooLargeRefused(self) -> None:
        self.patch(sevenbit, "MAX_CONVERTED", 100)
        with self.assertRaises(CannotConvert) as caught:
            toSevenBit(_mime(b"caf\xc3\xa9" * 50))
        self.assertIn("too large", str(caught.exception))

    @settings(max_examples=150, deadline=None)
    @given(st.binary(min_size=0, max_size=400), st.sampled_from(
        [b"text/plain; charset=utf-8", b"application/octet-stream", b"image/png"]))
    def test_outputSevenBitContentKept(self, body: bytes, ctype: bytes) -> None:
        """
        For any body: either the result is 7-bit and decodes to the same
        content, or the conversion is refused.
        """
        body = body.replace(b"\r", b"").replace(b"\n", b"\r\n")
        try:
            out = toSevenBit(_mime(body, ctype))
        except CannotConvert:
            return
        self.assertTrue(out.isascii())
        decoded = _parts(out)[0][1]
        if ctype.startswith(b"text/"):
            # Line endings in text are the message's, not the content's.
            self.assertEqual(decoded.replace(b"\r\n", b"\n"), body.replace(b"\r\n", b"\n"))
        else:
            self.assertEqual(decoded, body)
