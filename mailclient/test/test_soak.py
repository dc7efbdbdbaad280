"""
Bounded soak tests: many messages over real loopback connections, and one
large body, with file descriptors, delayed calls and memory watched.

  - C{MAILCLIENT_SOAK_MESSAGES} (default 3000): how many messages, half
    over pooled connections (an L{SMTPClient} subclass sending many
    messages per connection), half with L{sendmail} (a fresh connection
    each), to the loopback L{SMTPTestServer}.
  - C{MAILCLIENT_SOAK_BODY_MB} (default 64; 1024 for the 1 GiB run): the
    size of the body streamed to a byte-counting sink server.  The body is
    generated as it is read and never held in memory.

The figures of the last run are kept in L{FIGURES} and printed when the
module is run with C{python -m mailclient.test.test_soak}.  No assertion
depends on time.
"""

from __future__ import annotations

import gc
import io
import os
import sys
from typing import Any, Dict, List, Optional

from twisted.internet import defer, protocol, reactor, tcp, task
from twisted.trial.unittest import TestCase

from mailclient._protocol.client import SMTPClient
from mailclient._protocol.esmtp import ESMTPClient
from mailclient.smtp import sendmail
from mailclient.testing import SMTPTestCaseMixin, SMTPTestServer

MESSAGES = int(os.environ.get("MAILCLIENT_SOAK_MESSAGES", "3000"))
BODY_MB = int(os.environ.get("MAILCLIENT_SOAK_BODY_MB", "64"))
PER_CONNECTION = 100
CONCURRENCY = 20
#: Growth allowed between the first and the last round (allocator noise,
#: not a leak: a leak of even 1 KB per message would exceed it by far in a
#: long run, and is caught by the object counts).
RSS_SLACK = 24 << 20
BODY = (b"Subject: soak\r\n\r\n" + b"Hello.\r\n.dot\r\n" * 20)

#: Figures from the last run in this process.
FIGURES: Dict[str, Any] = {}


