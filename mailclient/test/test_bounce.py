"""
Tests for L{mailclient._relaying.bounce}: RFC 3464 delivery status notifications.
"""

from __future__ import annotations

import email
import email.policy
import io
from typing import Any, List

from twisted.trial.unittest import SynchronousTestCase

from mailclient._relaying.bounce import DeliveryFailure, generateBounce, statusFromReply

ORIGINAL = (
    b"From: alice@example.com\n"
    b"To: bob@example.org\n"
    b"Subject: caf\xc3\xa9\n"
    b"\n"
    b"\xff\xfe not UTF-8\n"
)


def parse(report: bytes) -> Any:
    return email.message_from_bytes(report, policy=email.policy.compat32)


class StatusTests(SynchronousTestCase):
    """
    L{statusFromReply} finds the RFC 3463 status of a reply.
    """

    def test_enhancedCode(self) -> None:
        """
        The reply's own enhanced status code is used when its class matches
        the reply code.
        """
        self.assertEqual(statusFromReply(550, b"5.1.1 No such user"), "5.1.1")
        self.assertEqual(statusFromReply(552, b"5.3.4 Message too big\nmore"), "5.3.4")
        self.assertEqual(statusFromReply(451, b"4.7.1 greylisted"), "4.7.1")

    def test_derived(self) -> None:
        """
        Without one (or with one of another class), the class of the reply
        code gives C{X.0.0}.
        """
        self.assertEqual(statusFromReply(550, b"No such user"), "5.0.0")
        self.assertEqual(statusFromReply(550, b"4.1.1 mismatched"), "5.0.0")
        self.assertEqual(statusFromReply(554, b"5.1.1.1 not a code"), "5.0.0")
        self.assertEqual(statusFromReply(-1, b""), "5.0.0")


