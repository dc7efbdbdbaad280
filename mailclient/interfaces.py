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


__all__ = ["IClientAuthentication"]
