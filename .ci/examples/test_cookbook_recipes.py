"""
The cookbook's recipes, as copied into a fresh project, against a
mailclient.testing server on loopback.

.ci/docexamples.py writes each marked block of docs/cookbook.rst into the
project directory (send_hello.py, recipe_*.py, test_alerts.py) and copies
this file beside them; pytest, with pytest-twisted running the reactor and
-W error::DeprecationWarning, runs it there.  mailclient/test/test_docs.py
checks the recipes in more depth inside mailclient's own suite; this checks
that they work where only mailclient (no extras), pytest and pytest-twisted
are installed, with the smtp_server fixture as a user would use it.
"""

import os
import sys
import time

import pytest
import pytest_twisted
from twisted.internet import reactor, utils

from mailclient.smtp import AUTHDeclinedError, TLSRequiredError

import recipe_batch
import recipe_dsn
import recipe_implicit_tls
import recipe_large_file
import recipe_oauth2
import recipe_overlapping_batch
import recipe_relay_queue
import recipe_sendmail
import recipe_submission
import recipe_timeouts

HERE = os.path.dirname(os.path.abspath(__file__))
MESSAGE = b"From: app@example.com\r\nSubject: test\r\n\r\nHello from the cookbook.\r\n"

withTLS = pytest.mark.smtp_server(starttls=True)


def runScript(*args, env=None):
    """
    Run a copied script with this Python; fire with (output, errors, code)
    and the seconds it took.
    """
    started = time.monotonic()
    d = utils.getProcessOutputAndValue(
        sys.executable, ["-W", "error::DeprecationWarning", *args],
        env=dict(os.environ, **(env or {})), path=HERE, reactor=reactor)
    return d.addCallback(lambda result: (result, time.monotonic() - started))


@withTLS
@pytest_twisted.ensureDeferred
async def test_sendHello(smtp_server, tmp_path):
    """
    The first example, run as a script: it requires TLS and verifies the
    certificate against the system's trust roots, here only the test CA.
    """
    smtp_server.listenTCP()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(smtp_server.caCertificatePEM)
    (out, err, code), _ = await runScript(
        "send_hello.py", "localhost", str(smtp_server.portNumber),
        env={"SSL_CERT_FILE": str(ca)})
    assert code == 0, err
    assert out.decode().split()[:2] == ["alice@example.net", "250"]
    assert smtp_server.sessions[0].tls
    assert b"Hello from mailclient." in smtp_server.messages[0].data


@withTLS
@pytest_twisted.ensureDeferred
async def test_sendHelloUntrusted(smtp_server):
    """
    Without the test CA among the trust roots, nothing is sent.
    """
    smtp_server.listenTCP()
    (out, err, code), _ = await runScript(
        "send_hello.py", "localhost", str(smtp_server.portNumber))
    assert code == 1
    assert err.decode().startswith("not sent:"), err
    assert smtp_server.messages == []


@pytest_twisted.ensureDeferred
async def test_sendHelloUnreachable(smtp_server):
    """
    A host that cannot be reached fails the script at once, without a
    traceback, instead of retrying for half a minute.
    """
    smtp_server.listenTCP()
    port = smtp_server.portNumber
    await smtp_server.stopListening()
    (out, err, code), seconds = await runScript("send_hello.py", "127.0.0.1", str(port))
    assert code == 1
    assert b"Traceback" not in err, err
    assert err.decode().startswith("not sent:"), err
    assert seconds < 15


@withTLS
@pytest_twisted.ensureDeferred
async def test_sendmail(smtp_server):
    smtp_server.listenTCP()
    numOk, _ = await recipe_sendmail.sendWelcome(
        "alice@example.net", "127.0.0.1", smtp_server.portNumber,
        smtp_server.clientTLSOptions())
    assert numOk == 1
    assert smtp_server.sessions[0].tls
    assert b"Hello, and welcome!" in smtp_server.messages[0].data


@pytest_twisted.ensureDeferred
async def test_sendmailNeverInClear(smtp_server):
    """
    The fixture's server offers no STARTTLS: the recipe sends nothing.
    """
    smtp_server.listenTCP()
    with pytest.raises(TLSRequiredError):
        await recipe_sendmail.sendWelcome(
            "alice@example.net", "127.0.0.1", smtp_server.portNumber,
            smtp_server.clientTLSOptions())
    assert smtp_server.messages == []


@pytest.mark.smtp_server(credentials={"alice@example.com": "app password"},
                         requireTLS=True, requireAuth=True)
@pytest_twisted.ensureDeferred
async def test_submission(smtp_server):
    smtp_server.listenTCP()
    numOk, _ = await recipe_submission.submit(
        reactor, "alice@example.com", "app password", "alice@example.com",
        ["bob@example.net"], MESSAGE, host="127.0.0.1", port=smtp_server.portNumber,
        contextFactory=smtp_server.clientTLSOptions())
    assert numOk == 1
    assert smtp_server.sessions[0].authenticated == b"alice@example.com"


