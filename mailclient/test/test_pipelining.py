"""
PIPELINING (RFC 2920): the envelope goes out as one group, replies are
matched in order, results are the same as without pipelining.
"""

from __future__ import annotations

import io
from typing import Any, List, Tuple

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mailclient.smtp import ESMTPClient, ESMTPSenderFactory
from mailclient.testing import SMTPTestServer

EHLO_PIPELINING = b"250-mx.example.org\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
EHLO_PLAIN = b"250-mx.example.org\r\n250 8BITMIME\r\n"


class Client(ESMTPClient):
    """
    Sends queued messages and records outcomes.
    """

    def __init__(self, messages: List[Tuple[str, List[str], bytes]]) -> None:
        ESMTPClient.__init__(self, None, None, b"client.example.com")
        self.queue = list(messages)
        self.current: Any = None
        self.sent: List[Tuple[Any, ...]] = []
        self.errors: List[Exception] = []

    def getMailFrom(self) -> Any:
        if not self.queue:
            return None
        self.current = self.queue.pop(0)
        return self.current[0]

    def getMailTo(self) -> Any:
        return self.current[1]

    def getMailData(self) -> Any:
        return io.BytesIO(self.current[2])

    def sentMail(self, code: int, resp: bytes, numOk: int, addresses: Any, log: Any) -> None:
        self.sent.append((code, resp, numOk, list(addresses)))

    def sendError(self, exc: Exception) -> None:
        self.errors.append(exc)
        ESMTPClient.sendError(self, exc)


def connect(client: Client, ehlo: bytes) -> StringTransport:
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 25))
    client.makeConnection(transport)
    client.dataReceived(b"220 mx.example.org ESMTP\r\n")
    client.dataReceived(ehlo)
    return transport


def pumpBody(transport: StringTransport) -> None:
    while transport.producer is not None:
        transport.producer.resumeProducing()


MESSAGE = ("alice@example.com", ["bob@example.org", "carol@example.org"], b"Subject: x\n\nhi\n")


class PipeliningWireTests(SynchronousTestCase):
    def test_envelopeInOneGroup(self) -> None:
        """
        After the EHLO reply, MAIL, every RCPT and DATA are written before
        any reply is read.
        """
        client = Client([MESSAGE])
        transport = connect(client, EHLO_PIPELINING)
        self.assertEqual(
            transport.value().split(b"\r\n")[1:-1],
            [
                b"MAIL FROM:<alice@example.com>",
                b"RCPT TO:<bob@example.org>",
                b"RCPT TO:<carol@example.org>",
                b"DATA",
            ],
        )

    def test_noPipeliningOffered(self) -> None:
        """
        Without PIPELINING in the EHLO reply, only MAIL is sent.
        """
        client = Client([MESSAGE])
        transport = connect(client, EHLO_PLAIN)
        self.assertEqual(transport.value().split(b"\r\n")[1:-1], [b"MAIL FROM:<alice@example.com>"])

    def test_offSwitch(self) -> None:
        """
        C{pipelining = False} keeps the one-command-at-a-time conversation.
        """
        client = Client([MESSAGE])
        client.pipelining = False
        transport = connect(client, EHLO_PIPELINING)
        self.assertEqual(transport.value().split(b"\r\n")[1:-1], [b"MAIL FROM:<alice@example.com>"])

    def test_factoryOffSwitch(self) -> None:
        """
        C{ESMTPSenderFactory(pipelining=False)} builds clients that do not
        pipeline.
        """
        factory = ESMTPSenderFactory(
            b"u", b"p", "a@example.com", ["b@example.org"], io.BytesIO(b"x"),
            defer.Deferred(), pipelining=False,
        )
        self.assertFalse(factory.buildProtocol(None).pipelining)
        factory2 = ESMTPSenderFactory(
            b"u", b"p", "a@example.com", ["b@example.org"], io.BytesIO(b"x"),
            defer.Deferred(),
        )
        self.assertTrue(factory2.buildProtocol(None).pipelining)


