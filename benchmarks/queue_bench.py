"""
Run the relay-queue benchmark and write its results.

    python benchmarks/queue_bench.py             # 2000 messages, 3 rounds (~2 min)
    python benchmarks/queue_bench.py --quick     # 300 messages, 1 round: a smoke run
    python benchmarks/queue_bench.py --messages 5000 --rounds 5
    python benchmarks/queue_bench.py --only pg-1,dir-1
    python benchmarks/queue_bench.py --scratch-dir /var/tmp   # workers' copies on disk
    python benchmarks/queue_bench.py --commit-anatomy   # and the commits by kind
    python benchmarks/queue_bench.py --report    # rebuild the summary from the JSON

Messages per second through 1, 2 and 4 relay workers (each a ``mailclient
relay`` process) on the PostgreSQL queue, and through one worker on a queue
directory, all to the benchmark sink (benchmarks/sink.py) as smart host;
CPU per message of each kind of process (workers, sink, PostgreSQL);
commits per delivered message; and the time from a worker's death
(SIGKILL) to its messages being delivered by another.  Every run checks
that each queued message arrived (the sink records Message-IDs) and counts
duplicates.  See benchmarks/queuebench/runs.py for how each figure is
measured.

Needs PostgreSQL's programs (initdb, pg_ctl: on Debian ``apt-get install
postgresql``), psycopg (the ``postgresql`` extra) and, for CPU times,
psutil (the ``bench`` extra): ``pip install -e '.[postgresql,bench]'``;
pg_waldump (with the server) for the durable commits.
A throw-away cluster is started in a temporary directory (reached only
over its Unix socket; run by an unprivileged user when we are root), with
fsync, synchronous_commit and full_page_writes on.

Configurations, in an order that rotates each round: pg-1, pg-2, pg-4
(PostgreSQL, 1, 2, 4 workers), dir-1 (the directory queue, one worker: a
directory takes one relay), pg-2-kill (2 workers, the first SIGKILLed).

Writes benchmarks/results/queue-results.json (every run's numbers, the
machine, PostgreSQL's settings) and queue-summary.rst (the table and the
goals); a quick run writes quick-queue-*.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

common.useWorkingTree()

from mailclient._relaying.pgscratch import scratchParent  # noqa: E402
from queuebench import anatomy, report  # noqa: E402
from queuebench.processes import haveCPU  # noqa: E402
from queuebench.runs import CONFIGS, Environment, Settings, run  # noqa: E402

RESULTS_DIR = common.RESULTS_DIR


def machineInfo() -> dict[str, Any]:
    """
    The machine, the software, and how busy the machine was.
    """
    import run as clientBenchmark  # benchmarks/run.py's, shared with it

    info: dict[str, Any] = clientBenchmark.machineInfo()
    info.pop("aiosmtplib", None)
    info["loadavg_start"] = list(os.getloadavg())
    try:
        import psycopg

        info["psycopg"] = psycopg.__version__
    except ImportError:
        info["psycopg"] = None
    try:
        import psutil  # type: ignore[import-untyped, unused-ignore]

        info["psutil"] = psutil.__version__
    except ImportError:
        info["psutil"] = None
    return info


def filesystem(path: str) -> str:
    """
    The type and device of the file system C{path} is on (Linux), for
    the record: creating files costs much more on some than on others.
    """
    best = ("", "unknown", "")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                device, mount, kind = line.split()[:3]
                if (path == mount or path.startswith(mount.rstrip("/") + "/")) \
                        and len(mount) >= len(best[0]):
                    best = (mount, kind, device)
    except OSError:
        pass
    return "%s (%s on %s)" % (path, best[1], best[2] or "?")


def describe(result: dict[str, Any], messages: int) -> str:
    if "failed" in result:
        return "FAILED: %s" % (result["failed"],)
    cpu = result["cpu_s"]
    text = "%7.1f msg/s  %6.2f s" % (messages / result["elapsed_s"], result["elapsed_s"])
    if cpu.get("workers") is not None:
        text += "  CPU us/msg: workers %.0f sink %.0f" % (
            cpu["workers"] / messages * 1e6, cpu["sink"] / messages * 1e6)
        if cpu.get("postgres") is not None:
            text += " postgres %.0f" % (cpu["postgres"] / messages * 1e6,)
        if cpu.get("machine") is not None:
            text += " (machine %.0f)" % (cpu["machine"] / messages * 1e6,)
    if "wal_commits_per_message" in result:
        text += "  commits/msg %.2f" % (result["wal_commits_per_message"],)
    if "drain_commits_per_message" in result:
        text += "  xact_commit/msg %.2f (%.2f)" % (result["drain_commits_per_message"],
                                                  result["commits_per_message"])
    elif "commits_per_message" in result:
        text += "  xact_commit/msg (%.2f)" % (result["commits_per_message"],)
    if "recovery" in result:
        r = result["recovery"]
        text += ("  recovery %s s of %d held, %d of them sent twice (lease left at kill "
                 "%.2f s, bound %g s)" % (
                     "%.2f" % r["recovered_s"] if r.get("recovered_s") is not None else "?",
                     r["held"], r["held_duplicated"], r["lease_left_at_kill_s"] or 0.0,
                     r["bound_s"]))
    text += "  lost %d dup %d" % (result["lost"], result["duplicates"])
    if result["problems"]:
        text += "  PROBLEMS: " + "; ".join(result["problems"])
    return text


def write(saved: dict[str, Any], prefix: str) -> None:
    summary = report.summarise(saved["runs"], saved["settings"]["messages"])
    checks = report.goals(summary)
    saved["summary"] = summary
    saved["goals"] = checks
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / (prefix + "queue-results.json")).write_text(json.dumps(saved, indent=1))
    (RESULTS_DIR / (prefix + "queue-summary.rst")).write_text(
        report.rstSummary(summary, checks, saved))
    print()
    print(report.textTable(report.tableRows(summary)))
    print(report.textTable(report.goalRows(checks)))
    for line in report.notes(summary, saved):
        print(line)
    print("\nwrote %s and %s" % (RESULTS_DIR / (prefix + "queue-results.json"),
                                 RESULTS_DIR / (prefix + "queue-summary.rst")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="relay-queue benchmark")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 300 messages, 1 round")
    parser.add_argument("--messages", type=int, help="messages per run (default 2000)")
    parser.add_argument("--size", type=int, default=1024, help="bytes per message")
    parser.add_argument("--rounds", type=int, help="rounds per configuration (default 3)")
    parser.add_argument("--only", help="comma-separated configurations (%s)"
                        % (",".join(c.name for c in CONFIGS),))
    parser.add_argument("--max-connections", type=int, default=2,
                        help="each worker's --max-connections (default 2, the command's)")
    parser.add_argument("--max-messages-per-connection", type=int, default=10,
                        help="each worker's --max-messages-per-connection (default 10)")
    parser.add_argument("--recovery-lease", type=float, default=5.0,
                        help="--lease of the recovery run's workers (default 5 s)")
    parser.add_argument("--recovery-interval", type=float, default=5.0,
                        help="--interval of the recovery run's workers (default 5 s)")
    parser.add_argument("--work-dir", metavar="DIR", default=tempfile.gettempdir(),
                        help="where the queue directories and the workers' logs go (default: "
                             "%(default)s); PostgreSQL's cluster goes in $TMPDIR")
    parser.add_argument("--scratch-dir", metavar="DIR", default=scratchParent(),
                        help="where the PostgreSQL workers' scratch directories go (default: "
                             "%(default)s, where mailclient relay makes them)")
    parser.add_argument("--keep-logs", metavar="DIR",
                        help="copy every worker's output (one line per delivery) here")
    parser.add_argument("--commit-anatomy", action="store_true",
                        help="after the rounds, one more (untimed) run of each PostgreSQL "
                             "configuration with every statement logged: its transactions "
                             "by kind")
    parser.add_argument("--note", default="", help="a note on the conditions, kept in the JSON")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: rebuild the summary from the last results")
    args = parser.parse_args(argv)
    prefix = "quick-" if args.quick else ""
    if args.report:
        write(json.loads((RESULTS_DIR / (prefix + "queue-results.json")).read_text()), prefix)
        return 0

    settings = Settings(
        messages=args.messages or (300 if args.quick else 2000), size=args.size,
        maxConnections=args.max_connections, perConnection=args.max_messages_per_connection,
        recoveryLease=args.recovery_lease, recoveryInterval=args.recovery_interval)
    rounds = args.rounds or (1 if args.quick else 3)
    configs = list(CONFIGS)
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {c.name for c in CONFIGS}
        if unknown:
            parser.error("unknown configurations %s" % (sorted(unknown),))
        configs = [c for c in CONFIGS if c.name in wanted]

    machine = machineInfo()
    print("machine:", json.dumps(machine), flush=True)
    if not haveCPU():
        print("psutil is not installed: no CPU times (pip install -e '.[bench]')")
    try:
        env = Environment(settings, Path(args.work_dir), Path(args.scratch_dir),
                          Path(args.keep_logs) if args.keep_logs else None)
    except RuntimeError as e:
        print("cannot start PostgreSQL: %s" % (e,), file=sys.stderr)
        return 2
    saved: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/queue_bench.py"]
                            + [shlex.quote(a) for a in (argv if argv is not None
                                                        else sys.argv[1:])]),
        "machine": machine, "settings": settings.to_json(), "rounds": rounds,
        "quick": args.quick, "note": args.note, "have_cpu": haveCPU(),
        "configs": {c.name: c.title for c in configs}, "runs": {c.name: [] for c in configs},
    }
    machine["filesystems"] = {
        "postgresql": filesystem(env.cluster.directory),
        "queue directory": filesystem(str(env.tmp)),
        "scratch": filesystem(str(env.scratch)),
    }
    try:
        saved["postgresql"] = env.cluster.settings()
        env.calibrate()
        saved["commit_calibration"] = env.calibration
        started = time.monotonic()
        for r in range(rounds):
            # Rotate the order each round: no configuration always runs
            # first, or after the same one.
            order = configs[r % len(configs):] + configs[: r % len(configs)]
            for config in order:
                result = run(env, config, r)
                saved["runs"][config.name].append(result)
                print("  round %d %-10s %s" % (r + 1, config.name,
                                               describe(result, settings.messages)), flush=True)
        saved["duration_s"] = time.monotonic() - started
        if args.commit_anatomy:
            print("\ncommit anatomy (untimed runs, every statement logged):")
            saved["commit_anatomy"] = []
            for config in configs:
                if config.backend == "postgresql" and not config.kill:
                    result = anatomy.anatomy(env, config)
                    saved["commit_anatomy"].append(result)
                    print("\n".join(anatomy.describe(result)), flush=True)
    finally:
        env.close()
    machine["loadavg_end"] = list(os.getloadavg())
    machine["date_end"] = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC")
    write(saved, prefix)
    bad = [c.name for c in configs
           if any("failed" in r or r.get("lost") for r in saved["runs"][c.name])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
