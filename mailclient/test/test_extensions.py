"""
ESMTP service extensions: SIZE, 8BITMIME, SMTPUTF8, DSN, CHUNKING,
ENHANCEDSTATUSCODES and per-phase timeouts.  Each is used when offered, and
the conversation is Twisted's when it is not.
"""

from __future__ import annotations

import io
import warnings
from typing import Any, List, Optional, Tuple

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import ClientCreator
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.mail import smtp as twsmtp
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mailclient._wire.options import MailOptions, mailParameters
from mailclient._wire.ehlo import parseCapabilities
from mailclient._wire.timeouts import Timeouts
from mailclient.smtp import (
    CannotSendError,
    ESMTPClient,
    InvalidAddressError,
    SMTPDeliveryError,
    SMTPTimeoutError,
)
from mailclient.testing import SMTPTestServer


class Client(ESMTPClient):
    def __init__(self, messages: List[Tuple[Any, Any, Any]], options: Optional[MailOptions] = None) -> None:
        ESMTPClient.__init__(self, None, None, b"client.example.com")
        self.queue = list(messages)
        self.current: Any = None
        self.sent: List[Tuple[Any, ...]] = []
        self.errors: List[Exception] = []
        self.calls: List[str] = []
        if options is not None:
            self.mailOptions = options

    def getMailFrom(self) -> Any:
        self.calls.append("getMailFrom")
        if not self.queue:
            return None
        self.current = self.queue.pop(0)
        return self.current[0]

    def getMailTo(self) -> Any:
        self.calls.append("getMailTo")
        return self.current[1]

    def getMailData(self) -> Any:
        self.calls.append("getMailData")
        body = self.current[2]
        return io.BytesIO(body) if isinstance(body, bytes) else body

    def sentMail(self, code: int, resp: bytes, numOk: int, addresses: Any, log: Any) -> None:
        self.sent.append((code, resp, numOk, list(addresses)))

    def sendError(self, exc: Exception) -> None:
        self.errors.append(exc)
        ESMTPClient.sendError(self, exc)


def ehlo(*keywords: bytes) -> bytes:
    lines = [b"mx.example.org"] + list(keywords)
    return b"".join(
        b"250" + (b" " if i == len(lines) - 1 else b"-") + line + b"\r\n"
        for i, line in enumerate(lines)
    )


def connect(client: ESMTPClient, *keywords: bytes) -> StringTransport:
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 25))
    client.makeConnection(transport)
    client.dataReceived(b"220 mx.example.org ESMTP\r\n")
    client.dataReceived(ehlo(*keywords))
    return transport


def commands(transport: StringTransport) -> List[bytes]:
    return transport.value().split(b"\r\n")[1:-1]


class TwistedClient(twsmtp.ESMTPClient):
    """
    Twisted's client with the same hooks, for differential checks.
    """

    def __init__(self, message: Tuple[Any, Any, bytes]) -> None:
        twsmtp.ESMTPClient.__init__(self, None, None, b"client.example.com")
        self.message: Any = message

    def getMailFrom(self) -> Any:
        m, self.message = self.message, None
        self._m = m
        return None if m is None else m[0]

    def getMailTo(self) -> Any:
        return self._m[1]

    def getMailData(self) -> Any:
        return io.BytesIO(self._m[2])

    def sentMail(self, *a: Any) -> None:
        pass


MESSAGE = ("alice@example.com", ["bob@example.org"], b"Subject: x\n\nhello\n")


class NoExtensionsTests(SynchronousTestCase):
    def test_sameAsTwisted(self) -> None:
        """
        A server offering none of the extensions sees Twisted's commands and
        Twisted's hook order.
        """
        ours = Client([MESSAGE])
        theirs = TwistedClient(MESSAGE)
        t1 = connect(ours, b"HELP")
        t2 = connect(theirs, b"HELP")
        for reply in [b"250 ok", b"250 ok", b"354 go"]:
            ours.dataReceived(reply + b"\r\n")
            theirs.dataReceived(reply + b"\r\n")
        while t1.producer is not None:
            t1.producer.resumeProducing()
        while t2.producer is not None:
            t2.producer.resumeProducing()
        self.assertEqual(t1.value(), t2.value())
        self.assertEqual(ours.calls, ["getMailFrom", "getMailTo", "getMailData"])


