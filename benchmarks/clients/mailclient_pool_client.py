"""
The mailclient pool runner: every message of the workload given to one
L{mailclient.pool.SMTPPool} of C{concurrency} connections, as an
application would (one C{send()} per message, a Deferred each), then the
pool closed.

The pool runs with its defaults but TLS (C{tls=False}: the sink offers no
STARTTLS, as the other mailclient runners): STARTTLS when offered,
C{pipelineMessages}, RFC 5321's reply timeouts, a structured log event per
message, and metrics when C{prometheus_client} is installed.

Logging is begun, as an application does, to an observer that keeps
nothing (as the other runners' libraries log to no handler): the events
are made and emitted, not written.  Without it, Twisted keeps every event
emitted before logging begins (up to 65,536) in memory.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402

common.useWorkingTree()

import mailclient  # noqa: E402
from mailclient.pool import SMTPPool  # noqa: E402

#: The workload modes a pool serves: messages over persistent connections.
MODES = ("one", "pool", "lockstep")


def main() -> None:
    args = common.clientArgs()
    w = args.workload
    if w.mode not in MODES:
        common.report({"failed": "the pool client runs %s workloads, not %r"
                       % ("/".join(MODES), w.mode)})
        return
    from twisted.internet import defer, reactor
    from twisted.logger import globalLogBeginner

    globalLogBeginner.beginLoggingTo([lambda event: None], redirectStandardIO=False)

    msgs = common.messages(w)
    measure = common.Measure()
    outcome = {"sent": 0}
    errors = []

    def delivered(result, message):
        if result.numOk == len(message.recipients):
            outcome["sent"] += 1
        else:
            errors.append("message %d: accepted %d of %d recipients"
                          % (message.index, result.numOk, len(message.recipients)))

    def failed(failure, message):
        errors.append("message %d: %s" % (message.index, failure.getErrorMessage()))

    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()

    # Made before the clock starts, as the other runners import their
    # libraries first: making it opens no connection, but imports
    # prometheus_client when it is installed (for the metrics).
    pool = SMTPPool(args.host, args.port, maxConnections=w.concurrency,
                    senderDomainName=common.IDENTITY, reactor=reactor, tls=False)

    @defer.inlineCallbacks
    def work():
        measure.start()
        if profiler is not None:
            profiler.enable()
        ds = []
        for m in msgs:
            d = pool.send(m.data, m.sender, m.recipients)
            d.addCallbacks(delivered, failed, callbackArgs=(m,), errbackArgs=(m,))
            ds.append(d)
        yield defer.gatherResults(ds)
        yield pool.close()

    result = {}

    def finished(_):
        if profiler is not None:
            profiler.disable()
        result.update(measure.stop())
        reactor.stop()

    def crashed(f):
        errors.append(f.getTraceback())
        finished(None)

    reactor.callWhenRunning(lambda: work().addCallbacks(finished, crashed))
    reactor.run()
    if profiler is not None:
        profiler.dump_stats(args.profile)
    result.update(library="mailclient-pool", version=mailclient.__version__,
                  sent=outcome["sent"], errors=errors[:20], error_count=len(errors))
    common.report(result)


if __name__ == "__main__":
    main()