class SameResultsTests(SynchronousTestCase):
    """
    For the same server replies, pipelined and unpipelined clients report
    the same outcomes.
    """

    def converse(self, replies: List[bytes], pipelining: bool, messages: Any = None) -> Tuple[Client, StringTransport]:
        client = Client(messages or [MESSAGE])
        client.pipelining = pipelining
        transport = connect(client, EHLO_PIPELINING)
        for reply in replies:
            client.dataReceived(reply + b"\r\n")
            pumpBody(transport)
        return client, transport

    def assertSameOutcome(self, replies: List[bytes]) -> Client:
        piped, _ = self.converse(replies, True)
        plain, _ = self.converse(replies, False)
        self.assertEqual(piped.sent, plain.sent)
        self.assertEqual(
            [type(e) for e in piped.errors], [type(e) for e in plain.errors]
        )
        return piped

    def test_accepted(self) -> None:
        client = self.assertSameOutcome(
            [b"250 sender ok", b"250 r1", b"250 r2", b"354 go", b"250 queued"]
        )
        self.assertEqual(client.sent[0][:3], (250, b"queued", 2))

    def test_oneRecipientRefused(self) -> None:
        client = self.assertSameOutcome(
            [b"250 sender ok", b"550 no such user", b"250 r2", b"354 go", b"250 queued"]
        )
        self.assertEqual(client.sent[0][2], 1)
        self.assertEqual(client.sent[0][3][0], ("bob@example.org", 550, b"no such user"))

    def test_senderRefused(self) -> None:
        """
        A refused MAIL: the RCPT and DATA replies (503) are consumed and the
        message is reported with the MAIL reply, as without pipelining.
        """
        piped, transport = self.converse(
            [b"550 sender refused", b"503 no", b"503 no", b"503 no"], True
        )
        plain, _ = self.converse([b"550 sender refused"], False)
        self.assertEqual(piped.sent, plain.sent)
        self.assertEqual(piped.sent[0][:3], (550, b"sender refused", 0))
        self.assertTrue(transport.value().endswith(b"RSET\r\n"))

    def test_allRecipientsRefused(self) -> None:
        piped, transport = self.converse(
            [b"250 ok", b"550 a", b"551 b", b"554 no valid recipients"], True
        )
        plain, _ = self.converse([b"250 ok", b"550 a", b"551 b"], False)
        self.assertEqual(piped.sent, plain.sent)
        self.assertEqual(piped.sent[0][:3], (551, b"No recipients accepted", 0))
        self.assertNotIn(b"hi", transport.value())

    def test_354WithoutRecipients(self) -> None:
        """
        A server that answers 354 although every recipient was refused gets
        no body: the failure is reported and the connection closed.
        """
        client, transport = self.converse([b"250 ok", b"550 a", b"550 b", b"354 go"], True)
        self.assertEqual(client.sent[0][2], 0)
        self.assertNotIn(b"hi", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_dataRefused(self) -> None:
        self.assertSameOutcome([b"250 ok", b"250 a", b"250 b", b"554 go away"])

    def test_noRsetAfterSuccess(self) -> None:
        """
        After a pipelined transaction that succeeded, the next message starts
        at once: no RSET.
        """
        second = ("dave@example.com", ["erin@example.org"], b"second\n")
        client, transport = self.converse(
            [b"250 ok", b"250 a", b"250 b", b"354 go", b"250 queued 1"], True,
            messages=[MESSAGE, second],
        )
        wire = transport.value()
        self.assertNotIn(b"RSET", wire)
        self.assertTrue(wire.endswith(b"MAIL FROM:<dave@example.com>\r\nRCPT TO:<erin@example.org>\r\nDATA\r\n"))
        for reply in [b"250 ok", b"250 e", b"354 go", b"250 queued 2", b"221 bye"]:
            client.dataReceived(reply + b"\r\n")
            pumpBody(transport)
        self.assertEqual([s[:3] for s in client.sent], [(250, b"queued 1", 2), (250, b"queued 2", 1)])
        self.assertTrue(transport.value().endswith(b".\r\nQUIT\r\n"))


class LoopbackPipeliningTests(TestCase):
    """
    Against the test server on loopback, several messages over one
    pipelined connection arrive intact, with no pipelining violation.
    """

    @defer.inlineCallbacks
    def test_severalMessages(self) -> Any:
        server = SMTPTestServer(extensions=["PIPELINING", "8BITMIME"])
        server.listenTCP(reactor)
        self.addCleanup(server.stopListening)
        messages = [
            ("a%d@example.com" % i, ["x%d@example.org" % i, "y@example.org"], b".line %d\nend" % i)
            for i in range(5)
        ]
        client = Client(messages)
        done = defer.Deferred()
        client.connectionLost = lambda reason, orig=client.connectionLost: (orig(reason), done.callback(None))  # type: ignore[method-assign]
        from twisted.internet.protocol import ClientCreator

        yield ClientCreator(reactor, lambda: client).connectTCP("127.0.0.1", server.portNumber)
        yield done
        self.assertEqual(client.errors, [])
        self.assertEqual([s[0] for s in client.sent], [250] * 5)
        self.assertEqual(
            [m.data for m in server.messages],
            [b".line %d\r\nend\r\n" % i for i in range(5)],
        )
        self.assertEqual(server.sessions[0].pipeliningViolations, [])
        self.assertNotIn(b"RSET", b"\n".join(server.sessions[0].commands))
