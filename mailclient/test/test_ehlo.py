"""
Tests for L{mailclient._wire.ehlo}: parsing the EHLO reply.
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from mailclient._wire.ehlo import Capabilities, parseCapabilities

EHLO = (
    b"mx.example.com Hello client.example.org [192.0.2.1]\n"
    b"SIZE 35882577\n"
    b"8BITMIME\n"
    b"AUTH LOGIN PLAIN XOAUTH2\n"
    b"STARTTLS\n"
    b"PIPELINING"
)


def twistedItems(resp):
    """
    What Twisted's C{ESMTPClient.esmtpState_serverConfig} builds (copied
    from Twisted 26.10, because it is inlined in that method).
    """
    items = {}
    for line in resp.splitlines():
        e = line.split(None, 1)
        if len(e) > 1:
            items[e[0]] = e[1]
        else:
            items[e[0]] = None
    return items


class CapabilitiesTests(SynchronousTestCase):
    def test_isDict(self):
        caps = parseCapabilities(EHLO)
        self.assertIsInstance(caps, Capabilities)
        self.assertIsInstance(caps, dict)

    def test_lookup(self):
        caps = parseCapabilities(EHLO)
        self.assertEqual(caps[b"SIZE"], b"35882577")
        self.assertIsNone(caps[b"8BITMIME"])
        self.assertEqual(caps[b"AUTH"], b"LOGIN PLAIN XOAUTH2")
        self.assertIn(b"STARTTLS", caps)
        self.assertNotIn(b"SMTPUTF8", caps)
        self.assertRaises(KeyError, lambda: caps[b"SMTPUTF8"])
        self.assertIsNone(caps.get(b"SMTPUTF8"))
        self.assertEqual(caps.get(b"SMTPUTF8", b"x"), b"x")

    def test_caseInsensitive(self):
        caps = parseCapabilities(b"mx hello\nstarttls\nAuth plain login\nSize 100")
        for key in (b"STARTTLS", b"starttls", b"StartTLS"):
            self.assertIn(key, caps)
        for key in (b"AUTH", b"auth", b"Auth"):
            self.assertEqual(caps[key], b"plain login")
            self.assertEqual(caps.get(key), b"plain login")
        self.assertEqual(caps[b"size"], b"100")
        self.assertEqual(caps.size(), 100)
        self.assertEqual(list(caps.authMechanisms()), [b"PLAIN", b"LOGIN"])

    def test_twistedCaseSensitive(self):
        """
        Twisted's dict misses a lower-case keyword; ours does not.
        """
        resp = b"mx hello\nstarttls"
        self.assertNotIn(b"STARTTLS", twistedItems(resp))
        self.assertIn(b"STARTTLS", parseCapabilities(resp))

    def test_nonBytesKey(self):
        caps = parseCapabilities(EHLO)
        self.assertNotIn("STARTTLS", caps)
        self.assertNotIn(None, caps)
        self.assertNotIn(1, caps)

    def test_greetingIncluded(self):
        """
        Like Twisted, the first (greeting) line is an entry too.
        """
        caps = parseCapabilities(EHLO)
        self.assertIn(b"mx.example.com", caps)
        self.assertEqual(caps[b"mx.example.com"], b"Hello client.example.org [192.0.2.1]")
        self.assertEqual(
            twistedItems(EHLO)[b"mx.example.com"], caps[b"mx.example.com"]
        )
        self.assertIsNone(parseCapabilities(b"mx.example.com")[b"mx.example.com"])

    def test_sameAsTwisted(self):
        theirs = twistedItems(EHLO)
        caps = parseCapabilities(EHLO)
        self.assertEqual(len(caps), len(theirs))
        for key, value in theirs.items():
            self.assertEqual(caps[key], value, key)

    def test_legacyAuth(self):
        caps = parseCapabilities(b"mx\nAUTH=LOGIN PLAIN")
        self.assertEqual(list(caps.authMechanisms()), [b"LOGIN", b"PLAIN"])
        self.assertIn(b"AUTH", caps)

    def test_legacyAuthMerged(self):
        for resp in (
            b"mx\nAUTH LOGIN PLAIN\nAUTH=LOGIN",
            b"mx\nAUTH=LOGIN\nAUTH LOGIN PLAIN",
            b"mx\nauth=login\nauth login plain",
        ):
            caps = parseCapabilities(resp)
            mechanisms = list(caps.authMechanisms())
            self.assertEqual(sorted(mechanisms), [b"LOGIN", b"PLAIN"], resp)
            self.assertEqual(len(set(mechanisms)), len(mechanisms), resp)

    def test_legacyAuthAddsMechanisms(self):
        caps = parseCapabilities(b"mx\nAUTH PLAIN\nAUTH=LOGIN CRAM-MD5")
        self.assertEqual(list(caps.authMechanisms()), [b"PLAIN", b"LOGIN", b"CRAM-MD5"])

    def test_authWithoutMechanisms(self):
        caps = parseCapabilities(b"mx\nAUTH")
        self.assertIn(b"AUTH", caps)
        self.assertEqual(list(caps.authMechanisms()), [])
        self.assertEqual(list(parseCapabilities(b"mx").authMechanisms()), [])

    def test_authMechanismsUpperCase(self):
        caps = parseCapabilities(b"mx\nAUTH plain Login  xoauth2")
        self.assertEqual(list(caps.authMechanisms()), [b"PLAIN", b"LOGIN", b"XOAUTH2"])

    def test_size(self):
        for resp, expected in [
            (b"mx\nSIZE 1000", 1000),
            (b"mx\nsize 52428800", 52428800),
            (b"mx\nSIZE", None),
            (b"mx\nSIZE 0", None),
            (b"mx\nSIZE abc", None),
            (b"mx\nSIZE -5", None),
            (b"mx\nSIZE 10 20", None),
            (b"mx", None),
        ]:
            self.assertEqual(parseCapabilities(resp).size(), expected, resp)

    def test_lineEndings(self):
        caps = parseCapabilities(b"mx\r\nSTARTTLS\r\n\r\nSIZE 5\n")
        self.assertIn(b"STARTTLS", caps)
        self.assertEqual(caps.size(), 5)

    def test_emptyAndBlank(self):
        self.assertEqual(dict(parseCapabilities(b"")), {})
        self.assertEqual(dict(parseCapabilities(b"\n\n  \n")), {})

    def test_whitespace(self):
        caps = parseCapabilities(b"mx\n  SIZE   100  \nX\tY")
        self.assertEqual(caps.size(), 100)
        self.assertEqual(caps[b"x"], b"Y")


keywords = st.from_regex(rb"[A-Za-z0-9][A-Za-z0-9-]{0,10}", fullmatch=True).filter(
    lambda k: not k.upper().startswith(b"AUTH")
)
params = st.one_of(st.none(), st.from_regex(rb"[!-~]{1,8}( [!-~]{1,8}){0,3}", fullmatch=True))


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=300)
    @given(st.binary(max_size=200))
    def test_neverRaises(self, resp):
        caps = parseCapabilities(resp)
        for key, value in caps.items():
            self.assertIsInstance(key, bytes)
            self.assertTrue(value is None or isinstance(value, bytes))
            self.assertIn(key, caps)
            self.assertIn(key.lower(), caps)
        size = caps.size()
        self.assertTrue(size is None or (isinstance(size, int) and size > 0))
        for mechanism in caps.authMechanisms():
            self.assertIsInstance(mechanism, bytes)
            self.assertEqual(mechanism, mechanism.upper())

    @settings(max_examples=300)
    @given(
        st.lists(
            st.one_of(
                st.sampled_from([b"AUTH", b"auth", b"AUTH=", b"Auth=", b"SIZE", b"size"]),
                st.binary(max_size=6),
            ),
            max_size=6,
        ).map(b" ".join),
    )
    def test_neverRaisesAuthLines(self, line):
        caps = parseCapabilities(b"mx\n" + line + b"\n" + line.swapcase())
        list(caps.authMechanisms())
        caps.size()

    @settings(max_examples=200)
    @given(
        st.dictionaries(
            keywords.map(bytes.upper), st.tuples(st.sampled_from([bytes.upper, bytes.lower, lambda b: b]), params), max_size=8
        ),
        st.sampled_from([b"\n", b"\r\n"]),
    )
    def test_sameAsTwisted(self, spec, newline):
        """
        Any keyword that Twisted's dict has maps to the same value in ours,
        looked up with the same spelling or another one.
        """
        lines = [b"mx.example.com greets you"]
        for keyword, (case, value) in spec.items():
            lines.append(case(keyword) + (b"" if value is None else b" " + value))
        resp = newline.join(lines)
        theirs = twistedItems(resp)
        caps = parseCapabilities(resp)
        self.assertEqual(len(caps), len(theirs))
        for key, value in theirs.items():
            self.assertEqual(caps[key], value)
            self.assertEqual(caps[key.upper()], value)
            self.assertEqual(caps[key.lower()], value)
