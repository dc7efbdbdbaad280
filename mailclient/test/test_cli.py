"""
Tests for the C{mailclient} command: C{send} (L{mailclient._commands.main._send}),
C{demo} (L{mailclient._commands.demo.runDemo}), C{sink} (in a subprocess),
and the rules every subcommand keeps: every input checked before the
reactor starts, every failure one line on stderr with its exit code, no
traceback ever.

C{send} runs in-process against an L{SMTPTestServer} on a loopback port of
the test's reactor, with the server's CA in a temporary file (C{--cafile})
so certificates are verified as they would be in production.  Mistakes
found before the reactor would start run through L{main} in-process (with
the reactor runner replaced by one that fails the test); the whole command,
reactor included, runs in a subprocess.
"""

from __future__ import annotations

import argparse
import base64
import io
import mailbox
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

import mailclient
from mailclient._commands import inputs as _inputs
from mailclient._commands import main as _cli
from mailclient._commands import migrate as _migrate
from mailclient._commands.common import (
    EX_CANTCREAT,
    EX_CONFIG,
    EX_DATAERR,
    EX_NOINPUT,
    EX_NOPERM,
    EX_PROTOCOL,
    EX_SOFTWARE,
    EX_UNAVAILABLE,
    MIGRATE_EXIT_CODES,
    SEND_EXIT_CODES,
    SINK_EXIT_CODES,
    hostPort,
)
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
from mailclient.testing import Delay, SMTPTestServer, generateCertificates
from mailclient.test.helpers_cli import (
    DOCS,
    MESSAGE,
    MESSAGE_CRLF,
    PASSWORD,
    ROOT,
    USER,
    CLITestMixin,
    docsTables,
)

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


class SendTests(CLITestMixin, unittest.TestCase):
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
        self.assertEqual(out, "")
        self.assertOneLine(err, "certificate", "--cafile")
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
        self.assertOneLine(err, "certificate")
        self.assertEqual(server.messages, [])

    @defer.inlineCallbacks
    def test_starttlsRequired(self) -> Any:
        """
        C{--starttls} fails if the server does not offer STARTTLS, before
        anything of the message is sent: exit code 69 (unavailable), and no
        reply the server never sent (Twisted's invented "502").
        """
        server = self.startServer(extensions=NO_TLS)
        code, out, err = yield self.send(server, "bob@example.com")
        self.assertEqual(code, EX_UNAVAILABLE, out + err)
        self.assertEqual(out, "")
        self.assertOneLine(err, "does not offer STARTTLS")
        self.assertNotIn("502", err)
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
        self.assertOneLine(err, "1 of 2 recipients refused")
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
        self.assertOneLine(err, "refused every recipient")
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
        self.assertOneLine(err, "refused the sender <alice@example.com>: "
                                "451 4.3.0 try again later")

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
        self.assertEqual(out, "")
        self.assertOneLine(err, "timed out waiting for the reply to MAIL FROM")
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
        made small here so the test stays fast), ending with a line for the
        whole message; stdout has only the summary.
        """
        self.patch(_inputs._Progress, "STEP", 4096)
        server = self.startServer()
        big = MESSAGE + b"".join(b"line %05d of a long message\n" % i for i in range(1000))
        code, out, err = yield self.send(server, "bob@example.com", message=big)
        self.assertEqual(code, EX_OK, out + err)
        lines = err.splitlines()
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r"^sent \d+ KiB of 28 KiB$")
        self.assertEqual(lines[-1], "sent 28 KiB of 28 KiB")
        self.assertEqual(len(set(lines)), len(lines), "a progress line repeated")
        self.assertEqual(summary(out), [("OK", "bob@example.com")])
        self.assertEqual(server.messages[0].data, big.replace(b"\n", b"\r\n"))

    def test_progressLastLine(self) -> None:
        """
        L{_Progress} reports each step it passes, then, at the end of the
        file, a line for the whole of it (unless the last step was exactly
        there).
        """
        self.patch(_inputs._Progress, "STEP", 4096)
        err = io.StringIO()
        progress = _inputs._Progress(io.BytesIO(b"x" * 10000), 10000, err)  # type: ignore[arg-type]
        while progress.read(3000):
            pass
        self.assertEqual(err.getvalue().splitlines(), [
            "sent 5 KiB of 9 KiB", "sent 8 KiB of 9 KiB", "sent 9 KiB of 9 KiB"])
        err.truncate(0)
        err.seek(0)
        progress = _inputs._Progress(io.BytesIO(b"x" * 8192), 8192, err)  # type: ignore[arg-type]
        while progress.read(4096):
            pass
        self.assertEqual(err.getvalue().splitlines(), ["sent 4 KiB of 8 KiB",
                                                       "sent 8 KiB of 8 KiB"])

    @defer.inlineCallbacks
    def test_progressTotalWithoutBcc(self) -> Any:
        """
        With C{-t} the total counts what is sent, the Bcc field removed.
        """
        self.patch(_inputs._Progress, "STEP", 1024)
        server = self.startServer()
        bcc = b"Bcc: " + b", ".join(b"x%03d@example.com" % i for i in range(200)) + b"\n"
        big = bcc + MESSAGE + b"x" * 3000 + b"\n"
        code, out, err = yield self.send(server, "-t", message=big)
        self.assertEqual(code, EX_OK, out + err)
        sent = len(big) - len(bcc)
        self.assertEqual(err.splitlines()[-1], "sent %d KiB of %d KiB"
                         % (sent >> 10, sent >> 10))


class UsageTests(CLITestMixin, unittest.TestCase):
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
        traceback, with exit code 66 (no input).
        """
        server = self.startServer(credentials={USER: PASSWORD}, requireAuth=True)
        missing = os.path.join(self.tmp, "no-such-file")
        try:
            code, out, err = yield self.send(
                server, "--user", USER, "--password-file", missing, "bob@example.com")
        except OSError as e:
            self.fail("%r escaped instead of exit code %d and a message" % (e, EX_NOINPUT))
        self.assertEqual(code, EX_NOINPUT)
        self.assertOneLine(err, missing, "No such file")
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
            self.fail("%r escaped instead of exit code %d and a message" % (e, EX_NOINPUT))
        self.assertEqual(code, EX_NOINPUT)
        self.assertOneLine(err.getvalue(), missing)

    def test_badArgumentsExit64(self) -> None:
        """
        argparse's own errors (unknown option, conflicting TLS modes) exit
        with 64 too, not argparse's default of 2.
        """
        self.patch(sys, "stderr", io.StringIO())
        for argv in (["send", "--bogus"], ["send", "--tls", "--no-tls", "x@example.com"],
                     ["send", "--port"], ["sink", "--bogus"], ["bogus"], []):
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