def openFDs() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss() -> int:
    """
    The resident set size, in bytes.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")  # pragma: no cover


class _PooledHooks:
    """
    The hooks of a client that sends C{count} messages over one connection,
    matching each outcome to its message through a queue (in the order
    they were started, which C{pipelineMessages} needs).
    """

    timeout = 60
    senderFormat = b"pool%d@example.com"

    def _prepare(self, count: int, tag: int) -> None:
        self.left = count
        self.tag = tag
        self.started: List[int] = []
        self.sent = 0
        self.errors: List[Exception] = []

    def getMailFrom(self) -> Optional[bytes]:
        if not self.left:
            return None
        self.left -= 1
        self.started.append(self.left)
        return self.senderFormat % (self.tag,)

    def getMailTo(self) -> Any:
        return [b"to@example.com"]

    def getMailData(self) -> Any:
        return io.BytesIO(BODY)

    def sentMail(self, code: int, resp: bytes, numOk: int, addresses: Any, log: Any) -> None:
        self.started.pop(0)
        if code == 250:
            self.sent += 1
        else:  # pragma: no cover - reported by the test
            self.errors.append(Exception(code, resp))

    def sendError(self, exc: Exception) -> None:  # pragma: no cover
        self.errors.append(exc)
        super().sendError(exc)  # type: ignore[misc]


class PooledClient(_PooledHooks, SMTPClient):
    """
    Sends C{count} messages over one connection.
    """

    def __init__(self, count: int, tag: int) -> None:
        SMTPClient.__init__(self, b"client.example")
        self._prepare(count, tag)


class OverlappingClient(_PooledHooks, ESMTPClient):
    """
    Sends C{count} messages over one connection with C{pipelineMessages}.
    """

    senderFormat = b"overlap%d@example.com"
    pipelineMessages = True
    requireAuthentication = False
    requireTransportSecurity = False

    def __init__(self, count: int, tag: int) -> None:
        ESMTPClient.__init__(self, None, None, b"client.example")
        self._prepare(count, tag)


class PooledFactory(protocol.ClientFactory):
    def __init__(self, count: int, tag: int, clientClass: Any = PooledClient) -> None:
        self.count, self.tag = count, tag
        self.clientClass = clientClass
        self.done: defer.Deferred = defer.Deferred()
        self.client: Any = None

    def buildProtocol(self, addr: Any) -> Any:
        self.client = self.clientClass(self.count, self.tag)
        self.client.factory = self
        return self.client

    def clientConnectionLost(self, connector: Any, reason: Any) -> None:
        self.done.callback(self.client)

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self.done.errback(reason)


class LazyBody:
    """
    A file-like body of C{size} bytes made as it is read: 64-byte lines,
    each starting with a dot (so each is dot-stuffed), and a sample of the
    process's RSS every 256 reads.
    """

    LINE = b"." + b"x" * 61 + b"\r\n"

    def __init__(self, size: int) -> None:
        assert size % len(self.LINE) == 0
        self.size = size
        self.position = 0
        self.reads = 0
        self.peakRSS = rss()

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.position
        if n is None or n < 0 or n > left:
            n = left
        start = self.position % len(self.LINE)
        count = (start + n) // len(self.LINE) + 1
        data = (self.LINE * count)[start:start + n]
        self.position += n
        self.reads += 1
        if self.reads % 256 == 0:
            self.peakRSS = max(self.peakRSS, rss())
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        assert (offset, whence) == (0, 0)
        self.position = 0
        return 0


class Sink(protocol.Protocol):
    """
    A minimal SMTP server that counts message bytes and keeps none.
    """

    def connectionMade(self) -> None:
        self.buffer = b""
        self.data = False
        self.tail = b""
        self.factory.received = 0
        self.transport.write(b"220 sink\r\n")

    def dataReceived(self, data: bytes) -> None:
        if self.data:
            self.factory.received += len(data)
            self.tail = (self.tail + data)[-5:]
            if self.tail == b"\r\n.\r\n":
                self.data = False
                self.factory.tail = self.tail
                self.transport.write(b"250 accepted\r\n")
            return
        self.buffer += data
        while b"\r\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            verb = line[:4].upper()
            if verb == b"DATA":
                self.data = True
                self.transport.write(b"354 go\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"221 bye\r\n")
                self.transport.loseConnection()
            else:
                self.transport.write(b"250 ok\r\n")


def openConnections() -> int:
    """
    The TCP connections (client or server side) the reactor watches.
    """
    return len([s for s in set(reactor.getReaders()) | set(reactor.getWriters())
                if isinstance(s, (tcp.Client, tcp.Server))])


@defer.inlineCallbacks
def connectionsClosed() -> Any:
    """
    Wait until every TCP connection is gone: a Deferred from sendmail fires
    on the final reply, before QUIT.
    """
    while openConnections():
        yield task.deferLater(reactor, 0.001, lambda: None)
    yield task.deferLater(reactor, 0, lambda: None)


class SoakTests(SMTPTestCaseMixin, TestCase):
    """
    Thousands of messages and a large body over loopback.
    """

    timeout = 3600

    def checkpoint(self, server: SMTPTestServer) -> Dict[str, int]:
        """
        Drop the server's records (they are the server's memory, not the
        client's) and measure.
        """
        del server.sessions[:]
        gc.collect()
        return {
            "fds": openFDs(),
            "delayedCalls": len(reactor.getDelayedCalls()),
            "rss": rss(),
        }

    @defer.inlineCallbacks
    def pooledRound(self, server: SMTPTestServer, messages: int,
                    clientClass: Any = PooledClient) -> Any:
        """
        C{messages} messages, C{PER_CONNECTION} per connection,
        C{CONCURRENCY} connections at a time.
        """
        sent = 0
        before = len(server.messages)
        counts = [PER_CONNECTION] * (messages // PER_CONNECTION)
        if messages % PER_CONNECTION:
            counts.append(messages % PER_CONNECTION)
        for start in range(0, len(counts), CONCURRENCY):
            factories = []
            for i, count in enumerate(counts[start:start + CONCURRENCY]):
                factory = PooledFactory(count, start + i, clientClass)
                reactor.connectTCP("127.0.0.1", server.portNumber, factory)
                factories.append(factory)
            clients = yield defer.gatherResults([f.done for f in factories])
            for client in clients:
                self.assertEqual(client.errors, [])
                sent += client.sent
                self.assertEqual(client.started, [])
                self.assertIsNone(client._mailclient.following)
        yield connectionsClosed()
        self.assertEqual(sent, messages)
        self.assertEqual(len(server.messages) - before, messages)
        self.assertTrue(all(m.data == BODY for m in server.messages))
        return sent

    @defer.inlineCallbacks
    def freshRound(self, server: SMTPTestServer, messages: int) -> Any:
        """
        C{messages} messages with sendmail, one connection each.
        """
        before = len(server.messages)
        for start in range(0, messages, CONCURRENCY):
            batch = [
                sendmail("127.0.0.1", "fresh@example.com", ["to@example.com"], BODY,
                         senderDomainName="client.example", port=server.portNumber,
                         retries=0, tls=False, timeout=60)
                for _ in range(min(CONCURRENCY, messages - start))
            ]
            results = yield defer.gatherResults(batch)
            for result in results:
                self.assertEqual(result[0], 1)
        yield connectionsClosed()
        self.assertEqual(len(server.messages) - before, messages)
        return messages

    @defer.inlineCallbacks
    def test_manyMessages(self) -> Any:
        """
        Rounds of pooled and fresh connections; after a warm-up round, file
        descriptors and delayed calls come back to the same numbers after
        every round and RSS stays flat.
        """
        server = self.startSMTPServer(extensions=["8BITMIME"])
        rounds = 5
        perRound = max(MESSAGES // rounds, 2)
        pooled, fresh = perRound // 2, perRound - perRound // 2
        # Warm-up: first-use allocations (imports, caches, the allocator).
        yield self.pooledRound(server, min(pooled, 200))
        yield self.freshRound(server, min(fresh, 40))
        base = self.checkpoint(server)
        samples = []
        total = 0
        for _ in range(rounds):
            total += yield self.pooledRound(server, pooled)
            total += yield self.freshRound(server, fresh)
            sample = self.checkpoint(server)
            samples.append(sample)
            self.assertEqual(sample["fds"], base["fds"], samples)
            self.assertLessEqual(sample["delayedCalls"], base["delayedCalls"], samples)
        growth = samples[-1]["rss"] - base["rss"]
        FIGURES.update(
            messages=total, pooled=pooled * rounds, fresh=fresh * rounds,
            fds=base["fds"], delayedCalls=base["delayedCalls"],
            rssBaseMB=round(base["rss"] / 2**20, 1),
            rssGrowthMB=round(growth / 2**20, 1),
            rssMaxMB=round(max(s["rss"] for s in samples) / 2**20, 1),
        )
        self.assertLess(growth, RSS_SLACK, samples)

    @defer.inlineCallbacks
    def test_overlappingMessages(self) -> Any:
        """
        The same with C{pipelineMessages} over PIPELINING and CHUNKING: two
        transactions in flight per connection leave nothing behind either.
        """
        server = self.startSMTPServer(extensions=["PIPELINING", "CHUNKING", "8BITMIME"])
        rounds = 3
        perRound = max(MESSAGES // 5, 2)
        warmUp = min(perRound, 200)
        yield self.pooledRound(server, warmUp, OverlappingClient)
        # Overlapped indeed: an RSET ahead of every message but each
        # connection's first.
        rsets = sum(session.commands.count(b"RSET") for session in server.sessions)
        self.assertEqual(rsets, warmUp - len(server.sessions))
        base = self.checkpoint(server)
        samples = []
        for _ in range(rounds):
            yield self.pooledRound(server, perRound, OverlappingClient)
            samples.append(self.checkpoint(server))
            self.assertEqual(samples[-1]["fds"], base["fds"], samples)
            self.assertLessEqual(samples[-1]["delayedCalls"], base["delayedCalls"], samples)
        self.assertLess(samples[-1]["rss"] - base["rss"], RSS_SLACK, samples)

    @defer.inlineCallbacks
    def sendLarge(self, size: int) -> Any:
        factory = protocol.ServerFactory()
        factory.protocol = Sink
        factory.received = 0
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        body = LazyBody(size)
        gc.collect()
        before = rss()
        body.peakRSS = before
        result = yield sendmail(
            "127.0.0.1", "big@example.com", ["to@example.com"], body,
            senderDomainName="client.example", port=port.getHost().port,
            retries=0, tls=False, timeout=60)
        self.assertEqual(result[0], 1)
        yield connectionsClosed()
        self.assertEqual(body.position, size)
        # Every line was dot-stuffed; then the terminator.
        self.assertEqual(factory.received, size + size // len(LazyBody.LINE) + 3)
        return body.peakRSS - before

    @defer.inlineCallbacks
    def test_largeBody(self) -> Any:
        """
        A body of C{MAILCLIENT_SOAK_BODY_MB} MiB is streamed with memory
        that does not grow with its size: the peak RSS while sending it is
        within a few MiB of the peak for a body 16 times smaller, and far
        below the body's size.
        """
        size = BODY_MB << 20
        small = max(size // 16, 1 << 20)
        small -= small % len(LazyBody.LINE)
        size -= size % len(LazyBody.LINE)
        smallGrowth = yield self.sendLarge(small)
        growth = yield self.sendLarge(size)
        FIGURES.update(
            bodyMB=size >> 20, bodyPeakGrowthMB=round(growth / 2**20, 1),
            smallBodyMB=round(small / 2**20, 1),
            smallBodyPeakGrowthMB=round(smallGrowth / 2**20, 1),
        )
        self.assertLess(growth, 16 << 20)
        self.assertLess(growth, size // 4)
        self.assertLess(growth - smallGrowth, 8 << 20)


class MeasurementControlTests(TestCase):
    """
    The RSS sampling of L{LazyBody} sees memory that is held: a body that
    keeps what it read shows the growth the soak test would fail on.
    """

    def test_heldMemoryIsSeen(self) -> None:
        class Keeping(LazyBody):
            def __init__(self, size: int) -> None:
                LazyBody.__init__(self, size)
                self.kept: List[bytes] = []

            def read(self, n: int = -1) -> bytes:
                data = LazyBody.read(self, n)
                self.kept.append(data)
                return data

        size = 32 << 20
        gc.collect()
        body = Keeping(size)
        before = body.peakRSS
        while body.read(1 << 14):
            pass
        self.assertGreater(body.peakRSS - before, size // 2)


def main(argv: List[str]) -> int:  # pragma: no cover - manual runs
    """
    Run the soak tests under trial and print the figures.
    """
    from twisted.trial import reporter, runner

    import mailclient.test.test_soak as module

    # Load the class from the module, not from __main__, so FIGURES is shared.
    suite = runner.TestLoader().loadClass(module.SoakTests)
    result = reporter.TreeReporter(sys.stdout)
    suite.run(result)
    result.done()
    print(module.FIGURES)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv))
