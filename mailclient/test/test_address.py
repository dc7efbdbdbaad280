"""
Tests for L{mailclient._wire.address}: quoteaddr, Address and their helpers.
"""

import re

import idna
from hypothesis import example, given, settings
from hypothesis import strategies as st

from twisted.mail import smtp as twsmtp
from twisted.trial.unittest import SynchronousTestCase

from mailclient._wire import address
from mailclient._wire.address import Address, checkAddress, extractAddress, quoteaddr
from mailclient._wire.errors import AddressError, InvalidAddressError, SMTPClientError, SMTPError
from mailclient._wire.host import getDNSName
from mailclient.test.helpers import STRICT_PARSEADDR, twistedQuoted

# -- strategies for valid addresses -------------------------------------------

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
SIMPLE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-"

atoms = st.text(alphabet=ATEXT, min_size=1, max_size=8)
dotAtoms = st.lists(atoms, min_size=1, max_size=4).map(".".join)
simpleLocals = st.lists(
    st.text(alphabet=SIMPLE, min_size=1, max_size=8), min_size=1, max_size=3
).map(".".join)

# Printable ASCII for quoted strings, without the angle brackets (see
# QuoteaddrTests.test_quotedLocalPartWithAngleBrackets for those).
_QCHARS = [chr(c) for c in range(32, 127) if chr(c) not in '"\\<>']
_qcontent = st.lists(
    st.one_of(
        st.sampled_from(_QCHARS),
        st.sampled_from(_QCHARS + ['"', "\\"]).map(lambda c: "\\" + c),
    ),
    max_size=10,
).map("".join)
quotedLocals = _qcontent.map(lambda s: '"' + s + '"')

labels = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
hostnames = st.lists(labels, min_size=1, max_size=4).map(".".join)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: "[%d.%d.%d.%d]" % t)
domains = st.one_of(hostnames, ipv4, st.just("[IPv6:2001:db8::1]"))

validAddresses = st.builds(
    lambda local, domain: local + "@" + domain, st.one_of(dotAtoms, quotedLocals), domains
)
displayNames = st.lists(
    st.text(alphabet=SIMPLE, min_size=1, max_size=6), min_size=1, max_size=3
).map(" ".join)

nonAsciiChars = st.characters(min_codepoint=0xA1, max_codepoint=0x2FFF).filter(
    lambda c: c.isalpha()
)
utf8Locals = st.lists(
    st.one_of(st.sampled_from(SIMPLE), nonAsciiChars), min_size=1, max_size=8
).map("".join).filter(lambda s: not s.isascii())

# -- strategies for anything ---------------------------------------------------

_nasty = list('ab.@<>" ,;:\\()[]\t\r\n\x00') + ["\u00fc", "\u2028", "\x85", "\ud800"]
anyText = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(_nasty), max_size=30),
    st.builds(
        lambda a, b: a + b,
        validAddresses,
        st.text(alphabet=st.sampled_from(_nasty), max_size=5),
    ),
)

_QUOTED_BYTES = re.compile(rb'"(?:[^"\\]|\\.)*"')


