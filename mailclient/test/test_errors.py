"""
Tests for L{mailclient._wire.errors}: the exception classes behave like Twisted's.
"""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.mail import _except as twexcept
from twisted.mail import smtp as twsmtp
from twisted.trial.unittest import SynchronousTestCase

from mailclient import smtp as _errors
from mailclient._wire.address import Address

# The exception classes twisted.mail.smtp exports.
NAMES = sorted(
    name
    for name in twsmtp.__all__
    if isinstance(getattr(twsmtp, name), type)
    and issubclass(getattr(twsmtp, name), Exception)
)

# Those constructed as SMTPClientError(code, resp, log, addresses, ...).
CLIENT_ERRORS = [
    name for name in NAMES if issubclass(getattr(twsmtp, name), twsmtp.SMTPClientError)
]

codes = st.sampled_from([-1, 0, 1, 99, 220, 250, 421, 550, 999, 1000])
texts = st.text(max_size=20)
resps = st.one_of(texts, texts.map(lambda t: t.encode("utf-8")))
logs = st.one_of(st.none(), st.just(b""), resps)


class NamesTests(SynchronousTestCase):
    def test_allPresent(self):
        self.assertIn("SMTPClientError", NAMES)
        self.assertIn("TLSError", NAMES)
        for name in NAMES:
            self.assertTrue(hasattr(_errors, name), name)
            self.assertTrue(issubclass(getattr(_errors, name), Exception), name)

    #: Where mailclient's class is also a subclass of another of Twisted's
    #: classes: where Twisted reports the error as that other class
    #: (docs/compatibility.rst, "Errors").
    ADDED_BASES = {("TLSError", "SMTPConnectError")}

    def test_inheritance(self):
        """
        For every pair of classes, one is a subclass of the other when it
        is in Twisted; and only then, but for L{ADDED_BASES}.
        """
        added = set()
        for a, b in itertools.product(NAMES, NAMES):
            ours = issubclass(getattr(_errors, a), getattr(_errors, b))
            theirs = issubclass(getattr(twsmtp, a), getattr(twsmtp, b))
            if theirs:
                self.assertTrue(ours, (a, b))
            elif ours:
                added.add((a, b))
        self.assertEqual(added, self.ADDED_BASES)

    def test_someRelations(self):
        self.assertTrue(issubclass(_errors.SMTPConnectError, _errors.SMTPClientError))
        self.assertTrue(issubclass(_errors.TLSError, _errors.ESMTPClientError))
        self.assertTrue(issubclass(_errors.SMTPBadRcpt, _errors.SMTPAddressError))
        self.assertTrue(issubclass(_errors.SMTPAddressError, _errors.SMTPServerError))
        self.assertTrue(issubclass(_errors.AddressError, _errors.SMTPError))
        self.assertFalse(issubclass(_errors.SMTPServerError, _errors.SMTPClientError))
        self.assertFalse(issubclass(_errors.AddressError, _errors.SMTPClientError))

    def test_tlsErrorAlias(self):
        self.assertEqual(_errors.TLSError.__name__, "SMTPTLSError")
        self.assertIs(twexcept.SMTPTLSError, twsmtp.TLSError)

    def test_additions(self):
        self.assertTrue(issubclass(_errors.InvalidAddressError, _errors.SMTPClientError))
        self.assertTrue(issubclass(_errors.InvalidAddressError, _errors.AddressError))
        self.assertTrue(issubclass(_errors.MessageReadError, _errors.SMTPClientError))


