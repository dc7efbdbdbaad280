"""
Tests for L{mailclient.testing}: the scriptable SMTP test server.

The server is driven with raw bytes (in memory and over loopback) and with
Twisted's own SMTP clients from C{twisted.mail.smtp}, which tests may import.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from io import BytesIO
from typing import Any, Callable, Dict, List, Optional

from twisted.internet import defer, endpoints, error, reactor, task
from twisted.internet.protocol import Factory, Protocol
from twisted.mail import smtp as tsmtp
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from mailclient import testing
from mailclient.testing import (
    DATA_END,
    GREETING,
    Abort,
    Delay,
    Disconnect,
    EndlessLine,
    Garbage,
    NoReply,
    Reply,
    SMTPTestCaseMixin,
    SMTPTestServer,
)

HERE = os.path.dirname(os.path.abspath(__file__))

#: Twisted before 26 replaces the value of the connection-lost Failure its
#: SMTPSenderFactory is given (ConnectionDone becomes SMTPConnectError), and
#: the loss of a reset in-memory connection is reported differently; the
#: tests below that watch Twisted's own client need 26.
_TWISTED_26 = __import__("twisted").version.major >= 26
ROOT = os.path.dirname(os.path.dirname(HERE))

# Twisted's clients expect LF line endings and send CRLF.
MESSAGE = b"Subject: hi\n\nHello.\n"
SENT = b"Subject: hi\r\n\r\nHello.\r\n"


class RawClient(Protocol):
    """
    A client that records what it receives and lets a test wait for it.
    """

    def __init__(self) -> None:
        self.received = b""
        self.lost: Optional[Failure] = None
        self._waiting: List[Any] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self._check()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason
        self._check()

    def _check(self) -> None:
        for entry in list(self._waiting):
            predicate, d = entry
            if predicate(self):
                self._waiting.remove(entry)
                d.callback(self)

    def waitFor(self, predicate: Callable[["RawClient"], bool]) -> defer.Deferred:
        """
        Fire once C{predicate(self)} is true.
        """
        d: defer.Deferred = defer.Deferred()
        self._waiting.append((predicate, d))
        self._check()
        return d


def converse(connection: testing.MemoryConnection, data: bytes) -> bytes:
    """
    Send C{data} from a L{RawClient} in memory and return what came back.
    """
    client = connection.client
    before = len(client.received)
    client.transport.write(data)
    connection.pump()
    return client.received[before:]


def codes(replies: bytes) -> List[int]:
    """
    The code of each complete reply (final line) in C{replies}.
    """
    return [int(line[:3]) for line in replies.split(b"\r\n") if line[3:4] in (b" ", b"")
            and line[:3].isdigit()]


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def connect(server: SMTPTestServer) -> testing.MemoryConnection:
    return server.connectInMemory(RawClient())


class PublicNamesTests(SynchronousTestCase):
    """
    L{mailclient.testing} is a thin face over private modules.
    """

    def test_reexports(self) -> None:
        """
        Each public name is an object of a private module of
        C{mailclient._testing}, re-exported as it is.
        """
        import importlib
        import pkgutil

        import mailclient._testing

        private = [
            importlib.import_module("mailclient._testing." + m.name)
            for m in pkgutil.iter_modules(mailclient._testing.__path__)
        ]
        for name in testing.__all__:
            obj = getattr(testing, name)
            sources = [m for m in private if getattr(m, name, None) is obj]
            self.assertTrue(sources, name)

    def test_noTwistedMail(self) -> None:
        """
        Importing and using L{mailclient.testing} (TLS included) never imports
        C{twisted.mail} nor installs a reactor.
        """
        code = (
            "import sys\n"
            "from mailclient.testing import SMTPTestServer\n"
            "from twisted.internet.protocol import Protocol\n"
            "s = SMTPTestServer(); c = s.connectInMemory(Protocol())\n"
            "s.tlsOptions\n"
            "print(sorted(m for m in sys.modules if m.startswith('twisted.mail')),"
            " 'twisted.internet.reactor' in sys.modules)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                             capture_output=True).stdout
        self.assertEqual(out.strip(), b"[] False")


class ReplyTests(SynchronousTestCase):
    """
    L{Reply} formats replies.
    """

    def test_single(self) -> None:
        self.assertEqual(Reply(250, b"OK").toBytes(), b"250 OK\r\n")
        self.assertEqual(Reply(250, "OK").toBytes(), b"250 OK\r\n")

    def test_multiLine(self) -> None:
        self.assertEqual(Reply(250, [b"a", "b", b"c"]).toBytes(), b"250-a\r\n250-b\r\n250 c\r\n")
        self.assertEqual(Reply(550, b"x\ny").toBytes(), b"550-x\r\n550 y\r\n")

    def test_noText(self) -> None:
        self.assertEqual(Reply(451).toBytes(), b"451\r\n")

    def test_badAction(self) -> None:
        self.assertRaises(TypeError, SMTPTestServer().script, "MAIL", "451")


class ProtocolTests(SynchronousTestCase):
    """
    Default server behaviour, driven with raw bytes in memory.
    """

    def test_greetingAndEHLO(self) -> None:
        """
        The server greets with 220 and answers EHLO with its hostname and the
        default extensions, multi-line.
        """
        server = SMTPTestServer(hostname="mx.example")
        c = connect(server)
        self.assertEqual(c.client.received, b"220 mx.example ESMTP mailclient.testing\r\n")
        self.assertEqual(converse(c, b"EHLO client.example\r\n"),
                         b"250-mx.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 STARTTLS\r\n")
        self.assertEqual(server.sessions[0].helo, b"client.example")

    def test_defaultExtensionsFollowConfiguration(self) -> None:
        server = SMTPTestServer(credentials={"u": "p"}, maxSize=1000)
        self.assertEqual(server.extensions, ["PIPELINING", "8BITMIME", "STARTTLS",
                                             "AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2", "SIZE 1000"])

    def test_simpleCommands(self) -> None:
        """
        NOOP, VRFY, RSET, unknown commands and QUIT get their usual replies;
        QUIT closes the connection.
        """
        c = connect(SMTPTestServer())
        out = converse(c, b"HELO me\r\nNOOP\r\nVRFY bob\r\nRSET\r\nXYZZY\r\nQUIT\r\n")
        self.assertEqual(codes(out), [250, 250, 252, 250, 500, 221])
        self.assertFalse(c.connected)
        self.assertTrue(c.session.closed)

    def test_delivery(self) -> None:
        """
        A transaction is recorded with addresses (no angle brackets),
        parameters and content.
        """
        server = SMTPTestServer(extensions=["8BITMIME", "SIZE 100", "DSN"])
        c = connect(server)
        out = converse(c, b"EHLO me\r\nMAIL FROM:<a@x> BODY=8BITMIME size=12\r\n"
                          b"RCPT TO:<b@y> NOTIFY=NEVER\r\nRCPT TO:<c@y>\r\nDATA\r\n")
        self.assertEqual(codes(out), [250, 250, 250, 250, 354])
        out = converse(c, b"Hi\r\n.\r\n")
        self.assertEqual(codes(out), [250])
        [message] = server.messages
        self.assertEqual(message.mailFrom, b"a@x")
        self.assertEqual(message.mailParams, {b"BODY": b"8BITMIME", b"SIZE": b"12"})
        self.assertEqual(message.rcptTo, [b"b@y", b"c@y"])
        self.assertEqual(message.rcptParams, [{b"NOTIFY": b"NEVER"}, {}])
        self.assertEqual((message.data, message.via), (b"Hi\r\n", "DATA"))
        self.assertEqual(server.sessions[0].messages, [message])

    def test_nullSender(self) -> None:
        server = SMTPTestServer()
        c = connect(server)
        converse(c, b"EHLO me\r\nMAIL FROM:<>\r\nRCPT TO:<b@y>\r\nDATA\r\n.\r\n")
        self.assertEqual((server.messages[0].mailFrom, server.messages[0].data), (b"", b""))

    def test_dotUnstuffing(self) -> None:
        """
        A leading dot is removed from each line that has one (RFC 5321 4.5.2).
        """
        server = SMTPTestServer()
        c = connect(server)
        converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n"
                    b"..\r\n.hidden\r\n...dots\r\nmid.dle\r\n.\r\n")
        self.assertEqual(server.messages[0].data, b".\r\nhidden\r\n..dots\r\nmid.dle\r\n")

    def test_strictEndOfData(self) -> None:
        """
        Only CRLF.CRLF ends the data: a dot between bare LFs does not, and bare
        line endings are flagged on the message.
        """
        server = SMTPTestServer()
        c = connect(server)
        out = converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n"
                          b"one\n.\ntwo\r\n")
        self.assertEqual(codes(out), [250, 250, 250, 354])
        self.assertEqual(server.messages, [])
        converse(c, b"three\rfour\r\n.\r\n")
        [message] = server.messages
        self.assertEqual(message.data, b"one\n.\ntwo\r\nthree\rfour\r\n")
        self.assertTrue(message.bareLineEndings)

    def test_cleanLineEndings(self) -> None:
        server = SMTPTestServer()
        c = connect(server)
        converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\na\r\n\r\nb\r\n.\r\n")
        self.assertFalse(server.messages[0].bareLineEndings)

    def test_bdat(self) -> None:
        """
        BDAT chunks are read as exactly the announced number of raw bytes,
        whatever they contain, and the LAST one completes the message.
        """
        server = SMTPTestServer(extensions=["CHUNKING", "PIPELINING"])
        c = connect(server)
        out = converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n"
                          b"BDAT 7\r\n.\r\nQU\nIBDAT 0\r\nBDAT 3 LAST\r\nxyzNOOP\r\n")
        self.assertEqual(codes(out), [250, 250, 250, 250, 250, 250, 250])
        self.assertIn(b"250 7 octets received\r\n", out)
        [message] = server.messages
        self.assertEqual((message.data, message.via), (b".\r\nQU\nIxyz", "BDAT"))
        self.assertEqual(server.sessions[0].commands[-1], b"NOOP")

    def test_bdatSplitAcrossReads(self) -> None:
        server = SMTPTestServer(extensions=["CHUNKING"])
        c = connect(server)
        converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 10 LAST\r\nabc")
        self.assertEqual(server.messages, [])
        converse(c, b"defg")
        out = converse(c, b"hij")
        self.assertEqual(codes(out), [250])
        self.assertEqual(server.messages[0].data, b"abcdefghij")

    def test_bdatRefusals(self) -> None:
        """
        BDAT without CHUNKING advertised, or outside a transaction, is
        refused, but its chunk is still consumed; DATA after BDAT is refused.
        """
        c = connect(SMTPTestServer())
        out = converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 6\r\nNOOP\r\nNOOP\r\n")
        self.assertEqual(codes(out), [250, 250, 250, 502, 250])
        server = SMTPTestServer(extensions=["CHUNKING"])
        c = connect(server)
        out = converse(c, b"EHLO me\r\nBDAT 4 LAST\r\nabcdMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n"
                          b"BDAT 1\r\nzDATA\r\nBDAT x\r\n")
        self.assertEqual(codes(out), [250, 503, 250, 250, 250, 503, 501])

    def test_sequenceErrors(self) -> None:
        """
        Commands out of order get 503 (or 554 for DATA with no recipients)
        and do not change state.
        """
        c = connect(SMTPTestServer())
        out = converse(c, b"MAIL FROM:<a@x>\r\nHELO me\r\nRCPT TO:<b@y>\r\nDATA\r\n"
                          b"MAIL FROM:<a@x>\r\nMAIL FROM:<a@x>\r\nDATA\r\n")
        self.assertEqual(codes(out), [503, 250, 503, 503, 250, 503, 554])

    def test_syntaxErrors(self) -> None:
        c = connect(SMTPTestServer())
        out = converse(c, b"EHLO\r\nHELO\r\nEHLO me\r\nMAIL FROM:a@x\r\nMAIL TO:<a@x>\r\n"
                          b"MAIL FROM:<a@x>\r\nRCPT TO:<>\r\nRCPT TO:b@y\r\nDATA now\r\n")
        self.assertEqual(codes(out), [501, 501, 250, 501, 501, 250, 501, 501, 501])

    def test_parametersNeedTheirExtension(self) -> None:
        """
        MAIL and RCPT parameters are refused with 555 unless their extension
        was advertised, and always after HELO.
        """
        c = connect(SMTPTestServer(extensions=["8BITMIME"]))
        out = converse(c, b"EHLO me\r\nMAIL FROM:<a@x> SIZE=10\r\nMAIL FROM:<a@x> SMTPUTF8\r\n"
                          b"MAIL FROM:<a@x> BODY=BINARYMIME\r\nMAIL FROM:<a@x> BODY=8BITMIME\r\n"
                          b"RCPT TO:<b@y> NOTIFY=NEVER\r\n")
        self.assertEqual(codes(out), [250, 555, 555, 555, 250, 555])
        c = connect(SMTPTestServer(extensions=["8BITMIME"]))
        out = converse(c, b"HELO me\r\nMAIL FROM:<a@x> BODY=8BITMIME\r\n")
        self.assertEqual(codes(out), [250, 555])

    def test_maxSize(self) -> None:
        """
        C{maxSize} refuses a declared SIZE at MAIL, and an oversized message
        at its end, which is then recorded as refused.
        """
        server = SMTPTestServer(maxSize=10)
        c = connect(server)
        out = converse(c, b"EHLO me\r\nMAIL FROM:<a@x> SIZE=11\r\nMAIL FROM:<a@x> SIZE=10\r\n"
                          b"RCPT TO:<b@y>\r\nDATA\r\n0123456789\r\n.\r\n")
        self.assertEqual(codes(out), [250, 552, 250, 250, 354, 552])
        self.assertEqual(server.messages, [])
        self.assertEqual(server.sessions[0].refused[0].data, b"0123456789\r\n")

    def test_heloOnly(self) -> None:
        """
        With C{esmtp=False}, EHLO gets 502 and HELO works.
        """
        c = connect(SMTPTestServer(esmtp=False))
        self.assertEqual(codes(converse(c, b"EHLO me\r\nHELO me\r\n")), [502, 250])

    def test_enhancedStatusCodes(self) -> None:
        c = connect(SMTPTestServer(extensions=["ENHANCEDSTATUSCODES"]))
        out = converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\n")
        self.assertTrue(out.endswith(b"250 2.1.0 Sender OK\r\n"))
        c = connect(SMTPTestServer())
        out = converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\n")
        self.assertTrue(out.endswith(b"250 Sender OK\r\n"))

    def test_requireTLS(self) -> None:
        c = connect(SMTPTestServer(requireTLS=True, credentials={"u": "p"}))
        out = converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nAUTH PLAIN " + b64(b"\0u\0p") + b"\r\n")
        self.assertEqual(codes(out), [250, 530, 530])

    def test_requireAuth(self) -> None:
        server = SMTPTestServer(requireAuth=True, credentials={"u": "p"})
        c = connect(server)
        out = converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nAUTH PLAIN " + b64(b"\0u\0p")
                          + b"\r\nMAIL FROM:<a@x>\r\n")
        self.assertEqual(codes(out), [250, 530, 235, 250])
        self.assertEqual(server.sessions[0].authenticated, b"u")

    def test_pipeliningViolations(self) -> None:
        """
        Commands sent before the previous reply are recorded as violations
        when PIPELINING was not advertised, and when RFC 2920 says the command
        must end a group; a well-formed pipelined group is not.
        """
        server = SMTPTestServer(extensions=[])
        c = connect(server)
        converse(c, b"EHLO me\r\n")
        converse(c, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n")
        self.assertEqual(server.sessions[0].pipeliningViolations, [b"MAIL FROM:<a@x>"])
        server = SMTPTestServer()
        c = connect(server)
        converse(c, b"EHLO me\r\n")
        converse(c, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
        self.assertEqual(server.sessions[0].pipeliningViolations, [])
        converse(c, b".\r\nNOOP\r\nQUIT\r\n")
        self.assertEqual(server.sessions[0].pipeliningViolations, [b"NOOP"])

    def test_transcript(self) -> None:
        server = SMTPTestServer(extensions=[])
        c = connect(server)
        converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nab\r\n.\r\n")
        self.assertEqual(server.sessions[0].transcript(), "\n".join([
            "S: 220 localhost ESMTP mailclient.testing", "C: EHLO me", "S: 250 localhost",
            "C: MAIL FROM:<a@x>", "S: 250 Sender OK", "C: RCPT TO:<b@y>",
            "S: 250 Recipient OK", "C: DATA", "S: 354 End data with <CR><LF>.<CR><LF>",
            "C: [4 bytes of message data]", "S: 250 Message accepted"]))
        self.assertTrue(server.transcript().startswith("--- session 1 ---\nS: 220"))
        self.assertEqual(server.sessions[0].commands[-1], b"DATA")
        self.assertEqual(server.sessions[0].replies[-1], b"250 Message accepted\r\n")


class AuthTests(SynchronousTestCase):
    """
    Server-side SASL: PLAIN, LOGIN, CRAM-MD5 and XOAUTH2.
    """

    def setUp(self) -> None:
        self.server = SMTPTestServer(credentials={"alice": "s3cret"})
        self.c = connect(self.server)
        converse(self.c, b"EHLO me\r\n")

    def test_plainInitialResponse(self) -> None:
        out = converse(self.c, b"AUTH PLAIN " + b64(b"alice\0alice\0s3cret") + b"\r\n")
        self.assertEqual(out, b"235 Authentication successful\r\n")
        self.assertEqual(self.server.sessions[0].authenticated, b"alice")
        self.assertIn(b"AUTH PLAIN " + b64(b"alice\0alice\0s3cret"), self.server.sessions[0].commands)

    def test_plainChallenge(self) -> None:
        self.assertEqual(converse(self.c, b"AUTH PLAIN\r\n"), b"334\r\n")
        self.assertEqual(codes(converse(self.c, b64(b"\0alice\0s3cret") + b"\r\n")), [235])

    def test_plainWrongPassword(self) -> None:
        out = converse(self.c, b"AUTH PLAIN " + b64(b"\0alice\0nope") + b"\r\n")
        self.assertEqual(codes(out), [535])
        self.assertIsNone(self.server.sessions[0].authenticated)
        out = converse(self.c, b"AUTH PLAIN " + b64(b"bob\0alice\0s3cret") + b"\r\n")
        self.assertEqual(codes(out), [535])

    def test_login(self) -> None:
        self.assertEqual(converse(self.c, b"AUTH LOGIN\r\n"), b"334 " + b64(b"Username:") + b"\r\n")
        self.assertEqual(converse(self.c, b64(b"alice") + b"\r\n"), b"334 " + b64(b"Password:") + b"\r\n")
        self.assertEqual(codes(converse(self.c, b64(b"s3cret") + b"\r\n")), [235])
        self.assertEqual(self.server.sessions[0].authenticated, b"alice")

    def test_loginInitialResponse(self) -> None:
        out = converse(self.c, b"AUTH LOGIN " + b64(b"alice") + b"\r\n")
        self.assertEqual(out, b"334 " + b64(b"Password:") + b"\r\n")
        self.assertEqual(codes(converse(self.c, b64(b"wrong") + b"\r\n")), [535])

    def test_cramMD5(self) -> None:
        out = converse(self.c, b"AUTH CRAM-MD5\r\n")
        challenge = base64.b64decode(out[4:])
        self.assertTrue(re.match(rb"<\d+\.\d+@localhost>$", challenge), challenge)
        digest = hmac.new(b"s3cret", challenge, hashlib.md5).hexdigest().encode()
        self.assertEqual(codes(converse(self.c, b64(b"alice " + digest) + b"\r\n")), [235])

    def test_xoauth2(self) -> None:
        good = b64(b"user=alice\x01auth=Bearer s3cret\x01\x01")
        self.assertEqual(codes(converse(self.c, b"AUTH XOAUTH2 " + good + b"\r\n")), [235])

    def test_xoauth2Failure(self) -> None:
        """
        A bad token gets a 334 with a JSON error, then 535 after the client's
        empty response.
        """
        bad = b64(b"user=alice\x01auth=Bearer nope\x01\x01")
        out = converse(self.c, b"AUTH XOAUTH2 " + bad + b"\r\n")
        self.assertEqual(out[:4], b"334 ")
        self.assertIn(b'"status":"401"', base64.b64decode(out[4:]))
        self.assertEqual(codes(converse(self.c, b"\r\n")), [535])

    def test_cancelAndGarbage(self) -> None:
        converse(self.c, b"AUTH LOGIN\r\n")
        self.assertEqual(codes(converse(self.c, b"*\r\n")), [501])
        converse(self.c, b"AUTH LOGIN\r\n")
        self.assertEqual(codes(converse(self.c, b"!!!\r\n")), [501])
        self.assertEqual(codes(converse(self.c, b"AUTH PLAIN %%%\r\n")), [501])
        self.assertEqual(codes(converse(self.c, b"NOOP\r\n")), [250])

    def test_mechanismMustBeAdvertised(self) -> None:
        server = SMTPTestServer(extensions=["AUTH LOGIN"], credentials={"alice": "s3cret"})
        c = connect(server)
        out = converse(c, b"EHLO me\r\nAUTH PLAIN " + b64(b"\0alice\0s3cret") + b"\r\nAUTH FOO\r\n")
        self.assertEqual(codes(out), [250, 504, 504])
        c = connect(SMTPTestServer(extensions=[], credentials={"alice": "s3cret"}))
        self.assertEqual(codes(converse(c, b"EHLO me\r\nAUTH PLAIN\r\n")), [250, 502])

    def test_onlyOnce(self) -> None:
        converse(self.c, b"AUTH PLAIN " + b64(b"\0alice\0s3cret") + b"\r\n")
        self.assertEqual(codes(converse(self.c, b"AUTH PLAIN " + b64(b"\0alice\0s3cret") + b"\r\n")), [503])


class ScriptTests(SynchronousTestCase):
    """
    Scripted replies and faults, in memory.
    """

    def test_scriptFailureHasNoEffect(self) -> None:
        """
        A scripted 4xx reply replaces the default and the command has no
        effect: no transaction starts, so RCPT is out of sequence.
        """
        server = SMTPTestServer()
        server.script("MAIL", 451, b"4.3.0 try later")
        c = connect(server)
        out = converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n")
        self.assertIn(b"451 4.3.0 try later\r\n", out)
        self.assertEqual(codes(out), [250, 451, 503])

    def test_scriptSuccessHasEffect(self) -> None:
        """
        A scripted positive reply still applies the command's effect.
        """
        server = SMTPTestServer()
        server.script("DATA", 354, b"go on")
        c = connect(server)
        out = converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nx\r\n.\r\n")
        self.assertIn(b"354 go on\r\n", out)
        self.assertEqual(server.messages[0].data, b"x\r\n")

    def test_listScriptsSuccessiveCommands(self) -> None:
        """
        A list scripts successive commands of a verb; C{None} is the default,
        and the default applies once the list is used up.  C{None} alone
        removes a script.
        """
        server = SMTPTestServer()
        server.script("RCPT", [None, Reply(452, b"4.5.3 too many"), 550])
        c = connect(server)
        out = converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\n" + b"".join(
            b"RCPT TO:<%d@y>\r\n" % i for i in range(4)))
        self.assertEqual(codes(out), [250, 250, 250, 452, 550, 250])
        server.script("NOOP", 421)
        server.script("NOOP", None)
        self.assertEqual(codes(converse(c, b"NOOP\r\n")), [250])

    def test_rcptReply(self) -> None:
        """
        Per-recipient replies apply to that address (any case) only; refused
        recipients are not recorded.
        """
        server = SMTPTestServer()
        server.rcptReply("Bad@X", 550, b"5.1.1 no such user")
        c = connect(server)
        out = converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<bad@x>\r\n"
                          b"RCPT TO:<good@x>\r\nDATA\r\nhi\r\n.\r\n")
        self.assertIn(b"550 5.1.1 no such user\r\n", out)
        self.assertEqual(codes(out), [250, 250, 550, 250, 354, 250])
        self.assertEqual(server.messages[0].rcptTo, [b"good@x"])

    def test_greeting421(self) -> None:
        """
        A scripted 421 greeting is sent and the connection closed.
        """
        server = SMTPTestServer()
        server.script(GREETING, 421, b"4.3.2 busy")
        c = connect(server)
        self.assertEqual(c.client.received, b"421 4.3.2 busy\r\n")
        self.assertFalse(c.connected)
        self.assertIsInstance(c.client.lost.value, error.ConnectionDone)

    def test_greetingDisconnect(self) -> None:
        server = SMTPTestServer()
        server.script(GREETING, Disconnect())
        c = connect(server)
        self.assertEqual(c.client.received, b"")
        self.assertFalse(c.connected)

    def test_unknownGREETINGCommandDoesNotUseGreetingScript(self) -> None:
        server = SMTPTestServer()
        server.script(GREETING, [None, 554])
        c = connect(server)
        self.assertEqual(codes(converse(c, b"GREETING\r\n")), [500])
        self.assertEqual(codes(connect(server).client.received), [554])

    def test_dataEnd(self) -> None:
        """
        L{DATA_END} scripts the reply after the data; a refused message is
        recorded in C{refused}, not delivered.
        """
        server = SMTPTestServer()
        server.script(DATA_END, 552, b"5.3.4 too big")
        c = connect(server)
        out = converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nhi\r\n.\r\n")
        self.assertTrue(out.endswith(b"552 5.3.4 too big\r\n"))
        self.assertEqual(server.messages, [])
        self.assertEqual(server.sessions[0].refused[0].data, b"hi\r\n")
        self.assertEqual(codes(converse(c, b"RCPT TO:<b@y>\r\n")), [503])

    def test_dataEndAppliesToBdatLast(self) -> None:
        server = SMTPTestServer(extensions=["CHUNKING"])
        server.script(DATA_END, 554)
        c = connect(server)
        out = converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 1\r\nxBDAT 1 LAST\r\ny")
        self.assertEqual(codes(out), [250, 250, 250, 250, 554])
        self.assertEqual(server.sessions[0].refused[0].data, b"xy")

    def test_bdatScriptFailsTransaction(self) -> None:
        """
        A refused BDAT chunk ends the transaction: later chunks get 503.
        """
        server = SMTPTestServer(extensions=["CHUNKING"])
        server.script("BDAT", [451])
        c = connect(server)
        out = converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 1\r\nxBDAT 1 LAST\r\ny")
        self.assertEqual(codes(out), [250, 250, 250, 451, 503])
        self.assertEqual(server.messages, [])

    def test_disconnectAndAbort(self) -> None:
        """
        L{Disconnect} closes cleanly; L{Abort} resets, which the client sees as
        a lost connection.  Neither replies.
        """
        for action, reason in [(Disconnect(), error.ConnectionDone),
                               (Abort(), error.ConnectionLost)]:
            server = SMTPTestServer()
            server.script("MAIL", action)
            c = connect(server)
            converse(c, b"EHLO me\r\n")
            out = converse(c, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n")
            self.assertEqual(out, b"")
            self.assertIsInstance(c.client.lost.value, reason)
            self.assertEqual(server.sessions[0].commands, [b"EHLO me", b"MAIL FROM:<a@x>"])

    def test_garbage(self) -> None:
        """
        L{Garbage} is sent instead of the reply, and the command fails.
        """
        server = SMTPTestServer()
        server.script("MAIL", Garbage(b"\x00\xffjunk\r\n"))
        c = connect(server)
        converse(c, b"EHLO me\r\n")
        out = converse(c, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n")
        self.assertEqual(out, b"\x00\xffjunk\r\n503 Need MAIL command\r\n")

    def test_endlessLine(self) -> None:
        server = SMTPTestServer()
        server.script("EHLO", EndlessLine(size=50_000))
        c = connect(server)
        out = converse(c, b"EHLO me\r\nNOOP\r\n")
        self.assertEqual(out, b"250 " + b"x" * 50_000)
        self.assertTrue(c.connected)

    def test_noReply(self) -> None:
        """
        L{NoReply} hangs: nothing is answered any more, even after a long time.
        """
        server = SMTPTestServer()
        server.script("MAIL", NoReply())
        c = connect(server)
        self.assertEqual(codes(converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nNOOP\r\n")), [250])
        c.advance(3600)
        self.assertEqual(codes(converse(c, b"NOOP\r\n")), [])
        self.assertTrue(c.connected)
        self.assertEqual(c.clock.getDelayedCalls(), [])

    def test_delay(self) -> None:
        """
        A L{Delay} holds the reply, and the commands after it, for the given
        time on the server's clock, then does its action.
        """
        server = SMTPTestServer()
        server.script("MAIL", Delay(30))
        server.script("RCPT", Delay(5, Reply(451)))
        c = connect(server)
        self.assertEqual(codes(converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n")), [250])
        c.advance(29.9)
        self.assertEqual(codes(c.client.received), [220, 250])
        c.advance(0.1)
        self.assertEqual(codes(c.client.received), [220, 250, 250])
        c.advance(5)
        self.assertEqual(codes(c.client.received), [220, 250, 250, 451])

    def test_delayCancelledOnConnectionLoss(self) -> None:
        server = SMTPTestServer()
        server.script("MAIL", Delay(30))
        c = connect(server)
        converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\n")
        [call] = c.clock.getDelayedCalls()
        c.client.transport.loseConnection()
        c.pump()
        self.assertFalse(call.active())
        self.assertEqual(c.clock.getDelayedCalls(), [])

    def test_delayedGreeting(self) -> None:
        server = SMTPTestServer()
        server.script(GREETING, Delay(10))
        c = connect(server)
        self.assertEqual(c.client.received, b"")
        c.advance(10)
        self.assertEqual(codes(c.client.received), [220])

    def test_interruptBody(self) -> None:
        """
        L{SMTPTestServer.interruptBody} drops the connection once that much of
        the message has arrived, by DATA or BDAT.
        """
        for verb in [b"DATA\r\n", b"BDAT 5000 LAST\r\n"]:
            server = SMTPTestServer(extensions=["CHUNKING", "PIPELINING"])
            server.interruptBody(100, Abort())
            c = connect(server)
            converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n" + verb)
            self.assertTrue(c.connected)
            converse(c, b"0123456789abcdefghi\r\n" * 250 + b".\r\n")
            self.assertFalse(c.connected)
            self.assertIsInstance(c.client.lost.value, error.ConnectionLost)
            self.assertEqual(server.messages, [])
            self.assertEqual(server.sessions[0].refused, [])


class StartTLSTests(SynchronousTestCase):
    """
    STARTTLS, in memory with a real TLS layer.
    """

    def startTLS(self, server: SMTPTestServer, extra: bytes = b"") -> testing.MemoryConnection:
        c = connect(server)
        out = converse(c, b"EHLO me\r\nSTARTTLS\r\n" + extra)
        self.assertTrue(out.endswith(b"220 Ready to start TLS\r\n") or extra, out)
        c.client.transport.startTLS(server.clientTLSOptions())
        c.pump()
        return c

    def test_startTLS(self) -> None:
        """
        After STARTTLS the server forgets EHLO, stops advertising STARTTLS
        and refuses another one; the session is marked as TLS.
        """
        server = SMTPTestServer(credentials={"u": "p"})
        c = self.startTLS(server)
        session = server.sessions[0]
        self.assertTrue(session.tls)
        self.assertIsNone(session.helo)
        self.assertEqual(codes(converse(c, b"MAIL FROM:<a@x>\r\n")), [503])
        out = converse(c, b"EHLO me\r\n")
        self.assertNotIn(b"STARTTLS", out)
        self.assertIn(b"AUTH PLAIN", out)
        self.assertEqual(codes(converse(c, b"STARTTLS\r\n")), [503])
        self.assertIsNotNone(c.clientTransport.getPeerCertificate())
        self.assertEqual(session.plaintextAfterSTARTTLS, b"")

    def test_detectsCommandInjection(self) -> None:
        """
        Commands the client sent in plaintext after STARTTLS are recorded and
        discarded, not executed over TLS.
        """
        server = SMTPTestServer()
        c = self.startTLS(server, extra=b"MAIL FROM:<evil@x>\r\n")
        session = server.sessions[0]
        self.assertEqual(session.plaintextAfterSTARTTLS, b"MAIL FROM:<evil@x>\r\n")
        self.assertNotIn(b"MAIL FROM:<evil@x>", session.commands)
        self.assertEqual(codes(converse(c, b"EHLO me\r\nMAIL FROM:<a@x>\r\n")), [250, 250])

    def test_injectsAfterReply(self) -> None:
        server = SMTPTestServer(starttlsInjection=b"250 injected\r\n")
        c = connect(server)
        out = converse(c, b"EHLO me\r\nSTARTTLS\r\n")
        self.assertTrue(out.endswith(b"220 Ready to start TLS\r\n250 injected\r\n"), out)

    def test_notOffered(self) -> None:
        c = connect(SMTPTestServer(extensions=[]))
        self.assertEqual(codes(converse(c, b"EHLO me\r\nSTARTTLS\r\nSTARTTLS now\r\n")), [250, 502, 501])

    def test_wrongHostnameFailsVerification(self) -> None:
        """
        The generated certificate is verified for real: a client expecting
        another name fails the handshake.
        """
        server = SMTPTestServer()
        c = connect(server)
        converse(c, b"EHLO me\r\nSTARTTLS\r\n")
        c.client.transport.startTLS(server.clientTLSOptions("other.example"))
        c.pump()
        self.assertFalse(c.connected)
        self.assertIsNotNone(c.client.lost)
        self.assertNotIsInstance(c.client.lost.value, error.ConnectionDone)

    def test_customCertificate(self) -> None:
        """
        C{tlsCertificate} replaces the generated certificate.
        """
        certs = testing.generateCertificates(hostname="mx.example")
        server = SMTPTestServer(tlsCertificate=certs.serverCertificate())
        c = connect(server)
        converse(c, b"EHLO me\r\nSTARTTLS\r\n")
        c.client.transport.startTLS(certs.clientOptions())
        c.pump()
        self.assertEqual(codes(converse(c, b"EHLO me\r\n")), [250])
        self.assertTrue(server.sessions[0].tls)

    def test_certificates(self) -> None:
        certs = testing.localCertificates()
        self.assertIs(certs, testing.localCertificates())
        self.assertEqual(SMTPTestServer().caCertificatePEM, certs.caCertificatePEM)
        self.assertIn(b"BEGIN CERTIFICATE", certs.caCertificatePEM)
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(certs.serverCertificatePEM)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(names.get_values_for_type(x509.DNSName), ["localhost"])
        self.assertEqual([str(ip) for ip in names.get_values_for_type(x509.IPAddress)],
                         ["127.0.0.1", "::1"])


def senderFactory(server: Optional[SMTPTestServer] = None, tls: bool = False,
                  user: bytes = b"alice", message: bytes = MESSAGE, **kw: Any) -> Any:
    """
    A Twisted SMTP client factory sending C{message} to two recipients.
    """
    d: defer.Deferred = defer.Deferred()
    factory: Any
    args = (b"from@example.com", [b"to1@example.com", b"to2@example.com"], BytesIO(message), d)
    kw.setdefault("retries", 0)
    if tls:
        assert server is not None
        factory = tsmtp.ESMTPSenderFactory(user, b"s3cret", *args,
                                           contextFactory=server.clientTLSOptions(), **kw)
    else:
        factory = tsmtp.SMTPSenderFactory(*args, **kw)
    return factory, d


class TwistedClientInMemoryTests(SMTPTestCaseMixin, SynchronousTestCase):
    """
    Twisted's own SMTP clients against the server, in memory.
    """

    def test_delivery(self) -> None:
        server = SMTPTestServer()
        factory, d = senderFactory()
        c = server.connectInMemory(factory)
        self.assertEqual(self.successResultOf(d)[0], 2)
        self.assertDelivered(server, to=["to1@example.com", "to2@example.com"],
                             from_="from@example.com", containing=b"Hello.")
        self.assertEqual(server.messages[0].data, SENT)
        self.assertFalse(server.messages[0].bareLineEndings)
        self.assertFalse(c.connected)

    def test_bareLineEndingsFromTwisted(self) -> None:
        """
        Given CRLF input, Twisted's client sends CR CR LF; the server flags
        the message.
        """
        server = SMTPTestServer()
        factory, d = senderFactory(message=SENT)
        server.connectInMemory(factory)
        self.successResultOf(d)
        self.assertEqual(server.messages[0].data, b"Subject: hi\r\r\n\r\r\nHello.\r\r\n")
        self.assertTrue(server.messages[0].bareLineEndings)

    def test_startTLSAndAuth(self) -> None:
        """
        ESMTPSenderFactory upgrades to TLS, verifying the certificate against
        the server's CA, and authenticates, all in memory.
        """
        server = SMTPTestServer(extensions=["STARTTLS", "AUTH PLAIN"], requireTLS=True,
                                requireAuth=True, credentials={"alice": "s3cret"})
        factory, d = senderFactory(server, tls=True)
        c = server.connectInMemory(factory)
        self.successResultOf(d)
        self.assertFalse(c.connected)
        session = server.sessions[0]
        self.assertTrue(session.tls)
        self.assertEqual(session.authenticated, b"alice")
        self.assertDelivered(session, to="to1@example.com")

    def test_retryAfter421Greeting(self) -> None:
        """
        The client factory's retry (C{connector.connect()}) reconnects in
        memory; the second session delivers.
        """
        server = SMTPTestServer()
        server.script(GREETING, [Reply(421, b"busy")])
        factory, d = senderFactory(retries=1)
        c = server.connectInMemory(factory)
        self.successResultOf(d)
        self.assertEqual(len(server.sessions), 2)
        self.assertEqual(server.sessions[0].messages, [])
        self.assertIs(c.session, server.sessions[1])
        self.assertDelivered(server.sessions[1], containing=b"Hello.")

    def test_greeting421Fails(self) -> None:
        server = SMTPTestServer()
        server.script(GREETING, 421, b"busy")
        factory, d = senderFactory()
        server.connectInMemory(factory)
        self.failureResultOf(d, tsmtp.SMTPConnectError)
        self.assertNothingDelivered(server)

    def test_clientTimeoutRunsOnTheClock(self) -> None:
        """
        The client's timeouts run on the connection's clock, so a server that
        stops answering is tested without waiting.
        """
        server = SMTPTestServer()
        server.script("RCPT", NoReply())
        factory, d = senderFactory(timeout=10)
        c = server.connectInMemory(factory)
        self.assertNoResult(d)
        c.advance(11)
        self.failureResultOf(d, tsmtp.SMTPTimeoutError)
        self.assertEqual(c.clock.getDelayedCalls(), [])

    def test_recipientRefused(self) -> None:
        server = SMTPTestServer()
        server.rcptReply("to2@example.com", 550, b"5.1.1 unknown")
        factory, d = senderFactory()
        server.connectInMemory(factory)
        count, results = self.successResultOf(d)
        self.assertEqual(count, 1)
        self.assertEqual(results[1], (b"to2@example.com", 550, b"5.1.1 unknown"))
        self.assertEqual(self.assertDelivered(server).rcptTo, [b"to1@example.com"])

    def test_abort(self) -> None:
        if not _TWISTED_26:
            raise SkipTest("Twisted's client reports the reset differently before 26")
        server = SMTPTestServer()
        server.script("MAIL", Delay(60))
        factory, d = senderFactory()
        c = server.connectInMemory(factory)
        c.abort()
        self.failureResultOf(d, tsmtp.SMTPConnectError)
        self.assertFalse(c.connected)
        self.assertEqual(c.clock.getDelayedCalls(), [])


class MixinTests(SMTPTestCaseMixin, SynchronousTestCase):
    """
    L{SMTPTestCaseMixin}'s assertions.
    """

    def setUp(self) -> None:
        self.server = SMTPTestServer()
        converse(connect(self.server), b"EHLO me\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n"
                                       b"RCPT TO:<c@y>\r\nDATA\r\nhello\r\n.\r\n")

    def test_assertDelivered(self) -> None:
        message = self.assertDelivered(self.server, to=["c@y", b"b@y"], from_="a@x",
                                       containing="hello")
        self.assertEqual(message.data, b"hello\r\n")

    def test_assertDeliveredFails(self) -> None:
        cases: List[Dict[str, Any]] = [{"to": "d@y"}, {"from_": b"b@y"}, {"containing": b"bye"}]
        for kw in cases:
            e = self.assertRaises(self.failureException, self.assertDelivered, self.server, **kw)
            self.assertIn("C: RCPT TO:<c@y>", str(e))
        e = self.assertRaises(self.failureException, self.assertDelivered, SMTPTestServer())
        self.assertIn("(none)", str(e))

    def test_assertNothingDelivered(self) -> None:
        self.assertNothingDelivered(SMTPTestServer())
        self.assertRaises(self.failureException, self.assertNothingDelivered, self.server)


def waitUntil(predicate: Callable[[], bool], timeout: float = 10) -> defer.Deferred:
    """
    Poll C{predicate} on the reactor until it is true.
    """
    deadline = reactor.seconds() + timeout

    def check() -> Any:
        if predicate():
            return None
        if reactor.seconds() > deadline:
            raise AssertionError("timed out")
        return task.deferLater(reactor, 0.005, check)

    return defer.maybeDeferred(check)


class LoopbackTests(SMTPTestCaseMixin, TestCase):
    """
    The server on a real loopback port, with Twisted's clients and raw ones.
    Trial fails these if a socket or delayed call is left behind.
    """

    def connectRaw(self, server: SMTPTestServer) -> defer.Deferred:
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", server.portNumber)
        return endpoint.connect(Factory.forProtocol(RawClient))

    @defer.inlineCallbacks
    def test_sendmail(self) -> Any:
        """
        Twisted's C{sendmail} delivers over loopback.
        """
        server = self.startSMTPServer(extensions=["PIPELINING", "8BITMIME"])
        result = yield tsmtp.sendmail("127.0.0.1", "from@example.com", ["to@example.com"],
                                      MESSAGE, port=server.portNumber)
        self.assertEqual(result[0], 1)
        self.assertDelivered(server, to="to@example.com", containing=b"Hello.")
        self.assertEqual(server.messages[0].data, SENT)

    @defer.inlineCallbacks
    def startTLSAndAuth(self, mechanism: str) -> Any:
        server = self.startSMTPServer(extensions=["STARTTLS", f"AUTH {mechanism}"],
                                      requireTLS=True, credentials={"alice": "s3cret"})
        factory, d = senderFactory(server, tls=True)
        reactor.connectTCP("127.0.0.1", server.portNumber, factory)
        yield d
        session = server.sessions[0]
        self.assertTrue(session.tls)
        self.assertEqual(session.authenticated, b"alice")
        self.assertTrue(any(c.upper().startswith(b"AUTH " + mechanism.encode())
                            for c in session.commands))
        self.assertDelivered(server, to="to2@example.com", containing=b"Hello.")

    def test_startTLSAndAuthPLAIN(self) -> Any:
        """
        ESMTPSenderFactory, verifying the server against the server's CA,
        upgrades with STARTTLS and authenticates with PLAIN.
        """
        return self.startTLSAndAuth("PLAIN")

    def test_startTLSAndAuthLOGIN(self) -> Any:
        return self.startTLSAndAuth("LOGIN")

    def test_startTLSAndAuthCRAMMD5(self) -> Any:
        return self.startTLSAndAuth("CRAM-MD5")

    @defer.inlineCallbacks
    def test_authFailure(self) -> Any:
        server = self.startSMTPServer(extensions=["STARTTLS", "AUTH PLAIN"],
                                      credentials={"alice": "other"})
        factory, d = senderFactory(server, tls=True)
        reactor.connectTCP("127.0.0.1", server.portNumber, factory)
        yield self.assertFailure(d, tsmtp.AUTHDeclinedError)
        self.assertNothingDelivered(server)
        self.assertIsNone(server.sessions[0].authenticated)

    @defer.inlineCallbacks
    def test_disconnectMidBody(self) -> Any:
        """
        Dropping the connection in the middle of the body fails the client and
        delivers nothing.
        """
        server = self.startSMTPServer(extensions=[])
        server.interruptBody(1000, Disconnect())
        d = tsmtp.sendmail("127.0.0.1", "a@example.com", ["b@example.com"],
                           b"Subject: big\r\n\r\n" + b"x" * 70 * 2000, port=server.portNumber)
        failure = yield self.assertFailure(d, tsmtp.SMTPConnectError)
        self.assertNothingDelivered(server)
        self.assertTrue(server.sessions[0].closed)
        self.assertIsNotNone(failure)

    @defer.inlineCallbacks
    def test_disconnectVersusAbort(self) -> Any:
        """
        Over TCP, L{Disconnect} is a clean close and L{Abort} a reset.
        """
        if not _TWISTED_26:
            raise SkipTest("Twisted's SMTP client before 26 alters connection-lost Failures")
        server = self.startSMTPServer()
        server.script("MAIL", [Disconnect(), Abort()])
        for reason in [error.ConnectionDone, error.ConnectionLost]:
            client = yield self.connectRaw(server)
            client.transport.write(b"EHLO me\r\n")
            yield client.waitFor(lambda c: c.received.endswith(b"250 STARTTLS\r\n"))
            client.transport.write(b"MAIL FROM:<a@x>\r\n")
            yield client.waitFor(lambda c: c.lost is not None)
            self.assertIsInstance(client.lost.value, reason)
            self.assertEqual(codes(client.received), [220, 250])

    @defer.inlineCallbacks
    def test_delayedReply(self) -> Any:
        server = self.startSMTPServer()
        server.script("NOOP", Delay(0.05, Reply(250, b"late")))
        client = yield self.connectRaw(server)
        start = reactor.seconds()
        client.transport.write(b"NOOP\r\nQUIT\r\n")
        yield client.waitFor(lambda c: c.lost is not None)
        self.assertGreaterEqual(reactor.seconds() - start, 0.05)
        self.assertEqual(client.received.split(b"\r\n")[1:3], [b"250 late", b"221 Bye"])

    @defer.inlineCallbacks
    def test_stopListeningCleansUp(self) -> Any:
        """
        L{SMTPTestServer.stopListening} resets open connections and cancels
        pending delayed replies; the port is closed.
        """
        server = SMTPTestServer()
        server.script("MAIL", Delay(300))
        server.listenTCP()
        port = server.portNumber
        client = yield self.connectRaw(server)
        client.transport.write(b"EHLO me\r\nMAIL FROM:<a@x>\r\n")
        yield waitUntil(lambda: b"MAIL FROM:<a@x>" in server.sessions[0].commands)
        [call] = [c for c in reactor.getDelayedCalls() if c.getTime() > reactor.seconds() + 200]
        yield server.stopListening()
        self.assertFalse(call.active())
        self.assertIsNotNone(client.lost)
        self.assertTrue(server.sessions[0].closed)
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        yield self.assertFailure(endpoint.connect(Factory.forProtocol(RawClient)),
                                 error.ConnectionRefusedError)

    def test_listenTwice(self) -> None:
        server = self.startSMTPServer()
        self.assertRaises(RuntimeError, server.listenTCP)
        self.assertRaises(RuntimeError, lambda: SMTPTestServer().portNumber)


class DocumentationTests(SynchronousTestCase):
    """
    The test files of C{docs/testing.rst} run, under trial and under pytest
    with the plugin, with DeprecationWarnings as errors.
    """

    def examples(self) -> Dict[str, str]:
        path = os.path.join(ROOT, "docs", "testing.rst")
        if not os.path.exists(path):
            self.skipTest("docs/testing.rst is not available")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        found = {}
        for match in re.finditer(r"^\.\. file: (\S+)\n\n\.\. code-block:: python\n\n"
                                 r"((?:(?:    .*)?\n)+)", text, re.M):
            code = "\n".join(line[4:] for line in match.group(2).splitlines())
            found[match.group(1)] = code.rstrip("\n") + "\n"
        return found

    def test_files(self) -> None:
        self.assertEqual(set(self.examples()), {
            "test_trial_example.py", "test_pytest_example.py", "test_pytest_loopback.py"})

    def run_(self, name: str, *command: str, source: Optional[str] = None) -> str:
        if source is None:
            examples = self.examples()
            self.assertIn(name, examples)
            source = examples[name]
        return runFile(self, name, source, *command)

    def pytest(self, name: str, source: Optional[str] = None) -> str:
        if source is None:
            source = self.examples()[name]
        return runPytest(self, name, source)

    def test_trialExample(self) -> None:
        output = self.run_("test_trial_example.py", "-m", "twisted.trial",
                           "test_trial_example")
        self.assertIn("PASSED (successes=3)", output)

    def test_pytestExample(self) -> None:
        output = self.pytest("test_pytest_example.py")
        self.assertRegex(output, r"\b4 passed")

    def test_pytestExampleFailsWithSTARTTLS(self) -> None:
        """
        What the page says: a server offering STARTTLS makes code that names
        its host, with no context of its own, fail (so the fixture offers
        none unless asked); the example's tests can fail.
        """
        source = self.examples()["test_pytest_example.py"].replace(
            "def test_welcome(smtp_server):",
            "@pytest.mark.smtp_server(starttls=True)\ndef test_welcome(smtp_server):")
        with self.assertRaises(self.failureException) as caught:
            self.pytest("test_pytest_example.py", source)
        self.assertIn("FAILED test_pytest_example.py::test_welcome", str(caught.exception))
        self.assertIn("SMTPTLSError", str(caught.exception))

    def test_pytestLoopbackExample(self) -> None:
        """
        The pytest-twisted example (CI runs it in a fresh environment; here
        only if pytest-twisted is installed).
        """
        try:
            import pytest_twisted  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
        except ImportError:
            raise SkipTest("pytest-twisted is not installed")
        output = self.pytest("test_pytest_loopback.py")
        self.assertRegex(output, r"\b3 passed")


def runFile(testCase: SynchronousTestCase, name: str, source: str, *command: str) -> str:
    """
    Write C{source} as C{name} in a new directory and run this Python there
    with C{command} and DeprecationWarnings as errors; fail C{testCase}
    unless it exits with 0; return its output.
    """
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, name), "w") as f:
            f.write(source)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, tmp]))
        env.pop("PYTHONWARNINGS", None)
        result = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", *command],
                                cwd=tmp, env=env, capture_output=True, timeout=120)
    output = result.stdout.decode() + result.stderr.decode()
    testCase.assertEqual(result.returncode, 0, output)
    return output


def runPytest(testCase: SynchronousTestCase, name: str, source: str) -> str:
    """
    L{runFile} under pytest, with mailclient's plugin.
    """
    return runFile(testCase, name, source, "-m", "pytest", *pluginOptions(), "-q",
                   "-p", "no:cacheprovider", "-W", "error::DeprecationWarning", name)


def pluginOptions() -> List[str]:
    """
    The pytest options that load mailclient's plugin, if its entry point is
    not registered (a checkout on the path, not installed).
    """
    from importlib.metadata import entry_points

    plugin = "mailclient.pytest_plugin"
    eps: Any = entry_points()
    group = eps.select(group="pytest11") if hasattr(eps, "select") else eps.get("pytest11", ())
    registered = any(ep.value == plugin for ep in group)
    return [] if registered else ["-p", plugin]


class PluginTests(SynchronousTestCase):
    """
    The C{smtp_server} fixture of C{mailclient.pytest_plugin}.
    """

    def test_noSTARTTLSUnlessAsked(self) -> None:
        from mailclient.pytest_plugin import _serverConfig

        self.assertEqual(_serverConfig({}), {"starttls": False})
        self.assertEqual(_serverConfig({"hostname": "mx"}), {"hostname": "mx", "starttls": False})
        self.assertEqual(_serverConfig({"starttls": True}), {"starttls": True})
        self.assertEqual(_serverConfig({"requireTLS": True}),
                         {"requireTLS": True, "starttls": True})
        self.assertEqual(_serverConfig({"extensions": ["STARTTLS"]}), {"extensions": ["STARTTLS"]})

    def test_fixture(self) -> None:
        """
        Run by pytest: the fixture's server follows its marker, and offers
        STARTTLS only when asked.
        """
        source = textwrap.dedent("""
            import pytest

            def test_default(smtp_server):
                assert not smtp_server.starttls
                assert smtp_server.extensions == ["PIPELINING", "8BITMIME"]

            @pytest.mark.smtp_server(starttls=True, hostname="mx.example")
            def test_asked(smtp_server):
                assert smtp_server.starttls and smtp_server.hostname == "mx.example"

            @pytest.mark.smtp_server(requireTLS=True, credentials={"a": "b"})
            def test_requireTLS(smtp_server):
                assert smtp_server.starttls and smtp_server.requireTLS

            @pytest.mark.smtp_server(extensions=["STARTTLS", "CHUNKING"])
            def test_extensions(smtp_server):
                assert smtp_server.extensions == ["STARTTLS", "CHUNKING"]

            def test_fresh(smtp_server):
                assert smtp_server.sessions == []
            """)
        output = runPytest(self, "test_fixture.py", source)
        self.assertRegex(output, r"\b5 passed")


class TLSMaterialTests(SynchronousTestCase):
    """
    The test server's certificates: made with current APIs (no pyOpenSSL
    deprecation warning), for the server's host name, from one CA.
    """

    def handshake(self, server: SMTPTestServer, clientOptions: Any) -> testing.MemoryConnection:
        c = connect(server)
        converse(c, b"EHLO me\r\nSTARTTLS\r\n")
        c.client.transport.startTLS(clientOptions)
        c.pump()
        return c

    def assertHandshake(self, server: SMTPTestServer, clientOptions: Any) -> None:
        c = self.handshake(server, clientOptions)
        self.assertTrue(c.connected, server.transcript())
        self.assertEqual(codes(converse(c, b"EHLO me\r\n")), [250])
        self.assertIsNotNone(c.clientTransport.getPeerCertificate())

    def assertNoDeprecation(self, f: Callable[[], Any]) -> Any:
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = f()
        self.assertEqual([str(w.message) for w in caught
                          if issubclass(w.category, DeprecationWarning)], [])
        return result

    def test_noDeprecationWarnings(self) -> None:
        """
        Making the server's TLS context and shaking hands, with the generated
        certificate, a custom L{PrivateCertificate} and L{serverOptions},
        raises no DeprecationWarning (pyOpenSSL warns when handed its own
        X509 and PKey objects).
        """
        other = testing.generateCertificates("mx.example")
        servers = [
            (SMTPTestServer(hostname="fresh-%d.example" % (id(self),)), None),
            (SMTPTestServer(tlsCertificate=other.serverCertificate()), other.clientOptions()),
            (SMTPTestServer(tlsCertificate=other.serverOptions()), other.clientOptions()),
        ]
        for server, clientOptions in servers:
            options = self.assertNoDeprecation(lambda: server.tlsOptions)
            self.assertNoDeprecation(options.getContext)
            self.assertNoDeprecation(
                lambda: self.assertHandshake(server, clientOptions or server.clientTLSOptions()))

    def test_oldPyOpenSSL(self) -> None:
        """
        A pyOpenSSL that does not take C{cryptography} objects is given its
        own.
        """
        import warnings

        from mailclient._testing import certs

        self.patch(certs, "_takes", False)
        server = SMTPTestServer(hostname="old-%d.example" % (id(self),))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.assertHandshake(server, server.clientTLSOptions())

    def test_certificateForHostname(self) -> None:
        """
        A server's generated certificate is for its C{hostname} (and
        C{localhost} and the loopback addresses), signed by the one CA of the
        process; L{clientTLSOptions} verifies the server's name by default.
        """
        from cryptography import x509

        server = SMTPTestServer(hostname="mail.example.com")
        self.assertEqual(server.caCertificatePEM, SMTPTestServer().caCertificatePEM)
        self.assertEqual(server.caCertificatePEM, testing.localCertificates().caCertificatePEM)
        certs = testing.localCertificates("mail.example.com")
        self.assertIs(certs, testing.localCertificates("MAIL.example.com"))
        cert = x509.load_pem_x509_certificate(certs.serverCertificatePEM)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(names.get_values_for_type(x509.DNSName), ["mail.example.com", "localhost"])
        self.assertEqual([str(ip) for ip in names.get_values_for_type(x509.IPAddress)],
                         ["127.0.0.1", "::1"])
        for clientOptions in (server.clientTLSOptions(),
                              server.clientTLSOptions("mail.example.com"),
                              server.clientTLSOptions("localhost")):
            self.assertHandshake(server, clientOptions)
        c = self.handshake(server, server.clientTLSOptions("other.example.com"))
        self.assertFalse(c.connected)

    def test_ipAddressHostname(self) -> None:
        server = SMTPTestServer(hostname="192.0.2.7")
        self.assertHandshake(server, server.clientTLSOptions())

    def test_unusableHostname(self) -> None:
        """
        A host name no certificate can hold gets the C{localhost} one.
        """
        server = SMTPTestServer(hostname="bücher.example")
        self.assertRaises(ValueError, testing.localCertificates, "bücher.example")
        self.assertHandshake(server, server.clientTLSOptions())

    def test_hostnameChanged(self) -> None:
        server = SMTPTestServer()
        self.assertHandshake(server, server.clientTLSOptions())
        server.hostname = "changed.example"
        self.assertHandshake(server, server.clientTLSOptions("changed.example"))


class STARTTLSOptionTests(SynchronousTestCase):
    """
    L{SMTPTestServer}'s C{starttls} option.
    """

    def test_default(self) -> None:
        self.assertTrue(SMTPTestServer().starttls)
        self.assertIn("STARTTLS", SMTPTestServer().extensions)

    def test_off(self) -> None:
        server = SMTPTestServer(starttls=False, credentials={"a": "b"})
        self.assertFalse(server.starttls)
        self.assertEqual(server.extensions,
                         ["PIPELINING", "8BITMIME", "AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2"])
        c = connect(server)
        self.assertEqual(codes(converse(c, b"EHLO me\r\nSTARTTLS\r\n")), [250, 502])

    def test_offRemovesFromExtensions(self) -> None:
        server = SMTPTestServer(extensions=["starttls", "CHUNKING"], starttls=False)
        self.assertEqual(server.extensions, ["CHUNKING"])

    def test_onAddsToExtensions(self) -> None:
        server = SMTPTestServer(extensions=["CHUNKING"], starttls=True)
        self.assertEqual(server.extensions, ["CHUNKING", "STARTTLS"])
        server = SMTPTestServer(extensions=["STARTTLS"], starttls=True)
        self.assertEqual(server.extensions, ["STARTTLS"])

    def test_noTLSLibraries(self) -> None:
        """
        Without cryptography and pyOpenSSL the default server offers no
        STARTTLS (it could not start TLS).
        """
        from mailclient._testing import server as serverModule

        self.patch(serverModule, "tlsAvailable", lambda: False)
        self.assertNotIn("STARTTLS", SMTPTestServer().extensions)
        self.assertIn("STARTTLS", SMTPTestServer(starttls=True).extensions)

    def test_tlsAvailable(self) -> None:
        from mailclient._testing.certs import tlsAvailable

        self.assertTrue(tlsAvailable())
