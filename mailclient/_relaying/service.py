"""
L{RelayStateHelper}: the service that runs a relaying manager.
"""

from __future__ import annotations

from typing import Protocol

from twisted.application import internet
from twisted.internet import defer


class _Manager(Protocol):
    """
    A relaying manager (L{mailclient._relaying.manager}, or Twisted's): what
    the service calls.
    """

    def checkState(self) -> object:
        ...


def _checkState(manager: _Manager) -> None:
    manager.checkState()


class _RelayService(internet.TimerService):
    """
    Calls its manager's C{checkState} periodically; when stopped, lets the
    queue go to another manager.
    """

    def __init__(self, manager: _Manager, delay: float) -> None:
        internet.TimerService.__init__(self, delay, _checkState, manager)
        self.manager = manager

    def stopService(self) -> defer.Deferred[None] | None:
        release = getattr(getattr(self.manager, "queue", None), "releaseRelayLock", None)
        if release is not None:
            release()
        return internet.TimerService.stopService(self)


def RelayStateHelper(manager: _Manager, delay: float) -> internet.TimerService:
    """
    Return a service that calls C{manager.checkState()} every C{delay}
    seconds (and, when stopped, releases the queue's relaying lock).
    """
    return _RelayService(manager, delay)
