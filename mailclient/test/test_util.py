"""
Tests for L{mailclient._wire.util}: rfc822date, messageid and idGenerator.
"""

import email.utils
import os
import re
import time

from twisted.mail import smtp as twsmtp
from twisted.trial.unittest import SynchronousTestCase

from mailclient._wire.host import getDNSName
from mailclient._wire.util import idGenerator, messageid, rfc822date

# POSIX TZ strings, so no tz database is needed.  The sign is inverted: EST+5
# is five hours west of UTC.
ZONES = {
    "UTC0": ("+0000", "+0000"),
    "EST+5EDT,M3.2.0,M11.1.0": ("-0500", "-0400"),
    "CET-1CEST,M3.5.0,M10.5.0/3": ("+0100", "+0200"),
    "IST-5:30": ("+0530", "+0530"),
    "NST+3:30NDT,M3.2.0,M11.1.0": ("-0330", "-0230"),
    "NPT-5:45": ("+0545", "+0545"),
    "CHAST-12:45CHADT,M9.5.0/2:45,M4.1.0/3:45": ("+1245", "+1345"),
    "XST+0:30": ("-0030", "-0030"),
}

# (time tuple, expected text without the zone)
TUPLES = [
    ((2024, 1, 15, 10, 30, 0, 0, 15, 0), "Mon, 15 Jan 2024 10:30:00"),
    ((1999, 12, 31, 23, 59, 59, 4, 365, 0), "Fri, 31 Dec 1999 23:59:59"),
    ((2024, 7, 4, 0, 0, 5, 3, 186, 1), "Thu, 04 Jul 2024 00:00:05"),
    ((2001, 2, 3, 4, 5, 6, 5, 34, 1), "Sat, 03 Feb 2001 04:05:06"),
    ((2023, 6, 11, 12, 0, 0, 6, 162, 0), "Sun, 11 Jun 2023 12:00:00"),
]


class TimeZoneMixin:
    def setTZ(self, tz):
        old = os.environ.get("TZ")

        def restore():
            if old is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = old
            time.tzset()

        self.addCleanup(restore)
        os.environ["TZ"] = tz
        time.tzset()


class RFC822DateTests(TimeZoneMixin, SynchronousTestCase):
    def test_utc(self):
        for tz in ("UTC0", "EST+5EDT,M3.2.0,M11.1.0"):
            self.setTZ(tz)
            for timeinfo, text in TUPLES:
                expected = (text + " +0000").encode("ascii")
                self.assertEqual(rfc822date(timeinfo, local=0), expected)
                self.assertEqual(rfc822date(timeinfo, local=0), twsmtp.rfc822date(timeinfo, local=0))

    def test_local(self):
        for tz, (standard, summer) in ZONES.items():
            self.setTZ(tz)
            for timeinfo, text in TUPLES:
                zone = summer if timeinfo[8] else standard
                self.assertEqual(
                    rfc822date(timeinfo), (text + " " + zone).encode("ascii"), (tz, timeinfo)
                )

    def test_localSameAsTwisted(self):
        """
        Twisted agrees, except in a zone less than an hour west of UTC.
        """
        for tz in ZONES:
            if tz == "XST+0:30":
                continue
            self.setTZ(tz)
            for timeinfo, _ in TUPLES:
                self.assertEqual(rfc822date(timeinfo), twsmtp.rfc822date(timeinfo), tz)
                self.assertEqual(rfc822date(timeinfo, 1), twsmtp.rfc822date(timeinfo, 1))

    def test_twistedLosesSignBelowOneHour(self):
        """
        Twisted writes UTC-00:30 as C{+0030}; we write C{-0030}.
        """
        self.setTZ("XST+0:30")
        timeinfo = TUPLES[0][0]
        self.assertTrue(twsmtp.rfc822date(timeinfo).endswith(b" +0030"))
        self.assertTrue(rfc822date(timeinfo).endswith(b" -0030"))

    def test_structTime(self):
        self.setTZ("CET-1CEST,M3.5.0,M10.5.0/3")
        winter = time.localtime(1705314600)  # 2024-01-15 10:30 UTC
        summer = time.localtime(1720051205)  # 2024-07-04 00:00:05 UTC
        self.assertEqual(rfc822date(winter), b"Mon, 15 Jan 2024 11:30:00 +0100")
        self.assertEqual(rfc822date(summer), b"Thu, 04 Jul 2024 02:00:05 +0200")
        self.assertEqual(rfc822date(time.gmtime(1705314600), 0), b"Mon, 15 Jan 2024 10:30:00 +0000")

    def test_roundTripThroughEmailUtils(self):
        for tz in ZONES:
            self.setTZ(tz)
            for stamp in (0, 1705314600, 1720051205, 2000000000):
                parsed = email.utils.parsedate_tz(rfc822date(time.localtime(stamp)).decode())
                self.assertEqual(email.utils.mktime_tz(parsed), stamp, tz)
                parsed = email.utils.parsedate_tz(rfc822date(time.gmtime(stamp), 0).decode())
                self.assertEqual(email.utils.mktime_tz(parsed), stamp)

    def test_now(self):
        for local in (0, 1):
            before = int(time.time())
            text = rfc822date(local=local)
            after = int(time.time()) + 1
            self.assertIsInstance(text, bytes)
            parsed = email.utils.parsedate_tz(text.decode("ascii"))
            self.assertTrue(before <= email.utils.mktime_tz(parsed) <= after, text)
        self.assertTrue(rfc822date(local=0).endswith(b" +0000"))

    def test_format(self):
        self.assertRegex(
            rfc822date(),
            rb"\A(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
            rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
            rb"\d\d:\d\d:\d\d [+-]\d{4}\Z",
        )


