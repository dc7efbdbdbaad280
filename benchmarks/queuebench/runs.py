"""
One timed run of the queue benchmark: N messages drained from the
PostgreSQL queue by k worker processes, or from a queue directory by one;
optionally one of two PostgreSQL workers killed (SIGKILL) part-way, to time
the recovery of what it held.

What is measured, and how:

  - B{Time}: PostgreSQL: the messages are queued (one transaction) with the
    smart host's destination backed off, the workers are started and wait
    until each says it relays (its queue started, its first look at the
    queue made: nothing was due); then the back-off is lifted and the
    workers notified in one transaction (t0).  A directory cannot hold its
    messages back: t0 is when its worker says it relays, which it does right
    before its first look at the directory.  Either way, the end is when the
    sink has counted every message and the queue is empty (the harness
    polls the sink every 20 ms, then the queue).
  - B{CPU}: of each worker, of the sink, of PostgreSQL (the postmaster and
    all its processes: backends, WAL writer, checkpointer...), from t0 to
    the end (psutil; left out without it); and of the whole machine, which
    shows how much else ran.
  - B{Commits}: C{pg_stat_database.xact_commit} of the queue's database,
    read from another database of the cluster, from before the workers
    start to after they stopped and the harness's own connection closed:
    every backend has then flushed its statistics (an idle one may hold
    them up to 10 s).  The harness's own transactions (its counted
    statements, and its connection's start and end, calibrated at the
    start) are subtracted: C{commits_per_message} is that, an upper
    bound.  C{drain_commits_per_message} also subtracts what starting and
    stopping the same workers with nothing due commits
    (L{startStopCommits}).
  - B{Durable commits}: the transactions that wrote, and so waited for
    their WAL flush: the commit records in the WAL (C{pg_waldump}) from
    just before t0 to after the workers stopped, less the harness's one
    (lifting the back-off).  C{xact_commit} counts read-only transactions
    too (looking for the next due message, claims that found nothing), and
    the transaction each listening backend runs to take in a notification.
  - B{Lost and duplicates}: the sink records each message's Message-ID;
    every queued message must have arrived at least once, and the sum of
    the bodies' SHA-256 (with each arrival counted) must be the sink's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import common
from queuebench.postgres import Control, DurableCluster, Monitor, Setup
from queuebench.processes import CPUSnapshot, Sink, Worker, waitReady

from mailclient._wire.queuestate import smartHostDestination

#: The PostgreSQL schema of the queue.
SCHEMA = "mailclient"

#: How often the harness looks at the sink and the queue.
POLL = 0.02

_MASK = (1 << 256) - 1


@dataclass(frozen=True)
class Config:
    """
    One configuration: C{backend} C{postgresql} or C{directory}, C{workers}
    processes, C{kill}: SIGKILL the first worker part-way (recovery).
    """

    name: str
    backend: str
    workers: int
    kill: bool = False

    @property
    def title(self) -> str:
        if self.backend == "directory":
            return "directory queue, %d worker" % (self.workers,)
        text = "PostgreSQL, %d worker%s" % (self.workers, "" if self.workers == 1 else "s")
        if self.kill:
            text += ", one SIGKILLed"
        return text


CONFIGS = [
    Config("pg-1", "postgresql", 1),
    Config("pg-2", "postgresql", 2),
    Config("pg-4", "postgresql", 4),
    Config("dir-1", "directory", 1),
    Config("pg-2-kill", "postgresql", 2, kill=True),
]


@dataclass
class Settings:
    """
    What every run shares.

    @ivar lease: The workers' C{--lease} in the throughput runs (the
        command's default).
    @ivar interval: Their C{--interval} (the command's default for a
        PostgreSQL queue; the directory worker keeps its own, 5 s).
    @ivar recoveryLease: C{--lease} in the recovery run.
    @ivar recoveryInterval: C{--interval} (the longest time between two
        claims) in the recovery run.
    @ivar killAt: The fraction of the messages delivered when the worker is
        killed.
    """

    messages: int = 2000
    size: int = 1024
    maxConnections: int = 2
    perConnection: int = 10
    lease: float = 60.0
    interval: float = 30.0
    recoveryLease: float = 5.0
    recoveryInterval: float = 5.0
    killAt: float = 0.3

    @property
    def timeout(self) -> float:
        return 120.0 + self.messages / 10.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Message:
    name: str
    sender: str
    recipient: str
    data: bytes
    messageId: str
    digest: int


def makeMessages(count: int, size: int) -> list[Message]:
    """
    The messages every run queues: benchmarks/common.py's (a unique
    Message-ID each), with the SHA-256 of the body the sink must receive.
    """
    out = []
    for i in range(count):
        m = common.message(i, size)
        digest = int.from_bytes(hashlib.sha256(m.wire_body).digest(), "big")
        out.append(Message("qb%06d" % (i,), m.sender, m.recipients[0], m.data,
                           "<%d.bench@example.com>" % (i,), digest))
    return out


class Environment:
    """
    What lives for the whole benchmark: the PostgreSQL cluster, the
    monitoring connection, a temporary directory (logs, queue directories,
    scratch directories) and the messages.
    """

    def __init__(self, settings: Settings, workDir: Path, scratchDir: Path,
                 keepLogs: Path | None = None) -> None:
        self.settings = settings
        self.messages = makeMessages(settings.messages, settings.size)
        self.tmp = Path(tempfile.mkdtemp(prefix="queue-bench-", dir=str(workDir)))
        self.scratch = Path(tempfile.mkdtemp(prefix="queue-bench-scratch-", dir=str(scratchDir)))
        self.keepLogs = keepLogs
        self.cluster = DurableCluster()
        self.cluster.start()
        self.monitor = Monitor(self.cluster)
        self.postmaster = self.cluster.postmasterPid()
        self.controlOverhead = 0
        self.calibration: dict[str, Any] = {}
        #: Commits of starting and stopping k idle workers, by configuration.
        self.startStop: dict[str, int] = {}
        self.runs = 0

    def close(self) -> None:
        self.monitor.close()
        self.cluster.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.scratch, ignore_errors=True)

    def settle(self) -> dict[str, int]:
        """
        The counters once no client is connected to the queue's database
        (every backend has flushed its statistics).
        """
        if not self.monitor.waitBackendsGone(exclude=0):
            raise RuntimeError("clients still connected to the queue's database")
        return self.monitor.counters()

    def calibrate(self) -> None:
        """
        How many commits the harness's own connection adds, beyond its
        statements: its start and its end.  Checked: five statements then
        add exactly five more.
        """
        setup = Setup(self.cluster)
        setup.freshSchema(SCHEMA)
        setup.close()
        before = self.settle()
        Control(self.cluster, SCHEMA).close()
        after = self.settle()
        self.controlOverhead = after["xact_commit"] - before["xact_commit"]
        control = Control(self.cluster, SCHEMA)
        for _ in range(5):
            control.queued()
        control.close()
        checked = self.settle()
        got = checked["xact_commit"] - after["xact_commit"] - self.controlOverhead
        self.calibration = {"connection_commits": self.controlOverhead,
                            "five_statements_counted_as": got}
        if got != 5:
            raise RuntimeError("the commit counter cannot be trusted: five statements "
                               "counted as %d" % (got,))

    def path(self, name: str) -> Path:
        return self.tmp / name


def run(env: Environment, config: Config, round_: int) -> dict[str, Any]:
    """
    One run of C{config}; its measurements (C{failed} if it could not
    finish, C{problems} if anything is wrong with what arrived).
    """
    env.runs += 1
    tag = "%s-r%d-%d" % (config.name, round_, env.runs)
    result: dict[str, Any] = {"config": config.name, "round": round_}
    try:
        if config.backend == "postgresql":
            result.update(_runPostgres(env, config, tag))
        else:
            result.update(_runDirectory(env, config, tag))
    except Exception as e:
        result["failed"] = "%s: %s" % (type(e).__name__, e)
    return result


def _workerArgs(env: Environment, config: Config, tag: str, index: int) -> list[str]:
    s = env.settings
    args = ["--max-connections", str(s.maxConnections),
            "--max-messages-per-connection", str(s.perConnection)]
    if config.backend == "postgresql":
        lease, interval = ((s.recoveryLease, s.recoveryInterval) if config.kill
                           else (s.lease, s.interval))
        args += ["--worker", "%s-w%d" % (tag, index), "--lease", "%g" % (lease,),
                 "--interval", "%g" % (interval,),
                 "--scratch", str(env.scratch / ("%s-w%d" % (tag, index)))]
    return args


def _startWorkers(env: Environment, config: Config, tag: str, queue: str,
                  sink: Sink) -> list[Worker]:
    workers: list[Worker] = []
    for i in range(config.workers):
        workers.append(Worker("%s-w%d" % (tag, i), queue, "127.0.0.1:%d" % (sink.port,),
                              env.path("%s-w%d.log" % (tag, i)),
                              _workerArgs(env, config, tag, i)))
    return workers


def _stopAll(workers: list[Worker]) -> dict[str, int | None]:
    codes: dict[str, int | None] = {}
    for w in workers:
        code = w.terminate()
        codes[w.name] = None if w.killed else code
    return codes


def _runPostgres(env: Environment, config: Config, tag: str) -> dict[str, Any]:
    s = env.settings
    n = s.messages
    startStop = None if config.kill else startStopCommits(env, config)
    setup = Setup(env.cluster)
    setup.freshSchema(SCHEMA)
    sink = Sink()
    workers: list[Worker] = []
    control: Control | None = None
    try:
        destination = smartHostDestination("127.0.0.1", sink.port)
        setup.enqueue(SCHEMA, [(m.name, m.sender, m.recipient, m.data) for m in env.messages],
                      holdDestination=destination)
        setup.checkpoint()
        setup.close()
        before = env.settle()
        workers = _startWorkers(env, config, tag, env.cluster.uri(), sink)
        waitReady(workers)
        control = Control(env.cluster, SCHEMA)
        cpu0 = CPUSnapshot(workers, sink.pid, env.postmaster)
        lsn0 = env.monitor.lsn()
        t0 = time.monotonic()
        control.release(destination)
        out: dict[str, Any] = {}
        victim = workers[0] if config.kill else None
        recovery: dict[str, Any] = {}
        sinkDone: float | None = None
        deadline = t0 + s.timeout
        while True:
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError("not drained after %d s: the sink has %d of %d"
                                   % (s.timeout, sink.stats()["messages"], n))
            for w in workers:
                if not w.killed and not w.alive():
                    raise RuntimeError("worker %s exited (%s): %s" % (
                        w.name, w.proc.returncode, w.output().decode(errors="replace")[-800:]))
            delivered = sink.stats()["messages"]
            if victim is not None and not victim.killed and delivered >= s.killAt * n:
                held, _ = control.leasedBy(victim.name)
                if held:
                    victim.kill()
                    recovery = _killed(control, victim, time.monotonic())
            if recovery and "recovered_s" not in recovery:
                if not control.remaining(recovery["names"]):
                    recovery["recovered_s"] = time.monotonic() - recovery["t"]
            if delivered >= n:
                if sinkDone is None:
                    sinkDone = time.monotonic()
                if (not recovery or "recovered_s" in recovery) and not control.queued():
                    break
            time.sleep(POLL)
        end = time.monotonic()
        cpu1 = CPUSnapshot(workers, sink.pid, env.postmaster)
        out["elapsed_s"] = end - t0
        out["sink_complete_s"] = (sinkDone or end) - t0
        out["cpu_s"] = cpu1.since(cpu0)
        out["exit_codes"] = _stopAll(workers)
        harness = control.transactions + env.controlOverhead
        control.close()
        control = None
        after = env.settle()
        wal = env.cluster.walTransactions(lsn0, env.monitor.lsn())
        if wal is not None:
            # Less the harness's one writing transaction, the release.
            out["wal_commits"] = wal["commits"] - 1
            out["wal_aborts"] = wal["aborts"]
            out["wal_commits_per_message"] = out["wal_commits"] / n
        delta = {k: after[k] - before[k] for k in after}
        out["pg_counters"] = delta
        out["harness_commits"] = harness
        out["commits"] = delta["xact_commit"] - harness
        out["commits_per_message"] = out["commits"] / n
        if startStop is not None:
            out["start_stop_commits"] = startStop
            out["drain_commits_per_message"] = (out["commits"] - startStop) / n
        out["wal_syncs_per_message"] = delta["wal_sync"] / n
        out["wal_bytes_per_message"] = delta["wal_bytes"] / n
        if recovery:
            names = recovery.pop("names")
            recovery.pop("t")
            recovery["held"] = len(names)
            recovery["bound_s"] = s.recoveryLease + s.recoveryInterval
            recovery["lease_s"] = s.recoveryLease
            recovery["interval_s"] = s.recoveryInterval
            ids = sink.ids()["ids"]
            byName = {m.name: m.messageId for m in env.messages}
            recovery["held_delivered"] = sum(1 for nm in names if ids.get(byName[nm]))
            # Sent by the dead worker too (the server had them; its
            # confirmations had not been committed): at least once.
            recovery["held_duplicated"] = sum(1 for nm in names if ids.get(byName[nm], 0) > 1)
            out["recovery"] = recovery
        elif config.kill:
            raise RuntimeError("the worker to kill held nothing before the end")
        # What is left: nothing, not even a quarantined message.
        check = Control(env.cluster, SCHEMA)
        out["queue_left"] = check.queued()
        check.close()
        out.update(_verify(env, sink, workers, out["exit_codes"]))
        return out
    finally:
        if control is not None:
            control.close()
        for w in workers:
            if w.alive():
                w.terminate(10)
        sink.stop()
        _keepLogs(env, workers)


def startStopCommits(env: Environment, config: Config) -> int:
    """
    The commits of starting C{config}'s workers on a queue with nothing
    due, and stopping them (measured once per configuration): what a run's
    count holds beyond its drain, give or take the connections a busy
    worker adds to its pool (each one commits when it starts and ends).
    """
    if config.name in env.startStop:
        return env.startStop[config.name]
    tag = "%s-idle" % (config.name,)
    setup = Setup(env.cluster)
    setup.freshSchema(SCHEMA)
    sink = Sink()
    workers: list[Worker] = []
    try:
        setup.enqueue(SCHEMA, [], holdDestination=smartHostDestination("127.0.0.1", sink.port))
        setup.close()
        before = env.settle()
        workers = _startWorkers(env, config, tag, env.cluster.uri(), sink)
        waitReady(workers)
        _stopAll(workers)
        after = env.settle()
    finally:
        for w in workers:
            if w.alive():
                w.terminate(10)
        sink.stop()
    env.startStop[config.name] = after["xact_commit"] - before["xact_commit"]
    return env.startStop[config.name]


def _killed(control: Control, victim: Worker, t: float) -> dict[str, Any]:
    """
    Right after the SIGKILL: what the dead worker held (its in-flight
    confirmations may still land: those are delivered by it), and when the
    last of its leases ends.
    """
    names, leaseLeft = control.leasedBy(victim.name)
    return {"t": t, "names": names, "lease_left_at_kill_s": leaseLeft}


def _runDirectory(env: Environment, config: Config, tag: str) -> dict[str, Any]:
    from mailclient.relaymanager import Queue

    s = env.settings
    n = s.messages
    directory = env.path("queue-%s" % (tag,))
    directory.mkdir(mode=0o700)
    queue = Queue(str(directory))
    queue.noisy = False
    # As the queue writes every message: each file synced before it is
    # renamed into place (Queue.fsync, the default).
    for m in env.messages:
        queue.enqueue(m.sender, m.recipient, m.data)
    os.sync()
    sink = Sink()
    workers: list[Worker] = []
    try:
        workers = _startWorkers(env, config, tag, str(directory), sink)
        # Its first look at the directory follows the line at once.
        t0 = waitReady(workers)
        cpu0 = CPUSnapshot(workers, sink.pid, None)
        sinkDone: float | None = None
        deadline = t0 + s.timeout
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError("not drained after %d s: the sink has %d of %d"
                                   % (s.timeout, sink.stats()["messages"], n))
            if not workers[0].alive():
                raise RuntimeError("the worker exited: %s"
                                   % (workers[0].output().decode(errors="replace")[-800:],))
            if sink.stats()["messages"] >= n:
                if sinkDone is None:
                    sinkDone = time.monotonic()
                if not _queuedFiles(directory):
                    break
            time.sleep(POLL)
        end = time.monotonic()
        cpu1 = CPUSnapshot(workers, sink.pid, None)
        out: dict[str, Any] = {
            "elapsed_s": end - t0,
            "sink_complete_s": (sinkDone or end) - t0,
            "cpu_s": cpu1.since(cpu0),
            "exit_codes": _stopAll(workers),
        }
        out["queue_left"] = _queuedFiles(directory)
        out.update(_verify(env, sink, workers, out["exit_codes"]))
        return out
    finally:
        for w in workers:
            if w.alive():
                w.terminate(10)
        sink.stop()
        _keepLogs(env, workers)
        shutil.rmtree(directory, ignore_errors=True)


def _queuedFiles(directory: Path) -> int:
    with os.scandir(directory) as entries:
        return sum(1 for e in entries if e.name.endswith(("-D", "-H")))


def _verify(env: Environment, sink: Sink, workers: list[Worker],
            exitCodes: dict[str, int | None]) -> dict[str, Any]:
    """
    What arrived, against what was queued: lost (never arrived),
    duplicates (arrivals beyond the first), the checksum of the bodies, the
    sink's protocol errors, and the workers' warnings, errors and exit
    statuses (0 after SIGTERM).
    """
    stats = sink.stats()
    arrivals = sink.ids()
    ids: dict[str, int] = arrivals["ids"]
    expected = {m.messageId: m for m in env.messages}
    lost = [m.name for m in env.messages if not ids.get(m.messageId)]
    duplicates = sum(count - 1 for mid, count in ids.items() if count > 1)
    strangers = sorted(mid for mid in ids if mid not in expected)
    checksum = sum(count * expected[mid].digest for mid, count in ids.items()
                   if mid in expected) & _MASK
    problems = []
    if lost:
        problems.append("%d lost (first %s)" % (len(lost), lost[0]))
    if strangers:
        problems.append("%d unknown Message-IDs arrived" % (len(strangers),))
    if arrivals["without_id"]:
        problems.append("%d messages without a Message-ID arrived" % (arrivals["without_id"],))
    if checksum != int(stats["checksum"], 16):
        problems.append("the bodies' checksum differs (wrong bytes delivered)")
    if stats["errors"]:
        problems.append("the sink counted %d protocol errors" % (stats["errors"],))
    complaints = [line for w in workers for line in w.problems()
                  if not w.killed and "Lost the lease" not in line]
    failed = {name: code for name, code in exitCodes.items() if code not in (0, None)}
    if failed:
        problems.append("workers exited with %s" % (failed,))
    if complaints:
        problems.append("workers complained %d times, first: %s"
                        % (len(complaints), complaints[0][:200]))
    return {
        "arrived": stats["messages"],
        "lost": len(lost),
        "duplicates": duplicates,
        "checksum_ok": checksum == int(stats["checksum"], 16),
        "sink_connections": stats["connections"] - 1,
        "deliveries_reported": {w.name: w.deliveries() for w in workers},
        "problems": problems,
    }


def _keepLogs(env: Environment, workers: list[Worker]) -> None:
    if env.keepLogs is None:
        return
    env.keepLogs.mkdir(parents=True, exist_ok=True)
    for w in workers:
        if w.log.exists():
            shutil.copy(w.log, env.keepLogs / w.log.name)
