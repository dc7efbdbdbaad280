"""
Tests for L{mailclient.smtp.ESMTPClient}: EHLO, STARTTLS and AUTH.

Differential tests run the same scripted server replies through Twisted's
C{ESMTPClient} and mailclient's and compare the bytes on the wire and the
hook calls.  The other tests cover mailclient's deliberate fixes: response
injection after STARTTLS, capabilities forgotten after STARTTLS,
case-insensitive keywords, no credentials over cleartext, PLAIN sent once,
and error messages that say who is at fault.
"""

from __future__ import annotations

import base64
import warnings
from typing import Any, Callable, List, Optional, Sequence

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import StringTransport
from twisted.mail import smtp as twisted_smtp
from twisted.trial.unittest import SynchronousTestCase

from mailclient import smtp as mailclient_smtp
from mailclient.test.helpers import (
    AFTER_AUTH,
    LOOPBACK,
    REMOTE,
    describeError,
    lines,
    Message,
    normaliseCalls,
    recording,
    Session,
    TLSStringTransport,
)

IMPLEMENTATIONS = {"twisted": twisted_smtp, "mailclient": mailclient_smtp}
CLIENTS = {name: recording(mod.ESMTPClient) for name, mod in IMPLEMENTATIONS.items()}

IDENTITY = b"client.example"
USER = b"alice"
PASSWORD = b"s3cret-Pa55word"
CONTEXT = object()  # stands for a TLS context factory

BODY = b"Subject: hi\n\nHello.\n"


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def startSession(
    impl: str,
    secret: Optional[bytes] = None,
    context: Any = None,
    transport: Optional[StringTransport] = None,
    prepare: Optional[Callable[[Any, Any], None]] = None,
    messages: Optional[Sequence[Message]] = None,
) -> Session:
    """
    Connect a recording C{ESMTPClient} of implementation C{impl} to a
    transport (by default a TLS-capable one with a loopback peer).
    """
    client = CLIENTS[impl](secret, context, IDENTITY)
    if prepare is not None:
        prepare(client, IMPLEMENTATIONS[impl])
    if messages is None:
        messages = [Message("alice@example.com", ["bob@example.org"], BODY)]
    client.queue(*[Message(m.sender, m.recipients, m.body) for m in messages])
    if transport is None:
        transport = TLSStringTransport(peerAddress=LOOPBACK)
    return Session(client, transport)


def converse(impl: str, replies: Sequence[bytes], **kw: Any) -> Session:
    session = startSession(impl, **kw)
    session.converse(replies)
    return session


def withoutLogs(calls: List[Any]) -> List[Any]:
    """
    Hook calls without the transcripts (which differ when credentials are
    redacted by mailclient).
    """
    out = []
    for call in normaliseCalls(calls):
        if call[0] == "sentMail":
            call = call[:5]
        elif call[0] == "sendError":
            call = call[:4] + call[5:]
        out.append(call)
    return out


MAIL_COMMANDS = [
    b"MAIL FROM:<alice@example.com>",
    b"RCPT TO:<bob@example.org>",
    b"DATA",
    b"Subject: hi",
    b"",
    b"Hello.",
    b".",
    b"RSET",
    b"QUIT",
]


def register(*names: str) -> Callable[[Any, Any], None]:
    """
    A C{prepare} function registering the named authenticator classes of
    the implementation, for user L{USER}.
    """

    def prepare(client: Any, module: Any) -> None:
        for name in names:
            client.registerAuthenticator(getattr(module, name)(USER))

    return prepare


def allowCleartext(client: Any, module: Any) -> None:
    client.allowCleartextAuthentication = True


