"""
The local host name, looked up once and only when first needed.

Twisted computes C{DNSNAME} with C{socket.getfqdn()} at import time, which
can block for seconds on a machine with slow DNS; mailclient defers it.
"""

from __future__ import annotations

import socket
import sys

_dnsName: bytes | None = None


def getDNSName() -> bytes:
    """
    Return this host's fully qualified name as ASCII bytes, cached.
    """
    global _dnsName
    if _dnsName is None:
        if sys.platform == "darwin":
            name = socket.gethostname()
        else:
            name = socket.getfqdn()
        try:
            _dnsName = name.encode("ascii")
        except UnicodeEncodeError:
            _dnsName = name.encode("idna")
    return _dnsName

