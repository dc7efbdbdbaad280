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

The fixture's server is not listening: use it in memory, which needs no
running reactor.  For loopback, call C{listenTCP()} under a runner that runs
the reactor (trial, or pytest-twisted) and stop it with C{stopListening()}.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Iterator

import pytest

from mailclient.testing import SMTPTestServer


def pytest_configure(config: Any) -> None:
    """
    Register the C{smtp_server} marker.
    """
    config.addinivalue_line(
        "markers",
        "smtp_server(**config): keyword arguments for the smtp_server fixture's "
        "SMTPTestServer",
    )


@pytest.fixture
def smtp_server(request: Any) -> Iterator[SMTPTestServer]:
    """
    A fresh L{SMTPTestServer}, configured by an C{smtp_server} marker's
    keyword arguments if there is one.
    """
    marker = request.node.get_closest_marker("smtp_server")
    server = SMTPTestServer(**(marker.kwargs if marker else {}))
    yield server
    if server.listening:
        # Listening under pytest-twisted: stop, waiting on its reactor.
        try:
            from pytest_twisted import blockon  # type: ignore[import-not-found]
        except ImportError:
            server.stopListening()
        else:
            blockon(server.stopListening())