class HeaderTests(CLITestMixin, unittest.TestCase):
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

    @defer.inlineCallbacks
    def test_headerAddressForms(self) -> Any:
        """
        Quoted display names with commas, domain literals (which
        C{email.utils.parseaddr} drops since Python 3.13) and groups, empty
        or not, are read as RFC 5322 says; nothing is silently lost.
        """
        server = self.startServer()
        message = (
            b'From: "Doe, Jane" <jane@example.com>\r\n'
            b"To: bob@[127.0.0.1], Carol <carol@example.org>\r\n"
            b"Cc: undisclosed-recipients:;\r\n"
            b"Bcc: team: dave@example.net, erin@example.net;\r\n\r\nHi.\r\n"
        )
        code, out, err = yield self.send(server, "-t", message=message)
        self.assertEqual(code, EX_OK, out + err)
        [received] = server.messages
        self.assertEqual(received.mailFrom, b"jane@example.com")
        self.assertEqual(sorted(received.rcptTo), [
            b"bob@[127.0.0.1]", b"carol@example.org", b"dave@example.net",
            b"erin@example.net"])

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


class AuthTests(CLITestMixin, unittest.TestCase):
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
        path = self.writeFile("password", PASSWORD.encode() + b"\n", mode=0o600)
        server = self.authServer()
        code, out, err = yield self.send(
            server, "--user", USER, "--password-file", path, "bob@example.com")
        self.assertEqual(code, EX_OK, out + err)
        self.assertEqual(server.sessions[0].authenticated, USER.encode())

    @defer.inlineCallbacks
    def test_wrongPassword(self) -> Any:
        """
        A refused password exits with 77 (no permission), the server's
        reply on one line, and is not printed.
        """
        self.setEnv(PASSWORD_ENV, PASSWORD + "x")
        server = self.authServer("PLAIN")
        code, out, err = yield self.send(server, "--user", USER, "bob@example.com")
        self.assertEqual(code, EX_NOPERM, out + err)
        self.assertOneLine(err, "refused the login as alice: 535")
        code, out, err = yield self.send(server, "--user", USER, "-v", "bob@example.com")
        self.assertEqual(code, EX_NOPERM, out + err)
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


class _RecordingReactor:
    """
    The test's reactor, counting the connections asked of it.
    """

    def __init__(self) -> None:
        self.connectors: List[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)

    def connectTCP(self, *a: Any, **kw: Any) -> Any:
        connector = reactor.connectTCP(*a, **kw)  # type: ignore[attr-defined]
        self.connectors.append(connector)
        return connector


class ValidationTests(CLITestMixin, unittest.TestCase):
    """
    Every option and address on the command line is checked before the
    reactor starts: a mistake is one line and exit code 64, nothing else
    happens.
    """

    def setUp(self) -> None:
        CLITestMixin.setUp(self)
        self.message = self.writeFile("message.eml", MESSAGE)

    def assertUsage(self, argv: Sequence[str], *expected: str) -> str:
        code, out, err = self.runMain("send", "-f", self.message, *argv)
        self.assertEqual(code, EX_USAGE, (argv, err))
        self.assertEqual(out, "")
        self.assertOneLine(err, *expected)
        return err

    def test_fromTwoAts(self) -> None:
        self.assertUsage(["--from", "a@b@c", "bob@example.com"],
                         "--from: 'a@b@c' is not a valid address", "more than one '@'")

    def test_fromInjection(self) -> None:
        """
        A line break in C{--from} is refused, and shown escaped, never
        written to the terminal raw.
        """
        err = self.assertUsage(["--from", "x@example.com\r\nRSET", "bob@example.com"],
                               "'x@example.com\\r\\nRSET'", "line break")
        self.assertNotIn("\r", err)

    def test_fromNotAnAddress(self) -> None:
        self.assertUsage(["--from", "not an address", "bob@example.com"],
                         "'not an address' is not a valid address")

    def test_recipients(self) -> None:
        """
        Recipients go through the same check as C{--from}; the null sender
        is not a recipient; one address per argument.
        """
        for bad, why in (("a@b@c", "more than one '@'"), ("bob", "no domain"),
                         ("<>", "empty address"), ("", "no address"),
                         ("a@example.com, b@example.com", "2 addresses"),
                         ("x@example.com\nRCPT TO:<y@example.com>", "line break")):
            self.assertUsage(["bob@example.com", bad], "recipient: ", why)

    def test_host(self) -> None:
        self.assertUsage(["--host", "[::1]", "bob@example.com"],
                         "--host: '[::1]' has brackets", "--host ::1")
        for bad in ("bad host", "host:25", "", "-x", "999.1.1.1", "a..b", "x\ny"):
            self.assertUsage(["--host=" + bad, "bob@example.com"], "--host: ")
        # An IPv6 address without brackets is a host (the next check fails).
        self.assertUsage(["--host", "::1", "--port", "99999", "bob@example.com"], "--port")

    def test_port(self) -> None:
        for bad in ("99999", "0", "-1", "smtp", "25.0", ""):
            self.assertUsage(["--port", bad, "bob@example.com"],
                             "--port: %r is not a port number (1 to 65535)" % (bad,))

    def test_timeout(self) -> None:
        for bad in ("-1", "0", "nan", "inf", "soon", ""):
            self.assertUsage(["--timeout", bad, "bob@example.com"],
                             "--timeout: %r is not a positive number of seconds" % (bad,))

    def test_names(self) -> None:
        self.assertUsage(["--helo", "x\r\nMAIL FROM:<a@b>", "bob@example.com"], "--helo")
        self.assertUsage(["--helo", "[999.1.1.1]", "bob@example.com"], "--helo")
        self.assertUsage(["--tls-name", "a b", "bob@example.com"], "--tls-name")

    def test_conflicts(self) -> None:
        self.assertUsage(["--no-tls", "--tls-name", "x.example", "bob@example.com"],
                         "--tls-name has no use with --no-tls")
        self.assertUsage(["--no-tls", "--cafile", self.message, "bob@example.com"],
                         "--cafile has no use with --no-tls")
        self.assertUsage(["--password-file", self.message, "bob@example.com"],
                         "--password-file needs --user")

    def test_user(self) -> None:
        self.setEnv(PASSWORD_ENV, PASSWORD)
        for bad in ("", "alice\r\nQUIT", "\udcff"):
            self.assertUsage(["--user", bad, "bob@example.com"], "--user: ")

    def test_emptyPassword(self) -> None:
        self.setEnv(PASSWORD_ENV, "")
        self.assertUsage(["--user", USER, "bob@example.com"], "$%s is empty" % (PASSWORD_ENV,))

    def test_noRecipients(self) -> None:
        self.assertUsage([], "no recipients")
        self.message = self.writeFile("bare.eml", b"Subject: x\n\nHi.\n")
        self.assertUsage(["-t"], "no recipients", "the message has none")

    def test_tlsNotInstalled(self) -> None:
        """
        Without pyOpenSSL, a command that needs TLS fails at once with 69
        and says what to install, instead of an invented server reply.
        """
        self.patch(_inputs, "_tlsAvailable", lambda: False)
        for argv in (["--starttls"], ["--tls"], ["--cafile", self.message],
                     ["--tls-name", "localhost"]):
            code, out, err = self.runMain("send", "-f", self.message, "bob@example.com",
                                          *argv)
            self.assertEqual(code, EX_UNAVAILABLE, (argv, err))
            self.assertOneLine(err, "TLS support is not installed", "mailclient[tls]")
            self.assertNotIn("502", err)


