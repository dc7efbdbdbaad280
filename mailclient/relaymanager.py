"""
Relaying a queue of messages: the drop-in for C{twisted.mail.relaymanager}.

L{SmartHostSMTPRelayingManager} watches a L{Queue} (call C{checkState}
periodically, for example with L{RelayStateHelper}).  It groups waiting
messages by destination domain, finds each domain's mail exchanges with an
L{MXCalculator} (or sends everything to a configured smart host), and for
each group starts a managed relayer, which sends the messages over one
connection and reports each outcome:

  - accepted (final reply to C{DATA} is 2xx): removed from the queue;
  - refused for good (5xx): returned to the sender as an RFC 3464 delivery
    status notification (queued like any other message), then removed;
  - refused for now (4xx), or no exchange could be reached, or the
    connection failed: left in the queue, and retried after a delay that
    grows with each failure (L{SmartHostSMTPRelayingManager.backoffDelay},
    C{backoffFactor}, C{maxBackoffDelay}); once it has been queued longer
    than C{maxQueueLifetime}, returned to the sender instead (4.4.7).

A message leaves the queue only after the server's reply (or once it is
returned), so if the process dies the message is still queued when it
restarts.  When an exchange cannot be reached, or its session fails before
any message was answered, the next exchange (by MX preference) is tried.
Where this differs from Twisted: C{docs/compatibility.rst}, "Relaying".
"""

from __future__ import annotations

from mailclient._relaying.attempt import _AttemptManager  # noqa: F401 - Twisted's name

from mailclient._relaying.attempt import DeliveryOutcome, DeliveryReport
from mailclient._wire.tlspolicy import TLSPolicyMap
from mailclient._relaying.managed import (
    ESMTPManagedRelayer,
    ESMTPManagedRelayerFactory,
    ManagedRelayerMixin,
    SMTPManagedRelayer,
    SMTPManagedRelayerFactory,
)
from mailclient._relaying.manager import (
    SmartHostESMTPRelayingManager,
    SmartHostSMTPRelayingManager,
)
from mailclient._relaying.service import (
    RelayStateHelper,
    _checkState,  # noqa: F401 - Twisted's name
)
from mailclient._relaying.mx import (
    CanonicalNameChainTooLong,
    CanonicalNameLoop,
    MXCalculator,
    UndeliverableDomain,
)
from mailclient._relaying.queue import Queue
from mailclient._wire.util import publicPath

__all__ = [
    "DeliveryOutcome",
    "DeliveryReport",
    "TLSPolicyMap",
    "ManagedRelayerMixin",
    "SMTPManagedRelayer",
    "ESMTPManagedRelayer",
    "SMTPManagedRelayerFactory",
    "ESMTPManagedRelayerFactory",
    "Queue",
    "SmartHostSMTPRelayingManager",
    "SmartHostESMTPRelayingManager",
    "RelayStateHelper",
    "MXCalculator",
    "CanonicalNameLoop",
    "CanonicalNameChainTooLong",
    "UndeliverableDomain",
]

# Pickled (a relaying manager, its queue) and documented under this public
# path, which does not move when the private modules do.
publicPath(__name__, [globals()[name] for name in __all__ if name != "RelayStateHelper"])
