"""
L{LOGINCredentials}: the server side of SASL I{LOGIN}, built on Twisted's
credentials (C{twisted.mail.smtp} exports it, so mailclient keeps it).
"""

from __future__ import annotations

from twisted.cred.credentials import UsernamePassword
from zope.interface import implementer

from mailclient.interfaces import IChallengeResponse


@implementer(IChallengeResponse)
class LOGINCredentials(UsernamePassword):
    """
    Generates the challenges of the server side of I{LOGIN}, as Twisted's
    class of the same name (its prompts are those Outlook expects).
    """

    def __init__(self) -> None:
        # As Twisted's: no user name or password until the client gives them
        # (UsernamePassword's annotations say bytes).
        UsernamePassword.__init__(self, None, None)  # type: ignore[arg-type]
        self.challenges = [b"Password:", b"Username:"]
        self.responses = [b"password", b"username"]

    def getChallenge(self) -> bytes:
        return self.challenges.pop()

    def setResponse(self, response: bytes) -> None:
        setattr(self, self.responses.pop().decode("ascii"), response)

    def moreChallenges(self) -> bool:
        return bool(self.challenges)
