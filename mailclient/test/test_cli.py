"""
Tests for the C{mailclient} command: C{send} (L{mailclient._commands.main._send}),
C{demo} (L{mailclient._commands.demo.runDemo}) and C{sink} (in a subprocess).

C{send} runs in-process against an L{SMTPTestServer} on a loopback port of
the test's reactor, with the server's CA in a temporary file (C{--cafile})
so certificates are verified as they would be in production.
"""

from __future__ import annotations

import base64
import io
import mailbox
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

import mailclient
from mailclient._commands import main as _cli
from mailclient._commands.main import (
    EX_FAILED,
    EX_OK,
    EX_TEMPFAIL,
    EX_USAGE,
    PASSWORD_ENV,
    _parser,
    _send,
)
from mailclient._commands.demo import DEMO_PASSWORD, DEMO_USER, redactTranscript, runDemo
from mailclient.smtp import sendmail
from mailclient.testing import Delay, SMTPTestServer

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

NO_TLS = ["PIPELINING", "8BITMIME"]


def secrets(user: str, password: str) -> List[str]:
    """
    The password and every base64 form a SASL exchange could carry it in.
    """
    u, p = user.encode(), password.encode()
    forms = [p, b"\0" + u + b"\0" + p, u + b"\0" + p]
    out = [password]
    for form in forms:
        out.append(base64.b64encode(form).decode())
        # The same bytes at the other two alignments inside a longer blob.
        for pad in (b"\0", b"\0\0"):
            out.append(base64.b64encode(pad + form).decode()[4:-4])
    return [s for s in out if len(s) >= 8]


def summary(out: str) -> List[Tuple[str, str]]:
    """
    The (status, address) of each summary line.
    """
    return [tuple(line.split()[:2]) for line in out.splitlines()]  # type: ignore[misc]