class GenerateBounceTests(SynchronousTestCase):
    """
    L{generateBounce} builds a C{multipart/report} DSN.
    """

    def bounce(self, original: bytes = ORIGINAL, **kw: Any) -> Any:
        failures = kw.pop(
            "failures",
            [
                DeliveryFailure(
                    "bob@example.org",
                    "5.1.1",
                    b"550 5.1.1 No such user",
                    "mx.example.org",
                )
            ],
        )
        return generateBounce(
            io.BytesIO(original),
            kw.pop("sender", "alice@example.com"),
            failures,
            "relay.example.net",
            arrivalDate=1700000000,
            now=1700000100,
            **kw,
        )

    def test_envelope(self) -> None:
        """
        The report goes from the null sender to the original sender, as
        Twisted's C{generateBounce} returns it.
        """
        sender, recipient, report = self.bounce()
        self.assertEqual((sender, recipient), (b"", b"alice@example.com"))
        self.assertIsInstance(report, bytes)
        sender, recipient, _ = self.bounce(sender=b"<alice@example.com>")
        self.assertEqual(recipient, b"alice@example.com")

    def test_structure(self) -> None:
        """
        The report is C{multipart/report; report-type=delivery-status} with
        a text part, a C{message/delivery-status} part and the original.
        """
        _, _, report = self.bounce()
        message = parse(report)
        self.assertEqual(message.get_content_type(), "multipart/report")
        self.assertEqual(message.get_param("report-type"), "delivery-status")
        self.assertEqual(message["To"], "<alice@example.com>")
        self.assertEqual(message["From"], "Mail Delivery System <MAILER-DAEMON@relay.example.net>")
        self.assertEqual(message["Auto-Submitted"], "auto-replied")
        self.assertTrue(message["Message-ID"].startswith("<"))
        self.assertTrue(message["Date"])
        parts = message.get_payload()
        self.assertEqual(
            [p.get_content_type() for p in parts],
            ["text/plain", "message/delivery-status", "message/rfc822"],
        )
        self.assertIn(
            "<bob@example.org>: mx.example.org said: 550 5.1.1 No such user",
            parts[0].get_payload(),
        )
        self.assertEqual(message.defects, [])

    def test_deliveryStatusFields(self) -> None:
        """
        The delivery status has the per-message fields, then per recipient
        C{Final-Recipient}, C{Action}, C{Status}, C{Remote-MTA} and
        C{Diagnostic-Code}.
        """
        _, _, report = self.bounce(
            failures=[
                DeliveryFailure("bob@example.org", "5.1.1", b"550 5.1.1 No such user", "mx.example.org"),
                DeliveryFailure("<carol@example.org>", "5.1.10", None, None, "null MX"),
            ]
        )
        status = parse(report).get_payload()[1].get_payload()
        perMessage, bob, carol = status
        self.assertEqual(perMessage["Reporting-MTA"], "dns; relay.example.net")
        self.assertTrue(perMessage["Arrival-Date"])
        self.assertEqual(
            (bob["Final-Recipient"], bob["Action"], bob["Status"], bob["Remote-MTA"], bob["Diagnostic-Code"]),
            ("rfc822; bob@example.org", "failed", "5.1.1", "dns; mx.example.org", "smtp; 550 5.1.1 No such user"),
        )
        self.assertEqual(
            (carol["Final-Recipient"], carol["Action"], carol["Status"], carol["Remote-MTA"], carol["Diagnostic-Code"]),
            ("rfc822; carol@example.org", "failed", "5.1.10", None, None),
        )
        self.assertTrue(carol["Last-Attempt-Date"])

    def test_originalReturnedAsBytes(self) -> None:
        """
        The original message is returned byte for byte, even when it is not
        UTF-8, with C{Content-Transfer-Encoding: 8bit}.
        """
        _, _, report = self.bounce()
        self.assertIn(b"Content-Transfer-Encoding: 8bit\n\n" + ORIGINAL, report)
        returned = parse(report).get_payload()[2]
        self.assertEqual(returned.get_payload()[0]["To"], "bob@example.org")

    def test_asciiOriginal(self) -> None:
        """
        An ASCII original needs no transfer encoding.
        """
        _, _, report = self.bounce(b"Subject: hi\n\nbody\n")
        self.assertNotIn(b"Content-Transfer-Encoding", report)
        self.assertEqual(parse(report).get_payload()[2].get_payload()[0]["Subject"], "hi")

    def test_largeOriginalHeadersOnly(self) -> None:
        """
        A message larger than C{maxReturnedSize} is returned as its headers
        (C{text/rfc822-headers}).
        """
        original = b"Subject: big\nX-Test: 1\n\n" + b"y" * 1000 + b"\n"
        _, _, report = self.bounce(original, maxReturnedSize=100)
        part = parse(report).get_payload()[2]
        self.assertEqual(part.get_content_type(), "text/rfc822-headers")
        self.assertEqual(part.get_payload(), "Subject: big\nX-Test: 1\n")
        self.assertNotIn(b"yyyy", report)

    def test_noHeaderInjection(self) -> None:
        """
        Line breaks and non-ASCII characters in a server's reply or an
        address cannot add header fields to the report.
        """
        _, _, report = self.bounce(
            failures=[
                DeliveryFailure(
                    "b\u00f6b@example.org",
                    "5.0.0",
                    b"550 first\r\nX-Injected: yes\nthird \xff",
                    "mx\r\nX-Other: yes",
                )
            ]
        )
        head = report.split(b"--=_")[2]
        self.assertNotIn(b"\nX-Injected", report)
        self.assertNotIn(b"\nX-Other", report)
        self.assertIn(b"Diagnostic-Code: smtp; 550 first X-Injected: yes third \\x{FFFD}", head)
        self.assertIn(b"Final-Recipient: utf-8; b\\x{F6}b@example.org", head)
        self.assertTrue(report.split(b"\n--=_")[0].isascii())

    def test_boundaryClosed(self) -> None:
        """
        The report ends with the closing boundary, also when the original
        lacks a final line ending.
        """
        _, _, report = self.bounce(b"Subject: x\n\nno newline")
        message = parse(report)
        boundary: str = message.get_boundary()
        self.assertTrue(report.endswith(b"\n--" + boundary.encode("ascii") + b"--\n"))
        self.assertEqual(len(message.get_payload()), 3)

    def test_twistedCannotBounceBinary(self) -> None:
        """
        Twisted's C{generateBounce} decodes the original as UTF-8 and fails
        on any other byte; its report has no C{Action} or C{Status}.
        """
        from twisted.mail import bounce

        self.assertRaises(
            UnicodeDecodeError,
            bounce.generateBounce,
            io.BytesIO(ORIGINAL),
            "alice@example.com",
            "bob@example.org",
        )
        _, _, twistedReport = bounce.generateBounce(
            io.BytesIO(b"Subject: hi\n\nbody\n"), "alice@example.com", "bob@example.org"
        )
        self.assertNotIn(b"Status:", twistedReport)
        _, _, report = self.bounce()
        fields: List[bytes] = [line.split(b":")[0] for line in report.splitlines()]
        self.assertIn(b"Status", fields)
        self.assertIn(b"Action", fields)
