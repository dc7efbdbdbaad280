"""
The wire transcripts of C{docs/extensions.rst} are what the client really
sends: each scenario below is played against the client and its transcript
must appear, verbatim, in the document.

Run C{python -m mailclient.test.test_extensions_docs} to print them all
(when the client's behaviour changes on purpose, paste them in the docs).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mailclient import smtp
from mailclient.test.helpers import LOOPBACK, TLSStringTransport, lines, render, Session

ADDR = IPv4Address("TCP", "127.0.0.1", 25)
DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "extensions.rst")
BODY = b"Subject: hello\r\n\r\nHello, world.\r\n"


@dataclass
class Scenario:
    """
    One conversation: what the server advertises and answers, what the
    client is asked to send.
    """

    name: str
    ehlo: bytes
    replies: Sequence[bytes]
    recipients: Sequence[str] = ("bob@example.org",)
    sender: str = "alice@example.com"
    body: bytes = BODY
    options: Dict[str, Any] = field(default_factory=dict)
    protocol: Any = None


SCENARIOS = [
    Scenario(
        "none",
        b"250-mx.example\r\n250 HELP",
        lines(b"250 2.1.0 ok", b"250 2.1.5 ok", b"354 go ahead", b"250 2.0.0 queued", b"250 ok", b"221 bye"),
    ),
    Scenario(
        "pipelining",
        b"250-mx.example\r\n250 PIPELINING",
        [b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n"]
        + lines(b"250 2.0.0 queued", b"221 bye"),
        recipients=("bob@example.org", "carol@example.org"),
    ),
    Scenario(
        "pipelining-refused",
        b"250-mx.example\r\n250 PIPELINING",
        [b"250 2.1.0 ok\r\n550 5.1.1 no such user\r\n250 2.1.5 ok\r\n354 go ahead\r\n"]
        + lines(b"250 2.0.0 queued", b"221 bye"),
        recipients=("nobody@example.org", "carol@example.org"),
    ),
    Scenario(
        "chunking",
        b"250-mx.example\r\n250-PIPELINING\r\n250 CHUNKING",
        [b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued\r\n"] + lines(b"221 bye"),
    ),
    Scenario(
        "size",
        b"250-mx.example\r\n250 SIZE 10485760",
        lines(b"250 2.1.0 ok", b"250 2.1.5 ok", b"354 go ahead", b"250 2.0.0 queued", b"250 ok", b"221 bye"),
    ),
    Scenario(
        "size-too-big",
        b"250-mx.example\r\n250 SIZE 20",
        lines(b"221 bye"),
    ),
    Scenario(
        "8bit-prescanned",
        b"250-mx.example\r\n250 SIZE 1000",
        lines(b"221 bye"),
        body="Subject: caf\u00e9\r\n\r\nna\u00efve\r\n".encode("utf-8"),
    ),
    Scenario(
        "8bitmime",
        b"250-mx.example\r\n250 8BITMIME",
        lines(b"250 2.1.0 ok", b"250 2.1.5 ok", b"354 go ahead", b"250 2.0.0 queued", b"250 ok", b"221 bye"),
        body="Subject: caf\u00e9\r\n\r\nna\u00efve\r\n".encode("utf-8"),
    ),
    Scenario(
        "8bit-refused",
        b"250-mx.example\r\n250 HELP",
        lines(b"250 2.1.0 ok", b"250 2.1.5 ok", b"354 go ahead"),
        body="Subject: caf\u00e9\r\n\r\nna\u00efve\r\n".encode("utf-8"),
    ),
    Scenario(
        "smtputf8",
        b"250-mx.example\r\n250-8BITMIME\r\n250 SMTPUTF8",
        lines(b"250 2.1.0 ok", b"250 2.1.5 ok", b"354 go ahead", b"250 2.0.0 queued", b"250 ok", b"221 bye"),
        sender="j\u00f6rg@example.com",
        recipients=("\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a",),
    ),
    Scenario(
        "smtputf8-refused",
        b"250-mx.example\r\n250 8BITMIME",
        lines(b"221 bye"),
        sender="j\u00f6rg@example.com",
    ),
    Scenario(
        "dsn",
        b"250-mx.example\r\n250 DSN",
        lines(b"250 2.1.0 ok", b"250 2.1.5 ok", b"354 go ahead", b"250 2.0.0 queued", b"250 ok", b"221 bye"),
        options={
            "mailOptions": smtp.MailOptions(
                ret="HDRS", envid="order-1234", notify=("FAILURE", "DELAY"), orcpt=True
            )
        },
    ),
    Scenario(
        "dsn-required",
        b"250-mx.example\r\n250 HELP",
        lines(b"221 bye"),
        options={"mailOptions": smtp.MailOptions(notify=("FAILURE",), requireDSN=True)},
    ),
    Scenario(
        "enhancedstatuscodes",
        b"250-mx.example\r\n250 ENHANCEDSTATUSCODES",
        lines(b"250 2.1.0 ok", b"452 4.2.2 mailbox full", b"250 ok", b"221 bye"),
    ),
]


def documentedSubclass() -> Any:
    """
    The subclass example of the document, executed.
    """
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    start = text.index("    from mailclient.smtp import ESMTPSender\n\n    class PriorityClient")
    block = []
    for line in text[start:].splitlines():
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    namespace: Dict[str, Any] = {}
    exec("\n".join(block), namespace)
    return namespace["PriorityClient"]


SCENARIOS.append(
    Scenario(
        "subclass",
        b"250-mx.example\r\n250-PIPELINING\r\n250 MT-PRIORITY MIXER",
        [b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n"] + lines(b"250 2.0.0 queued", b"221 bye"),
        protocol=documentedSubclass(),
    )
)


@dataclass
class Outcome:
    transcript: str
    result: Any


def play(scenario: Scenario) -> Outcome:
    """
    Send the scenario's message with an L{ESMTPSenderFactory} over a
    scripted connection; return the transcript and the Deferred's result.
    """
    d: defer.Deferred = defer.Deferred()
    factory = smtp.ESMTPSenderFactory(
        None,
        None,
        scenario.sender,
        list(scenario.recipients),
        io.BytesIO(scenario.body),
        d,
        retries=0,
        requireAuthentication=False,
        requireTransportSecurity=False,
        **scenario.options,
    )
    factory.domain = b"client.example"
    if scenario.protocol is not None:
        factory.protocol = scenario.protocol
    proto = factory.buildProtocol(ADDR)
    session = Session(proto, TLSStringTransport(peerAddress=LOOPBACK))
    session.converse(lines(b"220 mx.example ESMTP", scenario.ehlo) + list(scenario.replies))
    if not session.lost:
        session.loseConnection()
    factory.clientConnectionLost(None, session.lostReason)
    results: List[Any] = []
    d.addBoth(results.append)
    [result] = results
    if isinstance(result, Failure):
        result = result.value
    return Outcome(render(session.exchange), result)


def asBlock(scenario: Scenario, outcome: Outcome) -> str:
    body = "\n".join("    " + line for line in outcome.transcript.splitlines())
    return ".. code-block:: none\n\n" + body + "\n"


class TranscriptTests(SynchronousTestCase):
    """
    Each transcript in the document is produced by the client.
    """

    def setUp(self) -> None:
        with open(DOC, encoding="utf-8") as f:
            self.doc = f.read()

    def test_scenariosInDocument(self) -> None:
        for scenario in SCENARIOS:
            outcome = play(scenario)
            block = asBlock(scenario, outcome)
            self.assertIn(block, self.doc, "transcript %r differs from docs" % (scenario.name,))

    def test_outcomes(self) -> None:
        """
        The outcomes the document describes.
        """
        outcomes = {s.name: play(s).result for s in SCENARIOS}
        for name in ["none", "chunking", "size", "8bitmime", "smtputf8", "dsn", "subclass"]:
            self.assertEqual(outcomes[name][0], 1, name)
        self.assertEqual(outcomes["pipelining"][0], 2)
        self.assertEqual(outcomes["pipelining-refused"][0], 1)
        self.assertIsInstance(outcomes["size-too-big"], smtp.SMTPClientError)
        self.assertIn("SIZE", str(outcomes["size-too-big"]))
        self.assertIsInstance(outcomes["8bit-refused"], smtp.SMTPClientError)
        self.assertIn("8BITMIME", str(outcomes["8bit-refused"]))
        self.assertIsInstance(outcomes["8bit-prescanned"], smtp.SMTPClientError)
        self.assertIn("8BITMIME", str(outcomes["8bit-prescanned"]))
        self.assertIsInstance(outcomes["smtputf8-refused"], smtp.SMTPClientError)
        self.assertIn("SMTPUTF8", str(outcomes["smtputf8-refused"]))
        self.assertIsInstance(outcomes["dsn-required"], smtp.SMTPClientError)
        self.assertIn("DSN", str(outcomes["dsn-required"]))
        error = outcomes["enhancedstatuscodes"]
        self.assertIsInstance(error, smtp.SMTPDeliveryError)
        self.assertEqual(error.enhancedStatus, (4, 2, 2))
        self.assertTrue(error.isTemporary)

    def test_noExtensionsSameAsTwisted(self) -> None:
        """
        With no extension offered, the transcript is Twisted's.
        """
        from twisted.mail import smtp as twisted_smtp

        # LF line ends: given CRLF, Twisted's client sends CR CR LF (see
        # docs/compatibility.rst).
        scenario = replace(SCENARIOS[0], body=BODY.replace(b"\r\n", b"\n"))
        d: defer.Deferred = defer.Deferred()
        factory = twisted_smtp.ESMTPSenderFactory(
            None, None, scenario.sender, list(scenario.recipients), io.BytesIO(scenario.body), d,
            retries=0, requireAuthentication=False, requireTransportSecurity=False,
        )
        factory.domain = b"client.example"
        session = Session(factory.buildProtocol(ADDR), TLSStringTransport(peerAddress=LOOPBACK))
        session.converse(lines(b"220 mx.example ESMTP", scenario.ehlo) + list(scenario.replies))
        self.assertEqual(render(session.exchange), play(scenario).transcript)
        session.loseConnection()
        factory.clientConnectionLost(None, session.lostReason)
        self.successResultOf(d)


def main(argv: Optional[Sequence[str]] = None) -> None:
    for scenario in SCENARIOS:
        outcome = play(scenario)
        print(".. %s -> %r" % (scenario.name, outcome.result))
        print(asBlock(scenario, outcome))


if __name__ == "__main__":
    main()