class SizeTests(SynchronousTestCase):
    def test_declared(self) -> None:
        """
        SIZE= carries the size of a seekable message.
        """
        client = Client([MESSAGE])
        transport = connect(client, b"SIZE 1000")
        self.assertEqual(commands(transport), [b"MAIL FROM:<alice@example.com> SIZE=%d" % len(MESSAGE[2])])

    def test_tooLarge(self) -> None:
        """
        A message over the server's limit is refused before MAIL, with a
        clear error, and nothing of it is sent.
        """
        client = Client([("a@example.com", ["b@example.org"], b"x" * 2000)])
        transport = connect(client, b"SIZE 1000")
        self.assertEqual(len(client.errors), 1)
        self.assertIsInstance(client.errors[0], CannotSendError)
        self.assertIn(b"1000", client.errors[0].resp)
        self.assertEqual(commands(transport), [b"QUIT"])

    def test_noLimit(self) -> None:
        """
        C{SIZE} with no number (or 0) means no limit; the size is declared.
        """
        client = Client([("a@example.com", ["b@example.org"], b"x" * 2000)])
        transport = connect(client, b"SIZE")
        self.assertEqual(commands(transport), [b"MAIL FROM:<a@example.com> SIZE=2000"])


class EightBitTests(SynchronousTestCase):
    def test_declared(self) -> None:
        """
        An 8-bit body is declared BODY=8BITMIME when the server offers it.
        """
        client = Client([("a@example.com", ["b@example.org"], "Grüße\n".encode())])
        transport = connect(client, b"8BITMIME")
        self.assertEqual(commands(transport), [b"MAIL FROM:<a@example.com> BODY=8BITMIME"])

    def test_sevenBitNotDeclared(self) -> None:
        client = Client([("a@example.com", ["b@example.org"], b"plain\n")])
        transport = connect(client, b"8BITMIME")
        self.assertEqual(commands(transport), [b"MAIL FROM:<a@example.com>"])

    def test_largeDeclaredWithoutScan(self) -> None:
        """
        A seekable message over the scan limit is declared BODY=8BITMIME
        when the server offers it, without being read before MAIL; a 7-bit
        one under the limit is read and not declared (test above).
        """

        class Counting(io.BytesIO):
            reads = 0

            def read(self, n: Optional[int] = -1) -> bytes:
                Counting.reads += 1
                return super().read(n)

        body = Counting(b"7-bit line\n" * (150 * 1024))
        client = Client([("a@example.com", ["b@example.org"], body)])
        transport = connect(client, b"8BITMIME", b"SIZE")
        self.assertEqual(
            commands(transport),
            [b"MAIL FROM:<a@example.com> SIZE=%d BODY=8BITMIME" % (len(body.getvalue()),)],
        )
        self.assertEqual(Counting.reads, 0)

    def test_refusedWithout8BITMIME(self) -> None:
        """
        An 8-bit body is not sent to a server that did not offer 8BITMIME.
        """
        client = Client([("a@example.com", ["b@example.org"], "Grüße\n".encode())])
        transport = connect(client, b"SIZE 100000")
        self.assertIsInstance(client.errors[0], CannotSendError)
        self.assertIn(b"8BITMIME", client.errors[0].resp)
        self.assertNotIn(b"MAIL", transport.value())

    def test_callerAllows(self) -> None:
        """
        C{allowEightBitWithout8BITMIME} sends it anyway (Twisted's way).
        """
        client = Client(
            [("a@example.com", ["b@example.org"], "Grüße\n".encode())],
            MailOptions(allowEightBitWithout8BITMIME=True),
        )
        transport = connect(client, b"SIZE 100000")
        self.assertEqual(client.errors, [])
        self.assertTrue(commands(transport)[0].startswith(b"MAIL FROM:<a@example.com>"))

    def test_detectedWhileStreaming(self) -> None:
        """
        An unseekable body found to hold 8-bit data while it is being sent
        to a server without 8BITMIME is cut off: the connection is dropped,
        no end-of-data is sent, the error says why.
        """

        class Unseekable(io.RawIOBase):
            def __init__(self) -> None:
                self.parts = [b"ascii line\n", "8-bit: é\n".encode()]

            def readable(self) -> bool:
                return True

            def seekable(self) -> bool:
                return False

            def tell(self) -> int:
                raise OSError("unseekable")

            def read(self, n: int = -1) -> bytes:
                return self.parts.pop(0) if self.parts else b""

        client = Client([("a@example.com", ["b@example.org"], Unseekable())])
        transport = connect(client, b"PIPELINING")
        for reply in [b"250 ok", b"250 ok", b"354 go"]:
            client.dataReceived(reply + b"\r\n")
        while transport.producer is not None:
            transport.producer.resumeProducing()
        self.assertIsInstance(client.errors[0], CannotSendError)
        self.assertTrue(client.errors[0].isFatal)
        self.assertNotIn("é".encode(), transport.value())
        self.assertFalse(transport.value().endswith(b".\r\n"))
        self.assertEqual(client.sent, [])


