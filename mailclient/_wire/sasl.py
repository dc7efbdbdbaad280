"""
SASL mechanisms for the ESMTP client (RFC 4954): PLAIN, LOGIN, CRAM-MD5,
XOAUTH2 and OAUTHBEARER.

Pure.  Each authenticator provides L{IClientAuthentication}: C{getName()}
and C{challengeResponse(secret, challenge)}, with Twisted's names and
constructor signatures.  Mechanisms that can answer at once (PLAIN and the
OAuth ones) also provide C{initialResponse(secret)}, which the client sends
with the C{AUTH} command.  User names, secrets and tokens may be L{str}
(encoded as UTF-8) or L{bytes}.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Union
from collections.abc import Callable

from zope.interface import implementer

from mailclient._wire.types import Text
from mailclient.interfaces import IClientAuthentication

#: The most challenges one authentication exchange answers: the mechanisms
#: here need two at most (LOGIN's user name and password); a server that
#: asks for ever would be sent the secret for ever.
MAX_CHALLENGES = 4

TokenSource = Union[Text, Callable[[], Text]]


def toBytes(value: Text | None) -> bytes:
    """
    Return C{value} as bytes, encoding text as UTF-8 (None gives C{b""}).
    """
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


@implementer(IClientAuthentication)
class PLAINAuthenticator:
    """
    SASL PLAIN (RFC 4616).

    mailclient sends the standard form C{NUL user NUL secret} once, as the
    initial response.  (Twisted first sends C{user NUL user NUL secret} and
    then, if that is refused, the password again in the second form.)
    """

    def __init__(self, user: Text | None) -> None:
        self.user = user

    def getName(self) -> bytes:
        return b"PLAIN"

    def initialResponse(self, secret: Text) -> bytes:
        return self.challengeResponse(secret, 2)

    def challengeResponse(self, secret: Text | None, chal: object = 1) -> bytes:
        """
        Twisted-compatible: C{chal=1} gives the form with an authorization
        identity, anything else the standard form.
        """
        user, key = toBytes(self.user), toBytes(secret)
        if chal == 1:
            return user + b"\0" + user + b"\0" + key
        return b"\0" + user + b"\0" + key


@implementer(IClientAuthentication)
class LOGINAuthenticator:
    """
    The LOGIN mechanism: the user name, then the secret.

    The answer follows the server's prompt when it says which it wants
    (C{Username:}/C{Password:}), and the order of the prompts otherwise.
    """

    def __init__(self, user: Text | None) -> None:
        self.user = user
        self._step = 0

    def getName(self) -> bytes:
        return b"LOGIN"

    def reset(self) -> None:
        """
        Start a new exchange (called by the client before C{AUTH LOGIN}).
        """
        self._step = 0

    def challengeResponse(self, secret: Text | None, chal: bytes) -> bytes:
        prompt = chal.lower() if isinstance(chal, bytes) else b""
        self._step += 1
        if b"pass" in prompt:
            return toBytes(secret)
        if b"user" in prompt:
            return toBytes(self.user)
        return toBytes(self.user) if self._step == 1 else toBytes(secret)

    # Twisted's class exposes these two steps by name.
    def challengeUsername(self, secret: Text, chal: bytes) -> bytes:
        return toBytes(self.user)

    def challengeSecret(self, secret: Text, chal: bytes) -> bytes:
        return toBytes(secret)


@implementer(IClientAuthentication)
class CramMD5ClientAuthenticator:
    """
    CRAM-MD5 (RFC 2195): an HMAC-MD5 of the server's challenge.
    """

    def __init__(self, user: Text | None) -> None:
        self.user = user

    def getName(self) -> bytes:
        return b"CRAM-MD5"

    def challengeResponse(self, secret: Text | None, chal: bytes) -> bytes:
        digest = hmac.HMAC(toBytes(secret), chal, digestmod=hashlib.md5).hexdigest()
        return toBytes(self.user) + b" " + digest.encode("ascii")


class _OAuthAuthenticator:
    """
    Shared part of the OAuth 2.0 mechanisms: where the token comes from.
    """

    def __init__(self, user: Text | None, token: TokenSource | None = None) -> None:
        """
        @param user: The account name.
        @param token: The access token, or a callable returning a fresh one
            each time it is needed.  When omitted, the client's secret (the
            password given to the factory or C{sendmail}) is the token.
        """
        self.user = user
        self.token = token

    def _token(self, secret: Text) -> bytes:
        source = self.token
        if source is None:
            return toBytes(secret)
        if callable(source):
            return toBytes(source())
        return toBytes(source)


@implementer(IClientAuthentication)
class XOAUTH2Authenticator(_OAuthAuthenticator):
    """
    Google's and Microsoft's XOAUTH2 mechanism.

    On failure the server sends a JSON error as a challenge; the client
    answers with an empty line and the server then refuses the login.
    """

    def getName(self) -> bytes:
        return b"XOAUTH2"

    def initialResponse(self, secret: Text) -> bytes:
        return (
            b"user=" + toBytes(self.user) + b"\x01auth=Bearer "
            + self._token(secret) + b"\x01\x01"
        )

    def challengeResponse(self, secret: Text | None, chal: bytes) -> bytes:
        return b""


@implementer(IClientAuthentication)
class OAUTHBEARERAuthenticator(_OAuthAuthenticator):
    """
    OAUTHBEARER (RFC 7628).

    On failure the server sends a JSON error as a challenge; the client
    answers with a single C{0x01} and the server then refuses the login.
    """

    def getName(self) -> bytes:
        return b"OAUTHBEARER"

    def initialResponse(self, secret: Text) -> bytes:
        user = toBytes(self.user).replace(b"=", b"=3D").replace(b",", b"=2C")
        return (
            b"n,a=" + user + b",\x01auth=Bearer " + self._token(secret) + b"\x01\x01"
        )

    def challengeResponse(self, secret: Text | None, chal: bytes) -> bytes:
        return b"\x01"
