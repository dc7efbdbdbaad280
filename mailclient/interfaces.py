"""
Interfaces of mailclient.
"""

from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

from zope.interface import Interface

if TYPE_CHECKING:
    from mailclient._relaying.bounce import DeliveryFailure


class IClientAuthentication(Interface):
    """
    A SASL mechanism the ESMTP client can use to authenticate.
    """

    def getName() -> bytes:
        """
        Return the mechanism name, e.g. C{b"PLAIN"}.
        """

    def challengeResponse(secret: bytes | str | None, challenge: bytes) -> bytes:
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


class IAttemptManager(Interface):
    """
    What a managed relayer tells its attempt manager (Twisted's contract,
    kept by C{mailclient.relaymanager._AttemptManager}).  Each method takes
    the relayer's factory; C{message} is the base path of a queued message.
    """

    def notifySuccess(factory: object, message: str) -> None:
        """
        The server accepted C{message}.
        """

    def notifyFailure(factory: object, message: str) -> None:
        """
        C{message} was refused for good.
        """

    def notifyDone(factory: object) -> None:
        """
        The relayer's connection is over.
        """

    def notifyNoConnection(factory: object) -> None:
        """
        The relayer could not connect.
        """


class IDeliveryProgress(Interface):
    """
    What a managed relayer also tells an attempt manager that provides this
    (mailclient's), beside L{IAttemptManager}'s notifications.
    """

    def notifySending(factory: object, message: str) -> None:
        """
        C{message} is about to be sent.
        """

    def notifyTemporaryFailure(factory: object, message: str) -> None:
        """
        C{message} was refused for now (4xx): it stays queued.
        """

    def forget(factory: object, message: str) -> None:
        """
        C{message} left the queue by other means (its files are gone).
        """


class IRelayManagerHooks(Interface):
    """
    What an attempt manager asks of the relaying manager it works for.

    mailclient's managers provide it (by adaptation); for any other object
    with Twisted's C{managed} and C{queue}, the attempt manager does what
    Twisted's does (remove delivered messages, let the others wait again).
    """

    def connectExchange(host: str, port: int, factory: object) -> Any:
        """
        Resolve C{host} and connect C{factory} to it; return a Deferred that
        fails if it cannot be reached.
        """

    def deliveryDone(message: str) -> None:
        """
        Remove a delivered (or returned) message from the queue.
        """

    def deferMessages(messages: Sequence[str], failures: "Mapping[str, DeliveryFailure]") -> None:
        """
        These messages could not be delivered for now (C{failures}: why, by
        message): let them wait again.
        """

    def returnToSender(
        message: str,
        status: str,
        diagnostic: bytes | None = None,
        remoteMTA: str | None = None,
        reason: str = "",
    ) -> bool:
        """
        Queue a delivery status notification for a message that failed for
        good; return whether the message may now leave the queue.
        """

    def exchangeWorked(host: str) -> None:
        """
        The mail exchange C{host} answered.
        """

    def exchangeFailed(host: str) -> None:
        """
        The mail exchange C{host} could not be used.
        """

    def forgetMessage(message: str) -> None:
        """
        C{message} left the queue by other means.
        """


__all__ = [
    "IClientAuthentication",
    "IChallengeResponse",
    "IAttemptManager",
    "IDeliveryProgress",
    "IRelayManagerHooks",
]
