"""
Interoperability tests: mailclient against real SMTP servers on loopback,
started by the tests themselves.

  - Twisted's own C{twisted.mail.smtp.ESMTP} server, with a cred portal for
    AUTH LOGIN, PLAIN and CRAM-MD5 and STARTTLS with a runtime-generated
    certificate;
  - aiosmtpd, run by its threaded C{Controller} on an ephemeral port.

Twisted's server and the connection tracking are in
L{mailclient.test.helpers_interop}, shared with L{mailclient.test.test_sender}
and L{mailclient.test.test_sendmail}.
"""

from __future__ import annotations

import io
import ssl as stdlib_ssl
from typing import Any, Callable, List, Optional, Sequence, Tuple

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from mailclient import smtp as mailclient_smtp
from mailclient._testing.certs import LocalCertificates, generateCertificates, localCertificates
from mailclient.test.helpers_interop import (
    PASSWORD,
    SENDER,
    TWISTED_MESSAGE,
    TWISTED_RECEIVED,
    USER,
    ClientTracker,
    TrackingReactor,
    TwistedSMTPServer,
    startTwistedServer,
)

#: A message whose first line starts with a dot and that does not end with
#: a newline.
MESSAGE = b".first line starts with a dot\nSubject: interop\n\nbody\n..two dots\nno final newline"
#: What the server must store (dot-stuffing undone, CRLF line endings, and
#: the CRLF the client adds before the final dot).
RECEIVED = b".first line starts with a dot\r\nSubject: interop\r\n\r\nbody\r\n..two dots\r\nno final newline\r\n"


def serverSSLContext(testCase: TestCase, certs: LocalCertificates) -> stdlib_ssl.SSLContext:
    """
    A standard-library server context presenting C{certs}' server
    certificate (for aiosmtpd).
    """
    certFile = testCase.mktemp()
    keyFile = testCase.mktemp()
    with open(certFile, "wb") as f:
        f.write(certs.serverCertificatePEM)
    with open(keyFile, "wb") as f:
        f.write(certs.serverKeyPEM)
    ctx = stdlib_ssl.create_default_context(stdlib_ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certFile, keyFile)
    return ctx


# Twisted's ESMTP server


# aiosmtpd


def _aiosmtpd() -> Any:
    from aiosmtpd.controller import Controller

    class EphemeralController(Controller):
        """
        A C{Controller} that listens on an ephemeral port (port 0).
        """

        def _trigger_server(self) -> None:
            self.port = self.server.sockets[0].getsockname()[1]
            Controller._trigger_server(self)

    return EphemeralController


class RecordingHandler:
    """
    An aiosmtpd handler recording messages; refuses some recipients and can
    refuse every message at the end of DATA.
    """

    def __init__(self, refuse: Sequence[str] = (), dataReply: Optional[str] = None) -> None:
        self.refuse = set(refuse)
        self.dataReply = dataReply
        self.messages: List[Tuple[str, List[str], bytes]] = []
        self.dataCommands = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.dataCommands += 1
        if self.dataReply is not None:
            return self.dataReply
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted"


def startAiosmtpd(
    testCase: TestCase, tracker: ClientTracker, handler: RecordingHandler, **kw: Any
) -> Any:
    """
    Start aiosmtpd in its thread on 127.0.0.1; on cleanup wait for the
    client connections to be closed, then stop it.
    """
    controller = _aiosmtpd()(
        handler, hostname="127.0.0.1", port=0, server_hostname="mx.test", **kw
    )
    controller.start()
    testCase.addCleanup(controller.stop)
    testCase.addCleanup(tracker.whenIdle)
    return controller


def authenticator(logins: List[Tuple[str, bytes]]) -> Callable[..., Any]:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and data.login == USER and data.password == PASSWORD
        if ok:
            logins.append((mechanism, data.login))
        return AuthResult(success=ok)

    return check


