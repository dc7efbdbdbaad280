"""
Security regression tests: the promises mailclient makes to a caller whose
server, network or message may be hostile.

  - STARTTLS response injection: bytes sent in clear after the 220 reply to
    STARTTLS are refused, never read as replies over TLS.
  - Credentials are never sent over an unencrypted connection to a remote
    host unless the caller allows it.
  - The server's certificate and host name are verified (on a real loopback
    TLS server, with certificates from L{mailclient._testing.certs}).
  - Credentials never appear in log events, in the transcript, or in the
    C{str()}/C{repr()} of any exception the caller sees.
  - SMTP smuggling: no body, whatever its line endings and dots, goes on the
    wire in a form a lenient server could read as the end of the data.

Some of these have detailed tests elsewhere (test_esmtp, test_sendmail,
test_data); the ones here are kept short, as the security suite.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Dict, List, Optional, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mailclient._protocol.esmtp import ESMTPClient
from mailclient._testing.certs import generateCertificates
from mailclient.smtp import (
    AUTHDeclinedError,
    AUTHRequiredError,
    CramMD5ClientAuthenticator,
    LOGINAuthenticator,
    PLAINAuthenticator,
    SMTPClient,
    SMTPProtocolError,
    TLSError,
    XOAUTH2Authenticator,
    sendmail,
)
from mailclient.test.helpers import Message, Session, recording
from mailclient.testing import SMTPTestCaseMixin, SMTPTestServer

PASSWORD = "Sw0rdfish-S3cret"
USER = "alice"
BODY = b"Subject: hi\r\n\r\nHello.\r\n"


class LogCapture:
    """
    Everything logged while it is installed, formatted and raw.
    """

    def __init__(self, case: Any) -> None:
        self.events: List[Dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def text(self) -> str:
        out = []
        for event in self.events:
            out.append(repr(event))
            try:
                out.append(formatEvent(event))
            except Exception:  # pragma: no cover
                pass
            failure = event.get("log_failure")
            if failure is not None:
                out.append(failure.getTraceback())
        return "\n".join(out)


def secretForms(user: str = USER, password: str = PASSWORD) -> List[bytes]:
    """
    The password and the encodings a SASL exchange might put it in.
    """
    u, p = user.encode(), password.encode()
    forms = [
        p,
        base64.b64encode(p),
        base64.b64encode(b"\0" + u + b"\0" + p),
        base64.b64encode(u + b"\0" + u + b"\0" + p),
        base64.b64encode(b"user=" + u + b"\x01auth=Bearer " + p + b"\x01\x01"),
        p.hex().encode(),
    ]
    # base64 of the password at any alignment inside a longer string.
    for pad in (b"", b"x", b"xx"):
        encoded = base64.b64encode(pad + p)
        forms.append(encoded[len(pad) + 2 : -4])
    return forms


def everyString(exc: BaseException) -> str:
    """
    str() and repr() of an exception, its attributes and its causes.
    """
    out = []
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out += [str(exc), repr(exc)]
        for name in ("resp", "log", "addresses"):
            out.append(repr(getattr(exc, name, None)))
        try:
            out.append(bytes(exc).decode("utf-8", "replace"))  # type: ignore[call-overload]
        except TypeError:
            pass
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return "\n".join(out)


def assertNoSecret(case: Any, *texts: Any) -> None:
    for text in texts:
        if isinstance(text, str):
            text = text.encode("utf-8", "replace")
        for form in secretForms():
            case.assertNotIn(form, text)


def runSendmail(server: SMTPTestServer, host: str = "localhost", **kw: Any) -> Any:
    """
    Run sendmail against C{server} in memory; return (result, connection).
    """
    reactor = MemoryReactorClock()
    options: Dict[str, Any] = dict(
        senderDomainName="client.example", reactor=reactor, retries=0, timeout=30,
    )
    options.update(kw)
    results: List[Any] = []
    sendmail(host, "from@example.com", ["to@example.com"], BODY, **options).addBoth(
        results.append)
    connection = server.connectPending(reactor)
    for _ in range(5):
        if results and not connection.connected:
            break
        connection.advance(31)
    assert len(results) == 1, results
    return results[0], connection


class STARTTLSInjectionTests(SynchronousTestCase):
    """
    Bytes after the 220 reply to STARTTLS, before the handshake, are an
    attack (CVE-2011-0411 and friends): refused.
    """

    def test_injectedRepliesRefused(self) -> None:
        for injected in (b"250 injected\r\n", b"250-a\r\n250 AUTH PLAIN\r\n", b"x"):
            server = SMTPTestServer(starttlsInjection=injected, credentials={USER: PASSWORD})
            result, connection = runSendmail(
                server, username=USER, password=PASSWORD,
                contextFactory=server.clientTLSOptions())
            self.assertIsInstance(result, Failure)
            result.trap(SMTPProtocolError)
            self.assertIn(b"injection", result.value.resp)
            [session] = server.sessions
            # Nothing was sent after STARTTLS: no EHLO, AUTH or MAIL.
            self.assertEqual([c.split()[0] for c in session.commands], [b"EHLO", b"STARTTLS"])
            self.assertEqual(session.authenticated, None)
            self.assertEqual(server.messages, [])

    def test_noInjectionAccepted(self) -> None:
        """
        The control: the same server without injection works.
        """
        server = SMTPTestServer(credentials={USER: PASSWORD})
        result, _ = runSendmail(server, username=USER, password=PASSWORD,
                                contextFactory=server.clientTLSOptions())
        self.assertEqual(result[0], 1)
        self.assertTrue(server.sessions[0].tls)
        self.assertEqual(server.sessions[0].authenticated, USER.encode())


class CleartextCredentialsTests(SynchronousTestCase):
    """
    A password is never sent in clear to a remote host, however the server
    (or a man in the middle stripping STARTTLS) behaves.
    """

    def check(self, server: SMTPTestServer, **kw: Any) -> None:
        result, _ = runSendmail(server, host="mail.example.com", username=USER,
                                password=PASSWORD, **kw)
        self.assertIsInstance(result, Failure)
        # Refused, or (STARTTLS refused) the client would not go on in clear.
        result.trap(AUTHRequiredError, TLSError)
        commands = b"\n".join(server.sessions[0].commands)
        self.assertNotIn(b"AUTH", commands)
        assertNoSecret(self, server.transcript(), everyString(result.value))
        self.assertEqual(server.messages, [])

    def test_noSTARTTLSOffered(self) -> None:
        self.check(SMTPTestServer(extensions=["AUTH PLAIN LOGIN"], credentials={USER: PASSWORD}))

    def test_STARTTLSRefused(self) -> None:
        server = SMTPTestServer(credentials={USER: PASSWORD})
        server.script("STARTTLS", 454, b"4.7.0 TLS not available")
        self.check(server, contextFactory=server.clientTLSOptions())

    def test_tlsDisabled(self) -> None:
        self.check(SMTPTestServer(credentials={USER: PASSWORD}), tls=False)

    def test_allowedExplicitly(self) -> None:
        """
        The control: allowCleartextAuthentication lets the same exchange
        through.
        """
        server = SMTPTestServer(extensions=["AUTH PLAIN"], credentials={USER: PASSWORD})
        result, _ = runSendmail(server, host="mail.example.com", username=USER,
                                password=PASSWORD, allowCleartextAuthentication=True)
        self.assertEqual(result[0], 1)


class CredentialsNotLoggedTests(SynchronousTestCase):
    """
    No credential reaches a log observer, a transcript or an exception,
    with each mechanism, whether the login succeeds or fails.
    """

    MECHANISMS = {
        "PLAIN": PLAINAuthenticator,
        "LOGIN": LOGINAuthenticator,
        "CRAM-MD5": CramMD5ClientAuthenticator,
        "XOAUTH2": XOAUTH2Authenticator,
    }

    def exchange(self, mechanism: str, serverPassword: str, fault: Optional[int] = None) -> Any:
        logs = LogCapture(self)
        server = SMTPTestServer(extensions=["STARTTLS", f"AUTH {mechanism}"],
                                credentials={USER: serverPassword})
        if fault is not None:
            server.script("MAIL", fault, b"4.3.0 later")
        authenticator = self.MECHANISMS[mechanism](USER)
        result, connection = runSendmail(
            server, username=USER, password=PASSWORD, contextFactory=server.clientTLSOptions(),
            authenticators=[authenticator], requireAuthentication=True)
        client = connection.client
        assertNoSecret(self, logs.text(), bytes(client.log.str()))
        if isinstance(result, Failure):
            assertNoSecret(self, everyString(result.value), result.getTraceback())
        return result, server

    def test_success(self) -> None:
        for mechanism in self.MECHANISMS:
            result, server = self.exchange(mechanism, PASSWORD)
            self.assertEqual(result[0], 1, mechanism)
            self.assertEqual(server.sessions[0].authenticated, USER.encode(), mechanism)

    def test_declined(self) -> None:
        for mechanism in self.MECHANISMS:
            result, server = self.exchange(mechanism, "another password")
            self.assertIsInstance(result, Failure, mechanism)
            self.assertIsInstance(result.value, AUTHDeclinedError, mechanism)

    def test_failureAfterLogin(self) -> None:
        """
        An error after a successful login carries a transcript that covers
        the login: it is redacted too.
        """
        for mechanism in self.MECHANISMS:
            result, _ = self.exchange(mechanism, PASSWORD, fault=451)
            self.assertIsInstance(result, Failure, mechanism)
            self.assertEqual(result.value.code, 451)

    def test_clientTranscriptDirect(self) -> None:
        """
        A bare ESMTPClient's C{log}, with a large transcript, holds no SASL
        response.
        """
        client = recording(ESMTPClient)(PASSWORD.encode(), None, b"client.example", 100)
        client.registerAuthenticator(LOGINAuthenticator(USER))
        client.allowCleartextAuthentication = True
        client.queue(Message(b"a@example.com", [b"b@example.com"], BODY))
        session = Session(client)
        session.converse([
            b"220 hi\r\n", b"250-hi\r\n250 AUTH LOGIN\r\n",
            b"334 VXNlcm5hbWU6\r\n", b"334 UGFzc3dvcmQ6\r\n", b"535 5.7.8 no\r\n",
        ])
        [error] = client.errors
        # The server did get the credentials...
        self.assertIn(base64.b64encode(PASSWORD.encode()), session.written())
        # ...but nothing the caller can see holds them.
        assertNoSecret(self, client.log.str(), everyString(error))


class CertificateVerificationTests(SMTPTestCaseMixin, TestCase):
    """
    On a real loopback TLS server: the certificate chain and the host name
    are verified, and a failed verification sends nothing in clear.
    """

    def send(self, server: SMTPTestServer, host: str = "localhost", **kw: Any) -> defer.Deferred:
        options: Dict[str, Any] = dict(
            senderDomainName="client.example", port=server.portNumber, retries=0,
            timeout=10, username=USER, password=PASSWORD,
        )
        options.update(kw)
        return sendmail(host, "from@example.com", ["to@example.com"], BODY, **options)

    def assertRefused(self, server: SMTPTestServer, failure: Failure) -> None:
        self.assertIsInstance(failure.value, TLSError)
        self.assertNothingDelivered(server)
        for session in server.sessions:
            for command in session.commands:
                self.assertFalse(command.upper().startswith((b"AUTH", b"MAIL")), command)
        assertNoSecret(self, server.transcript(), everyString(failure.value))

    @defer.inlineCallbacks
    def test_trusted(self) -> Any:
        server = self.startSMTPServer(credentials={USER: PASSWORD})
        result = yield self.send(server, contextFactory=server.clientTLSOptions("localhost"))
        self.assertEqual(result[0], 1)
        self.assertTrue(server.sessions[0].tls)

    @defer.inlineCallbacks
    def test_wrongHostName(self) -> Any:
        server = self.startSMTPServer(credentials={USER: PASSWORD})
        d = self.send(server, contextFactory=server.clientTLSOptions("mail.example.org"))
        failure = yield self.assertFailure(d, TLSError)
        self.assertRefused(server, Failure(failure))
        self.assertIn(b"host name", failure.resp)

    @defer.inlineCallbacks
    def test_untrustedAuthority(self) -> Any:
        """
        A certificate for the right name, signed by a CA the client does not
        trust.
        """
        other = generateCertificates()
        server = self.startSMTPServer(credentials={USER: PASSWORD},
                                      tlsCertificate=other.serverCertificate())
        d = self.send(server, contextFactory=server.clientTLSOptions("localhost"))
        failure = yield self.assertFailure(d, TLSError)
        self.assertRefused(server, Failure(failure))

    @defer.inlineCallbacks
    def test_defaultContextVerifies(self) -> Any:
        """
        With no contextFactory, sendmail verifies against the system trust
        store, which does not know the test CA.
        """
        server = self.startSMTPServer(credentials={USER: PASSWORD})
        d = self.send(server, host="localhost")
        failure = yield self.assertFailure(d, TLSError)
        self.assertRefused(server, Failure(failure))

    @defer.inlineCallbacks
    def test_keptOptionsStillVerify(self) -> Any:
        """
        The verifying options kept for a host name serve later calls for
        that name only, and every connection made with them is verified.
        """
        from mailclient._protocol.tls import verifyingContext

        self.assertIs(verifyingContext("localhost"), verifyingContext(b"localhost"))
        self.assertIsNot(verifyingContext("localhost"), verifyingContext("mail.example.org"))
        server = self.startSMTPServer(credentials={USER: PASSWORD})
        for _ in range(2):
            d = self.send(server, host="localhost")
            failure = yield self.assertFailure(d, TLSError)
            self.assertRefused(server, Failure(failure))
        self.assertEqual(len(server.sessions), 2)

    def test_keptOptionsFollowTrustStore(self) -> None:
        """
        Kept options are built again when the trust store changes: another
        CA file named by C{SSL_CERT_FILE}, or that file rewritten.
        """
        from mailclient._protocol.tls import verifyingContext
        from mailclient.test.helpers import trustCA

        before = verifyingContext("localhost")
        path = trustCA(self, generateCertificates().caCertificatePEM)
        moved = verifyingContext("localhost")
        self.assertIsNot(moved, before)
        self.assertIs(verifyingContext("localhost"), moved)
        with open(path, "ab") as f:
            f.write(generateCertificates().caCertificatePEM)
        self.assertIsNot(verifyingContext("localhost"), moved)


# SMTP smuggling.

#: What a lenient server may take for the end of the data: a dot alone on a
#: "line", whatever ends the lines around it.
LENIENT_END = re.compile(rb"(?:\r\n|\r|\n)\.(?:\r\n|\r|\n)")
BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")

SMUGGLING = [
    b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r",
    b"\n.\r", b"\r.\n", b"\r\n.\r\n", b"\n..\n", b"\r\n\x00.\r\n",
]


def dataOnWire(body: bytes, client: Any = None) -> bytes:
    """
    Send C{body} with a bare SMTPClient; return what followed C{DATA}.
    """
    client = client or recording(SMTPClient)(b"client.example")
    client.queue(Message(b"a@example.com", [b"b@example.com"], body))
    session = Session(client)
    session.converse([b"220 hi\r\n", b"250 hi\r\n", b"250 ok\r\n", b"250 ok\r\n"])
    before = len(session.written())
    session.step(b"354 go\r\n")
    return session.written()[before:]


def checkWire(case: Any, body: bytes, wire: bytes) -> None:
    # The data ends with the one terminator, at the end.
    case.assertTrue(wire == b".\r\n" or wire.endswith(b"\r\n.\r\n"), wire)
    content = wire[: -len(b".\r\n")]
    # No line ending other than CRLF reaches the wire...
    case.assertIsNone(BARE.search(content), (body, wire))
    # ...so no lenient reading finds an end of data before the real one,
    # including at the very start of the data.
    case.assertIsNone(LENIENT_END.search(b"\r\n" + content), (body, wire))


class SmugglingTests(SynchronousTestCase):
    """
    Smuggling sequences in bodies are sent as ordinary, dot-stuffed lines.
    """

    def test_sequences(self) -> None:
        for seq in SMUGGLING:
            for body in (
                b"Subject: x\r\n\r\nhi" + seq + b"MAIL FROM:<evil@example.com>\r\n",
                seq + b"RCPT TO:<x@example.com>",
                b"x" + seq,
                seq * 3,
                b"." + seq,
            ):
                checkWire(self, body, dataOnWire(body))

    def test_acrossChunks(self) -> None:
        """
        A sequence split between two reads of the body file.
        """
        for seq in SMUGGLING:
            size = 16384  # the producer's chunk size
            for cut in range(1, len(seq)):
                body = b"a" * (size - cut) + seq + b"b"
                checkWire(self, body, dataOnWire(body))

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.sampled_from([b"\r", b"\n", b".", b"\r\n", b"x", b"\x00"]), max_size=40))
    def test_anyMixture(self, pieces: Sequence[bytes]) -> None:
        body = b"".join(pieces)
        checkWire(self, body, dataOnWire(body))

    def test_strictServerGetsNormalisedBody(self) -> None:
        """
        Through the strict test server, with DATA and with BDAT: the body
        arrives whole, CRLF-normalised, with no bare CR or LF.
        """
        body = b"".join(SMUGGLING) + b"MAIL FROM:<evil@example.com>\r\nend"
        normalised = re.sub(rb"\r\n|\r|\n", b"\r\n", body)
        for extensions in ([], ["PIPELINING"], ["PIPELINING", "CHUNKING"]):
            server = SMTPTestServer(extensions=extensions)
            reactor = MemoryReactorClock()
            results: List[Any] = []
            sendmail("localhost", "from@example.com", ["to@example.com"], body,
                     reactor=reactor, retries=0, senderDomainName="c.example",
                     tls=False).addBoth(results.append)
            server.connectPending(reactor)
            self.assertEqual(results[0][0], 1, extensions)
            [message] = server.messages
            # DATA needs a line ending before its terminator; BDAT counts.
            expected = normalised + (b"" if "CHUNKING" in extensions else b"\r\n")
            self.assertEqual(message.data, expected, extensions)
            self.assertFalse(message.bareLineEndings)
            self.assertEqual(len(server.sessions), 1)
            # Nothing after the data was read as a command.
            self.assertNotIn(b"MAIL FROM:<evil@example.com>", server.sessions[0].commands)
