"""
mailclient: a drop-in, correct replacement for the SMTP client half of
C{twisted.mail}.

The package holds the whole client surface of L{mailclient.smtp}, so that
C{import mailclient as smtp} works wherever C{from twisted.mail import smtp}
did for client code (C{smtp.SUCCESS}, the authenticators, the errors,
C{Address}, ...).
"""

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

from mailclient import smtp as _smtp
from mailclient.smtp import *  # noqa: F401,F403 - the public surface, by design
from mailclient.smtp import __all__ as _smtpNames

# mailclient's own connection pool (mailclient.pool), on the package too; not
# in __all__, which is mailclient.smtp's (Twisted's names) and the version.
from mailclient.pool import (  # noqa: F401
    DeliveryResult,
    DeliveryStatusUnknownError,
    PoolClosedError,
    SMTPPool,
)

__version__ = "0.1.0"

#: Private modules that moved, whose old names pickles made by earlier
#: releases still name (a pickled relaying manager holds its Queue).
_MOVED = {
    "mailclient._queue": "mailclient._relaying.queue",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """
    Import an old private module name as the module it moved to.
    """

    def find_spec(self, name: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if name in _MOVED:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        return importlib.import_module(_MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        pass


sys.meta_path.append(_MovedModules())

#: The names of L{mailclient.smtp}, and the version.
__all__ = list(_smtpNames) + ["__version__"]


def __getattr__(name: str) -> bytes:
    # DNSNAME is looked up on first use, not at import time.
    if name == "DNSNAME":
        return _smtp.DNSNAME
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