class FileOptionTests(CLITestMixin, unittest.TestCase):
    """
    Every file option gives one line and the right code: 66 when it cannot
    be read, 78 when its contents cannot be used, 65 for an empty message,
    73 when the sink cannot write.
    """

    def setUp(self) -> None:
        CLITestMixin.setUp(self)
        self.message = self.writeFile("message.eml", MESSAGE)

    def assertFails(self, code: int, argv: Sequence[str], *expected: str) -> None:
        got, out, err = self.runMain(*argv)
        self.assertEqual(got, code, (argv, err))
        self.assertOneLine(err, *expected)

    def send(self, *argv: str) -> List[str]:  # type: ignore[override]
        return ["send", "-f", self.message, "bob@example.com"] + list(argv)

    def test_cafile(self) -> None:
        missing = os.path.join(self.tmp, "missing.pem")
        self.assertFails(EX_NOINPUT, self.send("--cafile", missing),
                         "--cafile %s: cannot read it: No such file or directory" % (missing,))
        self.assertFails(EX_NOINPUT, self.send("--cafile", self.tmp), "--cafile", "directory")
        self.assertFails(EX_CONFIG, self.send("--cafile", self.message),
                         "--cafile %s: no certificate in it" % (self.message,))
        good = SMTPTestServer().caCertificatePEM
        corrupt = self.writeFile("corrupt.pem", good + b"-----BEGIN CERTIFICATE-----\n"
                                 b"bm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
        self.assertFails(EX_CONFIG, self.send("--cafile", corrupt),
                         "certificate 2 of 2 is not a valid PEM certificate")

    def test_passwordFile(self) -> None:
        missing = os.path.join(self.tmp, "missing")
        self.assertFails(EX_NOINPUT, self.send("--user", USER, "--password-file", missing),
                         "--password-file %s: cannot read it" % (missing,))
        self.assertFails(EX_NOINPUT, self.send("--user", USER, "--password-file", self.tmp),
                         "--password-file", "directory")
        empty = self.writeFile("empty", b"\n", mode=0o600)
        self.assertFails(EX_CONFIG, self.send("--user", USER, "--password-file", empty),
                         "is empty")
        lines = self.writeFile("lines", b"one\ntwo\n", mode=0o600)
        self.assertFails(EX_CONFIG, self.send("--user", USER, "--password-file", lines),
                         "more than one line")

    def test_passwordFileReadableByOthers(self) -> None:
        """
        A password file that the group or others may read is refused (78),
        saying how to fix it; C{--insecure-password-file} accepts it.
        """
        if os.name != "posix":
            raise unittest.SkipTest("POSIX file modes")
        for mode in (0o644, 0o640, 0o604):
            path = self.writeFile("password", PASSWORD.encode(), mode=mode)
            self.assertFails(EX_CONFIG, self.send("--user", USER, "--password-file", path),
                             "readable by others (mode %04o)" % (mode,), "chmod 600",
                             "--insecure-password-file")
        # Accepted: the next check (the port) is what fails.
        self.assertFails(EX_USAGE, self.send("--user", USER, "--password-file", path,
                                             "--insecure-password-file", "--port", "0"),
                         "--port")

    def test_messageFile(self) -> None:
        missing = os.path.join(self.tmp, "missing.eml")
        self.assertFails(EX_NOINPUT, ["send", "-f", missing, "bob@example.com"],
                         "cannot read the message file %s" % (missing,))
        self.assertFails(EX_NOINPUT, ["send", "-f", self.tmp, "bob@example.com"],
                         "cannot read the message file", "directory")
        empty = self.writeFile("empty.eml", b"")
        self.assertFails(EX_DATAERR, ["send", "-f", empty, "bob@example.com"],
                         "the message %s is empty" % (empty,))
        got, out, err = self.runMain("send", "bob@example.com", stdin=b"")
        self.assertEqual(got, EX_DATAERR)
        self.assertOneLine(err, "the message on standard input is empty")
        got, out, err = self.runMain("send", "bob@example.com", stdin=None)
        self.assertEqual(got, EX_NOINPUT)
        self.assertOneLine(err, "standard input", "closed")

    def test_maildir(self) -> None:
        """
        A Maildir that cannot be created or written is one line and 73,
        before the sink listens.
        """
        aFile = self.writeFile("file", b"")
        for path in (os.path.join(aFile, "Maildir"), aFile):
            self.assertFails(EX_CANTCREAT, ["sink", "--port", "0", "--maildir", path],
                             "--maildir %s: cannot" % (path,))

    def test_writeCA(self) -> None:
        path = os.path.join(self.tmp, "no", "such", "ca.pem")
        self.assertFails(EX_CANTCREAT,
                         ["sink", "--port", "0", "--starttls", "--write-ca", path],
                         "--write-ca %s: cannot write it" % (path,))
        self.assertFails(EX_USAGE, ["sink", "--write-ca", path], "--write-ca needs --starttls")

    def test_sinkOptions(self) -> None:
        for argv, expected in ((["--port", "65536"], "--port"),
                               (["--port", "x"], "--port"),
                               (["--interface", "localhost"], "--interface"),
                               (["--interface", "[::1]"], "brackets"),
                               (["--auth", "alice"], "--auth"),
                               (["--auth", ":pw"], "--auth")):
            self.assertFails(EX_USAGE, ["sink"] + argv, expected)


class MessageHeaderTests(CLITestMixin, unittest.TestCase):
    """
    With C{-t}, and for the sender without C{--from}, every address of the
    header is parsed: one that cannot be is an error naming it (65), never
    dropped or turned into the null sender.
    """

    @defer.inlineCallbacks
    def test_badRecipientInHeader(self) -> Any:
        server = self.startServer()
        message = b"From: alice@example.com\nTo: a@b@c, bob@example.com\nCc: x y\n\nHi.\n"
        code, out, err = yield self.send(server, "-t", message=message)
        self.assertEqual(code, EX_DATAERR, out + err)
        self.assertOneLine(err, "message header: To: 'a@b@c' is not a valid address",
                           "Cc: 'x y'")
        self.assertEqual(server.sessions, [])

    @defer.inlineCallbacks
    def test_badFrom(self) -> Any:
        """
        A From that cannot be parsed is an error pointing at C{--from},
        which overrides it.
        """
        server = self.startServer()
        message = b"From: a@b@c\nTo: bob@example.com\n\nHi.\n"
        code, out, err = yield self.send(server, "bob@example.com", message=message)
        self.assertEqual(code, EX_DATAERR, out + err)
        self.assertOneLine(err, "From: 'a@b@c'", "--from")
        self.assertEqual(server.sessions, [])
        code, out, err = yield self.send(server, "--from", "alice@example.com",
                                         "bob@example.com", message=message)
        self.assertEqual(code, EX_OK, out + err)
        self.assertEqual(server.messages[0].mailFrom, b"alice@example.com")

    @defer.inlineCallbacks
    def test_ambiguousSender(self) -> Any:
        server = self.startServer()
        message = b"From: a@example.com, b@example.com\nTo: bob@example.com\n\nHi.\n"
        code, out, err = yield self.send(server, "bob@example.com", message=message)
        self.assertEqual(code, EX_DATAERR, out + err)
        self.assertOneLine(err, "no Sender field", "--from")
        message = b"Sender: b@example.com\n" + message
        code, out, err = yield self.send(server, "bob@example.com", message=message)
        self.assertEqual(code, EX_OK, out + err)
        self.assertEqual(server.messages[0].mailFrom, b"b@example.com")

    @defer.inlineCallbacks
    def test_resent(self) -> Any:
        """
        A resent message goes to its Resent- recipients, from its
        Resent-From; Bcc and Resent-Bcc are removed.
        """
        server = self.startServer()
        message = (b"Resent-Date: Mon, 1 Jan 2024 00:00:00 +0000\n"
                   b"Resent-From: bob@example.com\nResent-To: carol@example.com\n"
                   b"Resent-Bcc: dave@example.com\n"
                   b"From: alice@example.com\nTo: bob@example.com\nBcc: eve@example.com\n"
                   b"\nHi.\n")
        code, out, err = yield self.send(server, "-t", message=message)
        self.assertEqual(code, EX_OK, out + err)
        [received] = server.messages
        self.assertEqual(received.mailFrom, b"bob@example.com")
        self.assertEqual(received.rcptTo, [b"carol@example.com", b"dave@example.com"])
        self.assertNotIn(b"Bcc", received.data)
        code, out, err = yield self.send(
            server, "-t", message=b"Resent-From: x@example.com\n" + message)
        self.assertEqual(code, EX_DATAERR, out + err)
        self.assertOneLine(err, "2 Resent- blocks")


class RuntimeFailureTests(CLITestMixin, unittest.TestCase):
    """
    Failures met while sending: one line on stderr, the exit code the docs
    give, the server's reply only when it sent one.
    """

    @defer.inlineCallbacks
    def refusedPort(self) -> Any:
        port = reactor.listenTCP(0, SMTPTestServer(), interface="127.0.0.1")  # type: ignore[attr-defined]
        number = port.getHost().port
        yield port.stopListening()
        return number

    @defer.inlineCallbacks
    def test_refusedPort(self) -> Any:
        """
        A refused connection fails at once (one attempt, no retry) with a
        line naming the server, and 75.
        """
        number = yield self.refusedPort()
        recording = _RecordingReactor()
        args = _parser().parse_args(["send", "-f", self.writeFile("m.eml", MESSAGE),
                                     "--host", "127.0.0.1", "--port", str(number),
                                     "bob@example.com"])
        out, err = io.StringIO(), io.StringIO()
        code = yield _send(recording, args, out, err)  # type: ignore[arg-type]
        self.assertEqual(code, EX_TEMPFAIL)
        self.assertEqual(err.getvalue(), "mailclient: cannot connect to 127.0.0.1:%d: "
                                         "connection refused\n" % (number,))
        self.assertEqual(out.getvalue(), "")
        self.assertEqual(len(recording.connectors), 1)

    def test_connectFailures(self) -> None:
        """
        Each reason a connection cannot be made has its line and code: an
        unknown host name is 68 (no DNS lookup in the tests: the error is
        made here), the others are temporary.
        """
        from twisted.internet import error

        from mailclient.smtp import SMTPConnectError

        for cause, code, text in (
                (error.DNSLookupError("mail.example.invalid"), 68, "host name not found"),
                (error.ConnectionRefusedError(), EX_TEMPFAIL, "connection refused"),
                (error.TCPTimedOutError(), EX_TEMPFAIL, "timed out"),
                (error.NoRouteError(), EX_TEMPFAIL, "no route to host")):
            e = SMTPConnectError(-1, "Unable to connect to SMTP server: %s" % (cause,))
            e.__cause__ = cause
            self.assertEqual(_cli._connectFailure(e, "mail.example.invalid:25"),
                             (code, "cannot connect to mail.example.invalid:25: " + text))

    @defer.inlineCallbacks
    def test_tlsToPlainPort(self) -> Any:
        server = self.startServer()
        code, out, err = yield self.send(server, "bob@example.com",
                                         tls=self.tlsArgs(server, mode="--tls"))
        self.assertEqual(code, EX_PROTOCOL, out + err)
        self.assertOneLine(err, "127.0.0.1:%d does not speak TLS" % (server.portNumber,),
                           "try --starttls")
        self.assertEqual(server.messages, [])

    @defer.inlineCallbacks
    def test_caBundle(self) -> Any:
        """
        Every certificate of a C{--cafile} bundle is trusted, not only the
        first.
        """
        server = self.startServer()
        other = generateCertificates().caCertificatePEM
        for bundle in (other + server.caCertificatePEM, server.caCertificatePEM + other):
            cafile = self.writeFile("bundle.pem", bundle)
            code, out, err = yield self.send(
                server, "bob@example.com",
                tls=["--starttls", "--cafile", cafile, "--tls-name", "localhost"])
            self.assertEqual(code, EX_OK, out + err)
        self.assertEqual(len(server.messages), 2)
        cafile = self.writeFile("other.pem", other)
        code, out, err = yield self.send(
            server, "bob@example.com",
            tls=["--starttls", "--cafile", cafile, "--tls-name", "localhost"])
        self.assertEqual(code, EX_FAILED, out + err)

    @defer.inlineCallbacks
    def test_greetingRefused(self) -> Any:
        from mailclient.testing import GREETING

        for reply, expected in ((554, EX_UNAVAILABLE), (421, EX_TEMPFAIL)):
            server = self.startServer()
            server.script(GREETING, reply, b"no service here")
            code, out, err = yield self.send(server, "bob@example.com")
            self.assertEqual(code, expected, out + err)
            self.assertOneLine(err, "refused the connection: %d no service here" % (reply,))

    @defer.inlineCallbacks
    def test_garbage(self) -> Any:
        from mailclient.testing import Garbage

        server = self.startServer()
        server.script("MAIL", Garbage(b"HELLO THERE\r\n"))
        code, out, err = yield self.send(server, "bob@example.com")
        self.assertEqual(code, EX_PROTOCOL, out + err)
        self.assertOneLine(err, "broke the protocol", "HELLO THERE")

    @defer.inlineCallbacks
    def test_noLoginMechanism(self) -> Any:
        self.setEnv(PASSWORD_ENV, PASSWORD)
        server = self.startServer(extensions=["PIPELINING", "STARTTLS"])
        code, out, err = yield self.send(server, "--user", USER, "bob@example.com")
        self.assertEqual(code, EX_UNAVAILABLE, out + err)
        self.assertOneLine(err, "offers no login mechanism")
        self.assertNotIn("502", err)

    @defer.inlineCallbacks
    def test_eightBitToSevenBitServer(self) -> Any:
        """
        8-bit data for a server that did not offer 8BITMIME is refused by
        the client: the message cannot be sent as it is (65).
        """
        server = self.startServer(extensions=["PIPELINING", "STARTTLS"])
        code, out, err = yield self.send(server, "bob@example.com",
                                         message=MESSAGE + "Grüße\n".encode("utf-8"))
        self.assertEqual(code, EX_DATAERR, out + err)
        self.assertOneLine(err, "cannot take this message")
        self.assertEqual(server.messages, [])

    @defer.inlineCallbacks
    def test_messageTooBig(self) -> Any:
        server = self.startServer(maxSize=20)
        code, out, err = yield self.send(server, "bob@example.com")
        self.assertEqual(code, EX_FAILED, out + err)
        self.assertEqual(summary(out), [("FAILED", "bob@example.com")])
        self.assertOneLine(err, "refused the message: 552")
        self.assertEqual(server.messages, [])

    @defer.inlineCallbacks
    def test_internationalAddressWithoutSMTPUTF8(self) -> Any:
        server = self.startServer()
        code, out, err = yield self.send(server, "jörg@example.com")
        self.assertEqual(code, EX_DATAERR, out + err)
        self.assertOneLine(err, "SMTPUTF8")

    @defer.inlineCallbacks
    def test_messageRefused(self) -> Any:
        from mailclient.testing import DATA_END

        server = self.startServer()
        server.script(DATA_END, 554, b"5.7.1 looks like spam")
        code, out, err = yield self.send(server, "bob@example.com")
        self.assertEqual(code, EX_FAILED, out + err)
        self.assertEqual(out, "FAILED bob@example.com 554 5.7.1 looks like spam\n")
        self.assertOneLine(err, "refused the message: 554 5.7.1 looks like spam")


class HelpTests(CLITestMixin, unittest.TestCase):
    """
    C{--version}, C{--help}: help text and a default for every option,
    examples, the exit codes (the same as in C{docs/cli.rst}).
    """

    def test_version(self) -> None:
        self.patch(sys, "stdout", io.StringIO())
        with self.assertRaises(SystemExit) as caught:
            _cli.main(["--version"])
        self.assertEqual(caught.exception.code, 0)
        self.assertEqual(sys.stdout.getvalue(), "mailclient %s\n" % (mailclient.__version__,))

    def parsers(self) -> Dict[str, argparse.ArgumentParser]:
        parser = _parser()
        return dict(parser.subcommands, mailclient=parser)  # type: ignore[attr-defined]

    def test_everyOptionDocumented(self) -> None:
        """
        Every option has help text, and every one that takes a value says
        its default.
        """
        for name, parser in self.parsers().items():
            for action in parser._actions:
                if isinstance(action, (argparse._HelpAction, argparse._VersionAction,
                                       argparse._SubParsersAction)):
                    continue
                label = "%s %s" % (name, action.option_strings or action.dest)
                self.assertTrue(action.help, label)
                self.assertIn("default", action.help, label)

    def helpOf(self, *argv: str) -> str:
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        with self.assertRaises(SystemExit) as caught:
            _cli.main(list(argv) + ["--help"])
        self.assertEqual(caught.exception.code, 0)
        return out.getvalue()

    def test_helpHasExamplesAndExitCodes(self) -> None:
        for argv, codes in ((["send"], SEND_EXIT_CODES), (["sink"], SINK_EXIT_CODES),
                            (["migrate"], MIGRATE_EXIT_CODES)):
            text = self.helpOf(*argv)
            if argv != ["migrate"]:
                self.assertIn("examples:", text)
            self.assertIn("exit codes:", text)
            listed = [int(n) for n in re.findall(r"^  (\d+) ", text.split("exit codes:")[1],
                                                   re.MULTILINE)]
            self.assertEqual(listed, [c for c, _ in codes], argv)
        top = self.helpOf()
        for text in ("examples:", "--version", "send", "sink", "migrate", "demo"):
            self.assertIn(text, top)

    def test_badOptionShowsSubcommandUsage(self) -> None:
        """
        A bad option to C{send} prints C{send}'s usage, not the top-level
        one, and exits with 64.
        """
        for argv in (["send", "--bogus"], ["send", "bob@example.com", "--bogus"],
                     ["send", "--port"]):
            code, out, err = self.runMain(*argv)
            self.assertEqual(code, EX_USAGE)
            self.assertTrue(err.startswith("usage: mailclient send "), err)
            self.assertIn("\nmailclient send: error: ", err)
        code, out, err = self.runMain("sink", "--bogus")
        self.assertTrue(err.startswith("usage: mailclient sink "), err)

    def test_docsTablesMatch(self) -> None:
        """
        C{docs/cli.rst} lists the exit codes the commands use, and the
        demo's real STARTTLS reply.
        """
        tables = docsTables()
        self.assertEqual(tables.get("mailclient send"), [c for c, _ in SEND_EXIT_CODES])
        self.assertEqual(tables.get("mailclient sink"), [c for c, _ in SINK_EXIT_CODES])
        self.assertEqual(tables.get("mailclient migrate"),
                         [c for c, _ in MIGRATE_EXIT_CODES])
        with open(DOCS, encoding="utf-8") as f:
            text = f.read()
        self.assertNotIn("220 2.0.0 Ready to start TLS", text)
        self.assertIn("220 Ready to start TLS", text)

    def test_hostPort(self) -> None:
        self.assertEqual(hostPort("::1", 25), "[::1]:25")
        self.assertEqual(hostPort("127.0.0.1", 25), "127.0.0.1:25")
        self.assertEqual(hostPort("smtp.example.com", 587), "smtp.example.com:587")


class LastResortTests(CLITestMixin, unittest.TestCase):
    """
    No path prints a traceback: an exception nobody expected is one line
    naming it, and exit code 70.
    """

    def test_beforeTheReactor(self) -> None:
        def broken(*a: Any, **kw: Any) -> Any:
            raise RuntimeError("something impossible")

        self.patch(_cli, "prepare", broken)
        code, out, err = self.runMain("send", "bob@example.com")
        self.assertEqual(code, EX_SOFTWARE)
        self.assertOneLine(err, "internal error", "RuntimeError: something impossible")

    @defer.inlineCallbacks
    def test_send(self) -> Any:
        """
        L{_send} turns an unexpected failure of the delivery into 70.
        """
        self.patch(_cli, "sendmail", lambda *a, **kw: defer.fail(ZeroDivisionError("oops")))
        server = self.startServer()
        code, out, err = yield self.send(server, "bob@example.com")
        self.assertEqual(code, EX_SOFTWARE)
        self.assertOneLine(err, "internal error", "ZeroDivisionError: oops")


class ProcessTests(CLITestMixin, unittest.TestCase):
    """
    The whole command in a subprocess, reactor included.
    """

    def runCommand(self, *argv: str, script: Optional[str] = None,
                   stdin: bytes = b"") -> Tuple[int, str, str]:
        env = dict(os.environ)
        env.pop(PASSWORD_ENV, None)
        env["PYTHONPATH"] = os.pathsep.join(
            [ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        command = [sys.executable] + (["-c", script] if script else ["-m", "mailclient"])
        result = subprocess.run(command + list(argv), input=stdin, capture_output=True,
                                env=env, cwd=self.tmp, timeout=120)
        return (result.returncode, result.stdout.decode("utf-8", "replace"),
                result.stderr.decode("utf-8", "replace"))

    def test_usage(self) -> None:
        message = self.writeFile("m.eml", MESSAGE)
        code, out, err = self.runCommand("send", "-f", message, "--from", "a@b@c",
                                         "bob@example.com")
        self.assertEqual(code, EX_USAGE, err)
        self.assertOneLine(err, "'a@b@c'")

    def test_refusedPort(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        message = self.writeFile("m.eml", MESSAGE)
        code, out, err = self.runCommand("send", "-f", message, "--host", "127.0.0.1",
                                         "--port", str(port), "bob@example.com")
        self.assertEqual(code, EX_TEMPFAIL, err)
        self.assertEqual(err, "mailclient: cannot connect to 127.0.0.1:%d: connection "
                              "refused\n" % (port,))

    def test_interrupted(self) -> None:
        """
        SIGTERM (or Ctrl-C) while waiting for the server is reported as an
        interruption, one line and 75, not as the lost connection it causes.
        """
        if os.name != "posix":
            raise unittest.SkipTest("POSIX signals")
        message = self.writeFile("m.eml", MESSAGE)
        env = dict(os.environ, PYTHONPATH=ROOT)
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            listener.settimeout(60)
            process = subprocess.Popen(
                [sys.executable, "-m", "mailclient", "send", "-f", message, "--no-tls",
                 "--host", "127.0.0.1", "--port", str(listener.getsockname()[1]),
                 "bob@example.com"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=self.tmp)
            try:
                # Connected: the reactor runs, and handles signals.
                connection, _ = listener.accept()
                with connection:
                    process.send_signal(signal.SIGTERM)
                    out, err = process.communicate(timeout=60)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.communicate()
        self.assertEqual(process.returncode, EX_TEMPFAIL, err)
        self.assertEqual(out, b"")
        self.assertOneLine(err.decode(), "interrupted before the server confirmed delivery")

    BROKEN = (
        "import sys\n"
        "from twisted.internet import defer\n"
        "import mailclient._commands.main as m\n"
        "def broken(*a, **kw):\n"
        "%s\n"
        "m.sendmail = broken\n"
        "m.main(sys.argv[1:])\n"
    )

    def test_bugInTheReactor(self) -> None:
        """
        A failure nobody handles, or an error Twisted would log (and print
        as a traceback at exit), is one line and 70.
        """
        message = self.writeFile("m.eml", MESSAGE)
        for body in ("    return defer.fail(ZeroDivisionError('oops'))",
                     "    from twisted.internet import reactor\n"
                     "    reactor.callLater(0, lambda: 1 / 0)\n"
                     "    return defer.Deferred()"):
            code, out, err = self.runCommand(
                "send", "-f", message, "--no-tls", "bob@example.com",
                script=self.BROKEN % (body,))
            self.assertEqual(code, EX_SOFTWARE, err)
            self.assertOneLine(err, "internal error", "ZeroDivisionError")

    def test_sinkMaildirCannotBeCreated(self) -> None:
        """
        C{sink --maildir} on a path that cannot be created exits at once with
        one line and 73, without listening (it used to print a traceback
        and hang).
        """
        path = "/proc/nope" if os.path.isdir("/proc/self") else os.path.join(
            self.writeFile("file", b""), "nope")
        code, out, err = self.runCommand("sink", "--port", "0", "--maildir", path)
        self.assertEqual(code, EX_CANTCREAT, err)
        self.assertOneLine(err, "--maildir %s: cannot" % (path,))
        self.assertEqual(out, "")

    def test_sinkCannotListen(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            code, out, err = self.runCommand("sink", "--port", str(port))
        self.assertEqual(code, EX_UNAVAILABLE, err)
        self.assertOneLine(err, "cannot listen on 127.0.0.1:%d" % (port,))


class MigrateCommandTests(CLITestMixin, unittest.TestCase):
    """
    C{mailclient migrate}: what it cannot rewrite makes it exit with 1, with
    C{--write} too, so a CI gate built on it fails.
    """

    def migrate(self, *argv: str) -> Tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        with self.assertRaises(SystemExit) as caught:
            _cli.main(["migrate"] + list(argv))
        return caught.exception.code, out.getvalue(), err.getvalue()  # type: ignore[return-value]

    def test_starImport(self) -> None:
        path = self.writeFile("star.py", b"from twisted.mail.smtp import *\n")
        for argv in (["--write"], []):
            code, out, err = self.migrate(*(argv + [path]))
            self.assertEqual(code, 1, argv)
            self.assertIn("star.py:1: not migrated: 'from twisted.mail.smtp import *'", err)
            self.assertIn("1 place must be changed by hand", err)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"from twisted.mail.smtp import *\n")

    def test_writeWithLeftovers(self) -> None:
        """
        The rewritable part is written, and the exit code still says what
        is left: a patch target naming a client object, or the name
        C{twisted} that the rewritten import no longer binds.
        """
        path = self.writeFile("app.py", b"import twisted.mail.smtp\n"
                                        b"twisted.mail.smtp.sendmail\n"
                                        b"twisted.internet\n"
                                        b"patch('twisted.mail.smtp.sendmail')\n")
        code, out, err = self.migrate("--write", path)
        self.assertEqual(code, 1, err)
        self.assertIn("app.py:1: not migrated: the name 'twisted'", err)
        self.assertIn("app.py:4: not migrated: string mentions", err)
        self.assertIn("2 places must be changed by hand", err)
        with open(path, "rb") as f:
            self.assertIn(b"mailclient.smtp.sendmail", f.read())

    def test_serverNamesAreNotLeftovers(self) -> None:
        """
        Server-side names rightly stay on Twisted: a warning, exit code 0.
        """
        path = self.writeFile("server.py", b"from twisted.mail.smtp import ESMTP\n"
                                           b"x = 'see twisted.mail.smtp for the server'\n")
        code, out, err = self.migrate("--write", path)
        self.assertEqual(code, 0, err)
        self.assertIn("warning", err)
        self.assertNotIn("not migrated", err)

    def test_unparseableFile(self) -> None:
        mentions = self.writeFile("old.py", b"print 'x'\nfrom twisted.mail import smtp\n")
        unrelated = self.writeFile("other.py", b"print 'x'\n")
        self.assertEqual(self.migrate("--write", mentions)[0], 1)
        self.assertEqual(self.migrate("--write", unrelated)[0], 0)

    def test_cannotWrite(self) -> None:
        """
        A file that cannot be written is one line and exit code 2, not a
        traceback.
        """
        import builtins

        def readOnly(path: Any, mode: str = "r", *a: Any, **kw: Any) -> Any:
            if "w" in mode:
                raise PermissionError(13, "Permission denied", path)
            return builtins.open(path, mode, *a, **kw)

        _migrate.open = readOnly  # type: ignore[attr-defined]
        self.addCleanup(delattr, _migrate, "open")
        path = self.writeFile("mail.py", b"from twisted.mail.smtp import sendmail\n")
        code, out, err = self.migrate("--write", path)
        self.assertEqual(code, 2)
        self.assertEqual(err, "%s: cannot write: Permission denied\n" % (path,))


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


class DemoFailureTests(unittest.TestCase):
    """
    Whatever breaks inside the demo, it ends with one "demo FAILED" line
    and exit status 1, never a traceback.
    """

    @defer.inlineCallbacks
    def test_unexpectedError(self) -> Any:
        from mailclient._commands import demo

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise ModuleNotFoundError("No module named 'cryptography'")

        self.patch(demo, "sendmail", broken)
        out = io.StringIO()
        code = yield runDemo(reactor, out)
        self.assertEqual(code, 1)
        self.assertEqual(out.getvalue().splitlines(),
                         ["demo FAILED: ModuleNotFoundError: No module named 'cryptography'"])


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

    def startSink(self, *argv: str, resetSIGINT: bool = False,
                  interface: str = "127.0.0.1") -> Tuple[subprocess.Popen, int]:
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
        prefix = "mailclient sink listening on %s:" % (
            "[%s]" % (interface,) if ":" in interface else interface,)
        if not first.startswith(prefix):
            process.kill()
            _, errors = process.communicate()
            self.fail("sink did not start: %r %r" % (first, errors))
        self.readyLine = first
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

    def test_ipv6(self) -> None:
        """
        An IPv6 address is printed in brackets, C{[::1]:port}.
        """
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", 0))
        except OSError:
            raise unittest.SkipTest("no IPv6 loopback")
        process, port = self.startSink("--interface", "::1", interface="::1")
        self.assertEqual(self.readyLine, "mailclient sink listening on [::1]:%d\n" % (port,))
        code, out, err = self.stop(process, signal.SIGTERM)
        self.assertEqual(code, 0, err)

    @defer.inlineCallbacks
    def sendWithCLI(self, *argv: str) -> Any:
        """
        Run C{mailclient send ARGV} in-process and wait until its connection
        is gone; return C{(code, out, err)}.
        """
        path = os.path.join(self.tmp, "message.eml")
        with open(path, "wb") as f:
            f.write(MESSAGE)
        recording = _RecordingReactor()
        args = _parser().parse_args(["send", "-f", path, "--host", "127.0.0.1"] + list(argv))
        out, err = io.StringIO(), io.StringIO()
        try:
            code = yield _send(recording, args, out, err)  # type: ignore[arg-type]
        finally:
            yield self.waitFor(lambda: all(c.state == "disconnected"
                                           for c in recording.connectors))
        return code, out.getvalue(), err.getvalue()

    @defer.inlineCallbacks
    def test_authAndStarttls(self) -> Any:
        """
        C{sink --auth USER:PASSWORD --starttls} requires both, presenting a
        certificate signed by the CA it writes for C{send --cafile}: login
        and TLS can be tried locally.
        """
        ca = os.path.join(self.tmp, "sink-ca.pem")
        process, port = self.startSink("--auth", "%s:%s" % (USER, PASSWORD), "--starttls",
                                       "--write-ca", ca)
        assert process.stdout is not None
        notes = [process.stdout.readline().decode() for _ in range(2)]
        self.assertEqual(notes, [
            "mailclient sink requires STARTTLS; the CA certificate is in %s "
            "(mailclient send --cafile %s)\n" % (ca, ca),
            "mailclient sink requires AUTH PLAIN or LOGIN as %s\n" % (USER,)])
        old = os.environ.get(PASSWORD_ENV)
        self.addCleanup(lambda: os.environ.pop(PASSWORD_ENV, None) if old is None
                        else os.environ.__setitem__(PASSWORD_ENV, old))
        os.environ[PASSWORD_ENV] = PASSWORD
        common = ["--port", str(port), "--starttls", "--cafile", ca, "bob@example.com"]
        code, out, err = yield self.sendWithCLI("--user", USER, *common)
        self.assertEqual((code, out, err), (EX_OK, "OK bob@example.com 250 Recipient OK\n", ""))
        code, out, err = yield self.sendWithCLI(*common)
        self.assertEqual(code, EX_FAILED, err)
        self.assertIn("530", out)
        os.environ[PASSWORD_ENV] = "wrong"
        code, out, err = yield self.sendWithCLI("--user", USER, *common)
        self.assertEqual(code, EX_NOPERM, err)
        code, out, err = yield self.sendWithCLI("--port", str(port), "--no-tls",
                                                "bob@example.com")
        self.assertEqual(code, EX_FAILED, err)
        self.assertIn("530", out)
        code, out, err = self.stop(process, signal.SIGTERM)
        self.assertEqual(code, 0, err)
        self.assertEqual(out.decode().count("== from <alice@example.com>"), 1)
        self.assertNotIn(PASSWORD, out.decode() + err.decode())

    def test_temporaryCA(self) -> None:
        """
        Without C{--write-ca}, the CA certificate goes in a temporary file,
        named on the second line and removed when the sink stops.
        """
        process, port = self.startSink("--starttls")
        assert process.stdout is not None
        note = process.stdout.readline().decode()
        found = re.match(r"mailclient sink requires STARTTLS; the CA certificate is in "
                         r"(\S+) \(mailclient send --cafile \1\)\n\Z", note)
        assert found is not None, note
        path = found.group(1)
        with open(path, "rb") as f:
            self.assertTrue(f.read().startswith(b"-----BEGIN CERTIFICATE-----"))
        code, out, err = self.stop(process, signal.SIGTERM)
        self.assertEqual(code, 0, err)
        self.assertFalse(os.path.exists(path))