class QuoteaddrTests(SynchronousTestCase):
    """
    Tests for L{quoteaddr}.
    """

    def assertInvalid(self, addr, utf8=False):
        exc = self.assertRaises(InvalidAddressError, quoteaddr, addr, utf8)
        return exc

    def test_sameAsTwisted(self):
        """
        For ordinary input, the result is what Twisted's C{quoteaddr} gives.
        """
        for addr in [
            "user@example.com",
            "First.Last@sub.example.com",
            "Name <user@example.com>",
            "First Last <user@example.com>",
            '"Last, First" <user@example.com>',
            "<user@example.com>",
            " <user@example.com> ",
            "",
            "<>",
            b"user@example.com",
            b"Name <user@example.com>",
            b"",
            "user+tag@example.com",
            "a!#$%&'*+-/=?^_`{|}~z@example.com",
            '"quoted local"@example.com',
            "user@[192.0.2.1]",
            "postmaster",
        ]:
            if STRICT_PARSEADDR and addr == "user@[192.0.2.1]":
                # Twisted on Python 3.13+ loses domain literals (sends <>).
                self.assertEqual(twsmtp.quoteaddr(addr), b"<>")
                self.assertEqual(quoteaddr(addr), b"<user@[192.0.2.1]>")
                continue
            self.assertEqual(quoteaddr(addr), twsmtp.quoteaddr(addr), addr)

    def test_addressObjects(self):
        for text in ["user@example.com", "<@route:user@example.com>", ""]:
            self.assertEqual(
                quoteaddr(Address(text)), twsmtp.quoteaddr(twsmtp.Address(text))
            )
        self.assertEqual(
            quoteaddr(Address("user", defaultDomain=b"example.com")),
            b"<user@example.com>",
        )

    def test_twistedAddressObject(self):
        self.assertEqual(
            quoteaddr(twsmtp.Address("user@example.com")), b"<user@example.com>"
        )

    def test_returnsBytes(self):
        self.assertIsInstance(quoteaddr("a@b.com"), bytes)
        self.assertIsInstance(quoteaddr(b"a@b.com"), bytes)

    def test_null(self):
        self.assertEqual(quoteaddr(""), b"<>")
        self.assertEqual(quoteaddr("<>"), b"<>")
        self.assertEqual(quoteaddr(b"<>"), b"<>")
        self.assertEqual(quoteaddr("  "), b"<>")

    def test_errorClass(self):
        exc = self.assertInvalid("a@b.com, evil@x.com")
        self.assertIsInstance(exc, AddressError)
        self.assertIsInstance(exc, SMTPClientError)
        self.assertIsInstance(exc, SMTPError)
        self.assertEqual(exc.code, -1)
        self.assertFalse(exc.isFatal)
        self.assertFalse(exc.retry)
        self.assertIsInstance(exc.resp, bytes)

    def test_refusesLists(self):
        for addr in [
            "a@b.com, evil@x.com",
            "a@b.com,evil@x.com",
            "a@b.com;evil@x.com",
            "a@b.com evil@x.com",
            "<a@b.com>, <evil@x.com>",
            "<a@b.com> <evil@x.com>",
            "Name <a@b.com>, evil@x.com",
            "evil@x.com, Name <a@b.com>",
            "evil@x.com <a@b.com>",
            "Group: a@b.com, evil@x.com;",
            b"a@b.com, evil@x.com",
            ["a@b.com", "evil@x.com"],
            ("a@b.com", "evil@x.com"),
        ]:
            self.assertInvalid(addr)

    def test_cacheKeepsResultsApart(self):
        """
        Results are remembered per input and per C{utf8}: a refusal is
        raised every time, and an address refused without SMTPUTF8 is still
        accepted with it (and the other way round).
        """
        for _ in range(2):
            self.assertInvalid("a@b.com, evil@x.com")
            with self.assertRaises(InvalidAddressError):
                quoteaddr("j\u00f6rg@example.com")
            self.assertEqual(
                quoteaddr("j\u00f6rg@example.com", utf8=True), "<j\u00f6rg@example.com>".encode()
            )
            self.assertEqual(quoteaddr(b"<a@b.com>"), b"<a@b.com>")
            self.assertEqual(extractAddress("Name <a@b.com>"), "a@b.com")
            self.assertEqual(extractAddress(b"Name <a@b.com>"), "a@b.com")

    def test_twistedDropsSecondAddress(self):
        """
        Twisted silently keeps the first address of a list; we refuse it.
        """
        self.assertEqual(twsmtp.quoteaddr("a@b.com, evil@x.com"), twistedQuoted(b"a@b.com"))
        self.assertInvalid("a@b.com, evil@x.com")

    def test_refusesTrailingJunk(self):
        for addr in [
            "<a@b.com> junk",
            "<a@b.com>junk",
            "a@b.com junk",
            "a@b.com (comment)",
            "a@b.com\tjunk",
            "a@b.com>",
            "a@",
            "@b.com",
            "a@b..com",
            "a@-",
            "a b@c.com",
        ]:
            self.assertInvalid(addr)

    def test_refusesCRLFNUL(self):
        for bad in ["\r", "\n", "\r\n", "\x00"]:
            for addr in [
                "a@b.com" + bad,
                bad + "a@b.com",
                "a" + bad + "@b.com",
                "a@b" + bad + ".com",
                "<a@b.com>" + bad,
                "Na" + bad + "me <a@b.com>",
                "a@b.com" + bad + "RCPT TO:<evil@x.com>",
            ]:
                for utf8 in (False, True):
                    self.assertInvalid(addr, utf8)
                    self.assertInvalid(addr.encode("utf-8"), utf8)

    def test_refusesUnbalanced(self):
        for addr in ["<a@b.com", "a@b.com>", "<<a@b.com>", "<a@b.com>>", "<<a@b.com>>",
                     "Name <a@b.com", "Name a@b.com>", ">a@b.com<"]:
            self.assertInvalid(addr)

    def test_refusesBadUTF8Bytes(self):
        self.assertInvalid(b"\xff@b.com")
        self.assertInvalid(b"\xff@b.com", True)

    def test_nonAsciiLocalPart(self):
        self.assertInvalid("j\u00f6rg@example.com")
        self.assertInvalid("j\u00f6rg@example.com".encode("utf-8"))
        self.assertInvalid("Name <j\u00f6rg@example.com>")
        self.assertEqual(
            quoteaddr("j\u00f6rg@example.com", utf8=True),
            b"<" + "j\u00f6rg@example.com".encode("utf-8") + b">",
        )
        self.assertEqual(
            quoteaddr("J\u00f6rg <j\u00f6rg@b\u00fccher.de>", utf8=True),
            b"<" + "j\u00f6rg@b\u00fccher.de".encode("utf-8") + b">",
        )

    def test_idnaDomain(self):
        """
        A non-ASCII domain with an ASCII local part is sent as A-labels, so
        no SMTPUTF8 is needed.
        """
        self.assertEqual(quoteaddr("user@b\u00fccher.de"), b"<user@xn--bcher-kva.de>")
        self.assertEqual(
            quoteaddr("Name <user@\u4f8b\u3048.\u30c6\u30b9\u30c8>"),
            b"<user@" + "\u4f8b\u3048.\u30c6\u30b9\u30c8".encode("idna") + b">",
        )
        self.assertEqual(
            quoteaddr("user@b\u00fccher.de".encode("utf-8")), b"<user@xn--bcher-kva.de>"
        )

    def test_idnaRefused(self):
        for addr in ["user@\u2028.com", "user@a\u00fc\ud800.de", "user@\u00fc..de"]:
            self.assertInvalid(addr)

    def test_quotedLocalParts(self):
        for addr in ['"a b"@x.com', '"a,b"@x.com', '"a@b"@x.com', '"a\\"b"@x.com',
                     '""@x.com', '"a;b:c"@x.com', '"a\\\\b"@x.com']:
            self.assertEqual(quoteaddr(addr), b"<" + addr.encode() + b">", addr)
            self.assertEqual(quoteaddr("Name <" + addr + ">"), b"<" + addr.encode() + b">")

    def test_quotedLocalPartWithAngleBrackets(self):
        """
        C{<} and C{>} are ordinary characters inside a quoted local part
        (RFC 5321 qtextSMTP); such an address is one valid address and
        Twisted sends it.
        """
        for addr in ['"a<b"@x.com', '"a>b"@x.com', '"<a@b>"@x.com']:
            expected = b"<" + addr.encode() + b">"
            self.assertEqual(twsmtp.quoteaddr(addr), expected)
            self.assertEqual(quoteaddr(addr), expected)
            self.assertEqual(quoteaddr("<" + addr + ">"), expected)
            self.assertEqual(quoteaddr("Name <" + addr + ">"), expected)

    def test_quotedDisplayNameWithAngleBrackets(self):
        """
        A quoted display name may contain C{<}, C{>} and C{@}.
        """
        for name in ['"Doe <doe@x.com>"', '"a > b"', '"<"']:
            addr = name + " <user@example.com>"
            self.assertEqual(twsmtp.quoteaddr(addr), b"<user@example.com>")
            self.assertEqual(quoteaddr(addr), b"<user@example.com>")

    def test_loneSurrogate(self):
        """
        A string that cannot be encoded as UTF-8 is an invalid address, not
        a L{UnicodeEncodeError}.
        """
        for addr in ["a\ud800@x.com", "Name <a\udcff@x.com>", "a@x\ud800.com"]:
            self.assertInvalid(addr)
            self.assertInvalid(addr, True)

    def test_quotedNonASCII(self):
        """
        A quoted local part, and a domain literal, hold printable ASCII only
        unless SMTPUTF8 is used (found by test_anyText: C{'"\\x80"'} went
        out as UTF-8 to a server that had not offered SMTPUTF8).
        """
        for addr in ['"\x80"', '"caf\xe9"@example.org', "a@[\x80]", '"a\tb"@example.org']:
            self.assertRaises(InvalidAddressError, quoteaddr, addr, False)
        self.assertEqual(quoteaddr('"caf\xe9"@example.org', True), '<"caf\xe9"@example.org>'.encode())
        self.assertEqual(quoteaddr('"a b"@example.org'), b'<"a b"@example.org>')


    @settings(max_examples=500)
    @given(st.one_of(anyText, st.from_regex(address._PLAIN_TEXT, fullmatch=True)),
           st.booleans())
    def test_plainFastPathSameResult(self, text, utf8):
        """
        The fast path for plain addresses gives exactly what the full
        checks give (or they refuse it too).
        """
        forms: list = [text]
        try:
            forms.append(text.encode("utf-8"))
        except UnicodeEncodeError:
            pass
        for form in forms:
            try:
                full = address._quote(form, utf8)
            except InvalidAddressError:
                full = None
            try:
                fast = quoteaddr(form, utf8)
            except InvalidAddressError:
                fast = None
            self.assertEqual(fast, full, form)

    @given(anyText, st.booleans())
    @example("a\ud800@x.com", True)
    @example('"a<b"@x.com', False)
    def test_anyText(self, text, utf8):
        """
        For any text, quoteaddr either refuses it or returns one address in
        angle brackets with no line break or NUL in it.
        """
        try:
            result = quoteaddr(text, utf8)
        except InvalidAddressError:
            return
        self.assertIsInstance(result, bytes)
        self.assertTrue(result.startswith(b"<") and result.endswith(b">"), result)
        for forbidden in (b"\r", b"\n", b"\x00"):
            self.assertNotIn(forbidden, result)
        # Outside quoted strings there is no other angle bracket, comma or
        # white space: exactly one address.
        unquoted = _QUOTED_BYTES.sub(b"", result[1:-1])
        for c in (b"<", b">", b",", b" ", b"\t", b";"):
            self.assertNotIn(c, unquoted, result)
        if not utf8:
            self.assertTrue(result.isascii(), result)
        # Quoting what quoteaddr returned changes nothing.
        self.assertEqual(quoteaddr(result, utf8), result)

    @settings(max_examples=300)
    @given(validAddresses, st.booleans())
    def test_roundTrip(self, addr, utf8):
        expected = b"<" + addr.encode() + b">"
        self.assertEqual(quoteaddr(addr, utf8), expected)
        self.assertEqual(quoteaddr(addr.encode(), utf8), expected)
        self.assertEqual(quoteaddr("<" + addr + ">", utf8), expected)
        self.assertEqual(quoteaddr(" <" + addr + "> ", utf8), expected)

    @settings(max_examples=200)
    @given(displayNames, validAddresses)
    def test_roundTripWithName(self, name, addr):
        self.assertEqual(quoteaddr(name + " <" + addr + ">"), b"<" + addr.encode() + b">")
        self.assertEqual(
            quoteaddr('"' + name + ', Jr." <' + addr + ">"), b"<" + addr.encode() + b">"
        )

    @settings(max_examples=200)
    @given(simpleLocals, hostnames, st.one_of(st.just(""), displayNames))
    def test_sameAsTwistedGenerated(self, local, domain, name):
        addr = local + "@" + domain
        if name:
            addr = name + " <" + addr + ">"
        self.assertEqual(quoteaddr(addr), twsmtp.quoteaddr(addr))

    @settings(max_examples=200)
    @given(utf8Locals, hostnames)
    def test_utf8LocalPart(self, local, domain):
        addr = local + "@" + domain
        self.assertRaises(InvalidAddressError, quoteaddr, addr)
        self.assertEqual(quoteaddr(addr, utf8=True), b"<" + addr.encode("utf-8") + b">")

    @settings(max_examples=200)
    @given(simpleLocals, st.lists(st.one_of(labels, utf8Locals.map(str.lower)), min_size=1, max_size=3))
    def test_idnaGenerated(self, local, domainLabels):
        domain = ".".join(domainLabels)
        if domain.isascii():
            self.assertEqual(quoteaddr(local + "@" + domain), ("<%s@%s>" % (local, domain)).encode())
            return
        try:
            ace = idna.encode(domain, uts46=True)
        except idna.IDNAError:
            self.assertRaises(InvalidAddressError, quoteaddr, local + "@" + domain)
            return
        self.assertEqual(quoteaddr(local + "@" + domain), b"<" + local.encode() + b"@" + ace + b">")