class SMTPUTF8Tests(SynchronousTestCase):
    def test_nonAsciiAddresses(self) -> None:
        """
        Non-ASCII addresses go out as UTF-8 with the SMTPUTF8 parameter.
        """
        client = Client([("jörg@example.com", ["пример@example.org"], b"hi\n")])
        transport = connect(client, b"SMTPUTF8", b"PIPELINING")
        self.assertEqual(
            commands(transport),
            [
                "MAIL FROM:<jörg@example.com> SMTPUTF8".encode(),
                "RCPT TO:<пример@example.org>".encode(),
                b"DATA",
            ],
        )

    def test_refusedWithoutSMTPUTF8(self) -> None:
        client = Client([("jörg@example.com", ["b@example.org"], b"hi\n")])
        transport = connect(client, b"8BITMIME")
        self.assertIsInstance(client.errors[0], InvalidAddressError)
        self.assertIn(b"SMTPUTF8", client.errors[0].resp)
        self.assertEqual(commands(transport), [b"QUIT"])

    def test_asciiNoParameter(self) -> None:
        client = Client([MESSAGE])
        transport = connect(client, b"SMTPUTF8")
        self.assertEqual(commands(transport), [b"MAIL FROM:<alice@example.com>"])


class DSNTests(SynchronousTestCase):
    OPTIONS = MailOptions(ret="HDRS", envid="id+1 x", notify=("FAILURE", "DELAY"), orcpt=True)

    def test_parameters(self) -> None:
        """
        RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT, xtext-encoded.
        """
        client = Client([MESSAGE], self.OPTIONS)
        transport = connect(client, b"DSN", b"PIPELINING")
        self.assertEqual(
            commands(transport),
            [
                b"MAIL FROM:<alice@example.com> RET=HDRS ENVID=id+2B1+20x",
                b"RCPT TO:<bob@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob@example.org",
                b"DATA",
            ],
        )

    def test_warnWithoutDSN(self) -> None:
        """
        Without DSN on the server the parameters are left out, with a warning.
        """
        client = Client([MESSAGE], self.OPTIONS)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            transport = connect(client, b"PIPELINING")
        self.assertEqual(commands(transport)[0], b"MAIL FROM:<alice@example.com>")
        self.assertTrue(any("DSN" in str(w.message) for w in caught))

    def test_requiredWithoutDSN(self) -> None:
        client = Client([MESSAGE], MailOptions(notify=("NEVER",), requireDSN=True))
        transport = connect(client, b"PIPELINING")
        self.assertIsInstance(client.errors[0], CannotSendError)
        self.assertEqual(commands(transport), [b"QUIT"])

    def test_invalidOptions(self) -> None:
        self.assertRaises(ValueError, MailOptions, ret="ALL")
        self.assertRaises(ValueError, MailOptions, notify=("NEVER", "SUCCESS"))
        self.assertRaises(ValueError, MailOptions, envid="a\r\nb")