@pytest.mark.smtp_server(credentials={"alice@example.com": "secret"})
@pytest_twisted.ensureDeferred
async def test_implicitTLS(smtp_server):
    smtp_server.reactor = reactor
    port = reactor.listenSSL(0, smtp_server, smtp_server.tlsOptions, interface="127.0.0.1")
    try:
        numOk, _ = await recipe_implicit_tls.sendOverTLS(
            "alice@example.com", "secret", "alice@example.com", ["bob@example.net"],
            MESSAGE, host="127.0.0.1", port=port.getHost().port,
            contextFactory=smtp_server.clientTLSOptions())
    finally:
        await port.stopListening()
        await smtp_server.stopListening()
    assert numOk == 1
    assert b"STARTTLS" not in smtp_server.sessions[0].commands


@pytest.mark.smtp_server(credentials={"alice@gmail.com": "ya29.token"}, starttls=True)
@pytest_twisted.ensureDeferred
async def test_oauth2(smtp_server):
    smtp_server.listenTCP()
    numOk, _ = await recipe_oauth2.sendWithOAuth2(
        "alice@gmail.com", "ya29.token", ["bob@example.net"], MESSAGE,
        host="127.0.0.1", port=smtp_server.portNumber,
        contextFactory=smtp_server.clientTLSOptions())
    assert numOk == 1
    with pytest.raises(AUTHDeclinedError):
        await recipe_oauth2.sendWithOAuth2(
            "alice@gmail.com", "expired", ["bob@example.net"], MESSAGE,
            host="127.0.0.1", port=smtp_server.portNumber,
            contextFactory=smtp_server.clientTLSOptions())


@withTLS
@pytest_twisted.ensureDeferred
async def test_largeFile(smtp_server, tmp_path):
    smtp_server.listenTCP()
    body = b"Subject: big\r\n\r\n" + b".line\r\n" * 100000
    path = tmp_path / "message"
    path.write_bytes(body)
    numOk, _ = await recipe_large_file.sendFile(
        str(path), "app@example.com", ["bob@example.net"], host="127.0.0.1",
        port=smtp_server.portNumber, contextFactory=smtp_server.clientTLSOptions())
    assert numOk == 1
    assert smtp_server.messages[0].data == body


@withTLS
@pytest_twisted.ensureDeferred
async def test_batch(smtp_server):
    smtp_server.listenTCP()
    smtp_server.rcptReply("nobody@example.net", 550, b"5.1.1 no such user")
    messages = [("app@example.com", [to], b"Subject: x\r\n\r\nx\r\n")
                for to in ("a@example.net", "nobody@example.net", "b@example.net")]
    results = await recipe_batch.sendBatch(
        reactor, messages, host="127.0.0.1", port=smtp_server.portNumber,
        contextFactory=smtp_server.clientTLSOptions())
    assert [code for _, code, _ in results] == [250, 550, 250]
    assert len(smtp_server.sessions) == 1 and smtp_server.sessions[0].tls


@pytest.mark.smtp_server(extensions=["PIPELINING", "CHUNKING", "8BITMIME", "STARTTLS"])
@pytest_twisted.ensureDeferred
async def test_overlappingBatch(smtp_server):
    smtp_server.listenTCP()
    messages = [("app@example.com", ["%s@example.net" % (n,)], b"Subject: x\r\n\r\nx\r\n")
                for n in "abcd"]
    results = await recipe_overlapping_batch.sendOverlappingBatch(
        reactor, messages, host="127.0.0.1", port=smtp_server.portNumber,
        contextFactory=smtp_server.clientTLSOptions())
    assert [code for _, code, _ in results] == [250] * 4
    assert smtp_server.sessions[0].commands.count(b"RSET") == 3


@pytest.mark.smtp_server(extensions=["PIPELINING", "8BITMIME", "DSN", "STARTTLS"])
@pytest_twisted.ensureDeferred
async def test_dsn(smtp_server):
    smtp_server.listenTCP()
    numOk, _ = await recipe_dsn.sendWithReceipt(
        7, "bob@example.net", MESSAGE, host="127.0.0.1", port=smtp_server.portNumber,
        contextFactory=smtp_server.clientTLSOptions())
    assert numOk == 1
    assert smtp_server.messages[0].mailParams[b"ENVID"] == b"order-7"


@withTLS
@pytest_twisted.ensureDeferred
async def test_timeouts(smtp_server):
    smtp_server.listenTCP()
    numOk, _ = await recipe_timeouts.sendBeforeTheUserGivesUp(
        "bob@example.net", MESSAGE, host="127.0.0.1", port=smtp_server.portNumber,
        contextFactory=smtp_server.clientTLSOptions())
    assert numOk == 1


@withTLS
@pytest_twisted.ensureDeferred
async def test_relayQueue(smtp_server, tmp_path):
    smtp_server.listenTCP()
    await recipe_relay_queue.relayQueue(
        str(tmp_path), host="127.0.0.1", port=smtp_server.portNumber,
        contextFactory=smtp_server.clientTLSOptions(), reactor=reactor)
    [message] = smtp_server.messages
    assert message.rcptTo == [b"alice@example.net"]
    assert smtp_server.sessions[0].tls