class HelperTests(SynchronousTestCase):
    """
    Tests for L{extractAddress} and L{checkAddress}.
    """

    def test_extract(self):
        self.assertEqual(extractAddress("Name <a@b.com>"), "a@b.com")
        self.assertEqual(extractAddress(b"<a@b.com>"), "a@b.com")
        self.assertEqual(extractAddress("  a@b.com "), "a@b.com")
        self.assertEqual(extractAddress("<>"), "")
        self.assertEqual(extractAddress(""), "")
        self.assertEqual(extractAddress(Address("a@b.com")), "a@b.com")
        self.assertRaises(InvalidAddressError, extractAddress, "a@b.com\r\n")
        self.assertRaises(InvalidAddressError, extractAddress, "a@b.com, c@d.com>")

    def test_check(self):
        self.assertEqual(checkAddress("a@b.com"), "a@b.com")
        self.assertEqual(checkAddress(""), "")
        self.assertEqual(checkAddress("a@b\u00fccher.de"), "a@xn--bcher-kva.de")
        self.assertEqual(checkAddress("a@b\u00fccher.de", utf8=True), "a@b\u00fccher.de")
        self.assertRaises(InvalidAddressError, checkAddress, "\u00fc@b.de")
        self.assertEqual(checkAddress("\u00fc@b.de", utf8=True), "\u00fc@b.de")
        self.assertRaises(InvalidAddressError, checkAddress, "a@b.com, c@d.com")
        self.assertRaises(InvalidAddressError, checkAddress, "a b@c.com")