class TwistedServerTests(TestCase):
    """
    mailclient against Twisted's own ESMTP server.
    """

    def setUp(self) -> None:
        self.tracker = ClientTracker()
        self.certs = localCertificates()

    def send(
        self,
        server: TwistedSMTPServer,
        recipients: Sequence[str] = ("bob@example.org",),
        message: bytes = TWISTED_MESSAGE,
        tls: bool = False,
        **kw: Any,
    ) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        factory = mailclient_smtp.ESMTPSenderFactory(
            kw.pop("username", USER),
            kw.pop("password", PASSWORD),
            SENDER,
            list(recipients),
            io.BytesIO(message),
            d,
            retries=0,
            timeout=10,
            **kw,
        )
        self.tracker.watch(factory)
        if tls:
            reactor.connectSSL("127.0.0.1", server.portNumber, factory, kw["contextFactory"])
        else:
            reactor.connectTCP("127.0.0.1", server.portNumber, factory)
        return d

    @defer.inlineCallbacks
    def test_plainDelivery(self) -> Any:
        """
        Without TLS or authentication, the message arrives byte for byte.
        """
        server = startTwistedServer(self, self.tracker, mechanisms=())
        result = yield self.send(
            server, requireAuthentication=False, requireTransportSecurity=False
        )
        self.assertEqual(result, (1, [(b"bob@example.org", 250, b"Recipient address accepted")]))
        self.assertEqual(server.received, [(SENDER, "bob@example.org", TWISTED_RECEIVED)])
        self.assertNotIn(b"STARTTLS", server.commands)

    @defer.inlineCallbacks
    def test_refusedRecipient(self) -> Any:
        server = startTwistedServer(self, self.tracker, mechanisms=(), refuse=["nobody@example.org"])
        numOk, addresses = yield self.send(
            server,
            recipients=["bob@example.org", "nobody@example.org"],
            requireAuthentication=False,
            requireTransportSecurity=False,
        )
        self.assertEqual(numOk, 1)
        self.assertEqual([(a, c) for a, c, r in addresses], [(b"bob@example.org", 250), (b"nobody@example.org", 550)])
        self.assertEqual([r[1] for r in server.received], ["bob@example.org"])

    @defer.inlineCallbacks
    def authOverStartTLS(self, mechanism: bytes) -> Any:
        server = startTwistedServer(
            self,
            self.tracker,
            startTLSOptions=self.certs.serverOptions(),
            mechanisms=(mechanism,),
            requireAuth=True,
        )
        result = yield self.send(server, contextFactory=self.certs.clientOptions("localhost"))
        self.assertEqual(result[0], 1)
        self.assertEqual(server.logins, [USER])
        self.assertEqual(server.received, [(SENDER, "bob@example.org", TWISTED_RECEIVED)])
        commands = [c.split()[0].upper() for c in server.commands if c]
        self.assertEqual(commands[:3], [b"EHLO", b"STARTTLS", b"EHLO"])
        self.assertEqual(server.commands[3].split()[:2], [b"AUTH", mechanism])
        return server

    def test_authCramMD5OverStartTLS(self) -> Any:
        return self.authOverStartTLS(b"CRAM-MD5")

    def test_authLoginOverStartTLS(self) -> Any:
        return self.authOverStartTLS(b"LOGIN")

    def test_authPlainOverStartTLS(self) -> Any:
        return self.authOverStartTLS(b"PLAIN")

    @defer.inlineCallbacks
    def test_wrongPassword(self) -> Any:
        server = startTwistedServer(
            self, self.tracker, startTLSOptions=self.certs.serverOptions(), mechanisms=(b"LOGIN",)
        )
        d = self.send(server, password=b"wrong", contextFactory=self.certs.clientOptions("localhost"))
        error = yield self.assertFailure(d, mailclient_smtp.AUTHDeclinedError)
        self.assertEqual(error.code, 535)
        self.assertEqual(server.received, [])
        self.assertNotIn(b"wrong", str(error).encode())

    @defer.inlineCallbacks
    def test_implicitTLS(self) -> Any:
        """
        Over C{connectSSL}, the client does not send STARTTLS and
        authenticates over the TLS connection.
        """
        server = startTwistedServer(
            self,
            self.tracker,
            implicitTLSOptions=self.certs.serverOptions(),
            # Offered even over TLS: the client must not use it.
            startTLSOptions=self.certs.serverOptions(),
            mechanisms=(b"PLAIN",),
            requireAuth=True,
        )
        result = yield self.send(server, tls=True, contextFactory=self.certs.clientOptions("localhost"))
        self.assertEqual(result[0], 1)
        [client] = self.tracker.protocols
        self.assertIn(b"STARTTLS", client.capabilities)
        self.assertEqual(server.logins, [USER])
        self.assertNotIn(b"STARTTLS", server.commands)
        self.assertEqual(server.received, [(SENDER, "bob@example.org", TWISTED_RECEIVED)])

    @defer.inlineCallbacks
    def test_sendmail(self) -> Any:
        """
        C{sendmail} with STARTTLS and AUTH to Twisted's server.
        """
        server = startTwistedServer(
            self,
            self.tracker,
            startTLSOptions=self.certs.serverOptions(),
            mechanisms=(b"LOGIN", b"PLAIN"),
            requireAuth=True,
        )
        result = yield mailclient_smtp.sendmail(
            "127.0.0.1",
            SENDER,
            ["bob@example.org"],
            TWISTED_MESSAGE.decode("ascii"),
            port=server.portNumber,
            reactor=TrackingReactor(self.tracker),
            username="alice",
            password="Sup3r-secret",
            contextFactory=self.certs.clientOptions("localhost"),
            retries=0,
        )
        self.assertEqual(result[0], 1)
        self.assertEqual(server.logins, [USER])
        self.assertEqual(server.received, [(SENDER, "bob@example.org", TWISTED_RECEIVED)])


