"""
The floor of a Twisted client on separate connections (and, for the
lock-step workloads, on one connection, one command at a time): a bare protocol on
Twisted's reactor that speaks the same conversation as the SMTP clients
(greeting, EHLO, MAIL, RCPT and one ``BDAT LAST`` in one write, QUIT) from
bytes prepared before the clock starts, and parses nothing but the end of
each reply.  No SMTP library on this reactor can spend less per connection:
what it costs is the reactor, the TCP transport and the kernel.  Each write
is sent in the turn that made it (``doWrite``, as mailclient's client does
with what a reply made it write), not left for the reactor's next turn.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402


def finalReplies(proto: Any, data: bytes, good: Tuple[bytes, ...],
                 errors: List[str]) -> Iterator[bytes]:
    """
    The last line of each complete reply in what C{proto} has buffered and
    C{data}; a reply whose code does not start with one of C{good} is
    recorded in C{errors} and aborts the connection.
    """
    proto.buffer += data
    while True:
        end = proto.buffer.find(b"\r\n")
        if end < 0:
            return
        line, proto.buffer = proto.buffer[:end], proto.buffer[end + 2:]
        if line[3:4] == b"-":
            continue
        if line[:1] not in good:
            errors.append(line.decode("ascii", "replace"))
            proto.transport.abortConnection()
            return
        yield line


def sendNow(transport: Any, data: bytes) -> None:
    """
    Write C{data} and send it in this turn of the reactor.
    """
    transport.write(data)
    transport.doWrite()


def lockstepSteps(w: Any) -> List[bytes]:
    """
    What a lock-step client writes, one element per reply it waits for:
    HELO, then for each message MAIL, each RCPT, DATA, and the body
    (CRLF, dot-stuffed) with its terminator; then QUIT.  Prepared in
    advance: no SMTP library can write less.
    """
    steps = [b"HELO " + common.IDENTITY.encode() + b"\r\n"]
    for m in common.messages(w):
        steps.append(b"MAIL FROM:<" + m.sender.encode() + b">\r\n")
        steps.extend(b"RCPT TO:<" + r.encode() + b">\r\n" for r in m.recipients)
        steps.append(b"DATA\r\n")
        steps.append((b"\r\n" + m.wire_body).replace(b"\r\n.", b"\r\n..")[2:] + b".\r\n")
    steps.append(b"QUIT\r\n")
    return steps


def lockstep(args: Any) -> None:
    """
    The floor of a lock-step client on one connection: every command
    written from prepared bytes when the previous reply ends.
    """
    from twisted.internet import protocol, reactor

    w = args.workload
    steps = lockstepSteps(w)
    perMessage = 3 + w.recipients
    counts: dict = {"replies": 0, "errors": []}
    measure = common.Measure()
    result: dict = {}

    class Bare(protocol.Protocol):
        def connectionMade(self) -> None:
            self.transport.setTcpNoDelay(True)
            self.buffer = b""
            self.step = 0

        def dataReceived(self, data: bytes) -> None:
            for _ in finalReplies(self, data, (b"2", b"3"), counts["errors"]):
                counts["replies"] += 1
                if self.step < len(steps):
                    sendNow(self.transport, steps[self.step])
                    self.step += 1

        def connectionLost(self, reason: Any) -> None:
            result.update(measure.stop())
            reactor.stop()

    class Factory(protocol.ClientFactory):
        protocol = Bare

        def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
            counts["errors"].append(reason.getErrorMessage())
            result.update(measure.stop())
            reactor.stop()

    def work() -> None:
        measure.start()
        reactor.connectTCP(args.host, args.port, Factory())

    reactor.callWhenRunning(work)
    reactor.run()
    # Greeting, HELO, then each message's replies; QUIT's.
    sent = max(0, (counts["replies"] - 2) // perMessage)
    result.update(library="raw-twisted", version="bare protocol", sent=min(sent, w.messages),
                  errors=counts["errors"][:20], error_count=len(counts["errors"]))
    common.report(result)


def main() -> None:
    args: Any = common.clientArgs()
    w = args.workload
    if w.mode == "lockstep":
        lockstep(args)
        return
    if w.mode != "separate":
        raise SystemExit("raw-twisted runs the separate-connections and lock-step workloads only")
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
            for _ in finalReplies(self, data, (b"2",), counts["errors"]):
                self.step += 1
                if self.step == 1:
                    sendNow(self.transport, ehlo)
                elif self.step == 2:
                    sendNow(self.transport, self.transaction)
                elif self.step == 2 + self.replies:
                    self.ok = True
                    sendNow(self.transport, b"QUIT\r\n")
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