class ChunkingTests(SynchronousTestCase):
    def test_bdatPipelined(self) -> None:
        """
        With CHUNKING and PIPELINING, the envelope and the body (as BDAT
        chunks, not dot-stuffed, line endings normalised) go in one flight.
        """
        body = b".first\nsecond\r\nthird"
        client = Client([("a@example.com", ["b@example.org"], body)])
        transport = connect(client, b"PIPELINING", b"CHUNKING")
        while transport.producer is not None:
            transport.producer.resumeProducing()
        wire = transport.value().split(b"\r\n", 1)[1]
        expected = b".first\r\nsecond\r\nthird"
        self.assertEqual(
            wire,
            b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n"
            + b"BDAT %d LAST\r\n" % len(expected) + expected,
        )
        client.dataReceived(b"250 ok\r\n250 ok\r\n250 queued\r\n")
        self.assertEqual(client.sent[0][:3], (250, b"queued", 1))

    def test_severalChunks(self) -> None:
        from mailclient._protocol.chunking import ChunkSender

        self.patch(ChunkSender, "chunkSize", 4)
        client = Client([("a@example.com", ["b@example.org"], b"abcdefghij")])
        transport = connect(client, b"PIPELINING", b"CHUNKING")
        while transport.producer is not None:
            transport.producer.resumeProducing()
        self.assertIn(b"BDAT 4\r\nabcdBDAT 4\r\nefghBDAT 2 LAST\r\nij", transport.value())
        client.dataReceived(b"250 ok\r\n250 ok\r\n250 a\r\n250 b\r\n250 done\r\n")
        self.assertEqual(client.sent[0][:2], (250, b"done"))

    def test_chunkRefused(self) -> None:
        """
        A refused chunk fails the message with its reply; RSET follows once
        every written chunk has its reply.
        """
        from mailclient._protocol.chunking import ChunkSender

        self.patch(ChunkSender, "chunkSize", 4)
        client = Client([("a@example.com", ["b@example.org"], b"abcdefghij")])
        transport = connect(client, b"PIPELINING", b"CHUNKING")
        transport.producer.resumeProducing()  # type: ignore[union-attr]
        client.dataReceived(b"250 ok\r\n250 ok\r\n552 too big\r\n")
        self.assertIsNone(transport.producer)
        self.assertEqual(client.sent[0][:2], (552, b"too big"))
        self.assertTrue(transport.value().endswith(b"RSET\r\n"))

    def test_largeChunkWrittenAlone(self) -> None:
        """
        A chunk of C{smallChunk} bytes or more is written on its own, in the
        turn after its command line, so the transport never has to join it
        to anything; a shorter one goes out with its command line.
        """
        from mailclient._protocol.chunking import ChunkSender

        self.patch(ChunkSender, "chunkSize", 4)
        self.patch(ChunkSender, "smallChunk", 3)
        client = Client([("a@example.com", ["b@example.org"], b"abcdefghij")])
        transport = connect(client, b"PIPELINING", b"CHUNKING")
        writes: list = []
        original = transport.write

        def write(data: bytes) -> None:
            writes.append(data)
            original(data)

        transport.write = write  # type: ignore[method-assign]
        while transport.producer is not None:
            transport.producer.resumeProducing()
        self.assertEqual(
            writes, [b"BDAT 4\r\n", b"abcd", b"BDAT 4\r\n", b"efgh", b"BDAT 2 LAST\r\nij"]
        )
        client.dataReceived(b"250 ok\r\n250 ok\r\n250 a\r\n250 b\r\n250 done\r\n")
        self.assertEqual(client.sent[0][:2], (250, b"done"))

    def test_chunksKeptUnderChunkSize(self) -> None:
        """
        Line endings converted to CRLF make a chunk longer than what was
        read; the reads shrink so that encoded chunks stay at or just under
        C{chunkSize} (a transport's two full writes, not a third for a few
        bytes), without becoming small, and the bytes are all there.
        """
        from twisted.internet.testing import StringTransport

        from mailclient._protocol.chunking import ChunkSender
        from mailclient._wire.data import DataEncoder

        self.patch(ChunkSender, "chunkSize", 1000)
        self.patch(ChunkSender, "smallChunk", 1)
        body = b"".join(b"line %d %s\n" % (i, b"x" * (i % 50)) for i in range(2000))
        encoder = DataEncoder(dotStuff=False)
        transport = StringTransport()
        lines: list = []
        sender = ChunkSender(io.BytesIO(body), transport, encoder.encode,
                             lambda line, last: lines.append(line), self.fail, lambda: None)
        sender.start()
        while transport.producer is not None:
            transport.producer.resumeProducing()
        sizes = [int(line.split()[1]) for line in lines]
        self.assertEqual(sum(sizes), len(body.replace(b"\n", b"\r\n")))
        # The first read cannot know how much it grows; after it, chunks
        # stay within the size or a few bytes over, rarely.
        later = sizes[1:]
        self.assertLessEqual(len([n for n in later if n > 1000]), len(later) // 20, sizes)
        self.assertTrue(all(n <= 1010 for n in later), sizes)
        self.assertTrue(all(n >= 900 for n in sizes[:-1]), sizes)
        self.assertEqual(
            transport.value().count(b"\r\n") - len(lines), body.count(b"\n"))

    def test_refusedBetweenCommandAndChunk(self) -> None:
        """
        A refusal that arrives after a chunk's command line went out but
        before its bytes did still lets those bytes go: the server counts
        them, so the RSET that follows is read as a command, not as data.
        """
        from mailclient._protocol.chunking import ChunkSender

        self.patch(ChunkSender, "chunkSize", 4)
        self.patch(ChunkSender, "smallChunk", 1)
        client = Client([("a@example.com", ["b@example.org"], b"abcdefghij")])
        transport = connect(client, b"PIPELINING", b"CHUNKING")
        producer = transport.producer
        producer.resumeProducing()  # type: ignore[union-attr]
        producer.resumeProducing()  # type: ignore[union-attr]
        producer.resumeProducing()  # type: ignore[union-attr]
        self.assertTrue(transport.value().endswith(b"abcdBDAT 4\r\n"))
        client.dataReceived(b"250 ok\r\n250 ok\r\n552 too big\r\n")
        self.assertIsNone(transport.producer)
        self.assertTrue(transport.value().endswith(b"abcdBDAT 4\r\nefgh"))
        client.dataReceived(b"250 b\r\n")
        self.assertEqual(client.sent[0][:2], (552, b"too big"))
        self.assertTrue(transport.value().endswith(b"BDAT 4\r\nefghRSET\r\n"))

    def test_allRecipientsRefused(self) -> None:
        client = Client([("a@example.com", ["b@example.org"], b"body")])
        transport = connect(client, b"PIPELINING", b"CHUNKING")
        while transport.producer is not None:
            transport.producer.resumeProducing()
        client.dataReceived(b"250 ok\r\n550 nobody\r\n554 no valid recipients\r\n")
        self.assertEqual(client.sent[0][:3], (550, b"No recipients accepted", 0))
        self.assertTrue(transport.value().endswith(b"RSET\r\n"))

    def test_offSwitch(self) -> None:
        client = Client([MESSAGE])
        client.chunking = False
        transport = connect(client, b"PIPELINING", b"CHUNKING")
        self.assertEqual(commands(transport)[-1], b"DATA")


class EnhancedStatusTests(SynchronousTestCase):
    def test_errorsExposeIt(self) -> None:
        e = SMTPDeliveryError(450, b"4.2.2 mailbox full\nmore", b"")
        self.assertEqual(e.enhancedStatus, (4, 2, 2))
        self.assertTrue(e.isTemporary)
        self.assertFalse(e.isPermanent)

    def test_mismatchedClassIgnored(self) -> None:
        e = SMTPDeliveryError(550, b"4.2.2 odd", b"")
        self.assertIsNone(e.enhancedStatus)
        self.assertTrue(e.isPermanent)


class TimeoutTests(SynchronousTestCase):
    def run_phases(self, timeouts: Timeouts) -> Tuple[Client, Clock, StringTransport]:
        clock = Clock()
        client = Client([MESSAGE])
        client.timeouts = timeouts
        client.callLater = clock.callLater  # type: ignore[method-assign]
        transport = StringTransport()
        client.makeConnection(transport)
        return client, clock, transport

    def test_greeting(self) -> None:
        client, clock, transport = self.run_phases(Timeouts(greeting=7))
        clock.advance(6.9)
        self.assertEqual(client.errors, [])
        clock.advance(0.2)
        self.assertIsInstance(client.errors[0], SMTPTimeoutError)

    def test_phases(self) -> None:
        """
        Each phase waits for its own limit.
        """
        t = Timeouts(greeting=1, mail=2, rcpt=3, dataInit=4, dataBlock=5, dataTermination=6)
        client, clock, transport = self.run_phases(t)
        client.dataReceived(b"220 hi\r\n")
        self.assertEqual(client.timeOut, 2)  # EHLO
        client.dataReceived(b"250 mx\r\n")
        self.assertEqual(client.timeOut, 2)  # MAIL
        client.dataReceived(b"250 ok\r\n")
        self.assertEqual(client.timeOut, 3)  # RCPT
        client.dataReceived(b"250 ok\r\n")
        self.assertEqual(client.timeOut, 4)  # DATA
        client.dataReceived(b"354 go\r\n")
        self.assertEqual(client.timeOut, 5)  # body
        while transport.producer is not None:
            transport.producer.resumeProducing()
        self.assertEqual(client.timeOut, 6)  # final reply
        clock.advance(5.9)
        self.assertEqual(client.errors, [])
        clock.advance(0.2)
        self.assertIsInstance(client.errors[0], SMTPTimeoutError)

    def test_phasesWithChunking(self) -> None:
        """
        With BDAT, the replies to the pipelined envelope wait for the MAIL
        limit, and once BDAT LAST is written, for the final reply's.
        """
        t = Timeouts(greeting=1, mail=2, rcpt=3, dataInit=4, dataBlock=5, dataTermination=6)
        client, clock, transport = self.run_phases(t)
        client.dataReceived(b"220 hi\r\n")
        client.dataReceived(b"250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
        self.assertEqual(client.timeOut, 2)  # MAIL, RCPT and the chunks
        while transport.producer is not None:
            transport.producer.resumeProducing()
        self.assertIn(b" LAST\r\n", transport.value())
        self.assertEqual(client.timeOut, 6)  # final reply
        clock.advance(5.9)
        self.assertEqual(client.errors, [])
        clock.advance(0.2)
        self.assertIsInstance(client.errors[0], SMTPTimeoutError)

    def test_twistedTimeoutWins(self) -> None:
        client, clock, transport = self.run_phases(Timeouts(greeting=100))
        client.timeout = 3
        client.setTimeout(3)
        clock.advance(3.1)
        self.assertIsInstance(client.errors[0], SMTPTimeoutError)

    def test_defaults(self) -> None:
        t = Timeouts()
        self.assertEqual(
            (t.greeting, t.mail, t.rcpt, t.dataInit, t.dataBlock, t.dataTermination),
            (300, 300, 300, 120, 180, 600),
        )


class PureParameterTests(SynchronousTestCase):
    def test_binaryNeedsChunking(self) -> None:
        from mailclient._wire.options import OptionError

        caps = parseCapabilities(b"mx\nBINARYMIME\nCHUNKING")
        self.assertEqual(
            mailParameters(MailOptions(binary=True), caps, [b"<a@b>"], None, None, True),
            [b"BODY=BINARYMIME"],
        )
        self.assertRaises(
            OptionError, mailParameters, MailOptions(binary=True), caps, [b"<a@b>"], None, None, False
        )


class LoopbackTests(TestCase):
    """
    Against the test server on loopback: every extension at once.
    """

    @defer.inlineCallbacks
    def test_allExtensions(self) -> Any:
        server = SMTPTestServer(
            extensions=["PIPELINING", "CHUNKING", "8BITMIME", "SMTPUTF8", "DSN", "SIZE 100000", "ENHANCEDSTATUSCODES"]
        )
        server.listenTCP(reactor)
        self.addCleanup(server.stopListening)
        body = "Subject: é\n\n.dot\nGrüße\n".encode()
        client = Client(
            [("jörg@example.com", ["bob@example.org", "пример@example.org"], body)],
            MailOptions(notify=("FAILURE",), ret="HDRS"),
        )
        done: defer.Deferred = defer.Deferred()
        original = client.connectionLost

        def lost(reason: Any) -> None:
            original(reason)
            done.callback(None)

        client.connectionLost = lost  # type: ignore[method-assign]
        yield ClientCreator(reactor, lambda: client).connectTCP("127.0.0.1", server.portNumber)
        yield done
        self.assertEqual(client.errors, [])
        self.assertEqual(client.sent[0][:3][0], 250)
        [message] = server.messages
        self.assertEqual(message.via, "BDAT")
        self.assertEqual(message.data, body.replace(b"\n", b"\r\n"))
        self.assertEqual(message.rcptTo, ["bob@example.org".encode(), "пример@example.org".encode()])
        self.assertIn(b"SMTPUTF8", message.mailParams)
        self.assertEqual(message.mailParams.get(b"BODY"), b"8BITMIME")
        self.assertEqual(message.mailParams.get(b"RET"), b"HDRS")
        self.assertEqual(message.rcptParams[0].get(b"NOTIFY"), b"FAILURE")
        self.assertEqual(server.sessions[0].pipeliningViolations, [])