class DifferentialTests(SynchronousTestCase):
    """
    For conversations where Twisted's client is right, mailclient's puts the
    same bytes on the wire and makes the same hook calls.
    """

    def assertSame(self, replies: Sequence[bytes], compareLogs: bool = True, **kw: Any) -> Session:
        theirs = converse("twisted", replies, **kw)
        ours = converse("mailclient", replies, **kw)
        self.assertEqual(ours.exchange, theirs.exchange)
        if compareLogs:
            self.assertEqual(normaliseCalls(ours.client.calls), normaliseCalls(theirs.client.calls))
            self.assertEqual(ours.client.log.str(), theirs.client.log.str())
        else:
            self.assertEqual(withoutLogs(ours.client.calls), withoutLogs(theirs.client.calls))
        self.assertEqual(ours.closed, theirs.closed)
        self.assertEqual(ours.lost, theirs.lost)
        return ours

    def test_ehlo(self) -> None:
        """
        EHLO with a multi-line reply, then the mail transaction.
        """
        out = self.assertSame(
            lines(b"220 mx ESMTP", b"250-mx.example\r\n250-HELP\r\n250 VRFY")
            + AFTER_AUTH
        )
        self.assertEqual(out.commands(), [b"EHLO " + IDENTITY] + MAIL_COMMANDS)
        self.assertEqual(out.client.delivered, [(250, b"queued")])

    def test_heloFallback(self) -> None:
        """
        A refused EHLO falls back to HELO when nothing is required.
        """
        out = self.assertSame(
            lines(b"220 mx", b"500 what?", b"250 mx hello") + AFTER_AUTH
        )
        self.assertEqual(
            out.commands()[:2], [b"EHLO " + IDENTITY, b"HELO " + IDENTITY]
        )
        self.assertEqual(out.client.delivered, [(250, b"queued")])

    def test_noHeloFallbackWhenDisabled(self) -> None:
        """
        With heloFallback off, a refused EHLO gives EHLORequiredError (502).
        """

        def prepare(client: Any, module: Any) -> None:
            client.heloFallback = False

        out = self.assertSame(lines(b"220 mx", b"500 what?", b"221 bye"), prepare=prepare)
        [error] = out.client.errors
        self.assertIsInstance(error, mailclient_smtp.EHLORequiredError)
        self.assertEqual(error.code, 502)

    def test_noHeloFallbackWhenAuthRequired(self) -> None:
        """
        requireAuthentication overrides heloFallback.
        """

        def prepare(client: Any, module: Any) -> None:
            client.requireAuthentication = True

        out = self.assertSame(
            lines(b"220 mx", b"500 what?", b"221 bye"), secret=PASSWORD, prepare=prepare
        )
        self.assertEqual(
            [type(e) for e in out.client.errors], [mailclient_smtp.EHLORequiredError]
        )
        self.assertNotIn(b"HELO " + IDENTITY, out.commands())

    def test_startTLS(self) -> None:
        """
        With a context and STARTTLS offered, the client sends STARTTLS, starts
        TLS on the transport with its context after the 220, and sends EHLO
        again.
        """
        transports = []

        def transport() -> TLSStringTransport:
            t = TLSStringTransport(peerAddress=LOOPBACK)
            transports.append(t)
            return t

        replies = lines(
            b"220 mx",
            b"250-mx\r\n250 STARTTLS",
            b"220 go ahead",
            b"250-mx\r\n250 HELP",
        ) + AFTER_AUTH
        theirs = converse("twisted", replies, context=CONTEXT, transport=transport())
        ours = converse("mailclient", replies, context=CONTEXT, transport=transport())
        self.assertEqual(ours.exchange, theirs.exchange)
        self.assertEqual(normaliseCalls(ours.client.calls), normaliseCalls(theirs.client.calls))
        self.assertEqual([t.tlsStarted for t in transports], [[CONTEXT], [CONTEXT]])
        self.assertEqual(
            ours.commands()[:3], [b"EHLO " + IDENTITY, b"STARTTLS", b"EHLO " + IDENTITY]
        )
        self.assertEqual(ours.client.delivered, [(250, b"queued")])

    def test_startTLSNotOfferedNotRequired(self) -> None:
        """
        With a context but no STARTTLS offered (and TLS not required), mail
        goes in the clear.
        """
        out = self.assertSame(
            lines(b"220 mx", b"250-mx\r\n250 HELP") + AFTER_AUTH, context=CONTEXT
        )
        self.assertNotIn(b"STARTTLS", out.commands())
        self.assertEqual(out.transport.tlsStarted, [])

    def test_startTLSSkippedOnTLSTransport(self) -> None:
        """
        On a transport that is already TLS, STARTTLS is not sent even if
        offered.
        """
        transports = [TLSStringTransport(LOOPBACK, tls=True) for _ in range(2)]
        replies = lines(b"220 mx", b"250-mx\r\n250 STARTTLS") + AFTER_AUTH
        theirs = converse("twisted", replies, context=CONTEXT, transport=transports[0])
        ours = converse("mailclient", replies, context=CONTEXT, transport=transports[1])
        self.assertEqual(ours.exchange, theirs.exchange)
        self.assertNotIn(b"STARTTLS", ours.commands())
        self.assertEqual(transports[1].tlsStarted, [])
        self.assertEqual(ours.client.delivered, [(250, b"queued")])

    def test_tlsRequiredNotOffered(self) -> None:
        """
        requireTransportSecurity with a context, and a server not offering
        STARTTLS: TLSRequiredError 502.
        """

        def prepare(client: Any, module: Any) -> None:
            client.requireTransportSecurity = True

        out = self.assertSame(
            lines(b"220 mx", b"250-mx\r\n250 SIZE 100", b"221 bye"),
            context=CONTEXT,
            prepare=prepare,
        )
        [error] = out.client.errors
        self.assertIsInstance(error, mailclient_smtp.TLSRequiredError)
        self.assertEqual(error.code, 502)
        self.assertIn(b"Server does not support secure communication", error.resp)

    def test_authCramMD5(self) -> None:
        """
        AUTH CRAM-MD5 sends the same response as Twisted.
        """
        challenge = b"<1896.697170952@postoffice.example.net>"
        out = self.assertSame(
            lines(b"220 mx", b"250-mx\r\n250 AUTH LOGIN CRAM-MD5 PLAIN", b"334 " + b64(challenge), b"235 ok")
            + AFTER_AUTH,
            compareLogs=False,
            secret=PASSWORD,
            prepare=register("CramMD5ClientAuthenticator", "LOGINAuthenticator", "PLAINAuthenticator"),
        )
        commands = out.commands()
        self.assertEqual(commands[1], b"AUTH CRAM-MD5")
        user, digest = base64.b64decode(commands[2]).split(b" ")
        self.assertEqual(user, USER)
        import hashlib
        import hmac

        self.assertEqual(
            digest, hmac.HMAC(PASSWORD, challenge, hashlib.md5).hexdigest().encode()
        )
        self.assertEqual(out.client.delivered, [(250, b"queued")])

    def test_authLogin(self) -> None:
        """
        AUTH LOGIN: user name then password, same bytes as Twisted.
        """
        out = self.assertSame(
            lines(
                b"220 mx",
                b"250-mx\r\n250 AUTH LOGIN PLAIN",
                b"334 " + b64(b"Username:"),
                b"334 " + b64(b"Password:"),
                b"235 ok",
            )
            + AFTER_AUTH,
            compareLogs=False,
            secret=PASSWORD,
            prepare=register("LOGINAuthenticator", "PLAINAuthenticator"),
        )
        self.assertEqual(
            out.commands()[1:4], [b"AUTH LOGIN", b64(USER), b64(PASSWORD)]
        )

    def test_authLoginDeclined(self) -> None:
        """
        535 after the password: AUTHDeclinedError with the server's code and
        text.
        """
        out = self.assertSame(
            lines(
                b"220 mx",
                b"250-mx\r\n250 AUTH LOGIN",
                b"334 " + b64(b"Username:"),
                b"334 " + b64(b"Password:"),
                b"535 bad credentials",
                b"221 bye",
            ),
            compareLogs=False,
            secret=PASSWORD,
            prepare=register("LOGINAuthenticator"),
        )
        [error] = out.client.errors
        self.assertIsInstance(error, mailclient_smtp.AUTHDeclinedError)
        self.assertEqual((error.code, error.resp), (535, b"bad credentials"))
        self.assertEqual(out.commands()[-1], b"QUIT")

    def test_authenticatorsInRegistrationOrder(self) -> None:
        """
        The first registered mechanism the server offers is used, whatever
        the server's order.
        """
        out = self.assertSame(
            lines(
                b"220 mx",
                b"250-mx\r\n250 AUTH CRAM-MD5 LOGIN",
                b"334 " + b64(b"Username:"),
                b"334 " + b64(b"Password:"),
                b"235 ok",
            )
            + AFTER_AUTH,
            compareLogs=False,
            secret=PASSWORD,
            prepare=register("LOGINAuthenticator", "CramMD5ClientAuthenticator"),
        )
        self.assertEqual(out.commands()[1], b"AUTH LOGIN")

    def test_noSecretNoAuth(self) -> None:
        """
        Without a secret, no AUTH is attempted even if offered.
        """
        out = self.assertSame(
            lines(b"220 mx", b"250-mx\r\n250 AUTH LOGIN PLAIN") + AFTER_AUTH,
            prepare=register("LOGINAuthenticator"),
        )
        self.assertEqual(out.commands(), [b"EHLO " + IDENTITY] + MAIL_COMMANDS)

    def test_authRequiredNoCommonMechanism(self) -> None:
        """
        requireAuthentication and no mechanism in common: AUTHRequiredError
        502 naming our mechanisms.
        """

        def prepare(client: Any, module: Any) -> None:
            register("CramMD5ClientAuthenticator")(client, module)
            client.requireAuthentication = True

        out = self.assertSame(
            lines(b"220 mx", b"250-mx\r\n250 AUTH GSSAPI", b"221 bye"),
            secret=PASSWORD,
            prepare=prepare,
        )
        [error] = out.client.errors
        self.assertIsInstance(error, mailclient_smtp.AUTHRequiredError)
        self.assertEqual(error.code, 502)
        self.assertIn(b"[CRAM-MD5]", error.resp)

    def test_authServerError(self) -> None:
        """
        The server refuses the AUTH command itself: AuthenticationError with
        its code.
        """
        out = self.assertSame(
            lines(b"220 mx", b"250-mx\r\n250 AUTH CRAM-MD5", b"504 not now", b"221 bye"),
            compareLogs=False,
            secret=PASSWORD,
            prepare=register("CramMD5ClientAuthenticator"),
        )
        [error] = out.client.errors
        self.assertIs(type(error), mailclient_smtp.AuthenticationError)
        self.assertEqual((error.code, error.resp), (504, b"not now"))

    def test_authMalformedChallenge(self) -> None:
        """
        A challenge that is not base64: the client cancels with C{*} and
        reports AuthenticationError 501.
        """
        out = self.assertSame(
            lines(
                b"220 mx",
                b"250-mx\r\n250 AUTH CRAM-MD5",
                b"334 abc",
                b"501 cancelled",
                b"221 bye",
            ),
            compareLogs=False,
            secret=PASSWORD,
            prepare=register("CramMD5ClientAuthenticator"),
        )
        self.assertEqual(out.commands()[2], b"*")
        [error] = out.client.errors
        self.assertIs(type(error), mailclient_smtp.AuthenticationError)
        self.assertEqual(error.code, 501)
        self.assertIn(b"malformed", error.resp)