class CLITestCase(unittest.TestCase):
    """
    Run C{mailclient send} in-process against loopback servers.
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

    def writeFile(self, name: str, data: bytes) -> str:
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

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


class SendTests(CLITestCase):
    """
    Delivery, per-recipient summaries and exit codes.
    """

    @defer.inlineCallbacks
    def test_starttls(self) -> Any:
        """
        With C{--starttls} and a trusted CA the message is delivered over TLS;
        the exit code is 0 and there is one C{OK} line per recipient.
        """
        server = self.startServer()
        code, out, err = yield self.send(server, "bob@example.com", "carol@example.com")
        self.assertEqual(code, EX_OK, out + err)
        self.assertEqual(summary(out), [("OK", "bob@example.com"), ("OK", "carol@example.com")])
        self.assertIn(" 250 ", out.splitlines()[0])
        [message] = server.messages
        self.assertEqual(message.rcptTo, [b"bob@example.com", b"carol@example.com"])
        self.assertEqual(message.data, MESSAGE_CRLF)
        self.assertTrue(server.sessions[0].tls)
        self.assertEqual(err, "")

    @defer.inlineCallbacks
    def test_opportunisticTLS(self) -> Any:
        """
        By default STARTTLS is used when offered.
        """
        server = self.startServer()
        code, out, err = yield self.send(server, "bob@example.com",
                                         tls=self.tlsArgs(server, mode=None))
        self.assertEqual(code, EX_OK, out + err)
        self.assertTrue(server.sessions[0].tls)
        self.assertEqual(len(server.messages), 1)

    @defer.inlineCallbacks
    def test_opportunisticTLSVerifies(self) -> Any:
        """
        By default the certificate must verify: an untrusted one is a
        failure, not a reason to fall back to cleartext.
        """
        server = self.startServer()
        code, out, err = yield self.send(server, "bob@example.com", tls=[])
        self.assertEqual(code, EX_FAILED, out + err)
        self.assertIn("FAILED", out)
        self.assertEqual(server.messages, [])
        self.assertNotIn(b"MAIL FROM:<alice@example.com>", server.sessions[0].commands)

    @defer.inlineCallbacks
    def test_wrongTLSName(self) -> Any:
        """
        A certificate for another name is refused.
        """
        server = self.startServer()
        code, out, err = yield self.send(
            server, "bob@example.com", tls=self.tlsArgs(server, name="mail.example.org"))
        self.assertEqual(code, EX_FAILED, out + err)
        self.assertEqual(server.messages, [])

    @defer.inlineCallbacks
    def test_starttlsRequired(self) -> Any:
        """
        C{--starttls} fails if the server does not offer STARTTLS, before
        anything of the message is sent.
        """
        server = self.startServer(extensions=NO_TLS)
        code, out, err = yield self.send(server, "bob@example.com")
        self.assertEqual(code, EX_FAILED, out + err)
        self.assertIn("FAILED", out)
        self.assertEqual(server.messages, [])
        self.assertFalse([c for c in server.sessions[0].commands if c.startswith(b"MAIL")])

    @defer.inlineCallbacks
    def test_noTLS(self) -> Any:
        """
        C{--no-tls} sends in cleartext even if STARTTLS is offered.
        """
        server = self.startServer()
        code, out, err = yield self.send(server, "bob@example.com", tls=["--no-tls"])
        self.assertEqual(code, EX_OK, out + err)
        self.assertFalse(server.sessions[0].tls)
        self.assertNotIn(b"STARTTLS", server.sessions[0].commands)
        self.assertEqual(server.messages[0].data, MESSAGE_CRLF)

    @defer.inlineCallbacks
    def test_implicitTLS(self) -> Any:
        """
        C{--tls} speaks TLS from the first byte (SMTPS) and does not use
        STARTTLS on top.
        """
        server = SMTPTestServer()
        server.reactor = reactor  # type: ignore[assignment]
        port = reactor.listenSSL(  # type: ignore[attr-defined]
            0, server, server.tlsOptions, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(server.stopListening)
        code, out, err = yield self.send(server, "bob@example.com",
                                         tls=self.tlsArgs(server, mode="--tls"),
                                         port=port.getHost().port)
        self.assertEqual(code, EX_OK, out + err)
        # The listener only speaks TLS, so the message got there over TLS.
        self.assertEqual(server.messages[0].data, MESSAGE_CRLF)
        self.assertNotIn(b"STARTTLS", server.sessions[0].commands)

    @defer.inlineCallbacks
    def test_recipientRefused(self) -> Any:
        """
        A refused recipient makes the exit code 1; each recipient gets its
        own line with the server's reply.
        """
        server = self.startServer()
        server.rcptReply("carol@example.com", 550, b"5.1.1 no such user")
        code, out, err = yield self.send(server, "bob@example.com", "carol@example.com")
        self.assertEqual(code, EX_FAILED, out + err)
        self.assertEqual(summary(out), [("OK", "bob@example.com"),
                                        ("FAILED", "carol@example.com")])
        self.assertIn("550 5.1.1 no such user", out.splitlines()[1])
        self.assertEqual(server.messages[0].rcptTo, [b"bob@example.com"])

    @defer.inlineCallbacks
    def test_allRecipientsRefused(self) -> Any:
        """
        If every recipient is refused nothing is sent and the exit code is 1.
        """
        server = self.startServer()
        server.rcptReply("bob@example.com", 550, b"5.1.1 no such user")
        server.rcptReply("carol@example.com", 553, b"5.1.3 bad address")
        code, out, err = yield self.send(server, "bob@example.com", "carol@example.com")
        self.assertEqual(code, EX_FAILED, out + err)
        self.assertEqual(summary(out), [("FAILED", "bob@example.com"),
                                        ("FAILED", "carol@example.com")])
        self.assertEqual(server.messages, [])

    @defer.inlineCallbacks
    def test_recipientsTemporarilyRefused(self) -> Any:
        """
        If every recipient gets a 4xx reply the exit code is 75.
        """
        server = self.startServer()
        server.rcptReply("bob@example.com", 450, b"4.2.1 mailbox busy")
        code, out, err = yield self.send(server, "bob@example.com")
        self.assertEqual(code, EX_TEMPFAIL, out + err)
        self.assertEqual(summary(out), [("FAILED", "bob@example.com")])
        self.assertIn("450", out)

    @defer.inlineCallbacks
    def test_temporaryFailureAtMail(self) -> Any:
        """
        A 4xx reply to MAIL gives exit code 75 and still one summary line per
        recipient, carrying the server's reply.
        """
        server = self.startServer()
        server.script("MAIL", 451, b"4.3.0 try again later")
        code, out, err = yield self.send(server, "bob@example.com", "carol@example.com")
        self.assertEqual(code, EX_TEMPFAIL, out + err)
        self.assertEqual(server.messages, [])
        self.assertEqual(summary(out), [("FAILED", "bob@example.com"),
                                        ("FAILED", "carol@example.com")])
        self.assertIn("451 4.3.0 try again later", out)

    @defer.inlineCallbacks
    def test_timeout(self) -> Any:
        """
        A reply slower than C{--timeout} fails the delivery with the
        temporary-failure exit code.
        """
        server = self.startServer()
        server.script("MAIL", Delay(30))
        code, out, err = yield self.send(server, "bob@example.com", "--timeout", "0.5")
        self.assertEqual(code, EX_TEMPFAIL, out + err)
        self.assertIn("FAILED", out)
        self.assertEqual(server.messages, [])

    @defer.inlineCallbacks
    def test_leadingDotNoFinalNewline(self) -> Any:
        """
        Lines starting with a dot and a missing final newline arrive intact
        (dot-stuffed on the wire, CRLF added at the end).
        """
        server = self.startServer()
        body = b"Subject: dots\n\n.leading dot\n..two dots\n.\nlast line"
        code, out, err = yield self.send(server, "bob@example.com", message=body)
        self.assertEqual(code, EX_OK, out + err)
        self.assertEqual(
            server.messages[0].data,
            b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nlast line\r\n")

    @defer.inlineCallbacks
    def test_stdin(self) -> Any:
        """
        C{-f -} (the default) reads the message from standard input.
        """
        server = self.startServer()
        self.patch(sys, "stdin", io.TextIOWrapper(io.BytesIO(MESSAGE)))
        args = _parser().parse_args(
            ["send", "--host", "127.0.0.1", "--port", str(server.portNumber),
             "--no-tls", "bob@example.com"])
        self.assertEqual(args.file, "-")
        out, err = io.StringIO(), io.StringIO()
        code = yield _send(reactor, args, out, err)
        self.assertEqual(code, EX_OK, out.getvalue() + err.getvalue())
        self.assertEqual(server.messages[0].data, MESSAGE_CRLF)

    @defer.inlineCallbacks
    def test_progress(self) -> Any:
        """
        For a large message file progress is reported on stderr (the step is
        made small here so the test stays fast); stdout has only the summary.
        """
        self.patch(_cli._Progress, "STEP", 4096)
        server = self.startServer()
        big = MESSAGE + b"".join(b"line %05d of a long message\n" % i for i in range(1000))
        code, out, err = yield self.send(server, "bob@example.com", message=big)
        self.assertEqual(code, EX_OK, out + err)
        self.assertIn("sent ", err)
        self.assertEqual(summary(out), [("OK", "bob@example.com")])
        self.assertEqual(server.messages[0].data, big.replace(b"\n", b"\r\n"))


class UsageTests(CLITestCase):
    """
    Mistakes on the command line exit with 64 and a message, sending nothing.
    """

    @defer.inlineCallbacks
    def test_noRecipients(self) -> Any:
        server = self.startServer()
        code, out, err = yield self.send(server)
        self.assertEqual(code, EX_USAGE)
        self.assertIn("no recipients", err)
        self.assertEqual(server.sessions, [])

    @defer.inlineCallbacks
    def test_userWithoutPassword(self) -> Any:
        """
        C{--user} with neither C{$MAILCLIENT_PASSWORD} nor C{--password-file}
        is a usage error that names both, reported on C{err}; no connection
        is made.
        """
        server = self.startServer(credentials={USER: PASSWORD}, requireAuth=True)
        try:
            code, out, err = yield self.send(server, "--user", USER, "bob@example.com")
        except SystemExit as e:
            self.fail("SystemExit(%r) escaped instead of exit code %d and a "
                      "message on err" % (e.code, EX_USAGE))
        self.assertEqual(code, EX_USAGE)
        self.assertIn(PASSWORD_ENV, err)
        self.assertIn("--password-file", err)
        self.assertEqual(server.sessions, [])

    @defer.inlineCallbacks
    def test_missingPasswordFile(self) -> Any:
        """
        An unreadable C{--password-file} is reported on C{err}, not as a
        traceback.
        """
        server = self.startServer(credentials={USER: PASSWORD}, requireAuth=True)
        missing = os.path.join(self.tmp, "no-such-file")
        try:
            code, out, err = yield self.send(
                server, "--user", USER, "--password-file", missing, "bob@example.com")
        except OSError as e:
            self.fail("%r escaped instead of exit code %d and a message" % (e, EX_USAGE))
        self.assertEqual(code, EX_USAGE)
        self.assertIn(missing, err)
        self.assertEqual(server.sessions, [])

    @defer.inlineCallbacks
    def test_missingMessageFile(self) -> Any:
        """
        A message file that cannot be read is reported on C{err}.
        """
        missing = os.path.join(self.tmp, "no-such-message")
        args = _parser().parse_args(["send", "-f", missing, "--port", "1", "x@example.com"])
        out, err = io.StringIO(), io.StringIO()
        try:
            code = yield _send(reactor, args, out, err)
        except OSError as e:
            self.fail("%r escaped instead of exit code %d and a message" % (e, EX_USAGE))
        self.assertEqual(code, EX_USAGE)
        self.assertIn(missing, err.getvalue())

    def test_badArgumentsExit64(self) -> None:
        """
        argparse's own errors (unknown option, conflicting TLS modes) exit
        with 64 too, not argparse's default of 2.
        """
        self.patch(sys, "stderr", io.StringIO())
        for argv in (["send", "--bogus"], ["send", "--tls", "--no-tls", "x@example.com"],
                     ["send", "--port", "smtp"]):
            with self.assertRaises(SystemExit) as caught:
                _parser().parse_args(argv)
            self.assertEqual(caught.exception.code, EX_USAGE, argv)

    def test_noPasswordOption(self) -> None:
        """
        There is no way to give the password itself on the command line.
        """
        self.patch(sys, "stderr", io.StringIO())
        for option in ("--password", "-p", "--pass"):
            self.assertRaises(SystemExit, _parser().parse_args,
                              ["send", option, PASSWORD, "x@example.com"])


class HeaderTests(CLITestCase):
    """
    C{-t} and the sender taken from the header.
    """

    BCC_MESSAGE = (
        b"From: Alice <alice@example.com>\n"
        b"To: Bob <bob@example.com>,\n"
        b"  carol@example.com\n"
        b"Bcc: eve@example.com,\n"
        b"  frank@example.com,\n"
        b"\tgrace@example.com\n"
        b"Cc: dave@example.com\n"
        b"BCC: heidi@example.com\n"
        b"Subject: secret\n"
        b"\n"
        b"Bcc: this line is body, not header\n"
    )

    def test_headerAddressForms(self) -> None:
        """
        Quoted display names with commas, domain literals (which
        C{email.utils.parseaddr} drops since Python 3.13) and empty groups
        are read as RFC 5322 says; nothing is silently lost.
        """
        header = (
            b'From: "Doe, Jane" <jane@example.com>\r\n'
            b"To: bob@[127.0.0.1], Carol <carol@example.org>\r\n"
            b"Cc: undisclosed-recipients:;\r\n"
            b"Bcc: team: dave@example.net, erin@example.net;\r\n\r\n"
        )
        self.assertEqual(
            _cli._recipientsFromHeaders(header),
            ["bob@[127.0.0.1]", "carol@example.org", "dave@example.net", "erin@example.net"],
        )
        self.assertEqual(_cli._senderFromHeaders(header), "jane@example.com")
        self.assertIsNone(_cli._senderFromHeaders(b"To: a@b.example\r\n\r\n"))

    @defer.inlineCallbacks
    def test_recipientsFromHeaders(self) -> Any:
        """
        C{-t} sends to every To, Cc and Bcc address (folded or not) and
        removes the Bcc fields, continuation lines included, and nothing
        else.
        """
        server = self.startServer()
        code, out, err = yield self.send(server, "-t", message=self.BCC_MESSAGE)
        self.assertEqual(code, EX_OK, out + err)
        expected = [b"bob@example.com", b"carol@example.com", b"dave@example.com",
                    b"eve@example.com", b"frank@example.com", b"grace@example.com",
                    b"heidi@example.com"]
        [message] = server.messages
        self.assertEqual(sorted(message.rcptTo), expected)
        self.assertEqual(sorted(a.encode() for _, a in summary(out)), expected)
        self.assertEqual(
            message.data,
            b"From: Alice <alice@example.com>\r\n"
            b"To: Bob <bob@example.com>,\r\n"
            b"  carol@example.com\r\n"
            b"Cc: dave@example.com\r\n"
            b"Subject: secret\r\n"
            b"\r\n"
            b"Bcc: this line is body, not header\r\n")

    @defer.inlineCallbacks
    def test_recipientsFromHeadersAndArguments(self) -> Any:
        """
        Addresses given as arguments are added to those of the header.
        """
        server = self.startServer()
        code, out, err = yield self.send(server, "-t", "zoe@example.com")
        self.assertEqual(code, EX_OK, out + err)
        self.assertEqual(sorted(server.messages[0].rcptTo),
                         [b"bob@example.com", b"zoe@example.com"])

    @defer.inlineCallbacks
    def test_duplicateRecipients(self) -> Any:
        """
        An address in several fields (or also given as an argument) is sent
        to once, with one summary line.
        """
        server = self.startServer()
        message = (b"From: alice@example.com\nTo: bob@example.com\n"
                   b"Cc: Bob <bob@example.com>\nBcc: bob@example.com\n\nHi.\n")
        code, out, err = yield self.send(server, "-t", "bob@example.com", message=message)
        self.assertEqual(code, EX_OK, out + err)
        self.assertEqual(server.messages[0].rcptTo, [b"bob@example.com"])
        self.assertEqual(summary(out), [("OK", "bob@example.com")])

    @defer.inlineCallbacks
    def test_bccKeptWithoutT(self) -> Any:
        """
        Without C{-t} the message is sent as it is.
        """
        server = self.startServer()
        code, out, err = yield self.send(server, "bob@example.com",
                                         message=self.BCC_MESSAGE)
        self.assertEqual(code, EX_OK, out + err)
        self.assertEqual(server.messages[0].rcptTo, [b"bob@example.com"])
        self.assertEqual(server.messages[0].data, self.BCC_MESSAGE.replace(b"\n", b"\r\n"))

    @defer.inlineCallbacks
    def test_tWithoutRecipientFields(self) -> Any:
        """
        C{-t} on a message without To, Cc or Bcc is a usage error.
        """
        server = self.startServer()
        code, out, err = yield self.send(server, "-t", message=b"Subject: x\n\nHi.\n")
        self.assertEqual(code, EX_USAGE)
        self.assertIn("no recipients", err)
        self.assertEqual(server.sessions, [])

    @defer.inlineCallbacks
    def test_senderFromHeader(self) -> Any:
        """
        Without C{--from} the envelope sender is the From address.
        """
        server = self.startServer()
        code, out, err = yield self.send(server, "bob@example.com")
        self.assertEqual(code, EX_OK, out + err)
        self.assertEqual(server.messages[0].mailFrom, b"alice@example.com")

    @defer.inlineCallbacks
    def test_senderOption(self) -> Any:
        """
        C{--from} sets the envelope sender; the header is left alone.
        """
        server = self.startServer()
        code, out, err = yield self.send(server, "--from", "bounces@example.com",
                                         "bob@example.com")
        self.assertEqual(code, EX_OK, out + err)
        self.assertEqual(server.messages[0].mailFrom, b"bounces@example.com")
        self.assertEqual(server.messages[0].data, MESSAGE_CRLF)


class AuthTests(CLITestCase):
    """
    C{--user}: the password comes from the environment or a file.
    """

    def authServer(self, mechanisms: str = "PLAIN LOGIN CRAM-MD5") -> SMTPTestServer:
        return self.startServer(
            credentials={USER: PASSWORD}, requireAuth=True, requireTLS=True,
            extensions=["PIPELINING", "8BITMIME", "STARTTLS", "AUTH " + mechanisms])

    def assertNoSecret(self, *outputs: str) -> None:
        for text in outputs:
            for secret in secrets(USER, PASSWORD):
                self.assertNotIn(secret, text)

    @defer.inlineCallbacks
    def test_passwordFromEnvironment(self) -> Any:
        self.setEnv(PASSWORD_ENV, PASSWORD)
        server = self.authServer()
        code, out, err = yield self.send(server, "--user", USER, "bob@example.com")
        self.assertEqual(code, EX_OK, out + err)
        self.assertEqual(server.sessions[0].authenticated, USER.encode())
        self.assertEqual(len(server.messages), 1)
        self.assertNoSecret(out, err)

    @defer.inlineCallbacks
    def test_passwordFromOtherVariable(self) -> Any:
        """
        C{--password-env} names another variable.
        """
        self.setEnv("MAILCLIENT_TEST_SECRET", PASSWORD)
        server = self.authServer()
        code, out, err = yield self.send(
            server, "--user", USER, "--password-env", "MAILCLIENT_TEST_SECRET",
            "bob@example.com")
        self.assertEqual(code, EX_OK, out + err)
        self.assertEqual(server.sessions[0].authenticated, USER.encode())

    @defer.inlineCallbacks
    def test_passwordFromFile(self) -> Any:
        """
        C{--password-file}: the first line of the file (its line ending is
        not part of the password); it wins over the environment.
        """
        self.setEnv(PASSWORD_ENV, "not the password")
        path = self.writeFile("password", PASSWORD.encode() + b"\n")
        server = self.authServer()
        code, out, err = yield self.send(
            server, "--user", USER, "--password-file", path, "bob@example.com")
        self.assertEqual(code, EX_OK, out + err)
        self.assertEqual(server.sessions[0].authenticated, USER.encode())

    @defer.inlineCallbacks
    def test_wrongPassword(self) -> Any:
        """
        A refused password is a failure (1) and is not printed.
        """
        self.setEnv(PASSWORD_ENV, PASSWORD + "x")
        server = self.authServer("PLAIN")
        code, out, err = yield self.send(server, "--user", USER, "-v", "bob@example.com")
        self.assertEqual(code, EX_FAILED, out + err)
        self.assertEqual(server.messages, [])
        self.assertIsNone(server.sessions[0].authenticated)
        for text in (out, err):
            for secret in secrets(USER, PASSWORD + "x"):
                self.assertNotIn(secret, text)

    @defer.inlineCallbacks
    def verboseExchange(self, mechanism: str) -> Any:
        self.setEnv(PASSWORD_ENV, PASSWORD)
        server = self.authServer(mechanism)
        code, out, err = yield self.send(server, "-v", "--user", USER, "bob@example.com")
        self.assertEqual(code, EX_OK, out + err)
        self.assertEqual(server.sessions[0].authenticated, USER.encode())
        self.assertEqual(summary(out), [("OK", "bob@example.com")])
        self.assertIn("C: STARTTLS", err)
        self.assertIn("C: AUTH %s" % (mechanism,), err)
        self.assertIn("C: MAIL FROM:<alice@example.com>", err)
        self.assertIn("S: 235", err)
        self.assertNoSecret(out, err)
        return err

    @defer.inlineCallbacks
    def test_verbosePLAIN(self) -> Any:
        """
        C{-v} prints the transcript on err without the PLAIN response.
        """
        err = yield self.verboseExchange("PLAIN")
        self.assertIn("<redacted>", err)

    @defer.inlineCallbacks
    def test_verboseLOGIN(self) -> Any:
        """
        C{-v} hides both LOGIN responses.
        """
        err = yield self.verboseExchange("LOGIN")
        self.assertNotIn(base64.b64encode(USER.encode()).decode(), err)

    @defer.inlineCallbacks
    def test_verboseCRAMMD5(self) -> Any:
        yield self.verboseExchange("CRAM-MD5")

    @defer.inlineCallbacks
    def test_verboseLinesArePrefixed(self) -> Any:
        """
        Every transcript line starts with C{C: } or C{S: }, also when the
        message lacks a final newline (the end-of-data line then carries a
        CRLF of its own).
        """
        server = self.startServer()
        code, out, err = yield self.send(server, "-v", "bob@example.com",
                                         message=b"Subject: x\n\nno final newline")
        self.assertEqual(code, EX_OK, out + err)
        self.assertTrue(err)
        for line in err.splitlines():
            self.assertIn(line[:3], ("C: ", "S: "), err)


class DemoTests(unittest.TestCase):
    """
    C{mailclient demo}.
    """

    @defer.inlineCallbacks
    def test_demo(self) -> Any:
        """
        The demo delivers through STARTTLS and AUTH, prints the transcript
        and the stored message, ends with "demo OK" and fires 0; the password
        never appears.
        """
        out = io.StringIO()
        code = yield runDemo(reactor, out)
        text = out.getvalue()
        self.assertEqual(code, 0, text)
        self.assertIn("demo OK", text.splitlines()[-1])
        self.assertIn("C: STARTTLS", text)
        self.assertIn("S: 235", text)
        self.assertIn("== Message as the server stored it", text)
        self.assertIn("Subject: =?utf-8?", text)
        self.assertIn('filename="sample.bin"', text)
        self.assertIn(". A line starting with a dot", text)
        for secret in secrets(DEMO_USER, DEMO_PASSWORD):
            self.assertNotIn(secret, text)

    @defer.inlineCallbacks
    def test_demoQuiet(self) -> Any:
        """
        C{--quiet} prints only the summary.
        """
        out = io.StringIO()
        code = yield runDemo(reactor, out, True)
        self.assertEqual(code, 0)
        self.assertNotIn("Transcript", out.getvalue())
        self.assertIn("demo OK", out.getvalue())


class RedactTranscriptTests(unittest.TestCase):
    """
    L{redactTranscript} hides SASL responses in a server-side transcript.
    """

    def test_plainInitialResponse(self) -> None:
        secret = base64.b64encode(b"\0alice\0pw").decode()
        text = redactTranscript(
            "S: 250 AUTH PLAIN\nC: AUTH PLAIN %s\nS: 235 ok\nC: MAIL FROM:<a@b>" % secret)
        self.assertNotIn(secret, text)
        self.assertEqual(text.splitlines()[1], "C: AUTH PLAIN <redacted>")
        self.assertEqual(text.splitlines()[3], "C: MAIL FROM:<a@b>")

    def test_login(self) -> None:
        text = redactTranscript(
            "C: AUTH LOGIN\nS: 334 VXNlcm5hbWU6\nC: YWxpY2U=\nS: 334 UGFzc3dvcmQ6\n"
            "C: cHc=\nS: 235 ok\nC: MAIL FROM:<a@b>")
        self.assertEqual(text.splitlines(), [
            "C: AUTH LOGIN", "S: 334 VXNlcm5hbWU6", "C: <redacted>",
            "S: 334 UGFzc3dvcmQ6", "C: <redacted>", "S: 235 ok", "C: MAIL FROM:<a@b>"])

    def test_afterFailure(self) -> None:
        """
        A failed exchange ends redaction too.
        """
        text = redactTranscript(
            "C: AUTH PLAIN\nS: 334 \nC: AGFsaWNlAHB3\nS: 535 no\nC: QUIT")
        self.assertEqual(text.splitlines(), [
            "C: AUTH PLAIN", "S: 334 ", "C: <redacted>", "S: 535 no", "C: QUIT"])

    def test_nothingToRedact(self) -> None:
        transcript = "S: 220 hi\nC: EHLO x\nS: 250 ok\nC: QUIT\nS: 221 bye"
        self.assertEqual(redactTranscript(transcript), transcript)


class SinkTests(unittest.TestCase):
    """
    C{mailclient sink} in a subprocess.
    """

    if os.name != "posix":
        skip = "needs POSIX signals"

    def startSink(self, *argv: str, resetSIGINT: bool = False) -> Tuple[subprocess.Popen, int]:
        env: Dict[str, str] = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.abspath(mailclient.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(
            [root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["PYTHONUNBUFFERED"] = "1"

        def preexec() -> None:
            # A shell starting us in the background may have left SIGINT
            # ignored, which the child would inherit.
            signal.signal(signal.SIGINT, signal.SIG_DFL)

        process = subprocess.Popen(
            [sys.executable, "-m", "mailclient", "sink", "--port", "0"] + list(argv),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=self.tmp,
            preexec_fn=preexec if resetSIGINT else None)

        def cleanup() -> None:
            if process.poll() is None:
                process.kill()
                process.wait()
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()

        self.addCleanup(cleanup)
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        first = process.stdout.readline().decode() if ready else ""
        prefix = "mailclient sink listening on 127.0.0.1:"
        if not first.startswith(prefix):
            process.kill()
            _, errors = process.communicate()
            self.fail("sink did not start: %r %r" % (first, errors))
        return process, int(first[len(prefix):])

    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="mailclient-sink-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    @defer.inlineCallbacks
    def sendTo(self, port: int, body: bytes) -> Any:
        """
        Send with L{sendmail} and wait until the client connection is gone.
        """
        connectors: List[Any] = []

        class Recording:
            def __getattr__(self, name: str) -> Any:
                return getattr(reactor, name)

            def connectTCP(self, *a: Any, **kw: Any) -> Any:
                connector = reactor.connectTCP(*a, **kw)  # type: ignore[attr-defined]
                connectors.append(connector)
                return connector

        try:
            result = yield sendmail("127.0.0.1", "alice@example.com", ["bob@example.com"],
                                    body, port=port, reactor=Recording(), tls=False,
                                    retries=0, timeout=20)
        finally:
            yield self.waitFor(lambda: all(c.state == "disconnected" for c in connectors))
        return result

    @defer.inlineCallbacks
    def waitFor(self, condition: Any, seconds: float = 20) -> Any:
        for _ in range(int(seconds / 0.05)):
            if condition():
                return
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.fail("timed out waiting")

    def stop(self, process: subprocess.Popen, sig: int) -> Tuple[int, bytes, bytes]:
        process.send_signal(sig)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            self.fail("sink did not stop on signal %d: %r" % (sig, err))
        return process.returncode, out, err

    @defer.inlineCallbacks
    def test_maildir(self) -> Any:
        """
        Messages go into the Maildir; SIGTERM stops the sink with status 0.
        """
        maildir = os.path.join(self.tmp, "Maildir")
        process, port = self.startSink("--maildir", maildir)
        self.assertGreater(port, 0)
        body = b"Subject: to the sink\r\n\r\n.dot line\r\nHello.\r\n"
        numOk, _ = yield self.sendTo(port, body)
        self.assertEqual(numOk, 1)
        yield self.waitFor(lambda: len(os.listdir(os.path.join(maildir, "new"))) == 1
                           if os.path.isdir(os.path.join(maildir, "new")) else False)
        [message] = list(mailbox.Maildir(maildir, create=False))
        self.assertEqual(message["Subject"], "to the sink")
        self.assertIn(b".dot line\nHello.", message.as_bytes())
        code, out, err = self.stop(process, signal.SIGTERM)
        self.assertEqual(code, 0, err)
        self.assertIn(b"stored ", out)
        self.assertIn(b"<alice@example.com>", out)

    def test_signalRightAfterReady(self) -> None:
        """
        The "listening" line is printed only once the sink handles signals:
        a supervisor that sends SIGTERM as soon as it reads the line gets a
        clean exit (0), not a process killed by the signal (-15).
        """
        process, port = self.startSink()
        code, out, err = self.stop(process, signal.SIGTERM)
        self.assertEqual(code, 0, err)

    @defer.inlineCallbacks
    def test_printAndInterrupt(self) -> Any:
        """
        Without C{--maildir} messages are printed; SIGINT (Ctrl-C) stops the
        sink with status 0, after printing what arrived.
        """
        process, port = self.startSink(resetSIGINT=True)
        numOk, _ = yield self.sendTo(port, b"Subject: printed\r\n\r\nHello there.\r\n")
        self.assertEqual(numOk, 1)
        code, out, err = self.stop(process, signal.SIGINT)
        self.assertEqual(code, 0, err)
        self.assertIn(b"<alice@example.com>", out)
        self.assertIn(b"Subject: printed", out)
        self.assertIn(b"Hello there.", out)
        self.assertNotIn(b"Traceback", err)
