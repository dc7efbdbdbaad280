"""
The floor of a Twisted client on separate connections: a bare protocol on
Twisted's reactor that speaks the same conversation as the SMTP clients
(greeting, EHLO, MAIL, RCPT and one ``BDAT LAST`` in one write, QUIT) from
bytes prepared before the clock starts, and parses nothing but the end of
each reply.  No SMTP library on this reactor can spend less per connection:
what it costs is the reactor, the TCP transport and the kernel.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402


def main() -> None:
    args: Any = common.clientArgs()
    w = args.workload
    if w.mode != "separate":
        raise SystemExit("raw-twisted runs the separate-connections workload only")
    from twisted.internet import defer, protocol, reactor

    ehlo = b"EHLO " + common.IDENTITY.encode() + b"\r\n"
    transactions: List[bytes] = []
    for m in common.messages(w):
        body = m.wire_body
        transactions.append(
            b"MAIL FROM:<" + m.sender.encode() + b">\r\n"
            + b"".join(b"RCPT TO:<" + r.encode() + b">\r\n" for r in m.recipients)
            + b"BDAT %d LAST\r\n" % (len(body),) + body
        )
    counts = {"sent": 0, "errors": []}

    class Bare(protocol.Protocol):
        def __init__(self, transaction: bytes, replies: int, done: defer.Deferred) -> None:
            self.transaction = transaction
            self.replies = replies
            self.done = done
            self.buffer = b""
            self.step = 0
            self.ok = False

        def connectionMade(self) -> None:
            self.transport.setTcpNoDelay(True)

        def dataReceived(self, data: bytes) -> None:
            self.buffer += data
            while True:
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    return
                line, self.buffer = self.buffer[:end], self.buffer[end + 2:]
                if line[3:4] == b"-":
                    continue
                if not line.startswith(b"2"):
                    counts["errors"].append(line.decode("ascii", "replace"))
                    self.transport.abortConnection()
                    return
                self.step += 1
                if self.step == 1:
                    self.transport.write(ehlo)
                elif self.step == 2:
                    self.transport.write(self.transaction)
                elif self.step == 2 + self.replies:
                    self.ok = True
                    self.transport.write(b"QUIT\r\n")
                elif self.step > 2 + self.replies:
                    self.transport.loseConnection()

        def connectionLost(self, reason: Any) -> None:
            if self.ok:
                counts["sent"] += 1
            self.done.callback(None)

    class Factory(protocol.ClientFactory):
        def __init__(self, transaction: bytes, replies: int) -> None:
            self.transaction = transaction
            self.replies = replies
            self.done: defer.Deferred = defer.Deferred()

        def buildProtocol(self, addr: Any) -> Bare:
            return Bare(self.transaction, self.replies, self.done)

        def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
            counts["errors"].append(reason.getErrorMessage())
            self.done.callback(None)

    def sendOne(transaction: bytes) -> defer.Deferred:
        factory = Factory(transaction, 2 + w.recipients)
        reactor.connectTCP(args.host, args.port, factory)
        return factory.done

    measure = common.Measure()
    result: dict = {}

    def work() -> None:
        measure.start()
        sem = defer.DeferredSemaphore(w.concurrency)
        d = defer.gatherResults([sem.run(sendOne, t) for t in transactions])

        def finished(_: Any) -> None:
            result.update(measure.stop())
            reactor.stop()

        d.addBoth(finished)

    reactor.callWhenRunning(work)
    reactor.run()
    result.update(library="raw-twisted", version="bare protocol", sent=counts["sent"],
                  errors=counts["errors"][:20], error_count=len(counts["errors"]))
    common.report(result)


if __name__ == "__main__":
    main()
