# -*- test-case-name: mailclient.test.test_testing -*-
"""
L{SMTPTestCaseMixin}: starting an L{SMTPTestServer} from a trial test case,
and assertions on what it received.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, Protocol

from twisted.internet.interfaces import IReactorTCP

from mailclient._testing.actions import Text, _b
from mailclient._testing.records import ReceivedMessage, Session
from mailclient._testing.server import SMTPTestServer


P = ParamSpec("P")


class _TestCase(Protocol):
    """
    What L{SMTPTestCaseMixin} needs from the test case it is mixed into.
    """

    @property
    def failureException(self) -> type[BaseException]:
        ...

    def addCleanup(self, function: Callable[P, object], /, *args: P.args,
                   **kwargs: P.kwargs) -> None:
        ...


class SMTPTestCaseMixin:
    """
    Helpers for a L{twisted.trial.unittest.TestCase} (or any
    L{unittest.TestCase}) that tests code which sends mail.
    """

    def startSMTPServer(self: _TestCase, reactor: IReactorTCP | None = None,
                        **config: Any) -> SMTPTestServer:
        """
        Start an L{SMTPTestServer} configured with C{config} on a free
        loopback port (see L{SMTPTestServer.portNumber}), stopped again when
        the test ends.
        """
        server = SMTPTestServer(**config)
        server.listenTCP(reactor)
        self.addCleanup(server.stopListening)
        return server

    def assertDelivered(self: _TestCase, server: SMTPTestServer | Session,
                        to: Text | Sequence[Text] | None = None,
                        from_: Text | None = None,
                        containing: Text | None = None) -> ReceivedMessage:
        """
        Assert that some accepted message has all of C{to} among its
        recipients, the sender C{from_} and C{containing} in its data; return
        the first such message.  Addresses are compared exactly.
        """
        wanted = [] if to is None else [to] if isinstance(to, (bytes, str)) else list(to)
        for message in server.messages:
            if ((from_ is None or message.mailFrom == _b(from_))
                    and all(_b(r) in message.rcptTo for r in wanted)
                    and (containing is None or _b(containing) in message.data)):
                return message
        got = "\n".join(f"  from {m.mailFrom!r} to {m.rcptTo!r}, {len(m.data)} bytes"
                        for m in server.messages) or "  (none)"
        raise self.failureException(
            f"no message delivered from {from_!r} to {to!r} containing "
            f"{containing!r}; delivered:\n{got}\n{server.transcript()}")

    def assertNothingDelivered(self: _TestCase, server: SMTPTestServer | Session) -> None:
        """
        Assert that no message was accepted.
        """
        if server.messages:
            raise self.failureException(
                f"{len(server.messages)} message(s) delivered:\n{server.transcript()}")
