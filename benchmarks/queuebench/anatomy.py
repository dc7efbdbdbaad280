"""
What the queue's commits are (C{queue_bench.py --commit-anatomy}): one
more, untimed, run of a PostgreSQL configuration with every statement of
the queue's database logged (C{log_statement = all}), its transactions
sorted by kind from the log.  Logging slows the run: its time is not
reported.

Kinds are told by the SQL of the library's programs
(mailclient/_relaying/pgsql.py; those of older versions too); a
transaction of another shape is counted as C{other: <its first
statement>}.  The transactions that log no
statement (C{xact_commit} less those logged) are the ones a listening
backend runs to take in each notification, and the start and end of each
connection.
"""

from __future__ import annotations

import collections
import os
import re
from typing import Any

from queuebench.postgres import DATABASE
from queuebench.runs import SCHEMA, Config, Environment, run

#: A statement's kind, by a piece of its SQL (first match wins).
KINDS = (
    ("claim", "FOR UPDATE OF m SKIP LOCKED"),
    ("confirm, freeing a slot", "WITH confirmed AS (DELETE FROM {s}.messages WHERE id = $1"),
    ("confirm", "DELETE FROM {s}.messages WHERE id = $1 AND lease_token = $2"),
    ("release (slots, messages given back)", "WITH released AS (UPDATE {s}.messages"),
    ("slot release (notifies)", "pg_notify($1, 'released')"),
    ("release (nothing to free)", "DELETE FROM {s}.slots WHERE token"),
    ("next due (read-only)", "extract(epoch FROM min(greatest"),
    ("lease renewal", "SET lease_until = clock_timestamp()"),
    ("schema check (start)", "schema_version"),
    ("LISTEN (start)", "LISTEN"),
    ("harness", "SELECT count(*) FROM {s}.messages"),
    ("harness", "pg_notify($2, 'released') FROM done"),
)

_LINE = re.compile(r"\S+ \S+ \S+ \[(\d+)\] LOG:  (?:statement|execute [^:]*): (.*)")


def _kind(statements: list[str]) -> str:
    text = " | ".join(statements)
    for kind, piece in KINDS:
        if piece.format(s=SCHEMA) in text:
            return kind
    return "other: " + text[:80]


def classify(log: str, after: str) -> dict[str, int]:
    """
    The transactions in C{log} after the line holding C{after}, by kind
    (C{BEGIN} ... C{COMMIT} groups, and single statements in autocommit).
    """
    lines = log.splitlines()
    starts = [i for i, line in enumerate(lines) if after in line]
    kinds: collections.Counter[str] = collections.Counter()
    open_: dict[str, list[str]] = {}
    for line in lines[(starts[-1] if starts else -1) + 1:]:
        match = _LINE.match(line)
        if match is None:
            continue
        pid, statement = match.groups()
        if statement == "BEGIN":
            open_[pid] = []
        elif statement in ("COMMIT", "ROLLBACK"):
            kind = _kind(open_.pop(pid, []))
            kinds[kind if statement == "COMMIT" else "rolled back: " + kind] += 1
        elif pid in open_:
            open_[pid].append(statement)
        else:
            kinds[_kind([statement])] += 1
    return dict(kinds)


def anatomy(env: Environment, config: Config) -> dict[str, Any]:
    """
    One logged run of C{config}: its transactions by kind, per message.
    """
    cluster = env.cluster.cluster
    cluster.execute("ALTER SYSTEM SET log_line_prefix = '%m [%p] '")
    cluster.execute("SELECT pg_reload_conf()")
    cluster.execute("ALTER DATABASE %s SET log_statement = 'all'" % (DATABASE,))
    logPath = os.path.join(env.cluster.directory, "log")
    try:
        start = os.path.getsize(logPath)
        result = run(env, config, -1)
    finally:
        cluster.execute("ALTER DATABASE %s RESET log_statement" % (DATABASE,))
        cluster.execute("ALTER SYSTEM RESET log_line_prefix")
        cluster.execute("SELECT pg_reload_conf()")
    if "failed" in result:
        return {"config": config.name, "failed": result["failed"]}
    with open(logPath, errors="replace") as f:
        f.seek(start)
        log = f.read()
    kinds = classify(log, "pg_notify($2, 'released') FROM done")
    kinds.pop("harness", None)
    n = env.settings.messages
    logged = sum(kinds.values())
    drain = result["commits"] - result.get("start_stop_commits", 0)
    out: dict[str, Any] = {
        "config": config.name,
        "messages": n,
        "per_message": {k: v / n for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
        "transactions_logged": logged,
        "xact_commit_drain": drain,
        # Not logged: each listening backend's transaction per notification
        # taken in, and connections made during the drain.
        "unlogged_per_message": (drain - logged) / n,
        "wal_commits_per_message": result.get("wal_commits_per_message"),
        "lost": result["lost"],
        "duplicates": result["duplicates"],
    }
    return out


def describe(result: dict[str, Any]) -> list[str]:
    if "failed" in result:
        return ["  %s: FAILED: %s" % (result["config"], result["failed"])]
    lines = ["  %s (%d messages): transactions per message, by kind:"
             % (result["config"], result["messages"])]
    for kind, value in result["per_message"].items():
        lines.append("    %-40s %.3f" % (kind, value))
    lines.append("    %-40s %.3f" % ("not logged (notifications)", result["unlogged_per_message"]))
    lines.append("    %-40s %.3f" % ("durable commits (WAL)", result["wal_commits_per_message"] or 0))
    return lines