class AiosmtpdTests(TestCase):
    """
    mailclient against aiosmtpd.
    """

    def setUp(self) -> None:
        self.tracker = ClientTracker()
        self.reactor = TrackingReactor(self.tracker)

    def sendmail(self, controller: Any, recipients: Any = ("bob@example.org",), **kw: Any) -> defer.Deferred:
        return mailclient_smtp.sendmail(
            "127.0.0.1",
            SENDER,
            list(recipients),
            kw.pop("msg", MESSAGE),
            port=controller.port,
            reactor=self.reactor,
            retries=0,
            timeout=10,
            **kw,
        )

    @defer.inlineCallbacks
    def test_plainDelivery(self) -> Any:
        handler = RecordingHandler()
        controller = startAiosmtpd(self, self.tracker, handler)
        result = yield self.sendmail(controller)
        self.assertEqual(result, (1, [(b"bob@example.org", 250, b"OK")]))
        self.assertEqual(handler.messages, [(SENDER, ["bob@example.org"], RECEIVED)])

    @defer.inlineCallbacks
    def test_oneRecipientRefused(self) -> Any:
        handler = RecordingHandler(refuse=["nobody@example.org"])
        controller = startAiosmtpd(self, self.tracker, handler)
        result = yield self.sendmail(
            controller, ["bob@example.org", "nobody@example.org", "carol@example.org"]
        )
        self.assertEqual(
            result,
            (
                2,
                [
                    (b"bob@example.org", 250, b"OK"),
                    (b"nobody@example.org", 550, b"5.1.1 No such user"),
                    (b"carol@example.org", 250, b"OK"),
                ],
            ),
        )
        self.assertEqual(
            handler.messages, [(SENDER, ["bob@example.org", "carol@example.org"], RECEIVED)]
        )

    @defer.inlineCallbacks
    def test_allRecipientsRefused(self) -> Any:
        handler = RecordingHandler(refuse=["nobody@example.org"])
        controller = startAiosmtpd(self, self.tracker, handler)
        error = yield self.assertFailure(
            self.sendmail(controller, ["nobody@example.org"]), mailclient_smtp.SMTPDeliveryError
        )
        self.assertIn(b"nobody@example.org: 550 5.1.1 No such user", error.log)
        self.assertEqual(handler.dataCommands, 0)

    @defer.inlineCallbacks
    def test_refusedAtEndOfData(self) -> Any:
        """
        A 5xx after the final dot fails the Deferred with SMTPDeliveryError
        carrying the server's reply; no retry.
        """
        handler = RecordingHandler(dataReply="554 5.7.1 Rejected as spam")
        controller = startAiosmtpd(self, self.tracker, handler)
        error = yield self.assertFailure(self.sendmail(controller), mailclient_smtp.SMTPDeliveryError)
        self.assertEqual((error.code, error.resp), (554, b"5.7.1 Rejected as spam"))
        self.assertEqual(handler.dataCommands, 1)

    @defer.inlineCallbacks
    def authOverStartTLS(self, mechanism: str) -> Any:
        certs = localCertificates()
        handler = RecordingHandler()
        logins: List[Tuple[str, bytes]] = []
        exclude = [m for m in ("LOGIN", "PLAIN") if m != mechanism]
        controller = startAiosmtpd(
            self,
            self.tracker,
            handler,
            tls_context=serverSSLContext(self, certs),
            require_starttls=True,
            auth_required=True,
            authenticator=authenticator(logins),
            auth_exclude_mechanism=exclude,
        )
        result = yield self.sendmail(
            controller,
            username="alice",
            password=PASSWORD.decode(),
            requireAuthentication=True,
            requireTransportSecurity=True,
            contextFactory=certs.clientOptions("localhost"),
        )
        self.assertEqual(result, (1, [(b"bob@example.org", 250, b"OK")]))
        self.assertEqual(logins, [(mechanism, USER)])
        self.assertEqual(handler.messages, [(SENDER, ["bob@example.org"], RECEIVED)])

    def test_authPlainOverStartTLS(self) -> Any:
        return self.authOverStartTLS("PLAIN")

    def test_authLoginOverStartTLS(self) -> Any:
        return self.authOverStartTLS("LOGIN")

    @defer.inlineCallbacks
    def test_untrustedCertificate(self) -> Any:
        """
        By default the certificate is verified: a certificate from an
        unknown CA fails with TLSError, and nothing is delivered.
        """
        certs = generateCertificates()
        handler = RecordingHandler()
        controller = startAiosmtpd(self, self.tracker, handler, tls_context=serverSSLContext(self, certs))
        error = yield self.assertFailure(
            self.sendmail(controller, username="alice", password="x", requireTransportSecurity=True),
            mailclient_smtp.TLSError,
        )
        self.assertIn("verif", str(error))
        self.assertEqual(handler.messages, [])

    @defer.inlineCallbacks
    def test_messageTypes(self) -> Any:
        """
        str, text file and email.message.Message messages arrive with CRLF
        line endings (UTF-8 for text).
        """
        import email.message

        handler = RecordingHandler()
        controller = startAiosmtpd(self, self.tracker, handler)
        text = "Subject: caf\u00e9\n\nna\u00efve body\n"
        msg = email.message.EmailMessage()
        msg["Subject"] = "hello"
        msg.set_content("line one\nline two\n")
        yield self.sendmail(controller, msg=text)
        yield self.sendmail(controller, msg=io.StringIO(text))
        yield self.sendmail(controller, msg=msg)
        expected = text.replace("\n", "\r\n").encode("utf-8")
        self.assertEqual(handler.messages[0][2], expected)
        self.assertEqual(handler.messages[1][2], expected)
        self.assertEqual(handler.messages[2][2], msg.as_bytes().replace(b"\n", b"\r\n"))
