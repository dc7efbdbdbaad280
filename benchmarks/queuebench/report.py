"""
The queue benchmark's summary: medians over the rounds, ratios, the goals
of the issue, and the RST table.
"""

from __future__ import annotations

import statistics
from typing import Any

from queuebench.runs import CONFIGS, Config

#: The process kinds whose CPU is reported, in the table's order.
CPU_KINDS = ("workers", "sink", "postgres")


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(runs: dict[str, list[dict[str, Any]]], messages: int) -> dict[str, Any]:
    """
    Per configuration: the medians of its rounds (msg/s from the median
    time), CPU µs per message of each kind of process, commits per
    message, recovery; lost and duplicates summed over the rounds.
    """
    summary: dict[str, Any] = {}
    for config in CONFIGS:
        rs = runs.get(config.name)
        if not rs:
            continue
        ok = [r for r in rs if "failed" not in r]
        s: dict[str, Any] = {
            "title": config.title,
            "rounds": len(rs),
            "failed": [r["failed"] for r in rs if "failed" in r],
            "problems": sorted({p for r in ok for p in r.get("problems", [])}),
            "lost": sum(r["lost"] for r in ok),
            "duplicates": sum(r["duplicates"] for r in ok),
            "queue_left": sum(r["queue_left"] for r in ok),
        }
        if ok:
            elapsed = statistics.median(r["elapsed_s"] for r in ok)
            s["elapsed_s"] = elapsed
            s["msg_per_s"] = messages / elapsed
            s["msg_per_s_runs"] = [messages / r["elapsed_s"] for r in ok]
            cpu: dict[str, float | None] = {}
            for kind in CPU_KINDS + ("machine", "harness"):
                values = [r["cpu_s"][kind] for r in ok if r["cpu_s"].get(kind) is not None]
                m = _median(values)
                cpu[kind] = None if m is None else m / messages * 1e6
            kinds = [cpu[k] for k in CPU_KINDS if config.backend == "postgresql" or k != "postgres"]
            totals = [v for v in kinds if v is not None]
            cpu["total"] = sum(totals) if totals and len(totals) == len(kinds) else None
            # The CPU of the machine's other processes while the run ran:
            # how noisy it was.
            others = []
            for r in ok:
                c = r["cpu_s"]
                ours = [c.get(k) for k in CPU_KINDS + ("harness",)
                        if config.backend == "postgresql" or k != "postgres"]
                known = [v for v in ours if v is not None]
                if c.get("machine") is not None and len(known) == len(ours):
                    others.append(max(0.0, c["machine"] - sum(known)))
            m = _median(others)
            cpu["other"] = None if m is None else m / messages * 1e6
            s["cpu_us_per_message"] = cpu
            perWorker = [v / messages * 1e6 for r in ok for v in r["cpu_s"]["per_worker"].values()
                         if v is not None]
            # One worker process's CPU over all the messages (not only its own).
            s["cpu_us_per_message_per_worker_process"] = _median(perWorker)
            if config.backend == "postgresql":
                commits = [r["commits_per_message"] for r in ok]
                s["commits_per_message"] = statistics.median(commits)
                s["commits_per_message_max"] = max(commits)
                wal = [r["wal_commits_per_message"] for r in ok if "wal_commits_per_message" in r]
                if wal:
                    s["wal_commits_per_message"] = statistics.median(wal)
                    s["wal_commits_per_message_max"] = max(wal)
                drain = [r["drain_commits_per_message"] for r in ok
                         if "drain_commits_per_message" in r]
                if drain:
                    s["drain_commits_per_message"] = statistics.median(drain)
                    s["drain_commits_per_message_max"] = max(drain)
                s["wal_syncs_per_message"] = statistics.median(
                    r["wal_syncs_per_message"] for r in ok)
                s["wal_bytes_per_message"] = statistics.median(
                    r["wal_bytes_per_message"] for r in ok)
            recoveries = [r["recovery"] for r in ok if "recovery" in r]
            if recoveries:
                times = [r.get("recovered_s") for r in recoveries]
                known = [t for t in times if t is not None]
                s["recovery_s"] = _median(known)
                s["recovery_s_max"] = max(known) if known else None
                s["recovery_s_runs"] = times
                s["recovery_bound_s"] = recoveries[0]["bound_s"]
                s["recovery_lease_s"] = recoveries[0]["lease_s"]
                s["recovery_interval_s"] = recoveries[0]["interval_s"]
                s["recovery_held"] = [r["held"] for r in recoveries]
                s["recovery_lease_left_at_kill_s"] = [r["lease_left_at_kill_s"] for r in recoveries]
        summary[config.name] = s
    base = summary.get("pg-1", {}).get("msg_per_s")
    directory = summary.get("dir-1", {}).get("msg_per_s")
    for s in summary.values():
        if "msg_per_s" in s:
            if base:
                s["ratio_pg1"] = s["msg_per_s"] / base
            if directory:
                s["ratio_dir"] = s["msg_per_s"] / directory
    # The same ratios from each round's runs, side by side (the noise).
    for name, peer, key in (("pg-2", "pg-1", "ratio_pg1_per_round"),
                            ("pg-4", "pg-1", "ratio_pg1_per_round"),
                            ("pg-1", "dir-1", "ratio_dir_per_round")):
        if name in summary and peer in runs:
            pairs = zip(runs.get(name, []), runs[peer])
            summary[name][key] = [b["elapsed_s"] / a["elapsed_s"] for a, b in pairs
                                  if "elapsed_s" in a and "elapsed_s" in b]
    return summary


