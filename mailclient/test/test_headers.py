"""
Tests for L{mailclient._wire.headers}: the envelope of a message from its
header, with every address parsed strictly.
"""

from __future__ import annotations

import email.message
import email.policy
import email.utils
import smtplib
from email import message_from_bytes
from typing import Any, List

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mailclient._wire.address import checkAddress
from mailclient._wire.headers import (
    AddressParseError,
    HeaderError,
    envelopeFromHeader,
    envelopeFromMessage,
    headerFields,
    parseAddress,
    parseAddressList,
    recipientsFromFields,
    senderFromFields,
    stripBcc,
    uniqueAddresses,
    withoutBcc,
)


class AddressListTests(SynchronousTestCase):
    """
    L{parseAddressList} reads RFC 5322 address lists and refuses, naming
    it, every address it cannot use.
    """

    def test_forms(self) -> None:
        """
        Bare addresses, display names (quoted, with commas, encoded words,
        dots), comments, groups, domain literals, source routes and empty
        elements.
        """
        self.assertEqual(parseAddressList(
            'bob@example.com, "Doe, Jane" <jane@example.com>,'
            " John Q. Public <jqp@example.org> (work),"
            " =?utf-8?q?J=C3=B6rg?= <joerg@example.de>,,"
            " team: dave@example.net, erin@example.net;,"
            " undisclosed-recipients:;, root@[192.0.2.1], <@relay.example:frank@example.com>,"
            ' "odd name"@example.com'),
            ["bob@example.com", "jane@example.com", "jqp@example.org", "joerg@example.de",
             "dave@example.net", "erin@example.net", "root@[192.0.2.1]",
             "frank@example.com", '"odd name"@example.com'])

    def test_empty(self) -> None:
        self.assertEqual(parseAddressList(""), [])
        self.assertEqual(parseAddressList("  "), [])
        self.assertEqual(parseAddressList("undisclosed-recipients:;"), [])

    def test_internationalised(self) -> None:
        """
        UTF-8 addresses (RFC 6532) are kept; whether they can be sent is
        decided with the server (SMTPUTF8).
        """
        self.assertEqual(parseAddressList("Jörg <jörg@exämple.de>"), ["jörg@exämple.de"])

    def assertRefused(self, value: str, bad: str, reason: str) -> AddressParseError:
        with self.assertRaises(AddressParseError) as caught:
            parseAddressList(value, "To")
        e = caught.exception
        self.assertIsInstance(e, ValueError)
        self.assertIn((("To", bad)), [(w, t) for w, t, _ in e.problems])
        self.assertIn(repr(bad), str(e))
        self.assertIn(reason, str(e))
        return e

    def test_refused(self) -> None:
        """
        Each kind of unusable address is an error naming it and saying why.
        """
        cases = [
            ("a@b@c, bob@example.com", "a@b@c", "more than one '@'"),
            ("not an address", "not an address", "a name without an <address>"),
            ("bob", "bob", "no domain"),
            ("bob@", "bob@", "no domain"),
            ("@example.com", "@example.com", "nothing before"),
            ("a b@example.com", "a b@example.com", "space in the local part"),
            ("bob@example.com junk", "bob@example.com junk", "unexpected 'junk'"),
            ("Bob <bob@example.com", "Bob <bob@example.com", "'>' is missing"),
            ("<>", "<>", "empty address"),
            ("x@example.com\r\nRSET", "x@example.com\r\nRSET", "line break"),
            ("x@example.com\0", "x@example.com\0", "control character"),
            ("a..b@example.com", "a..b@example.com", "two in a row"),
            ('"open@example.com', '"open@example.com', "quoted string is not closed"),
            ("bob@example.com (open", "bob@example.com (open", "comment is not closed"),
            ("team: a@example.com", "team: a@example.com", "not closed with ';'"),
            ("bob@exam\udcffple.com", "bob@exam\udcffple.com", "not valid UTF-8"),
        ]
        for value, bad, reason in cases:
            self.assertRefused(value, bad, reason)

    def test_everyBadAddressNamed(self) -> None:
        """
        Nothing is dropped: every bad address of the list is named, inside
        groups too, and the good ones do not hide them.
        """
        e = self.assertRefused("a@b@c, bob@example.com, team: x y, c@example.com;, zed",
                               "a@b@c", "")
        self.assertEqual([t for _, t, _ in e.problems], ["a@b@c", "x y", "zed"])

    def test_parseAddress(self) -> None:
        """
        L{parseAddress} wants exactly one address; the null sender only
        when allowed.
        """
        self.assertEqual(parseAddress("Alice <alice@example.com>"), "alice@example.com")
        self.assertEqual(parseAddress("<>", allowNull=True), "")
        self.assertEqual(parseAddress("", allowNull=True), "")
        for value in ("", "<>", "a@example.com, b@example.com", "x:;"):
            self.assertRaises(AddressParseError, parseAddress, value, "--to")

    def test_unique(self) -> None:
        """
        Repeats go; domains compare without case, local parts exactly.
        """
        self.assertEqual(
            uniqueAddresses(["bob@example.com", "bob@EXAMPLE.com", "Bob@example.com"]),
            ["bob@example.com", "Bob@example.com"])


_ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
_atoms = st.text(_ATEXT, min_size=1, max_size=8)
_labels = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
_addrSpecs = st.builds(
    lambda local, labels: ".".join(local) + "@" + ".".join(labels),
    st.lists(_atoms, min_size=1, max_size=3), st.lists(_labels, min_size=1, max_size=3))
_names = st.text(st.characters(blacklist_categories=["Cc", "Cs"]), max_size=12)


class PropertyTests(SynchronousTestCase):
    """
    Properties of the parser over generated input.
    """

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(_names, _addrSpecs), max_size=5))
    def test_formattedListRoundTrips(self, entries: List[Any]) -> None:
        """
        A list written by C{email.utils.formataddr} gives back exactly its
        addresses, in order, and C{email.utils.getaddresses} agrees.
        """
        value = ", ".join(email.utils.formataddr((name, addr)) for name, addr in entries)
        found = parseAddressList(value)
        self.assertEqual(found, [addr for _, addr in entries])
        self.assertEqual(found, [a for _, a in email.utils.getaddresses([value])])

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=40))
    def test_nothingSilent(self, value: str) -> None:
        """
        Any text gives valid addresses or an L{AddressParseError} naming
        text from the input; no other exception.
        """
        try:
            found = parseAddressList(value, "To")
        except AddressParseError as e:
            self.assertTrue(e.problems)
            for where, text, reason in e.problems:
                self.assertEqual(where, "To")
                self.assertIn(text, value)
                self.assertTrue(reason)
            return
        for address in found:
            self.assertEqual(checkAddress(address, utf8=True), address)
            self.assertIn("@", address)

    @settings(max_examples=100, deadline=None)
    @given(st.lists(_addrSpecs, min_size=1, max_size=4), st.integers(0, 4),
           st.sampled_from(["a@b@c", "no domain", "x@example.com\r\nRSET", "<>", "bob@"]))
    def test_oneBadAmongGood(self, good: List[str], where: int, bad: str) -> None:
        """
        One bad address among good ones is never dropped: the list is
        refused and the error names it.
        """
        items = list(good)
        items.insert(min(where, len(items)), bad)
        with self.assertRaises(AddressParseError) as caught:
            parseAddressList(", ".join(items))
        self.assertEqual([t for _, t, _ in caught.exception.problems], [bad])


