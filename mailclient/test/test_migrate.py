"""
Tests for L{mailclient._commands.migrate}: the import rewriter behind
C{mailclient migrate}.
"""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
import tempfile
from typing import Dict, List, Tuple

from twisted.trial.unittest import SynchronousTestCase

import mailclient.interfaces
import mailclient.relay
import mailclient.relaymanager
import mailclient.smtp
from mailclient._commands import main as _cli
from mailclient._commands.migrate import MODULES, PROVIDED, migratePaths, migrateSource

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class MigrateSourceTests(SynchronousTestCase):
    """
    L{migrateSource} rewrites the client-side imports, keeps everything
    else byte for byte, and leaves server-side names to Twisted with a
    warning.
    """

    def migrate(self, source: str) -> Tuple[str, List[Tuple[int, str]]]:
        result = migrateSource(source)
        ast.parse(result.source)
        self.assertEqual(result.changed, result.source != source)
        again = migrateSource(result.source)
        self.assertEqual(again.source, result.source, "not idempotent")
        return result.source, result.warnings

    def test_fromImport(self) -> None:
        source = (
            "import os  # first\n"
            "from twisted.mail.smtp import ESMTPSenderFactory, sendmail as send  # client\n"
            "\n"
            "x = 1   # spacing   kept\n"
        )
        new, warnings = self.migrate(source)
        self.assertEqual(new, source.replace("twisted.mail.smtp", "mailclient.smtp"))
        self.assertEqual(warnings, [])

    def test_parenthesisedFromImport(self) -> None:
        source = (
            "from twisted.mail.smtp import (  # the client\n"
            "    SMTPClient,\n"
            "    quoteaddr,  # addresses\n"
            ")\n"
        )
        new, warnings = self.migrate(source)
        self.assertEqual(new, source.replace("twisted.mail.smtp", "mailclient.smtp"))
        self.assertEqual(warnings, [])

    def test_backslashContinuation(self) -> None:
        source = "from twisted.mail.smtp \\\n    import sendmail\nfrom \\\n twisted . mail . relay import SMTPRelayer\n"
        new, _ = self.migrate(source)
        self.assertEqual(new, "from mailclient.smtp \\\n    import sendmail\n"
                              "from \\\n mailclient.relay import SMTPRelayer\n")

    def test_relayAndRelaymanager(self) -> None:
        source = (
            "from twisted.mail.relay import ESMTPRelayer\n"
            "from twisted.mail.relaymanager import SmartHostESMTPRelayingManager, Queue\n"
            "from twisted.mail.interfaces import IClientAuthentication\n"
        )
        new, warnings = self.migrate(source)
        self.assertEqual(new, (
            "from mailclient.relay import ESMTPRelayer\n"
            "from mailclient.relaymanager import SmartHostESMTPRelayingManager, Queue\n"
            "from mailclient.interfaces import IClientAuthentication\n"
        ))
        self.assertEqual(warnings, [])

    def test_serverNamesUntouched(self) -> None:
        source = (
            "from twisted.mail.smtp import ESMTP, SMTPFactory\n"
            "from twisted.mail.relay import DomainQueuer\n"
            "from twisted.mail.interfaces import IMessageDelivery\n"
        )
        new, warnings = self.migrate(source)
        self.assertEqual(new, source)
        self.assertEqual([line for line, _ in warnings], [1, 1, 2, 3])
        self.assertIn("twisted.mail.smtp.ESMTP is not provided", warnings[0][1])
        self.assertIn("twisted.mail.relay.DomainQueuer", warnings[2][1])
        self.assertFalse(migrateSource(source).changed)

    def test_mixedFromImportSplit(self) -> None:
        source = "from twisted.mail.smtp import SMTPClient, ESMTP, quoteaddr\nx = 1\n"
        new, warnings = self.migrate(source)
        self.assertEqual(new, (
            "from mailclient.smtp import SMTPClient, quoteaddr\n"
            "from twisted.mail.smtp import ESMTP\n"
            "x = 1\n"
        ))
        self.assertEqual(len(warnings), 1)
        self.assertIn("ESMTP", warnings[0][1])

    def test_mixedMultilineKeepsComments(self) -> None:
        source = (
            "def f():\n"
            "    from twisted.mail.smtp import (\n"
            "        # the lot\n"
            "        SMTPClient,   # base\n"
            "        IMessageDelivery,  # server\n"
            "    )\n"
        )
        new, _ = self.migrate(source)
        self.assertEqual(new, (
            "def f():\n"
            "    # the lot\n"
            "    from mailclient.smtp import (\n"
            "        SMTPClient,  # base\n"
            "    )\n"
            "    from twisted.mail.smtp import (\n"
            "        IMessageDelivery,  # server\n"
            "    )\n"
        ))

    def test_mixedOnCompoundLine(self) -> None:
        source = "if True: from twisted.mail.smtp import SMTPFactory, sendmail\n"
        new, _ = self.migrate(source)
        self.assertEqual(new, "if True: from mailclient.smtp import sendmail; "
                              "from twisted.mail.smtp import SMTPFactory\n")

    def test_starImportUntouched(self) -> None:
        source = "from twisted.mail.smtp import *\n"
        new, warnings = self.migrate(source)
        self.assertEqual(new, source)
        self.assertIn("import *", warnings[0][1])

    def test_fromPackage(self) -> None:
        source = (
            "from twisted.mail import smtp, relaymanager as rm\n"
            "d = smtp.sendmail('h', 'a@b', ['c@d'], b'x')\n"
            "q = rm.Queue('/q')\n"
        )
        new, warnings = self.migrate(source)
        self.assertEqual(new, source.replace("from twisted.mail import", "from mailclient import"))
        self.assertEqual(warnings, [])

    def test_fromPackageServerUse(self) -> None:
        """
        A module imported whole and used for a server-side name stays
        Twisted's; other modules of the same statement move.
        """
        source = (
            "from twisted.mail import smtp, relay, imap4\n"
            "f = smtp.SMTPFactory()\n"
            "r = relay.SMTPRelayer\n"
        )
        new, warnings = self.migrate(source)
        self.assertEqual(new, (
            "from mailclient import relay\n"
            "from twisted.mail import smtp, imap4\n"
            "f = smtp.SMTPFactory()\n"
            "r = relay.SMTPRelayer\n"
        ))
        self.assertEqual(len(warnings), 1)
        self.assertIn("SMTPFactory", warnings[0][1])

    def test_importDotted(self) -> None:
        source = (
            "import sys, twisted.mail.smtp\n"
            "class C(twisted.mail.smtp.SMTPClient):\n"
            "    f = twisted.mail.smtp.quoteaddr  # note\n"
            "m = twisted.mail.smtp\n"
        )
        new, warnings = self.migrate(source)
        self.assertEqual(new, (
            "import sys, mailclient.smtp\n"
            "class C(mailclient.smtp.SMTPClient):\n"
            "    f = mailclient.smtp.quoteaddr  # note\n"
            "m = mailclient.smtp\n"
        ))
        self.assertEqual(warnings, [])

    def test_importDottedWithServerUse(self) -> None:
        """
        When the module is also used for a server-side name, Twisted's import
        stays for it and mailclient's is added for the rest.
        """
        source = (
            "import twisted.mail.smtp\n"
            "a = twisted.mail.smtp.ESMTP\n"
            "b = twisted.mail.smtp.sendmail\n"
        )
        new, warnings = self.migrate(source)
        self.assertEqual(new, (
            "import twisted.mail.smtp, mailclient.smtp\n"
            "a = twisted.mail.smtp.ESMTP\n"
            "b = mailclient.smtp.sendmail\n"
        ))
        self.assertEqual(len(warnings), 1)
        self.assertIn("ESMTP", warnings[0][1])

    def test_importAs(self) -> None:
        source = "import twisted.mail.smtp as smtp\nsmtp.sendmail\n"
        new, _ = self.migrate(source)
        self.assertEqual(new, "import mailclient.smtp as smtp\nsmtp.sendmail\n")
        server = "import twisted.mail.smtp as smtp\nsmtp.ESMTP\n"
        new, warnings = self.migrate(server)
        self.assertEqual(new, server)
        self.assertEqual(len(warnings), 1)

    def test_twistedNameStillUsed(self) -> None:
        """
        C{import twisted.mail.smtp} bound C{twisted}; if the file relies on
        that for something else, the rewrite says so.
        """
        source = "import twisted.mail.smtp\ntwisted.internet.reactor.run()\n"
        new, warnings = self.migrate(source)
        self.assertEqual(new, "import mailclient.smtp\ntwisted.internet.reactor.run()\n")
        self.assertIn("add 'import twisted'", warnings[0][1])
        other = "import twisted.internet.reactor\nimport twisted.mail.smtp\ntwisted.internet.reactor.run()\n"
        self.assertEqual(self.migrate(other)[1], [])

    def test_nonASCIIColumns(self) -> None:
        """
        C{ast} columns count UTF-8 bytes; the rewrite counts characters.
        """
        source = (
            "import twisted.mail.smtp\n"
            "x = ('é€😀', twisted.mail.smtp.quoteaddr('é@x'))  # ü\n"
        )
        new, _ = self.migrate(source)
        self.assertEqual(new, source.replace("twisted.mail.smtp", "mailclient.smtp"))

    def test_crlfKept(self) -> None:
        source = ("from twisted.mail.smtp import (\r\n    SMTPClient,\r\n    ESMTP,\r\n)\r\n"
                  "import twisted.mail.smtp\r\ny = twisted.mail.smtp.SUCCESS\r\n")
        new, _ = self.migrate(source)
        self.assertNotIn("\n", new.replace("\r\n", ""))
        self.assertIn("from mailclient.smtp import (\r\n    SMTPClient,\r\n)\r\n", new)
        self.assertIn("y = mailclient.smtp.SUCCESS\r\n", new)

    def test_stringsWarned(self) -> None:
        source = "patch('twisted.mail.smtp.sendmail')\n"
        new, warnings = self.migrate(source)
        self.assertEqual(new, source)
        self.assertEqual(warnings, [(1, "string mentions twisted.mail.smtp; not rewritten")])

    def test_syntaxError(self) -> None:
        result = migrateSource("from twisted.mail.smtp import (\n")
        self.assertFalse(result.changed)
        self.assertIn("cannot parse", result.warnings[0][1])

    def test_unrelatedUntouched(self) -> None:
        source = (
            "from twisted.mail import imap4\n"
            "from twisted.internet import reactor\n"
            "import twisted.mail.pop3\n"
            "from . import smtp\n"
            "from .smtp import sendmail\n"
        )
        self.assertEqual(self.migrate(source), (source, []))

    def test_rewrittenCodeUsesMailclient(self) -> None:
        """
        The rewritten imports bind mailclient's objects.
        """
        source = (
            "from twisted.mail.smtp import ESMTPSenderFactory, SMTPClientError\n"
            "from twisted.mail import relaymanager\n"
            "import twisted.mail.relay\n"
            "result = (ESMTPSenderFactory, SMTPClientError, relaymanager.Queue,\n"
            "          twisted.mail.relay.ESMTPRelayer)\n"
        )
        namespace: Dict[str, object] = {}
        exec(compile(migrateSource(source).source, "<migrated>", "exec"), namespace)
        self.assertEqual(namespace["result"], (
            mailclient.smtp.ESMTPSenderFactory, mailclient.smtp.SMTPClientError,
            mailclient.relaymanager.Queue, mailclient.relay.ESMTPRelayer))