class ErrorHookTests(SynchronousTestCase):
    """
    The esmtp* error hooks, called directly, report the same error class
    and code as Twisted's.
    """

    def hookError(self, impl: str, hook: str, *args: Any) -> Any:
        session = startSession(
            impl, secret=PASSWORD, context=CONTEXT, prepare=register("CramMD5ClientAuthenticator")
        )
        getattr(session.client, hook)(*args)
        [error] = session.client.errors
        return error

    def test_sameErrors(self) -> None:
        for hook, args, cls, code in [
            ("esmtpEHLORequired", (), "EHLORequiredError", 502),
            ("esmtpAUTHRequired", (), "AUTHRequiredError", 502),
            ("esmtpTLSRequired", (), "TLSRequiredError", 502),
            ("esmtpTLSFailed", (), "TLSError", -1),
            ("esmtpAUTHDeclined", (535, b"no"), "AUTHDeclinedError", 535),
            ("esmtpAUTHMalformedChallenge", (), "AuthenticationError", 501),
            ("esmtpAUTHServerError", (454, b"later"), "AuthenticationError", 454),
        ]:
            theirs = self.hookError("twisted", hook, *args)
            ours = self.hookError("mailclient", hook, *args)
            # Class names are compared in test_errorClassNames.
            self.assertEqual(describeError(ours)[1:], describeError(theirs)[1:], hook)
            self.assertEqual(ours.code, code, hook)
            self.assertIsInstance(ours, getattr(mailclient_smtp, cls))
            self.assertIsInstance(ours, mailclient_smtp.ESMTPClientError)

    def test_errorClassHierarchy(self) -> None:
        """
        The error classes have every base Twisted's have; C{TLSError} is
        also an C{SMTPConnectError} (Twisted's factories report a TLS
        failure as one).
        """
        added = {"TLSError": ["SMTPConnectError"]}
        for name in [
            "EHLORequiredError",
            "AUTHRequiredError",
            "TLSRequiredError",
            "TLSError",
            "AUTHDeclinedError",
            "AuthenticationError",
        ]:
            theirs = getattr(twisted_smtp, name)
            ours = getattr(mailclient_smtp, name)
            ourBases = [c.__name__ for c in ours.__mro__[1:] if c.__module__.startswith("mailclient")]
            theirBases = [c.__name__ for c in theirs.__mro__[1:] if c.__module__.startswith("twisted")]
            self.assertEqual([b for b in ourBases if b not in added.get(name, [])], theirBases)
            self.assertEqual([b for b in ourBases if b not in theirBases], added.get(name, []))

    def test_errorClassNames(self) -> None:
        """
        The classes have Twisted's C{__name__} (which shows in logs and
        tracebacks): Twisted's C{smtp.TLSError} is C{SMTPTLSError}.
        """
        for name in [
            "EHLORequiredError",
            "AUTHRequiredError",
            "TLSRequiredError",
            "TLSError",
            "AUTHDeclinedError",
            "AuthenticationError",
        ]:
            self.assertEqual(
                getattr(mailclient_smtp, name).__name__,
                getattr(twisted_smtp, name).__name__,
                name,
            )

    def test_tlsFailedRefusalSaysWhy(self) -> None:
        """
        Deliberate difference: a refused STARTTLS (454) gives TLSError with
        the server's code and text.
        """
        session = startSession("mailclient", context=CONTEXT)
        session.converse(lines(b"220 mx", b"250-mx\r\n250 STARTTLS", b"454 TLS not available now", b"221 bye"))
        [error] = session.client.errors
        self.assertIsInstance(error, mailclient_smtp.TLSError)
        self.assertEqual(error.code, 454)
        self.assertIn(b"TLS not available now", error.resp)
        self.assertEqual(session.transport.tlsStarted, [])