class ClientErrorTests(SynchronousTestCase):
    def assertSame(self, name, *args, **kwargs):
        ours = getattr(_errors, name)(*args, **kwargs)
        theirs = getattr(twsmtp, name)(*args, **kwargs)
        self.assertEqual(str(ours), str(theirs), (name, args, kwargs))
        self.assertEqual(bytes(ours), bytes(theirs), (name, args, kwargs))
        for attr in ("code", "resp", "log", "addresses", "isFatal", "retry", "args"):
            self.assertEqual(getattr(ours, attr), getattr(theirs, attr), (name, attr))
        return ours

    def test_examples(self):
        for name in CLIENT_ERRORS:
            self.assertSame(name, 550, b"No such user")
            self.assertSame(name, 550, "No such user")
            self.assertSame(name, -1, b"Connection lost")
            self.assertSame(name, 0, b"zero")
            self.assertSame(name, 421, b"Try later", b"<<< 421 Try later\n>>> QUIT")
            self.assertSame(name, 421, b"Try later", "str log")
            self.assertSame(name, 421, b"Try later", b"")
            self.assertSame(name, 250, b"OK", None, [(b"a@b", 250, b"OK")])
            self.assertSame(name, 554, b"x", isFatal=True, retry=True)
            self.assertSame(name, 554, b"x", None, None, False, False)

    def test_format(self):
        error = _errors.SMTPClientError(550, b"No such user", b"log line")
        self.assertEqual(bytes(error), b"550 No such user\nlog line\n")
        self.assertEqual(str(error), "550 No such user\nlog line\n")
        self.assertEqual(bytes(_errors.SMTPClientError(-1, b"lost")), b"lost")
        self.assertEqual(bytes(_errors.SMTPClientError(5, b"x")), b"005 x")

    def test_defaults(self):
        expected = {
            "SMTPConnectError": (True, True),
            "SMTPTimeoutError": (True, True),
            "SMTPProtocolError": (True, False),
        }
        for name in CLIENT_ERRORS:
            ours = getattr(_errors, name)(550, b"x")
            theirs = getattr(twsmtp, name)(550, b"x")
            self.assertEqual((ours.isFatal, ours.retry), (theirs.isFatal, theirs.retry))
            self.assertEqual((ours.isFatal, ours.retry), expected.get(name, (False, False)), name)

    def test_strResp(self):
        error = _errors.SMTPClientError(550, "r\u00e9ponse", "l\u00f6g")
        self.assertEqual(error.resp, "r\u00e9ponse".encode("utf-8"))
        self.assertEqual(error.log, "l\u00f6g".encode("utf-8"))

    def test_nonUTF8(self):
        """
        A server reply that is not UTF-8 does not make C{str()} raise (it
        does in Twisted); C{bytes()} is unchanged.
        """
        error = _errors.SMTPClientError(550, b"caf\xe9", b"<<< 550 caf\xe9")
        self.assertEqual(bytes(error), bytes(twsmtp.SMTPClientError(550, b"caf\xe9", b"<<< 550 caf\xe9")))
        self.assertIn("550 caf", str(error))
        self.assertRaises(UnicodeDecodeError, str, twsmtp.SMTPClientError(550, b"caf\xe9"))

    def test_raiseAndCatch(self):
        try:
            raise _errors.SMTPConnectError(-1, b"refused")
        except _errors.SMTPClientError as e:
            self.assertEqual(e.code, -1)

    @settings(max_examples=300)
    @given(st.sampled_from(CLIENT_ERRORS), codes, resps, logs, st.booleans(), st.booleans())
    def test_sameAsTwisted(self, name, code, resp, log, isFatal, retry):
        self.assertSame(name, code, resp, log)
        self.assertSame(name, code, resp, log, None, isFatal, retry)

    def test_invalidAddressError(self):
        error = _errors.InvalidAddressError("bad address", b"log")
        self.assertEqual(error.code, -1)
        self.assertFalse(error.isFatal)
        self.assertFalse(error.retry)
        self.assertEqual(error.resp, b"bad address")
        self.assertEqual(bytes(error), b"bad address\nlog\n")
        self.assertIsInstance(error, _errors.AddressError)

    def test_enhancedStatusFromRecipients(self):
        """
        "No recipients accepted" takes its enhanced code from the first
        recipient refused with the same basic code; without one, None.
        """
        addresses = [
            (b"a@example.org", 550, b"5.1.1 unknown"),
            (b"b@example.org", 452, b"4.2.2 mailbox full"),
        ]
        error = _errors.SMTPDeliveryError(452, b"No recipients accepted", None, addresses)
        self.assertEqual(error.enhancedStatus, (4, 2, 2))
        self.assertTrue(error.isTemporary)
        own = _errors.SMTPDeliveryError(550, b"5.7.1 denied", None, addresses)
        self.assertEqual(own.enhancedStatus, (5, 7, 1))
        plain = _errors.SMTPDeliveryError(452, b"No recipients accepted", None, [(b"c@x", 452, b"full")])
        self.assertIsNone(plain.enhancedStatus)
        odd = _errors.SMTPDeliveryError(452, b"No recipients accepted", None, [object()])
        self.assertIsNone(odd.enhancedStatus)

    def test_messageReadError(self):
        error = _errors.MessageReadError("read failed")
        self.assertEqual(error.code, -1)
        self.assertTrue(error.isFatal)
        self.assertFalse(error.retry)
        self.assertEqual(str(error), "read failed")


class ServerErrorTests(SynchronousTestCase):
    def assertSameStr(self, name, *args):
        ours = getattr(_errors, name)(*args)
        theirs = getattr(twsmtp, name)(*args)
        self.assertEqual(str(ours), str(theirs), (name, args))
        self.assertEqual(ours.code, theirs.code)
        self.assertEqual(ours.resp, theirs.resp)
        return ours

    def test_serverError(self):
        for args in [(550, "Denied"), (550, b"Denied"), (5, "x"), (1234, "long")]:
            self.assertSameStr("SMTPServerError", *args)
        self.assertEqual(str(_errors.SMTPServerError(5, "x")), "005 x")

    def test_addressError(self):
        for addr in ["user@example.com", b"user@example.com", "<user@example.com>",
                     Address("user@example.com"), twsmtp.Address("user@example.com")]:
            ours = self.assertSameStr("SMTPAddressError", addr, 550, "No")
            self.assertIsInstance(ours.addr, Address)
            self.assertEqual(str(ours), "550 <user@example.com>... No")

    def test_badRcpt(self):
        ours = self.assertSameStr("SMTPBadRcpt", "user@example.com")
        self.assertEqual(str(ours), "550 <user@example.com>... Cannot receive for specified address")
        self.assertSameStr("SMTPBadRcpt", "user@example.com", 551, "User not local")
        self.assertSameStr("SMTPBadRcpt", "user@example.com", 553, b"bytes resp")

    def test_badSender(self):
        ours = self.assertSameStr("SMTPBadSender", "user@example.com")
        self.assertEqual(str(ours), "550 <user@example.com>... Sender not acceptable")
        self.assertSameStr("SMTPBadSender", "<>", 553, "Null sender")

    def test_defaultDomain(self):
        self.assertSameStr("SMTPBadRcpt", "postmaster")

    def test_addressParseError(self):
        self.assertRaises(_errors.AddressError, _errors.SMTPBadRcpt, "a@b@c")
