"""
Every error path of the sender factories and C{sendmail}, through
Twisted's and mailclient's, side by side: mailclient's error is always an
instance of the class Twisted gives (so C{except} clauses and
C{assertFailure} written for Twisted keep working), and often a more
precise subclass.  C{docs/compatibility.rst} ("Errors") has the same table;
a test keeps the two in step.
"""

from __future__ import annotations

import io
import os
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet import defer, error
from twisted.internet.testing import MemoryReactorClock
from twisted.mail import smtp as twisted_smtp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mailclient import smtp
from mailclient.testing import DATA_END, Disconnect, Garbage, NoReply, SMTPTestServer

BODY = b"Subject: hi\r\n\r\nHello.\r\n"
HOST = "mx.example.net"


class Scenario:
    """
    One way for a delivery to fail.

    @ivar setup: scripts the server.
    @ivar options: arguments for the factory.
    @ivar twisted: the class Twisted's factory fails with (L{None}: its
        Deferred never fires).
    @ivar ours: the class mailclient's fails with (the same, or a subclass).
    @ivar timeout: seconds to advance the clock by.
    """

    def __init__(self, name: str, twisted: Optional[str], ours: str,
                 setup: Callable[[SMTPTestServer], Any] = lambda server: None,
                 server: Optional[Dict[str, Any]] = None, timeout: float = 0,
                 refused: bool = False, **options: Any) -> None:
        self.name = name
        self.twisted = twisted
        self.ours = ours
        self.setup = setup
        self.serverOptions = server or {}
        self.timeout = timeout
        self.refused = refused
        self.options = options


PLAIN = {"requireAuthentication": False, "requireTransportSecurity": False}

SCENARIOS = [
    Scenario("connection refused", "SMTPConnectError", "SMTPConnectError", refused=True),
    Scenario("greeting refused (554)", "SMTPConnectError", "SMTPConnectError",
             lambda s: s.script("GREETING", 554, b"no service"), **PLAIN),
    Scenario("no reply in time", "SMTPTimeoutError", "SMTPTimeoutError",
             lambda s: s.script("MAIL", NoReply()), timeout=31, timeout_=30, **PLAIN),
    Scenario("connection lost mid-session", "SMTPConnectError", "SMTPConnectError",
             lambda s: s.script("RCPT", Disconnect()), **PLAIN),
    Scenario("malformed reply", None, "SMTPProtocolError",
             lambda s: s.script("MAIL", Garbage(b"hello there")), **PLAIN),
    Scenario("sender refused (550)", "SMTPDeliveryError", "SMTPDeliveryError",
             lambda s: s.script("MAIL", 550, b"5.1.0 no"), **PLAIN),
    Scenario("every recipient refused (550)", "SMTPDeliveryError", "SMTPDeliveryError",
             lambda s: s.script("RCPT", 550, b"5.1.1 no"), **PLAIN),
    Scenario("DATA refused (554)", "SMTPDeliveryError", "SMTPDeliveryError",
             lambda s: s.script("DATA", 554, b"5.7.1 no"), **PLAIN),
    Scenario("message refused after its data (552)", "SMTPDeliveryError", "SMTPDeliveryError",
             lambda s: s.script(DATA_END, 552, b"5.3.4 too big"), **PLAIN),
    Scenario("message over the server's SIZE", "SMTPDeliveryError", "CannotSendError",
             lambda s: s.script(DATA_END, 552, b"5.3.4 too big"),
             server={"extensions": ["SIZE 10"]}, **PLAIN),
    Scenario("EHLO refused, TLS required", "EHLORequiredError", "EHLORequiredError",
             lambda s: s.script("EHLO", 502, b"no"), requireAuthentication=False),
    Scenario("TLS required, not offered", "TLSRequiredError", "TLSRequiredError",
             server={"extensions": []}, requireAuthentication=False),
    Scenario("STARTTLS refused (454)", "TLSError", "TLSError",
             lambda s: s.script("STARTTLS", 454, b"4.7.0 not now"),
             server={"extensions": ["STARTTLS"]}, requireAuthentication=False, hostname=HOST),
    Scenario("certificate does not verify", "SMTPConnectError", "TLSError",
             server={"extensions": ["STARTTLS"]}, requireAuthentication=False, hostname=HOST),
    Scenario("authentication required, not offered", "AUTHRequiredError", "AUTHRequiredError",
             server={"extensions": ["STARTTLS"]}, tls=True, trusted=True),
    Scenario("credentials refused (535)", "AUTHDeclinedError", "AUTHDeclinedError",
             server={"extensions": ["STARTTLS", "AUTH LOGIN"],
                     "credentials": {"alice": "other"}}, tls=True, trusted=True),
]