class SurfaceTests(SynchronousTestCase):
    """
    Constructor, attributes and deprecated names.
    """

    def test_constructor(self) -> None:
        client = mailclient_smtp.ESMTPClient(PASSWORD, CONTEXT, IDENTITY, 7)
        self.assertEqual(client.secret, PASSWORD)
        self.assertIs(client.context, CONTEXT)
        self.assertEqual(client.identity, IDENTITY)
        self.assertEqual(client.authenticators, [])
        self.assertTrue(client.heloFallback)
        self.assertFalse(client.requireAuthentication)
        self.assertFalse(client.requireTransportSecurity)
        client = mailclient_smtp.ESMTPClient(PASSWORD, identity=IDENTITY)
        self.assertIsNone(client.context)

    def test_registerAuthenticator(self) -> None:
        client = mailclient_smtp.ESMTPClient(PASSWORD, None, IDENTITY)
        a, b = mailclient_smtp.LOGINAuthenticator(USER), mailclient_smtp.PLAINAuthenticator(USER)
        client.registerAuthenticator(a)
        client.registerAuthenticator(b)
        self.assertEqual(client.authenticators, [a, b])

    def test_stateMethods(self) -> None:
        for name in [
            "esmtpState_ehlo",
            "esmtpState_serverConfig",
            "tryTLS",
            "esmtpState_starttls",
            "authenticate",
            "esmtpState_challenge",
            "smtpState_maybeAuthenticated",
        ]:
            self.assertTrue(callable(getattr(mailclient_smtp.ESMTPClient, name, None)), name)

    def test_tlsModeDeprecated(self) -> None:
        """
        Reading or setting C{tlsMode} warns (DeprecationWarning), pointing at
        the caller, and maps to the connection's TLS state.
        """
        client = mailclient_smtp.ESMTPClient(PASSWORD, None, IDENTITY)
        client.makeConnection(TLSStringTransport(tls=True))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = client.tlsMode
            client.tlsMode = False
            after = client.tlsMode
        self.assertTrue(value)
        self.assertFalse(after)
        self.assertEqual(len(caught), 3)
        for w in caught:
            self.assertIs(w.category, DeprecationWarning)
            self.assertIn("tlsMode", str(w.message))
            self.assertIn("deprecated", str(w.message))
            self.assertEqual(w.filename, __file__.replace(".pyc", ".py"))

    def test_noTlsModeOnPlainTransport(self) -> None:
        client = mailclient_smtp.ESMTPClient(PASSWORD, None, IDENTITY)
        client.makeConnection(StringTransport())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.assertFalse(client.tlsMode)


