"""
mailclient: a drop-in, correct replacement for the SMTP client half of
C{twisted.mail}.

The package holds the whole client surface of L{mailclient.smtp}, so that
C{import mailclient as smtp} works wherever C{from twisted.mail import smtp}
did for client code (C{smtp.SUCCESS}, the authenticators, the errors,
C{Address}, ...).
"""

from typing import Any

from mailclient import smtp as _smtp
from mailclient.smtp import *  # noqa: F401,F403 - the public surface, by design
from mailclient.smtp import __all__ as _smtpNames

__version__ = "0.1.0"

#: The names of L{mailclient.smtp}, and the version.
__all__ = list(_smtpNames) + ["__version__"]


def __getattr__(name: str) -> Any:
    # DNSNAME is looked up on first use, not at import time.
    if name == "DNSNAME":
        return _smtp.DNSNAME
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
