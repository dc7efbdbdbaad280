"""
Where the relay's TLS policy for a destination comes from, beyond the
policy map: MTA-STS (RFC 8461), DANE (RFC 7672) and REQUIRETLS (RFC 8689),
and the TLS-RPT counters (RFC 8460) of what happened.

    from mailclient.relaymanager import SmartHostESMTPRelayingManager
    from mailclient.relaytls import DNSSECResolver

    manager = SmartHostESMTPRelayingManager(
        queue, mtaSTS=True,                         # cached next to the queue
        daneResolver=DNSSECResolver([("127.0.0.1", 53)]))  # a validating resolver

Each source feeds the library's one L{TLSPolicy}; each delivery's
L{TLSRecord} says which one set it (L{PolicySource}).  A message asks for
REQUIRETLS when it is queued with L{enqueueWithOptions}.  See
C{docs/security.rst}.
"""

from mailclient._relaying.dane import DNSSECResolver, TLSAAnswer, TLSALookupError
from mailclient._relaying.msgoptions import MessageOptions, enqueueWithOptions
from mailclient._relaying.mtasts import MTASTS, HTTPSPolicyFetcher, STSLookup
from mailclient._relaying.tlsrpt import TLSReportCounters
from mailclient._wire.dane import TLSARecord
from mailclient._wire.mtasts import PolicyError, STSMode, STSPolicy
from mailclient._wire.tlspolicy import PolicySource, SourceKind
from mailclient._wire.util import publicPath

__all__ = [
    "MTASTS",
    "HTTPSPolicyFetcher",
    "STSLookup",
    "STSPolicy",
    "STSMode",
    "PolicyError",
    "DNSSECResolver",
    "TLSAAnswer",
    "TLSARecord",
    "TLSALookupError",
    "MessageOptions",
    "enqueueWithOptions",
    "TLSReportCounters",
    "PolicySource",
    "SourceKind",
]

publicPath(__name__, [globals()[name] for name in __all__])
