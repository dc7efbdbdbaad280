"""
Tests for L{mailclient._wire.sasl}: the SASL authenticators, alone and on the
wire through L{mailclient.smtp.ESMTPClient}.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any, Callable, List, Optional, Tuple

from twisted.internet.address import IPv4Address
from twisted.mail import smtp as twisted_smtp
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mailclient import smtp as mailclient_smtp
from mailclient.interfaces import IClientAuthentication
from mailclient.test.helpers import AFTER_AUTH, lines, Message, recording, Session
from twisted.internet.testing import StringTransport

USER = b"alice@example.com"
PASSWORD = b"s3cret-Pa55word"
TOKEN = b"ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
IDENTITY = b"client.example"
LOOPBACK = IPv4Address("TCP", "127.0.0.1", 25)

Client = recording(mailclient_smtp.ESMTPClient)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


JSON_ERROR = b64(
    json.dumps(
        {"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}
    ).encode()
)


def run(auth: Any, replies: List[bytes], secret: Any = PASSWORD, peer: Any = LOOPBACK) -> Session:
    """
    Run a conversation with an ESMTPClient that registered C{auth}.
    """
    client = Client(secret, None, IDENTITY)
    client.registerAuthenticator(auth)
    client.queue(Message("alice@example.com", ["bob@example.org"], b"Hi.\n"))
    session = Session(client, StringTransport(peerAddress=peer))
    session.converse(replies)
    return session


class AuthenticatorUnitTests(SynchronousTestCase):
    """
    The authenticators' responses, compared with Twisted's where it has the
    same mechanism.
    """

    def test_interface(self) -> None:
        for auth in [
            mailclient_smtp.PLAINAuthenticator(USER),
            mailclient_smtp.LOGINAuthenticator(USER),
            mailclient_smtp.CramMD5ClientAuthenticator(USER),
            mailclient_smtp.XOAUTH2Authenticator(USER, TOKEN),
            mailclient_smtp.OAUTHBEARERAuthenticator(USER, TOKEN),
        ]:
            self.assertTrue(verifyObject(IClientAuthentication, auth))

    def test_names(self) -> None:
        self.assertEqual(
            [
                mailclient_smtp.PLAINAuthenticator(USER).getName(),
                mailclient_smtp.LOGINAuthenticator(USER).getName(),
                mailclient_smtp.CramMD5ClientAuthenticator(USER).getName(),
                mailclient_smtp.XOAUTH2Authenticator(USER).getName(),
                mailclient_smtp.OAUTHBEARERAuthenticator(USER).getName(),
            ],
            [b"PLAIN", b"LOGIN", b"CRAM-MD5", b"XOAUTH2", b"OAUTHBEARER"],
        )

    def test_plainLikeTwisted(self) -> None:
        """
        C{challengeResponse(secret, 1)} and C{(secret, 2)} give Twisted's two
        forms; the initial response is the standard form.
        """
        ours = mailclient_smtp.PLAINAuthenticator(USER)
        theirs = twisted_smtp.PLAINAuthenticator(USER)
        for chal in (1, 2):
            self.assertEqual(
                ours.challengeResponse(PASSWORD, chal), theirs.challengeResponse(PASSWORD, chal)
            )
        self.assertEqual(ours.initialResponse(PASSWORD), b"\0" + USER + b"\0" + PASSWORD)

    def test_cramMD5LikeTwisted(self) -> None:
        chal = b"<12345.67890@mx.example>"
        ours = mailclient_smtp.CramMD5ClientAuthenticator(USER)
        theirs = twisted_smtp.CramMD5ClientAuthenticator(USER)
        self.assertEqual(
            ours.challengeResponse(PASSWORD, chal), theirs.challengeResponse(PASSWORD, chal)
        )
        self.assertEqual(
            ours.challengeResponse(PASSWORD, chal),
            USER + b" " + hmac.HMAC(PASSWORD, chal, hashlib.md5).hexdigest().encode(),
        )

    def test_loginLikeTwisted(self) -> None:
        ours = mailclient_smtp.LOGINAuthenticator(USER)
        theirs = twisted_smtp.LOGINAuthenticator(USER)
        for prompt in [b"Username:", b"Password:"]:
            self.assertEqual(
                ours.challengeResponse(PASSWORD, prompt), theirs.challengeResponse(PASSWORD, prompt)
            )
        self.assertEqual(ours.challengeUsername(PASSWORD, b""), USER)
        self.assertEqual(ours.challengeSecret(PASSWORD, b""), PASSWORD)

    def test_loginFollowsPrompts(self) -> None:
        """
        LOGIN answers what the server asks for, and by order otherwise;
        C{reset} starts a new exchange.
        """
        auth = mailclient_smtp.LOGINAuthenticator(USER)
        self.assertEqual(auth.challengeResponse(PASSWORD, b"User Name\0"), USER)
        self.assertEqual(auth.challengeResponse(PASSWORD, b"Password\0"), PASSWORD)
        auth.reset()
        self.assertEqual(auth.challengeResponse(PASSWORD, b""), USER)
        self.assertEqual(auth.challengeResponse(PASSWORD, b""), PASSWORD)

    def test_textAndBytes(self) -> None:
        """
        str user names and secrets are encoded as UTF-8: the responses equal
        those for the UTF-8 bytes.
        """
        user, secret = "jörg", "pässword"
        buser, bsecret = user.encode("utf-8"), secret.encode("utf-8")
        chal = b"<1.2@mx>"
        pairs: List[Tuple[Callable[[Any], Any], Optional[bytes]]] = [
            (lambda u: mailclient_smtp.PLAINAuthenticator(u).initialResponse, None),
            (lambda u: mailclient_smtp.CramMD5ClientAuthenticator(u).challengeResponse, chal),
            (lambda u: mailclient_smtp.LOGINAuthenticator(u).challengeResponse, b"Username:"),
            (lambda u: mailclient_smtp.LOGINAuthenticator(u).challengeResponse, b"Password:"),
            (lambda u: mailclient_smtp.XOAUTH2Authenticator(u).initialResponse, None),
            (lambda u: mailclient_smtp.OAUTHBEARERAuthenticator(u).initialResponse, None),
        ]
        for make, arg in pairs:
            args = () if arg is None else (arg,)
            results = {
                make(u)(s, *args)
                for u in (user, buser)
                for s in (secret, bsecret)
            }
            self.assertEqual(len(results), 1, results)
            [result] = results
            self.assertIsInstance(result, bytes)
            self.assertTrue(buser in result or bsecret in result or b" " in result)

    def test_xoauth2Format(self) -> None:
        auth = mailclient_smtp.XOAUTH2Authenticator(USER, TOKEN)
        self.assertEqual(
            auth.initialResponse(PASSWORD),
            b"user=" + USER + b"\x01auth=Bearer " + TOKEN + b"\x01\x01",
        )
        self.assertEqual(auth.challengeResponse(PASSWORD, b'{"status":"401"}'), b"")

    def test_xoauth2TokenFromSecret(self) -> None:
        """
        Without a token, the client's secret is the token.
        """
        auth = mailclient_smtp.XOAUTH2Authenticator(USER)
        self.assertEqual(
            auth.initialResponse(TOKEN),
            b"user=" + USER + b"\x01auth=Bearer " + TOKEN + b"\x01\x01",
        )

    def test_oauthbearerFormat(self) -> None:
        auth = mailclient_smtp.OAUTHBEARERAuthenticator(USER, TOKEN)
        self.assertEqual(
            auth.initialResponse(PASSWORD),
            b"n,a=" + USER + b",\x01auth=Bearer " + TOKEN + b"\x01\x01",
        )
        self.assertEqual(auth.challengeResponse(PASSWORD, b'{"status":"401"}'), b"\x01")

    def test_oauthbearerEscapesUser(self) -> None:
        """
        C{=} and C{,} in the authorization identity are escaped (RFC 5801).
        """
        auth = mailclient_smtp.OAUTHBEARERAuthenticator("a=b,c@example.com", "tok")
        self.assertEqual(
            auth.initialResponse(b""), b"n,a=a=3Db=2Cc@example.com,\x01auth=Bearer tok\x01\x01"
        )

    def test_tokenCallable(self) -> None:
        """
        A callable token is called each time a response is built.
        """
        tokens = iter([b"first", "second"])
        calls: List[int] = []

        def token() -> Any:
            calls.append(1)
            return next(tokens)

        for cls in (mailclient_smtp.XOAUTH2Authenticator, mailclient_smtp.OAUTHBEARERAuthenticator):
            tokens = iter([b"first", "second"])
            calls.clear()
            auth = cls(USER, token)
            self.assertEqual(calls, [])
            self.assertIn(b"Bearer first\x01", auth.initialResponse(PASSWORD))
            self.assertIn(b"Bearer second\x01", auth.initialResponse(PASSWORD))
            self.assertEqual(len(calls), 2)


class WireTests(SynchronousTestCase):
    """
    The mechanisms through the client.
    """

    def test_xoauth2Success(self) -> None:
        auth = mailclient_smtp.XOAUTH2Authenticator(USER, TOKEN)
        session = run(auth, lines(b"220 mx", b"250-mx\r\n250 AUTH XOAUTH2 PLAIN", b"235 ok") + AFTER_AUTH)
        self.assertEqual(
            session.commands()[1],
            b"AUTH XOAUTH2 " + b64(b"user=" + USER + b"\x01auth=Bearer " + TOKEN + b"\x01\x01"),
        )
        self.assertEqual(session.commands()[2], b"MAIL FROM:<alice@example.com>")
        self.assertEqual(session.client.delivered, [(250, b"queued")])
        self.assertNotIn(TOKEN, session.client.log.str())

    def test_xoauth2Error(self) -> None:
        """
        On a 334 JSON error challenge the client sends an empty response and
        reports the server's final refusal as AUTHDeclinedError.
        """
        auth = mailclient_smtp.XOAUTH2Authenticator(USER, TOKEN)
        session = run(
            auth,
            lines(
                b"220 mx",
                b"250-mx\r\n250 AUTH XOAUTH2",
                b"334 " + JSON_ERROR,
                b"535 5.7.8 Username and Password not accepted",
                b"221 bye",
            ),
        )
        self.assertEqual(session.commands()[2], b"")
        [error] = session.client.errors
        self.assertIsInstance(error, mailclient_smtp.AUTHDeclinedError)
        self.assertEqual(error.code, 535)
        self.assertIn(b"not accepted", error.resp)
        self.assertEqual(session.commands()[-1], b"QUIT")
        for data in (session.client.log.str(), str(error).encode()):
            self.assertNotIn(TOKEN, data)
            self.assertNotIn(session.commands()[1].split()[2], data)

    def test_oauthbearerError(self) -> None:
        """
        OAUTHBEARER answers the error challenge with C{0x01}.
        """
        auth = mailclient_smtp.OAUTHBEARERAuthenticator(USER, TOKEN)
        session = run(
            auth,
            lines(
                b"220 mx",
                b"250-mx\r\n250 AUTH OAUTHBEARER",
                b"334 " + JSON_ERROR,
                b"535 no",
                b"221 bye",
            ),
        )
        self.assertEqual(
            session.commands()[1],
            b"AUTH OAUTHBEARER " + b64(b"n,a=" + USER + b",\x01auth=Bearer " + TOKEN + b"\x01\x01"),
        )
        self.assertEqual(session.commands()[2], b64(b"\x01"))
        [error] = session.client.errors
        self.assertIsInstance(error, mailclient_smtp.AUTHDeclinedError)
        self.assertEqual(error.code, 535)

    def test_oauthImmediateRefusal(self) -> None:
        """
        A refusal of the AUTH command with its initial response is an
        AUTHDeclinedError.
        """
        auth = mailclient_smtp.XOAUTH2Authenticator(USER, TOKEN)
        session = run(auth, lines(b"220 mx", b"250-mx\r\n250 AUTH XOAUTH2", b"535 nope", b"221 bye"))
        [error] = session.client.errors
        self.assertIsInstance(error, mailclient_smtp.AUTHDeclinedError)
        self.assertEqual((error.code, error.resp), (535, b"nope"))

    def test_tokenCallablePerAttempt(self) -> None:
        """
        A callable token is called once per connection attempt.
        """
        tokens = ["tok-1", "tok-2"]
        auth = mailclient_smtp.XOAUTH2Authenticator(USER, lambda: tokens.pop(0))
        sent = []
        for _ in range(2):
            session = run(auth, lines(b"220 mx", b"250-mx\r\n250 AUTH XOAUTH2", b"235 ok") + AFTER_AUTH)
            sent.append(base64.b64decode(session.commands()[1].split()[2]))
        self.assertEqual(
            sent,
            [
                b"user=" + USER + b"\x01auth=Bearer tok-1\x01\x01",
                b"user=" + USER + b"\x01auth=Bearer tok-2\x01\x01",
            ],
        )
        self.assertEqual(tokens, [])

    def test_textAndBytesOnTheWire(self) -> None:
        """
        For every mechanism, a str user and password put the same bytes on
        the wire as their UTF-8 encodings.
        """
        user, secret = "jörg", "pässword"
        chal = b64(b"<1.2@mx>")
        cases = [
            ("PLAINAuthenticator", lines(b"235 ok")),
            ("LOGINAuthenticator", lines(b"334 " + b64(b"Username:"), b"334 " + b64(b"Password:"), b"235 ok")),
            ("CramMD5ClientAuthenticator", lines(b"334 " + chal, b"235 ok")),
            ("XOAUTH2Authenticator", lines(b"235 ok")),
            ("OAUTHBEARERAuthenticator", lines(b"235 ok")),
        ]
        for name, replies in cases:
            cls = getattr(mailclient_smtp, name)
            mech = cls(b"x").getName()
            wires = set()
            for u, s in [(user, secret), (user.encode(), secret.encode()), (user, secret.encode())]:
                session = run(
                    cls(u), lines(b"220 mx", b"250-mx\r\n250 AUTH " + mech) + replies + AFTER_AUTH, secret=s
                )
                self.assertEqual(session.client.delivered, [(250, b"queued")], name)
                wires.add(session.written())
            self.assertEqual(len(wires), 1, name)

    def test_noSecretsInTranscriptOrErrors(self) -> None:
        """
        For PLAIN, LOGIN and XOAUTH2, neither the transcript nor str() of
        the error contains the password/token or its base64 form.
        """
        cases = [
            (mailclient_smtp.PLAINAuthenticator(USER), PASSWORD, lines(b"535 no")),
            (
                mailclient_smtp.LOGINAuthenticator(USER),
                PASSWORD,
                lines(b"334 " + b64(b"Username:"), b"334 " + b64(b"Password:"), b"535 no"),
            ),
            (mailclient_smtp.XOAUTH2Authenticator(USER), TOKEN, lines(b"334 " + JSON_ERROR, b"535 no")),
        ]
        for auth, secret, replies in cases:
            session = run(
                auth,
                lines(b"220 mx", b"250-mx\r\n250 AUTH " + auth.getName()) + replies + lines(b"221 bye"),
                secret=secret,
            )
            [error] = session.client.errors
            forbidden = [secret, b64(secret), b64(b"\0" + USER + b"\0" + secret)]
            if auth.getName() == b"XOAUTH2":
                forbidden.append(b64(b"user=" + USER + b"\x01auth=Bearer " + secret + b"\x01\x01"))
            for data in (session.client.log.str(), error.log, str(error).encode(), repr(error).encode()):
                for bad in forbidden:
                    self.assertNotIn(bad, data, auth.getName())