def goals(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """
    The goals of the issue, each with what was measured and whether it is
    met (C{met} L{None}: not measured).
    """
    out: list[dict[str, Any]] = []

    def add(goal: str, measured: float | None, bound: float, fmt: str,
            lower: bool = False) -> None:
        met = None if measured is None else (measured <= bound if lower else measured >= bound)
        out.append({"goal": goal, "measured": "not measured" if measured is None
                    else fmt % measured, "bound": ("<= " if lower else ">= ") + fmt % bound,
                    "met": met})

    add("PostgreSQL: 2 workers / 1 worker (msg/s)", summary.get("pg-2", {}).get("ratio_pg1"),
        1.3, "%.2f")
    pg = [s for s in summary.values() if "drain_commits_per_message_max" in s]
    wal = max((s["wal_commits_per_message_max"] for s in pg
               if "wal_commits_per_message_max" in s), default=None)
    add("PostgreSQL: durable commits (WAL commit records) per message, highest run",
        wal, 2.0, "%.2f", lower=True)
    drain = max((s["drain_commits_per_message_max"] for s in pg), default=None)
    gross = max((s["commits_per_message_max"] for s in pg), default=None)
    add("PostgreSQL: xact_commit per message over the drain, highest run (with the workers' "
        "start and stop: %s)" % ("?" if gross is None else "%.2f" % (gross,)),
        drain, 2.0, "%.2f", lower=True)
    add("PostgreSQL 1 worker / directory 1 worker (msg/s)",
        summary.get("pg-1", {}).get("ratio_dir"), 0.8, "%.2f")
    kill = summary.get("pg-2-kill", {})
    if "recovery_bound_s" in kill:
        add("recovery after SIGKILL, slowest run (s; lease %g s + claim interval %g s)"
            % (kill["recovery_lease_s"], kill["recovery_interval_s"]),
            kill.get("recovery_s_max"), kill["recovery_bound_s"], "%.2f", lower=True)
    else:
        out.append({"goal": "recovery after SIGKILL (s)", "measured": "not measured",
                    "bound": "<= lease + claim interval", "met": None})
    ran = [s for s in summary.values() if s.get("rounds")]
    failed = sum(len(s["failed"]) for s in ran)
    lost = sum(s["lost"] for s in ran) if ran else None
    out.append({"goal": "messages lost, every run", "measured": "not measured" if lost is None
                else "%d%s" % (lost, " (%d runs failed)" % (failed,) if failed else ""),
                "bound": "0", "met": None if lost is None else lost == 0 and not failed})
    return out


def _fmt(value: float | None, fmt: str) -> str:
    return "" if value is None else fmt % value


def tableRows(summary: dict[str, Any]) -> list[list[str]]:
    rows = [["configuration", "msg/s", "x PG 1 worker", "x directory",
             "CPU us/msg workers", "sink", "PostgreSQL", "total", "commits/msg",
             "xact_commit/msg (all)", "WAL flushes/msg", "recovery s (bound)", "lost",
             "duplicates", "other CPU us/msg"]]
    for config in CONFIGS:
        s = summary.get(config.name)
        if s is None:
            continue
        if "msg_per_s" not in s:
            rows.append([config.title, "failed"] + [""] * 10
                        + [str(s["lost"]), str(s["duplicates"]), ""])
            continue
        cpu = s["cpu_us_per_message"]
        recovery = ""
        if s.get("recovery_s") is not None:
            recovery = "%.2f, max %.2f (%g)" % (s["recovery_s"], s["recovery_s_max"],
                                               s["recovery_bound_s"])
        rows.append([
            config.title + (" *" if s["problems"] or s["failed"] else ""),
            # The recovery run's time holds the wait for the dead worker's
            # leases: no throughput to compare.
            "%.0f" % s["msg_per_s"] + (" (with the wait)" if config.kill else ""),
            "" if config.kill else _fmt(s.get("ratio_pg1"), "%.2f"),
            "" if config.kill else _fmt(s.get("ratio_dir"), "%.2f"),
            _fmt(cpu["workers"], "%.0f"),
            _fmt(cpu["sink"], "%.0f"),
            _fmt(cpu["postgres"], "%.0f") if config.backend == "postgresql" else "",
            _fmt(cpu["total"], "%.0f"),
            _fmt(s.get("wal_commits_per_message"), "%.2f"),
            ("%.2f (%.2f)" % (s["drain_commits_per_message"], s["commits_per_message"])
             if "drain_commits_per_message" in s else _fmt(s.get("commits_per_message"),
                                                          "(%.2f)")),
            _fmt(s.get("wal_syncs_per_message"), "%.2f"),
            recovery,
            str(s["lost"]),
            str(s["duplicates"]),
            _fmt(cpu.get("other"), "%.0f"),
        ])
    return rows


def goalRows(checks: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["goal", "measured", "goal value", "met"]]
    for c in checks:
        rows.append([c["goal"], c["measured"], c["bound"],
                     "not measured" if c["met"] is None else "met" if c["met"] else "NOT MET"])
    return rows


def textTable(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[j]) for j, c in enumerate(row)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def rstTable(rows: list[list[str]]) -> str:
    widths = [max(1, max(len(r[i]) for r in rows)) for i in range(len(rows[0]))]
    rule = " ".join("=" * w for w in widths)
    out = [rule]
    for i, row in enumerate(rows):
        out.append(" ".join((c or "..").ljust(widths[j]) if j == 0 else c.ljust(widths[j])
                            for j, c in enumerate(row)).rstrip())
        if i == 0:
            out.append(rule)
    out.append(rule)
    return "\n".join(out) + "\n"


def anatomyRows(results: list[dict[str, Any]]) -> list[list[str]]:
    """
    Transactions per message by kind, a column per configuration
    (C{--commit-anatomy}).
    """
    done = [r for r in results if "per_message" in r]
    kinds: list[str] = []
    for r in done:
        kinds += [k for k in r["per_message"] if k not in kinds]
    rows = [["transactions per message"] + [r["config"] for r in done]]
    for kind in kinds:
        rows.append([kind] + ["%.3f" % r["per_message"].get(kind, 0.0) for r in done])
    rows.append(["not logged: notifications taken in, connections"]
                + ["%.3f" % r["unlogged_per_message"] for r in done])
    rows.append(["durable commits (WAL records)"]
                + [_fmt(r.get("wal_commits_per_message"), "%.3f") for r in done])
    return rows


def notes(summary: dict[str, Any], saved: dict[str, Any]) -> list[str]:
    """
    The lines under the tables: conditions, and how to read the CPU.
    """
    m = saved["machine"]
    st = saved["settings"]
    pg = saved.get("postgresql", {})
    lines = [
        "%d messages of %d bytes per run, %d round%s, median reported; %s, %s cores, "
        "load average at the start %s; Python %s, mailclient %s."
        % (st["messages"], st["size"], saved["rounds"], "" if saved["rounds"] == 1 else "s",
           m["cpu"], m["cores"], " ".join("%.2f" % x for x in m.get("loadavg_start", [])),
           m["python"], m.get("mailclient_commit")),
        "Each worker is ``mailclient relay`` (its own process) to the sink as smart host, "
        "at most %d connections of %d messages; PostgreSQL workers with ``--lease %g "
        "--interval %g``; the directory worker with its default interval."
        % (st["maxConnections"], st["perConnection"], st["lease"], st["interval"]),
        "PostgreSQL %s with fsync=%s, synchronous_commit=%s, full_page_writes=%s, "
        "wal_sync_method=%s; the directory queue syncs each file it writes (enqueue) and "
        "removes a delivered message's files without a sync."
        % (pg.get("server_version", "?"), pg.get("fsync", "?"), pg.get("synchronous_commit", "?"),
           pg.get("full_page_writes", "?"), pg.get("wal_sync_method", "?")),
        "Commits/msg: the transactions that wrote and so waited for their WAL flush (commit "
        "records in the WAL, pg_waldump), per message: confirmations, claims, "
        "connection-slot releases (if any, in a transaction of their own).  xact_commit/msg: "
        "pg_stat_database.xact_commit of the queue's database over the drain, less the "
        "harness's own: also read-only transactions (the looks for the next due message "
        "of older versions, claims that found nothing) and "
        "the one each listening backend runs per notification taken in; in brackets, with "
        "the workers' start and stop too.  WAL flushes/msg: pg_stat_wal.wal_sync of the "
        "whole cluster (concurrent commits share a flush).  Other CPU: what the machine's "
        "other processes used meanwhile (the machine's busy time less ours): noise.",
        "Recovery: 2 workers with ``--lease %g --interval %g``; the first is SIGKILLed when "
        "%d%% of the messages arrived; the time from the kill until every message it held "
        "is delivered (and confirmed) by the other, against lease + claim interval."
        % (st["recoveryLease"], st["recoveryInterval"], round(100 * st["killAt"])),
    ]
    fs = m.get("filesystems")
    if fs:
        lines.append(
            "File systems: PostgreSQL's data %s; the queue directories %s; the PostgreSQL "
            "workers' scratch directories (a copy of each claimed message, two files) %s."
            % (fs["postgresql"], fs["queue directory"], fs["scratch"]))
    two = summary.get("pg-2", {}).get("cpu_us_per_message", {})
    if two.get("total"):
        lines.append(
            "CPU per message is the sum over all processes of a kind (all workers).  With "
            "%.0f us of CPU per message in all (PostgreSQL, 2 workers: workers %.0f, sink "
            "%.0f, PostgreSQL %.0f), C free cores relay at most about C x %.0f msg/s when "
            "the CPU is the limit; this machine's %s cores are shared by all three."
            % (two["total"], two["workers"], two["sink"], two["postgres"],
               1e6 / two["total"], m["cores"]))
    if not saved.get("have_cpu", True):
        lines.append("CPU times were not measured: install psutil (the bench extra).")
    starred = [s["title"] for s in summary.values() if s["problems"] or s["failed"]]
    if starred:
        lines.append("* problems: " + "; ".join(
            "%s: %s" % (s["title"], "; ".join(s["failed"] + s["problems"])[:300])
            for s in summary.values() if s["problems"] or s["failed"]))
    return lines


def rstSummary(summary: dict[str, Any], checks: list[dict[str, Any]],
               saved: dict[str, Any]) -> str:
    title = "Relay queue benchmark" + (" (quick run)" if saved.get("quick") else "")
    text = [title, "=" * len(title), "",
            "Written by ``%s`` on %s." % (saved["command"], saved["machine"]["date"]), "",
            rstTable(tableRows(summary)), rstTable(goalRows(checks))]
    text += [line + "\n" for line in notes(summary, saved)]
    if any("per_message" in r for r in saved.get("commit_anatomy", [])):
        text += ["Commit anatomy: one more run of each configuration with every statement "
                 "logged (untimed); the queue database's transactions by kind, per message.\n",
                 rstTable(anatomyRows(saved["commit_anatomy"]))]
    return "\n".join(text)


__all__ = ["Config", "goals", "rstSummary", "summarise", "tableRows", "goalRows", "textTable"]