class StartTLSFixTests(SynchronousTestCase):
    """
    STARTTLS response injection and stale capabilities.
    """

    def test_injectionRefused(self) -> None:
        """
        Data after the 220 reply to STARTTLS in the same read is refused:
        SMTPProtocolError through sendError, TLS not started, and the
        injected reply not acted upon.
        """
        session = startSession("mailclient", context=CONTEXT)
        session.converse(lines(b"220 mx", b"250-mx\r\n250 STARTTLS"))
        session.receive(b"220 go ahead\r\n250 injected\r\n")
        [error] = session.client.errors
        self.assertIsInstance(error, mailclient_smtp.SMTPProtocolError)
        self.assertIn(b"injection", error.resp)
        self.assertEqual(session.transport.tlsStarted, [])
        self.assertNotIn(b"EHLO " + IDENTITY, session.commands()[2:])
        self.assertNotIn(b"MAIL FROM:<alice@example.com>", session.commands())

    def test_injectionPartialLineRefused(self) -> None:
        """
        Even an incomplete line after the 220 is refused.
        """
        session = startSession("mailclient", context=CONTEXT)
        session.converse(lines(b"220 mx", b"250-mx\r\n250 STARTTLS"))
        session.receive(b"220 go ahead\r\n250 inj")
        self.assertEqual(
            [type(e) for e in session.client.errors], [mailclient_smtp.SMTPProtocolError]
        )
        self.assertEqual(session.transport.tlsStarted, [])

    def test_capabilitiesForgotten(self) -> None:
        """
        C{capabilities} holds the cleartext EHLO's extensions, is emptied when
        TLS starts and then holds the new EHLO's.
        """
        session = startSession("mailclient", context=CONTEXT)
        session.converse(lines(b"220 mx", b"250-mx\r\n250-STARTTLS\r\n250 AUTH FAKE"))
        self.assertIn(b"STARTTLS", session.client.capabilities)
        session.step(b"220 go ahead\r\n")
        self.assertEqual(session.transport.tlsStarted, [CONTEXT])
        self.assertEqual(dict(session.client.capabilities), {})
        self.assertNotIn(b"AUTH", session.client.capabilities)
        session.step(b"250-mx\r\n250 SIZE 1000\r\n")
        self.assertIn(b"SIZE", session.client.capabilities)
        self.assertNotIn(b"STARTTLS", session.client.capabilities)
        self.assertNotIn(b"AUTH", session.client.capabilities)

    def test_tlsRequiredServerOffersButNoContext(self) -> None:
        """
        requireTransportSecurity with no context: the error says the client
        has no TLS context, not that the server lacks TLS.
        """

        def prepare(client: Any, module: Any) -> None:
            client.requireTransportSecurity = True

        session = startSession("mailclient", prepare=prepare)
        session.converse(lines(b"220 mx", b"250-mx\r\n250 STARTTLS", b"221 bye"))
        [error] = session.client.errors
        self.assertIsInstance(error, mailclient_smtp.TLSRequiredError)
        self.assertIn(b"client has no TLS context", error.resp)
        self.assertNotIn(b"Server does not support", error.resp)
        self.assertNotIn(b"STARTTLS", session.commands())

    def test_lowerCaseStartTLS(self) -> None:
        """
        A lower-case C{starttls} keyword is honoured (Twisted ignores it).
        """
        session = startSession("mailclient", context=CONTEXT)
        session.converse(lines(b"220 mx", b"250-mx\r\n250 starttls", b"220 go", b"250 mx"))
        self.assertEqual(session.transport.tlsStarted, [CONTEXT])
        self.assertEqual(session.commands()[1:3], [b"STARTTLS", b"EHLO " + IDENTITY])
        theirs = startSession("twisted", context=CONTEXT)
        theirs.converse(lines(b"220 mx", b"250-mx\r\n250 starttls"))
        self.assertNotIn(b"STARTTLS", theirs.commands())