class ProvidedNamesTests(SynchronousTestCase):
    """
    The rewriter's list of names (kept static so that it imports nothing) is
    the public surface of mailclient's modules.
    """

    def test_provided(self) -> None:
        # DNSNAME is provided (lazily) but, as in Twisted, not in __all__.
        self.assertEqual(PROVIDED["twisted.mail.smtp"], set(mailclient.smtp.__all__) | {"DNSNAME"})
        self.assertEqual(PROVIDED["twisted.mail.relay"], set(mailclient.relay.__all__))
        self.assertEqual(PROVIDED["twisted.mail.relaymanager"],
                         set(mailclient.relaymanager.__all__))
        for name in PROVIDED["twisted.mail.interfaces"]:
            self.assertIn(name, mailclient.interfaces.__all__)
        for twisted, (ours, _) in MODULES.items():
            self.assertEqual(twisted.replace("twisted.mail", "mailclient"), ours)


class MigratePathsTests(SynchronousTestCase):
    """
    L{migratePaths} and C{mailclient migrate [--write] PATH...}.
    """

    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(self._rmtree)
        self.pkg = os.path.join(self.tmp, "app")
        os.makedirs(os.path.join(self.pkg, ".hidden"))
        self.files = {
            "mail.py": b"from twisted.mail.smtp import sendmail\n",
            "server.py": b"from twisted.mail.smtp import ESMTP\n",
            "plain.py": b"import os\n",
            "latin.py": (b"# -*- coding: latin-1 -*-\n"
                         b"s = '\xe9'\nfrom twisted.mail.smtp import quoteaddr\n"),
            ".hidden/skipped.py": b"from twisted.mail.smtp import sendmail\n",
            "notes.txt": b"from twisted.mail.smtp import sendmail\n",
        }
        for name, data in self.files.items():
            with open(os.path.join(self.pkg, name), "wb") as f:
                f.write(data)

    def _rmtree(self) -> None:
        import shutil

        shutil.rmtree(self.tmp)

    def read(self, name: str) -> bytes:
        with open(os.path.join(self.pkg, name), "rb") as f:
            return f.read()

    def run_(self, *paths: str, write: bool = False) -> Tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = migratePaths(list(paths), write, out, err)
        return code, out.getvalue(), err.getvalue()

    def test_diff(self) -> None:
        code, out, err = self.run_(self.pkg)
        self.assertEqual(code, 1)
        self.assertIn("-from twisted.mail.smtp import sendmail\n"
                      "+from mailclient.smtp import sendmail\n", out)
        self.assertIn("+from mailclient.smtp import quoteaddr\n", out)
        self.assertIn("/app/mail.py\n", out)
        self.assertNotIn("skipped.py", out)
        self.assertNotIn("notes.txt", out)
        self.assertIn("server.py:1: warning: twisted.mail.smtp.ESMTP", err)
        for name, data in self.files.items():
            self.assertEqual(self.read(name), data, "%s was modified" % (name,))

    def test_write(self) -> None:
        code, out, err = self.run_(self.pkg, write=True)
        self.assertEqual((code, out), (0, ""))
        self.assertEqual(self.read("mail.py"), b"from mailclient.smtp import sendmail\n")
        self.assertEqual(self.read("latin.py"), (
            b"# -*- coding: latin-1 -*-\n"
            b"s = '\xe9'\nfrom mailclient.smtp import quoteaddr\n"))
        self.assertEqual(self.read("server.py"), self.files["server.py"])
        self.assertEqual(self.read(".hidden/skipped.py"), self.files[".hidden/skipped.py"])
        self.assertIn("rewrote", err)
        self.assertEqual(self.run_(self.pkg)[0], 0)

    def test_nothingToDo(self) -> None:
        self.assertEqual(self.run_(os.path.join(self.pkg, "plain.py")), (0, "", ""))

    def test_missingPath(self) -> None:
        code, _, err = self.run_(os.path.join(self.tmp, "nonexistent.py"))
        self.assertEqual(code, 2)
        self.assertIn("cannot read", err)

    def test_command(self) -> None:
        """
        C{mailclient migrate} exits with L{migratePaths}'s code.
        """
        target = os.path.join(self.pkg, "mail.py")
        stdout = sys.stdout
        sys.stdout = io.StringIO()
        try:
            with self.assertRaises(SystemExit) as caught:
                _cli.main(["migrate", target])
            printed = sys.stdout.getvalue()
        finally:
            sys.stdout = stdout
        self.assertEqual(caught.exception.code, 1)
        self.assertIn("+from mailclient.smtp import sendmail", printed)
        with self.assertRaises(SystemExit) as caught:
            _cli.main(["migrate", "--write", target])
        self.assertEqual(caught.exception.code, 0)
        self.assertEqual(self.read("mail.py"), b"from mailclient.smtp import sendmail\n")

    def test_pythonDashM(self) -> None:
        """
        C{python -m mailclient migrate} works from a shell.
        """
        env = dict(os.environ, PYTHONPATH=ROOT)
        result = subprocess.run(
            [sys.executable, "-m", "mailclient", "migrate", os.path.join(self.pkg, "mail.py")],
            capture_output=True, env=env, timeout=60)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn(b"+from mailclient.smtp import sendmail", result.stdout)
