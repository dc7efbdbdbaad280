"""
Tests for L{mailclient._protocol.transcript}: credential redaction and the transcript.
"""

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.python import util
from twisted.trial.unittest import SynchronousTestCase

from mailclient._protocol.transcript import REDACTED, TranscriptLog, redact

SECRET = base64.b64encode(b"\x00user\x00hunter2")


class RedactTests(SynchronousTestCase):
    def test_authPlainInitialResponse(self):
        line = b"AUTH PLAIN " + SECRET
        result = redact(line, False)
        self.assertNotIn(SECRET, result)
        self.assertEqual(result, b"AUTH PLAIN " + REDACTED)

    def test_caseInsensitive(self):
        for verb in (b"auth", b"Auth", b"aUtH"):
            result = redact(verb + b" plain " + SECRET, False)
            self.assertNotIn(SECRET, result)
            self.assertTrue(result.startswith(verb + b" plain "), result)

    def test_otherMechanismsWithInitialResponse(self):
        for mechanism in (b"XOAUTH2", b"LOGIN", b"OAUTHBEARER", b"EXTERNAL"):
            result = redact(b"AUTH " + mechanism + b" " + SECRET, False)
            self.assertNotIn(SECRET, result)
            self.assertIn(mechanism, result)

    def test_extraSpaces(self):
        result = redact(b"AUTH  PLAIN   " + SECRET, False)
        self.assertNotIn(SECRET, result)

    def test_tabSeparated(self):
        """
        White space other than a single space between the words does not
        let the secret through.
        """
        for line in (b"AUTH\tPLAIN " + SECRET, b"AUTH PLAIN\t" + SECRET, b"AUTH\t PLAIN " + SECRET):
            self.assertNotIn(SECRET, redact(line, False), line)

    def test_noInitialResponseVisible(self):
        self.assertEqual(redact(b"AUTH LOGIN", False), b"AUTH LOGIN")
        self.assertEqual(redact(b"AUTH CRAM-MD5", False), b"AUTH CRAM-MD5")
        self.assertEqual(redact(b"auth plain", False), b"auth plain")

    def test_otherCommandsVisible(self):
        for line in (
            b"EHLO client.example.org",
            b"MAIL FROM:<a@b.com> SIZE=100",
            b"RCPT TO:<c@d.com>",
            b"DATA",
            b"QUIT",
            b"AUTHOR something else",
            b"",
        ):
            self.assertEqual(redact(line, False), line)

    def test_inSASL(self):
        for line in (SECRET, b"", b"*", b"EHLO x", b"AUTH LOGIN", b"dXNlcg=="):
            self.assertEqual(redact(line, True), REDACTED)

    def test_redactedMarker(self):
        self.assertIsInstance(REDACTED, bytes)
        self.assertNotIn(b"\n", REDACTED)

    @settings(max_examples=300)
    @given(
        st.sampled_from([b"AUTH", b"auth", b"Auth"]),
        st.from_regex(rb"[A-Z0-9_-]{1,20}", fullmatch=True),
        st.binary(min_size=8, max_size=60).map(base64.b64encode),
    )
    def test_secretNeverShown(self, verb, mechanism, secret):
        result = redact(verb + b" " + mechanism + b" " + secret, False)
        self.assertEqual(result, verb + b" " + mechanism + b" " + REDACTED)

    @settings(max_examples=200)
    @given(st.binary(max_size=80), st.booleans())
    def test_anyLine(self, line, inSASL):
        result = redact(line, inSASL)
        self.assertIsInstance(result, bytes)
        if inSASL:
            self.assertEqual(result, REDACTED)
        elif b"AUTH" not in line.upper():
            self.assertEqual(result, line)


class TranscriptLogTests(SynchronousTestCase):
    def test_isLineLog(self):
        self.assertIsInstance(TranscriptLog(), util.LineLog)
        self.assertEqual(TranscriptLog().size, 10)

    def test_str(self):
        log = TranscriptLog(5)
        log.append(b"<<< 220 hello")
        log.append(b">>> EHLO x")
        self.assertEqual(log.str(), b"<<< 220 hello\n>>> EHLO x")
        self.assertEqual(bytes(log), log.str())

    def test_empty(self):
        log = TranscriptLog()
        self.assertEqual(log.str(), b"")
        self.assertEqual(list(log), [])
        self.assertRaises(IndexError, lambda: log[0])

    def test_bounded(self):
        log = TranscriptLog(3)
        for i in range(10):
            log.append(b"line %d" % (i,))
        self.assertEqual(log.str(), b"line 7\nline 8\nline 9")
        self.assertEqual(len(log.log), 3)
        self.assertEqual(list(log), [b"line 7", b"line 8", b"line 9"])

    def test_unbounded(self):
        log = TranscriptLog(0)
        for i in range(50):
            log.append(b"%d" % (i,))
        self.assertEqual(len(list(log)), 50)

    def test_indexing(self):
        log = TranscriptLog(4)
        for line in (b"a", b"b", b"c"):
            log.append(line)
        self.assertEqual(log[0], b"a")
        self.assertEqual(log[-1], b"c")
        self.assertEqual(log[1:], [b"b", b"c"])
        self.assertRaises(IndexError, lambda: log[3])

    def test_clear(self):
        log = TranscriptLog(3)
        log.append(b"a")
        log.clear()
        self.assertEqual(log.str(), b"")
        log.append(b"b")
        self.assertEqual(log.str(), b"b")

    @settings(max_examples=200)
    @given(st.integers(0, 12), st.lists(st.binary(max_size=10), max_size=30))
    def test_sameAsTwisted(self, size, lines):
        """
        C{str()}, C{bytes()} and iteration agree with Twisted's C{LineLog}.
        """
        ours = TranscriptLog(size)
        theirs = util.LineLog(size)
        for line in lines:
            ours.append(line)
            theirs.append(line)
        self.assertEqual(ours.str(), theirs.str())
        self.assertEqual(bytes(ours), bytes(theirs))
        self.assertEqual(list(ours), [line for line in theirs.log if line])
        self.assertEqual(b"\n".join(ours), ours.str())
