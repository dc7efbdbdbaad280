"""
L{IRelayManagerHooks} of mailclient's relaying managers: what an attempt
(L{mailclient._relaying.attempt._AttemptManager}) asks of the manager
that started it.  (Registered as an adapter in
L{mailclient._relaying.manager}.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast
from collections.abc import Mapping, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IConnector
from zope.interface import implementer

from mailclient._protocol.connect import HappyEyeballsConnector
from mailclient._relaying import destinations
from mailclient._relaying.attempt import DeliveryReport
from mailclient._relaying.bounce import DeliveryFailure
from mailclient.interfaces import IRelayManagerHooks

if TYPE_CHECKING:
    from mailclient._relaying.managed import SMTPManagedRelayerFactory
    from mailclient._relaying.manager import SmartHostSMTPRelayingManager


@implementer(IRelayManagerHooks)
class _ManagerHooks:
    """
    L{IRelayManagerHooks} of mailclient's managers.
    """

    def __init__(self, manager: SmartHostSMTPRelayingManager) -> None:
        self.manager = manager
        # Addresses tried by the attempt's earlier exchanges, and the
        # connector of the current one.
        self._used = 0
        self._connector: HappyEyeballsConnector | None = None

    def addressesLeft(self) -> int:
        """
        How many more addresses this attempt may try (the manager's
        C{maxAddresses}, across exchanges and families).
        """
        used = self._used + getattr(self._connector, "attempted", 0)
        return max(0, max(1, self.manager.maxAddresses) - used)

    def connectExchange(self, host: str, port: int, factory: object) -> defer.Deferred[IConnector]:
        manager = self.manager
        # A factory of the manager's relayers: it started the attempt.
        relayers = cast("SMTPManagedRelayerFactory", factory)
        if self._connector is not None:
            self._used += getattr(self._connector, "attempted", 1)
            self._connector = None
        limit = self.addressesLeft()
        addresses: defer.Deferred[list[str] | None]
        if hasattr(relayers, "tlsPolicy"):
            nextHop = None if manager.smartHost is not None else getattr(relayers, "nextHop", None)
            d = destinations.hopPolicy(manager, nextHop, host, port, relayers)
            d.addCallback(lambda policy: setattr(relayers, "tlsPolicy", policy))
            addresses = d.addCallback(lambda _: manager._exchangeAddresses(host))
        else:
            addresses = manager._exchangeAddresses(host)
        connected = addresses.addCallback(manager._connectExchange, host, port, relayers, limit)
        return connected.addCallback(self._connecting)

    def _connecting(self, connector: IConnector) -> IConnector:
        if not isinstance(connector, HappyEyeballsConnector):
            # One plain connection attempt.
            self._used += 1
        else:
            self._connector = connector
        return connector

    def reportDelivery(self, report: DeliveryReport) -> None:
        self.manager.reportDelivery(report)

    def deliveryDone(self, message: str) -> None:
        self.manager._done(message)

    def deferMessages(
        self, messages: Sequence[str], failures: Mapping[str, DeliveryFailure]
    ) -> None:
        self.manager._deferMessages(messages, failures)

    def returnToSender(
        self, message: str, status: str, diagnostic: bytes | None = None,
        remoteMTA: str | None = None, reason: str = "",
    ) -> bool:
        return self.manager._returnToSender(
            message, DeliveryFailure("", status, diagnostic, remoteMTA, reason))

    def exchangeWorked(self, host: str) -> None:
        self.manager._exchangeWorked(host)

    def exchangeFailed(self, host: str) -> None:
        self.manager._exchangeFailed(host)

    def forgetMessage(self, message: str) -> None:
        forget = getattr(self.manager.queue, "forget", None)
        if forget is not None:
            # The PostgreSQL queue lets the message go to another worker.
            forget(message)
        else:
            self.manager.queue.relayed.pop(message, None)
