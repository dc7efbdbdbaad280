"""
A pytest plugin providing L{mailclient.testing.SMTPTestServer} as a fixture.

Loaded by pytest only (through the C{pytest11} entry point, or C{-p
mailclient.pytest_plugin}); nothing else in mailclient imports it.

    def test_sends(smtp_server):
        connection = smtp_server.connectInMemory(myClientFactory)
        assert smtp_server.messages[0].rcptTo == [b"bob@example.com"]

Configure the server with a marker:

    @pytest.mark.smtp_server(credentials={"alice": "secret"}, requireAuth=True)
    def test_auth(smtp_server): ...

Unlike a bare C{SMTPTestServer()}, the fixture's server does not offer
STARTTLS unless asked (C{starttls=True}, C{requireTLS=True}, or
C{extensions} that list it): code under test that names its mail server and
passes no TLS context verifies any certificate it is shown against the
system's trust roots, which the test CA is not among, so a server offering
STARTTLS would make it fail.  When asked, the server presents a
certificate for its C{hostname} signed by the test CA; pass
C{smtp_server.clientTLSOptions()} to the code under test.

The fixture's server is not listening: use it in memory, which needs no
running reactor.  For loopback, call C{listenTCP()} under a runner that runs
the reactor (trial, or pytest-twisted); the fixture stops it after the test.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Iterator, Mapping

import pytest

from mailclient.testing import SMTPTestServer


def pytest_configure(config: pytest.Config) -> None:
    """
    Register the C{smtp_server} marker.
    """
    config.addinivalue_line(
        "markers",
        "smtp_server(**config): keyword arguments for the smtp_server fixture's "
        "SMTPTestServer (STARTTLS is offered only with starttls=True, "
        "requireTLS=True or extensions that list it)",
    )


def _serverConfig(markerConfig: Mapping[str, Any]) -> dict[str, Any]:
    """
    The keyword arguments for the fixture's L{SMTPTestServer}, from an
    C{smtp_server} marker's: as given, with C{starttls=False} unless the
    marker asks for STARTTLS or says which extensions to advertise.
    """
    config = dict(markerConfig)
    if "starttls" not in config and "extensions" not in config:
        config["starttls"] = bool(config.get("requireTLS"))
    return config


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest) -> Iterator[SMTPTestServer]:
    """
    A fresh L{SMTPTestServer}, configured by an C{smtp_server} marker's
    keyword arguments if there is one; it offers no STARTTLS unless asked
    (see the module's documentation).
    """
    marker = request.node.get_closest_marker("smtp_server")
    server = SMTPTestServer(**_serverConfig(marker.kwargs if marker else {}))
    yield server
    if server.listening:
        # Listening under pytest-twisted: stop, waiting on its reactor.
        try:
            from pytest_twisted import blockon
        except ImportError:
            server.stopListening()
        else:
            blockon(server.stopListening())
