"""
Where a relay may send mail: smart hosts as given, and whether an exchange's
address is a global one (for C{refusePrivateAddresses}).

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Union

Exchange = tuple[str, int]
SmartHost = Union[str, tuple[str, int], Sequence[str | tuple[str, int]]]


def smartHosts(value: SmartHost, port: int) -> list[Exchange]:
    """
    The C{(host, port)} of each smart host in C{value} (a host, a
    C{(host, port)}, or a list of either), C{port} where none is given.
    """
    if isinstance(value, str):
        return [(value, port)]
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        return [(str(value[0]), value[1])]
    hosts: list[Exchange] = []
    for item in value:
        hosts.extend(smartHosts(item, port))
    return hosts


class RefusedExchange(Exception):
    """
    A mail exchange's address was refused (see
    L{SmartHostSMTPRelayingManager.refusePrivateAddresses}).
    """


def isGlobal(address: str) -> bool:
    """
    Whether C{address} is a global IP address (not loopback, private,
    link-local, multicast, reserved or unspecified).  A host name that was
    not resolved is not.
    """
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    return ip.is_global and not ip.is_multicast
