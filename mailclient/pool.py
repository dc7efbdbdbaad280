"""
A pool of connections to one SMTP server: many messages, few connections.

    from mailclient.pool import SMTPPool

    pool = SMTPPool("smtp.example.com", 587, username="app", password=secret,
                    maxConnections=5)
    d = pool.send(message)          # an EmailMessage: envelope from its header
    d.addCallback(lambda result: print(result.numOk, result.reply))
    ...
    pool.close()

L{SMTPPool.send} returns a Deferred per message that fires with a
L{DeliveryResult} (which unpacks as C{sendmail}'s C{(numOk, addresses)}).
Each delivery attempt is logged as one structured C{twisted.logger} event;
see C{docs/pool.rst} for the options, the guarantees (a message whose end
of data was written is never sent twice: L{DeliveryStatusUnknownError})
and the event's fields.
"""

from mailclient._pool.pool import SMTPPool
from mailclient._protocol.events import DELIVERY_EVENT, RETRY_EVENT
from mailclient._wire.delivery import (
    DeliveryResult,
    DeliveryStatusUnknownError,
    Outcome,
    PoolClosedError,
    RecipientStatus,
)

__all__ = [
    "SMTPPool",
    "DeliveryResult",
    "RecipientStatus",
    "Outcome",
    "DeliveryStatusUnknownError",
    "PoolClosedError",
    "DELIVERY_EVENT",
    "RETRY_EVENT",
]