class AuthFixTests(SynchronousTestCase):
    """
    mailclient's authentication fixes.
    """

    def test_plainSentOnceStandardForm(self) -> None:
        """
        Deliberate difference: mailclient sends C{AUTH PLAIN
        base64(NUL user NUL pass)}; Twisted sends C{user NUL user NUL pass}.
        """
        replies = lines(b"220 mx", b"250-mx\r\n250 AUTH PLAIN", b"235 ok") + AFTER_AUTH
        kw = dict(secret=PASSWORD, prepare=register("PLAINAuthenticator"))
        ours = converse("mailclient", replies, **kw)
        theirs = converse("twisted", replies, **kw)
        self.assertEqual(ours.commands()[1], b"AUTH PLAIN " + b64(b"\0" + USER + b"\0" + PASSWORD))
        self.assertEqual(
            theirs.commands()[1], b"AUTH PLAIN " + b64(USER + b"\0" + USER + b"\0" + PASSWORD)
        )
        self.assertEqual(ours.commands()[2:], theirs.commands()[2:])
        self.assertEqual(ours.client.delivered, [(250, b"queued")])

    def test_plainRejectedNotRetried(self) -> None:
        """
        A rejected PLAIN is reported as AUTHDeclinedError at once (Twisted
        sends the password again in the second form).
        """
        replies = lines(b"220 mx", b"250-mx\r\n250 AUTH PLAIN", b"535 no", b"535 no", b"221 bye")
        kw = dict(secret=PASSWORD, prepare=register("PLAINAuthenticator"))
        ours = converse("mailclient", replies, **kw)
        theirs = converse("twisted", replies, **kw)
        self.assertEqual([c for c in ours.commands() if c.startswith(b"AUTH")], [ours.commands()[1]])
        self.assertEqual(len([c for c in theirs.commands() if c.startswith(b"AUTH")]), 2)
        [error] = ours.client.errors
        self.assertIsInstance(error, mailclient_smtp.AUTHDeclinedError)
        self.assertEqual((error.code, error.resp), (535, b"no"))
        self.assertEqual(ours.commands()[-1], b"QUIT")

    def test_lowerCaseAuth(self) -> None:
        """
        A lower-case C{auth plain} line is understood.
        """
        session = converse(
            "mailclient",
            lines(b"220 mx", b"250-mx\r\n250 auth plain", b"235 ok") + AFTER_AUTH,
            secret=PASSWORD,
            prepare=register("PLAINAuthenticator"),
        )
        self.assertEqual(session.commands()[1][:11], b"AUTH PLAIN ")
        self.assertEqual(session.client.delivered, [(250, b"queued")])

    def test_legacyAuthEquals(self) -> None:
        """
        The legacy C{AUTH=LOGIN} form is understood.
        """
        session = converse(
            "mailclient",
            lines(
                b"220 mx",
                b"250-mx\r\n250 AUTH=LOGIN",
                b"334 " + b64(b"Username:"),
                b"334 " + b64(b"Password:"),
                b"235 ok",
            )
            + AFTER_AUTH,
            secret=PASSWORD,
            prepare=register("LOGINAuthenticator"),
        )
        self.assertEqual(session.commands()[1:4], [b"AUTH LOGIN", b64(USER), b64(PASSWORD)])
        self.assertEqual(session.client.delivered, [(250, b"queued")])

    def assertNoSecrets(self, data: bytes) -> None:
        for secret in [
            PASSWORD,
            b64(PASSWORD),
            b64(b"\0" + USER + b"\0" + PASSWORD),
            b64(USER + b"\0" + USER + b"\0" + PASSWORD),
        ]:
            self.assertNotIn(secret, data)

    def test_cleartextRefused(self) -> None:
        """
        No credentials go over an unencrypted connection to a remote peer:
        AUTHRequiredError, code -1, saying why; nothing secret on the wire.
        """
        for mechanism in [b"PLAIN", b"LOGIN", b"CRAM-MD5"]:
            session = converse(
                "mailclient",
                lines(b"220 mx", b"250-mx\r\n250 AUTH " + mechanism, b"221 bye"),
                secret=PASSWORD,
                transport=TLSStringTransport(peerAddress=REMOTE),
                prepare=register(
                    "PLAINAuthenticator", "LOGINAuthenticator", "CramMD5ClientAuthenticator"
                ),
            )
            [error] = session.client.errors
            self.assertIsInstance(error, mailclient_smtp.AUTHRequiredError)
            self.assertEqual(error.code, -1)
            self.assertIn(b"unencrypted", error.resp)
            self.assertFalse([c for c in session.commands() if c.startswith(b"AUTH")])
            self.assertNoSecrets(session.written())
            self.assertNoSecrets(str(error).encode())
            self.assertEqual(session.commands()[-1], b"QUIT")

    def test_cleartextRefusedOnDefaultStringTransport(self) -> None:
        """
        StringTransport's default peer (192.168.1.1) is not loopback.
        """
        session = converse(
            "mailclient",
            lines(b"220 mx", b"250-mx\r\n250 AUTH PLAIN", b"221 bye"),
            secret=PASSWORD,
            transport=StringTransport(),
            prepare=register("PLAINAuthenticator"),
        )
        self.assertEqual(
            [type(e) for e in session.client.errors], [mailclient_smtp.AUTHRequiredError]
        )

    def test_cleartextAllowed(self) -> None:
        """
        allowCleartextAuthentication lets credentials go to a remote peer.
        """

        def prepare(client: Any, module: Any) -> None:
            register("PLAINAuthenticator")(client, module)
            allowCleartext(client, module)

        session = converse(
            "mailclient",
            lines(b"220 mx", b"250-mx\r\n250 AUTH PLAIN", b"235 ok") + AFTER_AUTH,
            secret=PASSWORD,
            transport=TLSStringTransport(peerAddress=REMOTE),
            prepare=prepare,
        )
        self.assertEqual(session.commands()[1], b"AUTH PLAIN " + b64(b"\0" + USER + b"\0" + PASSWORD))
        self.assertEqual(session.client.delivered, [(250, b"queued")])

    def test_loopbackIsSafe(self) -> None:
        """
        Loopback peers (IPv4 and IPv6) get credentials without TLS.
        """
        for peer in [LOOPBACK, IPv4Address("TCP", "127.5.6.7", 25), IPv6Address("TCP", "::1", 25)]:
            session = converse(
                "mailclient",
                lines(b"220 mx", b"250-mx\r\n250 AUTH PLAIN", b"235 ok") + AFTER_AUTH,
                secret=PASSWORD,
                transport=TLSStringTransport(peerAddress=peer),
                prepare=register("PLAINAuthenticator"),
            )
            self.assertEqual(session.client.errors, [], peer)
            self.assertEqual(session.client.delivered, [(250, b"queued")], peer)

    def test_afterStartTLSAllowed(self) -> None:
        """
        Over TLS (after STARTTLS) a remote peer gets credentials.
        """
        session = converse(
            "mailclient",
            lines(
                b"220 mx",
                b"250-mx\r\n250-STARTTLS\r\n250 AUTH PLAIN",
                b"220 go",
                b"250-mx\r\n250 AUTH PLAIN",
                b"235 ok",
            )
            + AFTER_AUTH,
            secret=PASSWORD,
            context=CONTEXT,
            transport=TLSStringTransport(peerAddress=REMOTE),
            prepare=register("PLAINAuthenticator"),
        )
        self.assertEqual(session.transport.tlsStarted, [CONTEXT])
        self.assertEqual(session.commands()[3][:11], b"AUTH PLAIN ")
        self.assertEqual(session.client.delivered, [(250, b"queued")])

    def test_requireAuthenticationNoPassword(self) -> None:
        """
        requireAuthentication without a password: AUTHRequiredError saying
        no password was given.
        """

        def prepare(client: Any, module: Any) -> None:
            register("PLAINAuthenticator")(client, module)
            client.requireAuthentication = True

        session = converse(
            "mailclient",
            lines(b"220 mx", b"250-mx\r\n250 AUTH PLAIN", b"221 bye"),
            secret=None,
            prepare=prepare,
        )
        [error] = session.client.errors
        self.assertIsInstance(error, mailclient_smtp.AUTHRequiredError)
        self.assertIn(b"no password was given", error.resp)

    def test_transcriptHasNoSecrets(self) -> None:
        """
        Neither the transcript nor str() of a declined-authentication error
        contains the password or its base64 forms (PLAIN, LOGIN).
        """
        for mech, replies in [
            (b"PLAIN", lines(b"535 no")),
            (b"LOGIN", lines(b"334 " + b64(b"Username:"), b"334 " + b64(b"Password:"), b"535 no")),
        ]:
            session = converse(
                "mailclient",
                lines(b"220 mx", b"250-mx\r\n250 AUTH " + mech) + replies + lines(b"221 bye"),
                secret=PASSWORD,
                prepare=register("LOGINAuthenticator", "PLAINAuthenticator"),
            )
            # The password really went on the wire...
            self.assertIn(b64(PASSWORD) if mech == b"LOGIN" else b"AUTH PLAIN ", session.written())
            # ...but is in no log or error.
            [error] = session.client.errors
            self.assertIsInstance(error, mailclient_smtp.AUTHDeclinedError)
            self.assertNoSecrets(session.client.log.str())
            self.assertNoSecrets(error.log or b"")
            self.assertNoSecrets(str(error).encode())
            self.assertIn(b"535 no", str(error).encode())