class ErrorPathTests(SynchronousTestCase):
    """
    Each L{Scenario} through Twisted's C{ESMTPSenderFactory} and
    mailclient's.
    """

    def run_(self, library: Any, scenario: Scenario) -> Optional[Failure]:
        options = dict(scenario.options)
        options.pop("timeout_", None)
        trusted = options.pop("trusted", False)
        options.pop("tls", None)
        server = SMTPTestServer(credentials=scenario.serverOptions.get("credentials"),
                                extensions=scenario.serverOptions.get("extensions"))
        scenario.setup(server)
        reactor = MemoryReactorClock()
        d: defer.Deferred[Any] = defer.Deferred()
        if trusted:
            options["contextFactory"] = server.clientTLSOptions("localhost")
        timeout = scenario.options.get("timeout_")
        factory = library.ESMTPSenderFactory(
            b"alice", b"secret", "alice@example.com", ["bob@example.org"],
            io.BytesIO(BODY), d, 0, timeout, **options)
        if library is smtp:
            factory.reactor = reactor
        reactor.connectTCP(HOST, 25, factory)
        if scenario.refused:
            host, port, f = reactor.tcpClients.pop(0)[:3]
            f.clientConnectionFailed(reactor.connectors.pop(0),
                                     Failure(error.ConnectionRefusedError()))
        else:
            connection = server.connectPending(reactor)
            for _ in range(50):
                if not connection.pump():
                    break
            if scenario.timeout:
                connection.advance(scenario.timeout)
                for _ in range(50):
                    if not connection.pump():
                        break
        if library is twisted_smtp and factory.currentProtocol is not None:
            # (Twisted's timers run on the global reactor.)
            factory.currentProtocol.setTimeout(None)
        if not d.called:
            d.addErrback(lambda f: None)
            return None
        return self.failureResultOf(d)

    def test_scenarios(self) -> None:
        for scenario in SCENARIOS:
            theirs = self.run_(twisted_smtp, scenario)
            ours = self.run_(smtp, scenario)
            if scenario.twisted is None:
                self.assertIsNone(theirs, scenario.name)
            else:
                self.assertEqual(type(theirs.value).__name__, _twistedName(scenario.twisted),
                                 scenario.name)
                # Twisted's class, or a subclass: except clauses keep working.
                self.assertIsInstance(ours.value, getattr(smtp, scenario.twisted), scenario.name)
            self.assertEqual(type(ours.value).__name__, _ourName(scenario.ours), scenario.name)

    def test_documented(self) -> None:
        """
        docs/compatibility.rst lists every scenario with both classes.
        """
        path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "compatibility.rst")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        table = text[text.index("\nErrors\n"):]
        rows: List[Tuple[str, str, str]] = re.findall(
            r"^   \* - (.+)\n     - ``(\w+|-)``\n     - ``(\w+)``", table, re.M)
        self.assertEqual(
            [(s.name, s.twisted or "-", s.ours) for s in SCENARIOS], rows)


def _twistedName(name: str) -> str:
    # Twisted's smtp.TLSError is the class SMTPTLSError.
    return "SMTPTLSError" if name == "TLSError" else name


_ourName = _twistedName