HEADER = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: Bob <bob@example.com>,\r\n"
    b"  carol@example.com\r\n"
    b"Bcc: eve@example.com,\r\n"
    b"\tfrank@example.com\r\n"
    b"Cc: dave@example.com\r\n"
    b"BCC : heidi@example.com\r\n"
    b"Resent-Bccx: not a field we know\r\n"
    b"Subject: secret\r\n"
    b"\r\n"
    b"Bcc: body, not header\r\n"
)


class EnvelopeTests(SynchronousTestCase):
    """
    The envelope of a message, as smtplib's C{send_message} reads it.
    """

    def test_fields(self) -> None:
        """
        L{headerFields} unfolds, lowercases names, and stops at the body.
        """
        fields = headerFields(HEADER)
        self.assertEqual(fields[1], ("to", "Bob <bob@example.com>,  carol@example.com"))
        self.assertEqual(fields[4], ("bcc", "heidi@example.com"))
        self.assertEqual([n for n, _ in fields],
                         ["from", "to", "bcc", "cc", "bcc", "resent-bccx", "subject"])

    def test_envelope(self) -> None:
        self.assertEqual(envelopeFromHeader(HEADER), (
            "alice@example.com",
            ["bob@example.com", "carol@example.com", "eve@example.com",
             "frank@example.com", "heidi@example.com", "dave@example.com"]))

    def test_senderPrefersSender(self) -> None:
        fields = [("from", "a@example.com, b@example.com"), ("sender", "b@example.com")]
        self.assertEqual(senderFromFields(fields), "b@example.com")

    def test_noSender(self) -> None:
        self.assertEqual(senderFromFields([("to", "bob@example.com")]), "")
        self.assertEqual(senderFromFields([("from", "undisclosed:;")]), "")

    def test_senderAmbiguous(self) -> None:
        """
        Several From addresses without a Sender, two From fields, or a
        Sender with two addresses: which one sends is not guessed.
        """
        for fields in ([("from", "a@example.com, b@example.com")],
                       [("from", "a@example.com"), ("from", "b@example.com")],
                       [("sender", "a@example.com, b@example.com")]):
            with self.assertRaises(HeaderError) as caught:
                senderFromFields(fields)
            self.assertNotIsInstance(caught.exception, AddressParseError)

    def test_badSender(self) -> None:
        with self.assertRaises(AddressParseError) as caught:
            senderFromFields([("from", "a@b@c")])
        self.assertIn("From: 'a@b@c'", str(caught.exception))

    def test_badRecipientsAllNamed(self) -> None:
        fields = [("to", "a@b@c, bob@example.com"), ("cc", "carol"), ("bcc", "x y")]
        with self.assertRaises(AddressParseError) as caught:
            recipientsFromFields(fields)
        self.assertEqual(caught.exception.problems, [
            ("To", "a@b@c", "more than one '@'"),
            ("Bcc", "x y", "a name without an <address>"),
            ("Cc", "carol", "no domain: write user@domain")])

    def test_resent(self) -> None:
        """
        With one Resent- block, its fields give the envelope.
        """
        fields = headerFields(
            b"From: alice@example.com\r\nTo: bob@example.com\r\n"
            b"Resent-Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
            b"Resent-From: bob@example.com\r\nResent-To: carol@example.com\r\n"
            b"Resent-Bcc: dave@example.com\r\n\r\n")
        self.assertEqual(senderFromFields(fields), "bob@example.com")
        self.assertEqual(recipientsFromFields(fields),
                         ["carol@example.com", "dave@example.com"])

    def test_severalResentBlocks(self) -> None:
        fields = [("resent-date", "x"), ("resent-from", "a@example.com"),
                  ("resent-date", "y"), ("resent-from", "b@example.com")]
        self.assertRaises(HeaderError, senderFromFields, fields)
        self.assertRaises(HeaderError, recipientsFromFields, fields)

    def test_stripBcc(self) -> None:
        """
        Bcc and Resent-Bcc fields go, continuation lines included; every
        other byte (the body's "Bcc:" line, an unknown field) stays.
        """
        self.assertEqual(stripBcc(HEADER + b"Resent-Bcc: z@example.com\r\n"), (
            b"From: Alice <alice@example.com>\r\n"
            b"To: Bob <bob@example.com>,\r\n"
            b"  carol@example.com\r\n"
            b"Cc: dave@example.com\r\n"
            b"Resent-Bccx: not a field we know\r\n"
            b"Subject: secret\r\n"
            b"\r\n"
            b"Bcc: body, not header\r\n"
            b"Resent-Bcc: z@example.com\r\n"))
        self.assertEqual(stripBcc(b"Resent-Bcc: a@example.com\n b@example.com\nX: y\n"),
                         b"X: y\n")

    def test_bareCRIsALineEnd(self) -> None:
        """
        A bare CR ends a line, as the DATA encoder sends it: a Bcc field
        hidden behind one is still a field, and removed.
        """
        header = b"To: bob@example.com\rBcc: eve@example.com\r\n\r\n"
        self.assertEqual(envelopeFromHeader(header)[1], ["bob@example.com", "eve@example.com"])
        self.assertEqual(stripBcc(header), b"To: bob@example.com\r\r\n")


