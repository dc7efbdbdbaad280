"""
Helpers of the tests of the C{mailclient} command (C{test_cli},
C{test_cli_queue}, C{test_cli_relay}): L{CLITestMixin}, which runs a
command in-process, and the exit-code tables of C{docs/cli.rst}.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
import tempfile
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from twisted.internet import defer, reactor
from twisted.trial import unittest

import mailclient
from mailclient._commands import main as _cli
from mailclient._commands.main import PASSWORD_ENV, _parser, _send
from mailclient.testing import SMTPTestServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(mailclient.__file__)))
DOCS = os.path.join(ROOT, "docs", "cli.rst")

USER = "alice"
PASSWORD = "s3cret-Pa55word"

MESSAGE = (
    b"From: Alice <alice@example.com>\n"
    b"To: bob@example.com\n"
    b"Subject: hello\n"
    b"\n"
    b"Hi Bob.\n"
)
MESSAGE_CRLF = MESSAGE.replace(b"\n", b"\r\n")


def docsTables() -> Dict[str, List[int]]:
    """
    The exit codes in the table of each section of C{docs/cli.rst}.
    """
    with open(DOCS, encoding="utf-8") as f:
        text = f.read()
    tables: Dict[str, List[int]] = {}
    sections = re.split(r"^(mailclient \w+)\n-+\n", text, flags=re.MULTILINE)
    for title, body in zip(sections[1::2], sections[2::2]):
        codes = [int(n) for n in re.findall(r"^(\d+)  +\S", body, re.MULTILINE)]
        if codes:
            tables[title] = codes
    return tables


if TYPE_CHECKING:
    _TestCase = unittest.TestCase
else:
    _TestCase = object


class CLITestMixin(_TestCase):
    """
    For a L{unittest.TestCase}: run C{mailclient} commands in-process
    against loopback servers.
    """

    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="mailclient-cli-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.setEnv(PASSWORD_ENV, None)

    def setEnv(self, name: str, value: Optional[str]) -> None:
        old = os.environ.get(name)

        def restore() -> None:
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old

        self.addCleanup(restore)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def writeFile(self, name: str, data: bytes, mode: Optional[int] = None) -> str:
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(path, mode)
        return path

    def assertOneLine(self, err: str, *expected: str) -> None:
        """
        C{err} is exactly one line, starting with C{mailclient}, holding
        each of C{expected}, and no traceback.
        """
        self.assertEqual(err.count("\n"), 1, err)
        self.assertTrue(err.endswith("\n"), err)
        self.assertTrue(err.startswith("mailclient: "), err)
        self.assertNotIn("Traceback", err)
        for text in expected:
            self.assertIn(text, err)

    def runMain(self, *argv: str, stdin: Optional[bytes] = b"") -> Tuple[int, str, str]:
        """
        Run L{main} in-process for a command line that must fail before the
        reactor starts, and return C{(code, out, err)}.
        """
        def noReactor(*a: Any, **kw: Any) -> int:
            self.fail("the reactor was started for %r" % (argv,))

        self.patch(_cli, "runReactor", noReactor)
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        self.patch(sys, "stdin", None if stdin is None else io.TextIOWrapper(io.BytesIO(stdin)))
        with self.assertRaises(SystemExit) as caught:
            _cli.main(list(argv))
        code = caught.exception.code
        self.assertIsInstance(code, int)
        return code, out.getvalue(), err.getvalue()  # type: ignore[return-value]

    def startServer(self, **config: Any) -> SMTPTestServer:
        server = SMTPTestServer(**config)
        server.listenTCP(reactor)
        self.addCleanup(server.stopListening)
        return server

    def tlsArgs(self, server: SMTPTestServer, mode: Optional[str] = "--starttls",
                name: str = "localhost") -> List[str]:
        cafile = self.writeFile("ca.pem", server.caCertificatePEM)
        return ([mode] if mode else []) + ["--cafile", cafile, "--tls-name", name]

    @defer.inlineCallbacks
    def send(self, server: SMTPTestServer, *argv: str, message: bytes = MESSAGE,
             tls: Optional[Sequence[str]] = None, port: Optional[int] = None) -> Any:
        """
        Run C{mailclient send ARGV} and return C{(code, out, err)}.

        @param tls: the TLS arguments; default C{--starttls} trusting the
            server's CA.
        """
        if tls is None:
            tls = self.tlsArgs(server)
        args = _parser().parse_args(
            ["send", "-f", self.writeFile("message.eml", message),
             "--host", "127.0.0.1",
             "--port", str(port if port is not None else server.portNumber),
             "--timeout", "20"]
            + list(tls) + list(argv)
        )
        out, err = io.StringIO(), io.StringIO()
        code = yield _send(reactor, args, out, err)
        return code, out.getvalue(), err.getvalue()