class AddressTests(SynchronousTestCase):
    """
    L{Address} parses like Twisted's C{twisted.mail.smtp.Address}.
    """

    inputs = [
        "user@example.com",
        "<user@example.com>",
        b"user@example.com",
        "<@relay1,@relay2:user@example.com>",
        "@relay:user@example.com",
        "first.last@sub.example.com",
        '"quoted user"@example.com',
        "back\\ slash@example.com",
        "user@example.com.",
        "",
        "<>",
        "user",
        "user@",
        "a!#$%&'*+-/=?^_`{|}~z@example.com",
    ]

    def test_sameAsTwisted(self):
        for text in self.inputs:
            ours = Address(text)
            theirs = twsmtp.Address(text)
            self.assertEqual(ours.local, theirs.local, text)
            self.assertEqual(ours.domain, theirs.domain, text)
            self.assertEqual(bytes(ours), bytes(theirs), text)
            self.assertEqual(str(ours), str(theirs), text)
            self.assertEqual(ours.addrstr, theirs.addrstr, text)
            self.assertEqual(
                repr(ours).replace(Address.__module__, "M"),
                repr(theirs).replace(twsmtp.Address.__module__, "M"),
            )
            self.assertIsInstance(ours.local, bytes)
            self.assertIsInstance(ours.domain, bytes)

    def test_reprFormat(self):
        self.assertEqual(
            repr(Address("a@b.com")), "%s.Address('a@b.com')" % (Address.__module__,)
        )

    def test_sourceRouteStripped(self):
        address = Address("<@relay1.example,@relay2.example:user@example.com>")
        self.assertEqual((address.local, address.domain), (b"user", b"example.com"))

    def test_defaultDomain(self):
        address = Address("user", defaultDomain=b"example.com")
        self.assertEqual(bytes(address), b"user@example.com")
        self.assertEqual(
            bytes(twsmtp.Address("user", defaultDomain=b"example.com")),
            b"user@example.com",
        )
        self.assertEqual(Address("user@host", defaultDomain=b"example.com").domain, b"host")

    def test_defaultDomainIsHostName(self):
        self.assertEqual(Address("user").domain, getDNSName())
        self.assertEqual(getDNSName(), twsmtp.DNSNAME)

    def test_empty(self):
        self.assertEqual(bytes(Address("")), b"")
        self.assertEqual(bytes(Address("", defaultDomain=b"example.com")), b"")

    def test_copy(self):
        original = Address("user@example.com")
        copy = Address(original)
        self.assertEqual((copy.local, copy.domain), (original.local, original.domain))
        copy.local = b"other"
        self.assertEqual(original.local, b"user")

    def test_userObject(self):
        """
        Like Twisted, an object with a C{dest} (a C{User}) gives its
        destination address.
        """
        user = twsmtp.User("user@example.com", b"helo", None, "from@example.com")
        self.assertEqual(bytes(Address(user)), b"user@example.com")

    def test_errors(self):
        for text in ["<user@example.com", "a@b@c", "a@b>", "a b@c", "a,b@c", "(x)a@b",
                     "<@relay", "<@relay>"]:
            theirs = self.assertRaises(twsmtp.AddressError, twsmtp.Address, text)
            ours = self.assertRaises(AddressError, Address, text)
            self.assertEqual(str(ours), str(theirs), text)

    def test_unbalanced(self):
        exc = self.assertRaises(AddressError, Address, "<user@example.com")
        self.assertIn("Unbalanced", str(exc))

    def test_tooManyAt(self):
        exc = self.assertRaises(AddressError, Address, "a@b@c")
        self.assertIn("Too many @", str(exc))

    def test_dequote(self):
        address = Address("x@y")
        self.assertEqual(address.dequote(b'"a b"@c'), b"a b@c")
        self.assertEqual(address.dequote(b"a\\ b@c"), b"a b@c")
        self.assertEqual(address.dequote("plain@c"), b"plain@c")

    def test_classAttributes(self):
        """
        The regular expressions subclasses may use are there and tokenize
        like Twisted's.
        """
        for name in ("tstring", "atomre", "dequotebs"):
            self.assertIsInstance(getattr(Address, name), re.Pattern)
        for text in [b'"a b"@c.d', b"<@r:a.b@c>", b"a\\ b@c", b"x,y z"]:
            self.assertEqual(Address.tstring.split(text), twsmtp.Address.tstring.split(text))

    @settings(max_examples=200)
    @given(st.builds(lambda local, domain: local + "@" + domain, st.one_of(dotAtoms, quotedLocals), hostnames))
    def test_sameAsTwistedGenerated(self, text):
        try:
            theirs = twsmtp.Address(text)
        except twsmtp.AddressError as e:
            self.assertEqual(str(self.assertRaises(AddressError, Address, text)), str(e))
            return
        ours = Address(text)
        self.assertEqual((ours.local, ours.domain), (theirs.local, theirs.domain))