class MessageTests(SynchronousTestCase):
    """
    L{envelopeFromMessage} and L{withoutBcc} on C{email} messages, against
    smtplib on the messages both can read.
    """

    def smtplibEnvelope(self, msg: email.message.Message) -> Any:
        """
        What C{smtplib.SMTP.send_message} would put in the envelope and
        send.
        """
        sent: List[Any] = []

        class Recorder(smtplib.SMTP):
            def ehlo_or_helo_if_needed(self) -> None:
                pass

            def sendmail(self, from_addr: Any, to_addrs: Any, msg: Any, *a: Any, **kw: Any) -> Any:
                sent.append((from_addr, list(to_addrs), msg))
                return {}

        Recorder().send_message(msg)
        return sent[0]

    def test_likeSmtplib(self) -> None:
        for policy in (email.policy.compat32, email.policy.default):
            msg = message_from_bytes(
                b"From: Alice <alice@example.com>\r\nSender: bounces@example.com\r\n"
                b'To: "Doe, Jane" <jane@example.com>, bob@example.com\r\n'
                b"Cc: carol@example.com\r\nBcc: eve@example.com\r\n"
                b"Subject: hi\r\n\r\nHello.\r\n", policy=policy)
            sender, recipients, data = self.smtplibEnvelope(msg)
            self.assertEqual(envelopeFromMessage(msg), (sender, recipients))
            self.assertEqual(withoutBcc(msg), data)
            self.assertNotIn(b"eve@", withoutBcc(msg))
            self.assertEqual(msg["Bcc"], "eve@example.com")

    def test_builtMessage(self) -> None:
        msg = email.message.EmailMessage()
        msg["From"] = "Alice <alice@example.com>"
        msg["To"] = "Doe, Jane <jane@example.com>".replace("Doe, Jane", '"Doe, Jane"')
        msg["Resent-From"] = "bob@example.com"
        msg["Resent-To"] = "carol@example.com"
        msg["Resent-Bcc"] = "dave@example.com"
        msg.set_content("Hi.\n")
        self.assertEqual(envelopeFromMessage(msg),
                         ("bob@example.com", ["carol@example.com", "dave@example.com"]))
        self.assertNotIn(b"dave@", withoutBcc(msg))
        self.assertIn(b"\r\n\r\nHi.\r\n", withoutBcc(msg))

    def test_strictWhereSmtplibIsNot(self) -> None:
        """
        Where smtplib sends to C{''} or part of an address, this refuses
        and names it.
        """
        msg = message_from_bytes(b"From: a@example.com\nTo: a@b@c, bob@example.com\n\nx\n")
        with self.assertRaises(AddressParseError) as caught:
            envelopeFromMessage(msg)
        self.assertIn("'a@b@c'", str(caught.exception))
