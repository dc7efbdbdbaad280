"""
Tests for L{mailclient._wire.plan}: the pure plan of a transaction.
"""

from __future__ import annotations

from typing import List

from twisted.trial.unittest import SynchronousTestCase

from mailclient._wire.ehlo import parseCapabilities
from mailclient._wire.options import (
    CONVERSION_NEEDED,
    DEFAULT_OPTIONS,
    TOO_BIG,
    MailOptions,
    OptionError,
)
from mailclient._wire.plan import (
    SCAN,
    SCAN_LIMIT,
    Switches,
    eightBitDecision,
    needsMessage,
    planTransaction,
    usesExtensions,
)

ON = Switches()


def caps(*keywords: str):
    return parseCapabilities(b"mx\n" + b"\n".join(k.encode() for k in keywords))


RECIPIENTS = ["bob@example.org", "carol@example.org"]
QUOTED = [b"<bob@example.org>", b"<carol@example.org>"]


def plan(capabilities, switches: Switches = ON, options: MailOptions = DEFAULT_OPTIONS,
         recipients: List[str] = RECIPIENTS, size=None, eightBit=False, early=False):
    quoted = [b"<%s>" % r.encode() for r in recipients]
    return planTransaction(capabilities, switches, options, b"<alice@example.com>",
                           recipients, quoted, size, eightBit, early)


class PlanTests(SynchronousTestCase):
    def test_usesExtensions(self) -> None:
        self.assertFalse(usesExtensions(caps()))
        self.assertFalse(usesExtensions(caps("STARTTLS", "AUTH PLAIN", "HELP")))
        for keyword in ["PIPELINING", "CHUNKING", "SIZE 10", "8BITMIME", "SMTPUTF8", "DSN"]:
            self.assertTrue(usesExtensions(caps(keyword)), keyword)

    def test_lockStep(self) -> None:
        p = plan(caps("SIZE", "8BITMIME"), size=120)
        self.assertFalse(p.pipelined)
        self.assertFalse(p.chunked)
        self.assertEqual(p.group, [])
        self.assertEqual(p.mailParameters, [b"SIZE=120"])

    def test_pipelinedData(self) -> None:
        p = plan(caps("PIPELINING"))
        self.assertTrue(p.pipelined)
        self.assertFalse(p.chunked)
        self.assertEqual(p.group, [(b"MAIL", None), (b"RCPT", RECIPIENTS[0]),
                                   (b"RCPT", RECIPIENTS[1]), (b"DATA", None)])

    def test_chunked(self) -> None:
        p = plan(caps("PIPELINING", "CHUNKING"))
        self.assertTrue(p.chunked)
        # BDAT replies join the group as the chunks are written.
        self.assertEqual([verb for verb, _ in p.group], [b"MAIL", b"RCPT", b"RCPT"])

    def test_chunkingNeedsPipelining(self) -> None:
        self.assertFalse(plan(caps("CHUNKING")).chunked)
        self.assertFalse(plan(caps("PIPELINING", "CHUNKING"), Switches(chunking=False)).chunked)
        self.assertFalse(plan(caps("PIPELINING", "CHUNKING"), Switches(pipelining=False)).chunked)

    def test_noRecipients(self) -> None:
        p = plan(caps("PIPELINING", "CHUNKING"), recipients=[])
        self.assertFalse(p.chunked)
        self.assertEqual(p.group, [(b"MAIL", None)])

    def test_startedEarly(self) -> None:
        p = plan(caps("PIPELINING", "CHUNKING"), early=True)
        self.assertEqual(p.group[:2], [(b"RSET", None), (b"MAIL", None)])

    def test_eightBit(self) -> None:
        self.assertEqual(plan(caps("8BITMIME"), eightBit=True).mailParameters, [b"BODY=8BITMIME"])
        # Unknown but offered: declared, always safe.
        self.assertEqual(plan(caps("8BITMIME"), eightBit=None).mailParameters, [b"BODY=8BITMIME"])
        self.assertTrue(plan(caps("SIZE"), eightBit=None).refuseEightBit)
        self.assertFalse(plan(caps("SIZE"), eightBit=False).refuseEightBit)
        allowed = MailOptions(allowEightBitWithout8BITMIME=True)
        self.assertFalse(plan(caps("SIZE"), options=allowed, eightBit=None).refuseEightBit)

    def test_refusals(self) -> None:
        error = self.assertRaises(OptionError, plan, caps("SIZE 100"), size=101)
        self.assertEqual(error.status, TOO_BIG)
        error = self.assertRaises(OptionError, plan, caps("SIZE"), eightBit=True)
        self.assertEqual(error.status, CONVERSION_NEEDED)

    def test_dsnWarning(self) -> None:
        p = plan(caps("PIPELINING"), options=MailOptions(ret="HDRS"))
        self.assertIn("DSN", p.warning)
        self.assertIsNone(plan(caps("PIPELINING", "DSN"), options=MailOptions(ret="HDRS")).warning)

    def test_needsMessage(self) -> None:
        self.assertTrue(needsMessage(caps("SIZE"), ON, MailOptions(eightBit=False), 1))
        self.assertTrue(needsMessage(caps("PIPELINING", "CHUNKING"), ON,
                                     MailOptions(eightBit=False), 1))
        self.assertTrue(needsMessage(caps(), ON, DEFAULT_OPTIONS, 1))
        self.assertFalse(needsMessage(caps("PIPELINING"), ON, MailOptions(eightBit=False), 1))
        self.assertFalse(needsMessage(caps(), ON, DEFAULT_OPTIONS, 0))

    def test_eightBitDecision(self) -> None:
        offered = caps("8BITMIME")
        self.assertIs(eightBitDecision(offered, MailOptions(eightBit=False), 10), False)
        self.assertIs(eightBitDecision(offered, DEFAULT_OPTIONS, None), True)
        self.assertIs(eightBitDecision(offered, DEFAULT_OPTIONS, SCAN_LIMIT + 1), True)
        self.assertIs(eightBitDecision(offered, DEFAULT_OPTIONS, SCAN_LIMIT), SCAN)
        self.assertIs(eightBitDecision(caps(), DEFAULT_OPTIONS, SCAN_LIMIT * 10), SCAN)
