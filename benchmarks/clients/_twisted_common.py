"""
The client code for both Twisted-based libraries.

mailclient is a drop-in replacement, so the mailclient and stock Twisted
runners are this one module given a different C{smtp} module: the same
L{ESMTPClient} subclass, the same C{sendmail} calls, written as a Twisted
user writes them.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402


class Outcome:
    """
    What the clients of one run saw.
    """

    def __init__(self) -> None:
        self.sent = 0
        self.errors: List[str] = []


def bulkClientClass(smtp: Any, overlap: bool = True) -> Any:
    """
    An ESMTP client that sends every message of a shared iterator over its
    one connection; several of them sharing one iterator make a pool.

    @param overlap: set C{pipelineMessages} (mailclient's; the C{serial}
        variant runs without it).
    """

    class BulkClient(smtp.ESMTPClient):
        requireAuthentication = False
        requireTransportSecurity = False
        # mailclient: start the next message before the previous one's
        # replies arrive (stock Twisted has no such attribute and ignores
        # it).  Outcomes then come in the order the messages were started,
        # so the messages awaiting one are kept in a queue.
        pipelineMessages = overlap

        def __init__(self, source: Iterator[common.Message], outcome: Outcome) -> None:
            smtp.ESMTPClient.__init__(self, None, None, common.IDENTITY)
            self.source = source
            self.outcome = outcome
            self.started: Deque[common.Message] = deque()

        def getMailFrom(self) -> Optional[str]:
            message = next(self.source, None)
            if message is None:
                return None
            self.started.append(message)
            return message.sender

        def getMailTo(self) -> List[str]:
            return self.started[-1].recipients

        def getMailData(self) -> Any:
            return io.BytesIO(self.started[-1].data)

        def sentMail(self, code: int, resp: bytes, numOk: int, addresses: Any, log: Any) -> None:
            message = self.started.popleft()
            if code in smtp.SUCCESS and numOk == len(message.recipients):
                self.outcome.sent += 1
            else:
                self.outcome.errors.append("message %d: %r %r" % (message.index, code, resp))

        def sendError(self, exc: Exception) -> None:
            message = self.started.popleft() if self.started else None
            self.outcome.errors.append(
                "sendError (message %s): %s" % (message and message.index, exc))
            smtp.ESMTPClient.sendError(self, exc)

    return BulkClient


def lockstepClientClass(smtp: Any) -> Any:
    """
    A bare C{SMTPClient} subclass, as most Twisted code that sends several
    messages over one connection is written: HELO, one command at a time,
    nothing opted into.
    """

    class LockstepClient(smtp.SMTPClient):
        def __init__(self, source: Iterator[common.Message], outcome: Outcome) -> None:
            smtp.SMTPClient.__init__(self, common.IDENTITY)
            self.source = source
            self.outcome = outcome
            self.current: Optional[common.Message] = None

        def getMailFrom(self) -> Optional[str]:
            self.current = next(self.source, None)
            return None if self.current is None else self.current.sender

        def getMailTo(self) -> List[str]:
            assert self.current is not None
            return self.current.recipients

        def getMailData(self) -> Any:
            assert self.current is not None
            return io.BytesIO(self.current.data)

        def sentMail(self, code: int, resp: bytes, numOk: int, addresses: Any, log: Any) -> None:
            assert self.current is not None
            if code in smtp.SUCCESS and numOk == len(self.current.recipients):
                self.outcome.sent += 1
            else:
                self.outcome.errors.append("message %d: %r %r" % (self.current.index, code, resp))

        def sendError(self, exc: Exception) -> None:
            self.outcome.errors.append("sendError (message %s): %s" % (
                self.current and self.current.index, exc))
            smtp.SMTPClient.sendError(self, exc)

    return LockstepClient


def connectPool(reactor: Any, smtp: Any, args: Any, source: Iterator[common.Message],
                outcome: Outcome, size: int, lockstep: bool = False) -> Any:
    """
    Open C{size} connections that share C{source}; the Deferred fires when
    all of them have closed.
    """
    from twisted.internet import defer, protocol

    cls = lockstepClientClass(smtp) if lockstep else bulkClientClass(
        smtp, overlap=args.variant != "serial")
    done = []
    for _ in range(size):
        d: defer.Deferred = defer.Deferred()

        class Factory(protocol.ClientFactory):
            def __init__(self, d: defer.Deferred) -> None:
                self.d = d

            def buildProtocol(self, addr: Any) -> Any:
                p = cls(source, outcome)
                p.factory = self
                return p

            def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
                outcome.errors.append("connect: %s" % (reason.getErrorMessage(),))
                self.d.callback(None)

            def clientConnectionLost(self, connector: Any, reason: Any) -> None:
                self.d.callback(None)

        reactor.connectTCP(args.host, args.port, Factory(d))
        done.append(d)
    return defer.gatherResults(done)


def run(smtp: Any, library: str, version: str,
        options: Callable[[Any], Dict[str, Any]]) -> None:
    """
    Run the workload given on the command line with the C{smtp} module.

    @param options: makes the keyword arguments for C{smtp.sendmail} from
        the command-line arguments.
    """
    args = common.clientArgs()
    sendmailOptions = options(args)
    w = args.workload
    from twisted.internet import defer, reactor

    msgs = common.messages(w) if w.mode != "large" else []
    large = common.largeMessage(w.size) if w.mode == "large" else None
    outcome = Outcome()
    measure = common.Measure()

    def sendOne(m: common.Message) -> defer.Deferred:
        d = smtp.sendmail(
            args.host, m.sender, m.recipients, m.data,
            senderDomainName=common.IDENTITY, port=args.port, **sendmailOptions
        )
        d.addCallbacks(lambda r: _ok(outcome, r, m.recipients), lambda f: _error(outcome, f))
        return d

    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()

    def work() -> defer.Deferred:
        measure.start()
        if profiler is not None:
            # The profile covers what is timed, nothing before it.
            profiler.enable()
        if w.mode in ("one", "lockstep", "pool"):
            return connectPool(reactor, smtp, args, iter(msgs), outcome, w.concurrency,
                               lockstep=w.mode == "lockstep")
        if w.mode == "separate":
            sem = defer.DeferredSemaphore(w.concurrency)
            return defer.gatherResults([sem.run(sendOne, m) for m in msgs])
        assert large is not None
        f = open(large["path"], "rb")
        d = smtp.sendmail(
            args.host, common.SENDER, common.recipients(w.recipients), f,
            senderDomainName=common.IDENTITY, port=args.port, **sendmailOptions
        )
        d.addCallbacks(lambda r: _ok(outcome, r, common.recipients(w.recipients)),
                       lambda f: _error(outcome, f))
        d.addBoth(lambda r: (f.close(), r)[1])
        return d

    result: Dict[str, Any] = {}

    def finished(_: Any) -> None:
        if profiler is not None:
            profiler.disable()
        result.update(measure.stop())
        reactor.stop()

    def failed(f: Any) -> None:
        outcome.errors.append(f.getTraceback())
        finished(None)

    reactor.callWhenRunning(lambda: work().addCallbacks(finished, failed))
    reactor.run()
    if profiler is not None:
        profiler.dump_stats(args.profile)
    result.update(library=library, version=version, sent=outcome.sent,
                  errors=outcome.errors[:20], error_count=len(outcome.errors))
    common.report(result)


def _ok(outcome: Outcome, result: Any, recipients: List[str]) -> None:
    numOk, addresses = result
    if numOk == len(recipients):
        outcome.sent += 1
    else:
        outcome.errors.append("accepted %d of %d recipients" % (numOk, len(recipients)))


def _error(outcome: Outcome, failure: Any) -> None:
    outcome.errors.append("sendmail: %s" % (failure.getErrorMessage(),))
