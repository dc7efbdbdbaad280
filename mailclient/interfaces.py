"""
Interfaces of mailclient.
"""

from zope.interface import Interface


class IClientAuthentication(Interface):
    """
    A SASL mechanism the ESMTP client can use to authenticate.
    """

    def getName() -> bytes:
        """
        Return the mechanism name, e.g. C{b"PLAIN"}.
        """

    def challengeResponse(secret: bytes, challenge: bytes) -> bytes:
        """
        Return the response to a (decoded) server challenge.
        """


class IChallengeResponse(Interface):
    """
    A challenge/response credentials object (server side of a SASL
    exchange), as in C{twisted.mail.interfaces}.
    """

    def getChallenge() -> bytes:
        """
        Return the next challenge to send.
        """

    def setResponse(response: bytes) -> None:
        """
        Record the client's response to the last challenge.
        """

    def moreChallenges() -> bool:
        """
        Whether more challenges remain.
        """


__all__ = ["IClientAuthentication", "IChallengeResponse"]