MESSAGE_ID = re.compile(
    rb"\A<(?P<stamp>\d{14})\.(?P<pid>\d+)\.(?P<rand>\d+)(?:\.(?P<uniq>.*))?"
    rb"\.(?P<n>\d+)@(?P<host>[^>]+)>\Z"
)


class MessageIDTests(SynchronousTestCase):
    def test_format(self):
        before = time.strftime("%Y%m%d%H%M%S", time.gmtime()).encode()
        value = messageid()
        after = time.strftime("%Y%m%d%H%M%S", time.gmtime()).encode()
        self.assertIsInstance(value, bytes)
        match = MESSAGE_ID.match(value)
        self.assertIsNotNone(match, value)
        self.assertTrue(before <= match.group("stamp") <= after)
        self.assertEqual(int(match.group("pid")), os.getpid())
        self.assertTrue(0 <= int(match.group("rand")) < 2**31 - 1)
        self.assertIsNone(match.group("uniq"))
        self.assertEqual(match.group("host"), getDNSName())
        self.assertEqual(match.group("host"), twsmtp.DNSNAME)

    def test_sameShapeAsTwisted(self):
        ours = MESSAGE_ID.match(messageid("u", N=lambda: 7))
        theirs = MESSAGE_ID.match(twsmtp.messageid("u", N=lambda: 7))
        for group in ("pid", "uniq", "n", "host"):
            self.assertEqual(ours.group(group), theirs.group(group))

    def test_uniq(self):
        match = MESSAGE_ID.match(messageid("abc"))
        self.assertEqual(match.group("uniq"), b"abc")

    def test_counter(self):
        counter = iter(range(100, 200))
        match = MESSAGE_ID.match(messageid(N=lambda: next(counter)))
        self.assertEqual(match.group("n"), b"100")
        match = MESSAGE_ID.match(messageid(N=lambda: next(counter)))
        self.assertEqual(match.group("n"), b"101")

    def test_unique(self):
        ids = [messageid() for _ in range(2000)]
        self.assertEqual(len(set(ids)), len(ids))
        numbers = [int(MESSAGE_ID.match(i).group("n")) for i in ids]
        self.assertEqual(numbers, sorted(numbers))
        self.assertEqual(len(set(numbers)), len(numbers))


class IDGeneratorTests(SynchronousTestCase):
    def test_counts(self):
        gen = idGenerator()
        self.assertEqual([next(gen) for _ in range(5)], [0, 1, 2, 3, 4])

    def test_independent(self):
        a, b = idGenerator(), idGenerator()
        next(a)
        next(a)
        self.assertEqual(next(b), 0)
        self.assertEqual(next(a), 2)

    def test_sameAsTwisted(self):
        ours, theirs = idGenerator(), twsmtp.idGenerator()
        self.assertEqual([next(ours) for _ in range(50)], [next(theirs) for _ in range(50)])
