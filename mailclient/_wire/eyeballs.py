"""
The order and pace of connection attempts to a host's addresses: happy
eyeballs (RFC 8305), as L{mailclient._protocol.connect} carries it out.

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from mailclient._wire.settings import addressFamily as family

#: Seconds to wait for one connection attempt before starting the next
#: (RFC 8305 section 5's "Connection Attempt Delay").
ATTEMPT_DELAY = 0.25

#: Seconds to wait for a TCP connection (Twisted's C{connectTCP} default,
#: Postfix's C{smtp_connect_timeout}); resolving the name waits as long.
CONNECT_TIMEOUT = 30.0


def interleave(addresses: Sequence[str], first: int | None = None) -> list[str]:
    """
    Order C{addresses} as RFC 8305 section 4 says: one of the first family,
    one of the other, and so on, each family in its given order, without
    duplicates.

    @param first: the family to start with (4 or 6); by default the family
        of the first address.
    """
    unique = list(dict.fromkeys(addresses))
    if not unique:
        return []
    if first is None:
        first = family(unique[0])
    primary = [a for a in unique if family(a) == first]
    secondary = [a for a in unique if family(a) != first]
    ordered: list[str] = []
    for i in range(max(len(primary), len(secondary))):
        ordered.extend(group[i] for group in (primary, secondary) if i < len(group))
    return ordered


def preferredFamily(preference: str, chooser: random.Random | None = None) -> int | None:
    """
    The family an address preference (Postfix's C{smtp_address_preference}:
    C{"ipv6"}, C{"ipv4"}, C{"any"}) starts with: 6, 4, or one of them at
    random.

    @raise ValueError: for another preference.
    """
    if preference == "ipv6":
        return 6
    if preference == "ipv4":
        return 4
    if preference == "any":
        return (chooser or random).choice((4, 6))
    raise ValueError("address preference must be 'ipv6', 'ipv4' or 'any', not %r"
                     % (preference,))
