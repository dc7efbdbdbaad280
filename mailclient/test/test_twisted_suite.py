"""
Twisted's own client-side tests, run against mailclient.

Twisted's test modules C{twisted.mail.test.test_smtp} and
C{twisted.mail.test.test_mail} are the specification of "drop-in": this
module loads them with the client-side names of C{twisted.mail.smtp},
C{twisted.mail.relay} and C{twisted.mail.relaymanager} replaced by
mailclient's, and exposes their client-side test classes so that pytest and
trial run them like any other test of the project.

The server side (C{SMTP}, C{ESMTP}, C{SMTPFactory}, C{User}, C{DomainQueuer},
the server's errors) stays Twisted's.  The substitution is made only while
the two modules are imported (as private copies); afterwards their globals
(C{smtp}, C{mail}, C{twisted}) keep pointing at views in which the client
names are mailclient's, and nothing else in the process sees a change.

The tests expected to fail, and why, are listed in
L{mailclient.test._twistedsuite.EXPECTED_FAILURES} (and in
C{docs/compatibility.rst}).  Run the suite alone, with a one-line summary::

    python -m mailclient.test._twistedsuite [--reactor=asyncio]
"""

from __future__ import annotations

import sys

from twisted.trial.unittest import SynchronousTestCase

from mailclient.test import _twistedsuite
from mailclient.test._twistedsuite import exposeTestClasses

exposeTestClasses(globals())


class SuiteTests(SynchronousTestCase):
    """
    The harness itself: every counted test is there, the expected failures
    are counted tests, and the substitution reached nothing else.
    """

    def test_everyCountedTestPresent(self) -> None:
        """
        A counted test that Twisted's suite no longer has is reported here,
        not silently skipped.
        """
        self.assertEqual(_twistedsuite.missingTests(), [])

    def test_expectedFailuresCounted(self) -> None:
        counted = set(_twistedsuite.countedTests())
        self.assertEqual(set(_twistedsuite.EXPECTED_FAILURES) - counted, set())
        self.assertLessEqual(len(_twistedsuite.EXPECTED_FAILURES), 5)

    def test_exposed(self) -> None:
        """
        Each counted class is exposed here, as a subclass of Twisted's (in
        its private copy), and the expected failures carry their reason.
        """
        module = sys.modules[__name__]
        for className in _twistedsuite.COUNTED_TESTS:
            cls = getattr(module, className)
            self.assertEqual(cls.__module__, __name__)
            self.assertTrue(cls.__bases__[0].__module__.startswith("mailclient.test._twisted_"))
        for test, reason in _twistedsuite.EXPECTED_FAILURES.items():
            className, name = test.split(".")
            self.assertEqual(getattr(getattr(module, className), name).todo, reason)

    def test_clientNamesAreOurs(self) -> None:
        """
        In the loaded test modules, the client names are mailclient's and
        the server names Twisted's.
        """
        import twisted.mail.smtp

        import mailclient.relaymanager
        import mailclient.smtp

        tests = _twistedsuite.loadTwistedTests()["twisted.mail.test.test_smtp"]
        self.assertIs(tests.smtp.ESMTPClient, mailclient.smtp.ESMTPClient)
        self.assertIs(tests.smtp.sendmail, mailclient.smtp.sendmail)
        self.assertIs(tests.smtp.ESMTP, twisted.mail.smtp.ESMTP)
        self.assertIs(tests.smtp.SMTPBadRcpt, twisted.mail.smtp.SMTPBadRcpt)
        mail = _twistedsuite.loadTwistedTests()["twisted.mail.test.test_mail"]
        self.assertIs(mail.mail.relaymanager.Queue, mailclient.relaymanager.Queue)
        self.assertIs(mail.twisted.mail.relaymanager.MXCalculator,
                      mailclient.relaymanager.MXCalculator)
        self.assertIs(mail._AttemptManager, mailclient.relaymanager._AttemptManager)

    def test_noLeak(self) -> None:
        """
        Twisted's own modules still see Twisted's names: the substitution
        was undone.
        """
        import twisted.mail
        import twisted.mail.smtp

        self.assertEqual(_twistedsuite.leakedStandIns(), [])
        self.assertIs(sys.modules["twisted.mail.smtp"], twisted.mail.smtp)
        self.assertEqual(twisted.mail.smtp.ESMTPClient.__module__, "twisted.mail.smtp")
        self.assertIs(twisted.mail.smtp, sys.modules["twisted.mail.smtp"])
