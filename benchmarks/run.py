"""
Run the mailclient benchmark (issue 7) and write its results.

    python benchmarks/run.py            # everything: 3 rounds, 5 for large messages (~25 min)
    python benchmarks/run.py --quick    # small workloads, 1 round: a smoke run (~1 min)
    python benchmarks/run.py --only one-connection,large-message --rounds 5
    python benchmarks/run.py --only pool --merge   # re-run one workload into the last results
    python benchmarks/run.py --report   # rebuild table and plot from results.json
    python benchmarks/run.py --profile  # cProfile of mailclient on workloads 1 and 3

For each workload a sink (benchmarks/sink.py) is started in its own process;
then, round after round, every client runs the workload in its own process,
in an order that rotates each round, and every run is checked against the
sink's counters (messages, recipients, bytes, checksum of the bodies).  The
median of the rounds is reported, with the ratio mailclient / each peer.

Writes benchmarks/results/results.json, throughput.png and summary.rst
(quick runs: quick-*.json/png/rst beside them).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import HERE, MB, REPO, RESULTS_DIR, Workload  # noqa: E402

CLIENT_SCRIPTS = {
    "mailclient": ["mailclient_client.py"],
    "mailclient-tls": ["mailclient_client.py", "--variant", "tls-default"],
    "mailclient-serial": ["mailclient_client.py", "--variant", "serial"],
    "twisted": ["twisted_client.py"],
    "aiosmtplib": ["aiosmtplib_client.py"],
    "smtplib": ["smtplib_client.py"],
    "raw-data": ["raw_client.py", "--variant", "data"],
    "raw-bdat": ["raw_client.py", "--variant", "bdat"],
    "raw-twisted": ["raw_twisted_client.py"],
    "mailclient-pool": ["mailclient_pool_client.py"],
}
RUN_TIMEOUT = 900
# The workloads --profile runs by default.
PROFILED = ["one-connection", "large-message", "large-message-data"]


# The sink process


class Sink:
    """
    The sink server, in its own process, for one workload.
    """

    def __init__(self, workload: Workload) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable, str(HERE / "sink.py"), "--port", "0",
                "--extensions", workload.extensions,
                "--delay-ms", str(workload.delay_ms),
                "--exit-on-stdin-eof",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError("sink did not start: %r" % (line,))
        self.port = int(line.split()[1])

    def stats(self) -> Dict[str, Any]:
        """
        The sink's counters, asked for with XSTATS.
        """
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"XSTATS\r\n")
            reply = f.readline()
            s.sendall(b"QUIT\r\n")
            f.readline()
        if not reply.startswith(b"250 "):
            raise RuntimeError("XSTATS failed: %r" % (reply,))
        return json.loads(reply[4:])

    def stop(self) -> None:
        common.stopProcess(self.proc)

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# One run of one client


def runClient(client: str, workload: Workload, port: int, profile: Optional[Path] = None) -> Dict[str, Any]:
    cmd = [
        sys.executable, str(HERE / "clients" / CLIENT_SCRIPTS[client][0]), *CLIENT_SCRIPTS[client][1:],
        "--port", str(port), "--workload", json.dumps(workload.to_json()),
    ]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=RUN_TIMEOUT, cwd=str(REPO))
    except subprocess.TimeoutExpired:
        return {"failed": "timed out after %d s" % (RUN_TIMEOUT,)}
    for line in proc.stdout.decode(errors="replace").splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {
        "failed": "exit status %d" % (proc.returncode,),
        "stderr": proc.stderr.decode(errors="replace")[-3000:],
    }


def verify(result: Dict[str, Any], before: Dict[str, Any], after: Dict[str, Any],
           want: Dict[str, Any]) -> List[str]:
    """
    What is wrong with a run, comparing the sink's counters before and after
    it with what should have arrived; empty when it is exact.
    """
    problems = []
    if "failed" in result:
        return ["client failed: " + result["failed"]]
    if result.get("error_count"):
        problems.append("client saw %d errors, first: %s"
                        % (result["error_count"], (result.get("errors") or ["?"])[0][:300]))
    for key in ("messages", "recipients", "bytes"):
        got = after[key] - before[key]
        if got != want[key]:
            problems.append("sink got %d %s, expected %d" % (got, key, want[key]))
    got = (int(after["checksum"], 16) - int(before["checksum"], 16)) % (1 << 256)
    if got != want["checksum"]:
        problems.append("body checksum differs (wrong bytes delivered)")
    if "last_sha256" in want and after["last_sha256"] != want["last_sha256"]:
        problems.append("SHA-256 of the delivered body differs from the file's")
    if after["errors"] != before["errors"]:
        problems.append("sink counted %d protocol errors" % (after["errors"] - before["errors"],))
    return problems


def runWorkload(workload: Workload, clients: List[str], rounds: int) -> Dict[str, Any]:
    print("\n== %s: %s" % (workload.name, workload.title), flush=True)
    want = common.expected(workload)
    # Other work on the machine shows here (the sink and the client share
    # its cores with whatever else runs).
    load = list(os.getloadavg())
    print("  load average %.2f %.2f %.2f" % tuple(load), flush=True)
    runs: Dict[str, List[Dict[str, Any]]] = {c: [] for c in clients}
    with Sink(workload) as sink:
        for r in range(rounds):
            # Rotate the order each round so that no client always runs
            # first (cold) or right after the same neighbour.
            order = clients[r % len(clients):] + clients[: r % len(clients)]
            for client in order:
                if workload.mode == "large":
                    warm(workload, client)
                before = sink.stats()
                result = runClient(client, workload, sink.port)
                time.sleep(0.05)
                after = sink.stats()
                result["round"] = r
                result["problems"] = verify(result, before, after, want)
                result["verified"] = not result["problems"]
                result["sink"] = {
                    k: after[k] - before[k]
                    for k in ("connections", "messages", "bytes", "bdat_chunks", "data_commands")
                }
                # Less the XSTATS connection that took the second snapshot.
                result["sink"]["connections"] -= 1
                runs[client].append(result)
                print("  round %d %-11s %s" % (r + 1, client, describeRun(workload, result)), flush=True)
    return {"workload": workload.to_json(), "expected": {k: str(v) for k, v in want.items()},
            "runs": runs, "summary": summarise(workload, runs), "loadavg_start": load,
            "loadavg_end": list(os.getloadavg())}


def warm(workload: Workload, client: str) -> None:
    """
    Read the file C{client} is about to send, so that it comes from the
    page cache: the benchmark measures the client, not the disk.  (On the
    VM this was written on, idle page-cache pages are reclaimed within
    minutes, and a cold 100 MB file reads at disk speed.)
    """
    info = common.largeMessage(workload.size)
    key = {"raw-data": "wire_path", "raw-bdat": "crlf_path"}.get(client, "path")
    with open(str(info[key]), "rb") as f:
        while f.read(1 << 20):
            pass


def throughput(workload: Workload, elapsed: float) -> float:
    if workload.mode == "large":
        return workload.size / MB / elapsed
    return workload.messages / elapsed


def describeRun(workload: Workload, result: Dict[str, Any]) -> str:
    if "elapsed_s" not in result:
        return "FAILED: " + "; ".join(result["problems"])
    text = "%9.1f %s  %7.3f s  peak RSS %6.1f MB (+%.1f)" % (
        throughput(workload, result["elapsed_s"]), workload.unit, result["elapsed_s"],
        result["rss_peak_kb"] / 1024, result["rss_growth_kb"] / 1024,
    )
    if result["problems"]:
        text += "  NOT VERIFIED: " + "; ".join(result["problems"])
    return text


def summarise(workload: Workload, runs: Dict[str, List[Dict[str, Any]]]) -> Dict[str, Any]:
    summary: Dict[str, Any] = {}
    for client, rs in runs.items():
        timed = [r for r in rs if "elapsed_s" in r]
        if not timed:
            summary[client] = {"failed": True, "verified": False}
            continue
        elapsed = statistics.median(r["elapsed_s"] for r in timed)
        cpu = statistics.median(r["cpu_s"] for r in timed)
        s = {
            "elapsed_s": elapsed,
            "throughput": throughput(workload, elapsed),
            "unit": workload.unit,
            "cpu_s": cpu,
            "cpu_us_per_message": cpu / max(workload.messages, 1) * 1e6,
            "rss_peak_mb": statistics.median(r["rss_peak_kb"] for r in timed) / 1024,
            "rss_growth_mb": max(r["rss_growth_kb"] for r in timed) / 1024,
            "verified": all(r["verified"] for r in rs) and len(timed) == len(rs),
            "problems": sorted({p for r in rs for p in r["problems"]}),
            "rounds": len(timed),
            "version": timed[0].get("version"),
        }
        if workload.delay_ms:
            bound = 1000.0 / (workload.delay_ms * workload.bound_rtts)
            s["bound_fraction"] = s["throughput"] / bound
        summary[client] = s
    mine = summary.get("mailclient", {})
    floor = summary.get("raw-twisted", {})
    if "throughput" in floor and workload.mode != "large":
        # What the reactor allows: a bare protocol writing prepared bytes.
        for client, s in summary.items():
            if "throughput" in s:
                s["floor_fraction"] = s["throughput"] / floor["throughput"]
    for client, s in summary.items():
        if client != "mailclient" and "throughput" in s and "throughput" in mine:
            s["mailclient_ratio"] = mine["throughput"] / s["throughput"]
            # The same ratio from each round's side-by-side runs.
            per_round = []
            for a, b in zip(runs["mailclient"], runs[client]):
                if "elapsed_s" in a and "elapsed_s" in b:
                    per_round.append(b["elapsed_s"] / a["elapsed_s"])
            s["mailclient_ratio_per_round"] = per_round
    return summary


# Output


def machineInfo() -> Dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: Dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    for name in ("twisted", "aiosmtplib"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    common.useWorkingTree()
    import mailclient

    info["mailclient"] = mailclient.__version__
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=str(REPO),
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "mailclient"],
                               cwd=str(REPO), capture_output=True, text=True).stdout.strip()
        info["mailclient_commit"] = head + ("+uncommitted changes" if dirty else "")
    except OSError:
        info["mailclient_commit"] = "unknown"
    return info


def table(results: List[Dict[str, Any]]) -> List[List[str]]:
    rows = [["workload", "client", "throughput", "mailclient ×", "CPU µs/msg (large: s)",
             "peak RSS MB", "RSS growth MB", "notes"]]
    for res in results:
        w = Workload(**res["workload"])
        for client, s in res["summary"].items():
            if s.get("failed"):
                rows.append([w.name, client, "failed", "", "", "", "", ""])
                continue
            notes = []
            if "bound_fraction" in s:
                notes.append("%.0f%% of %d-RTT bound" % (100 * s["bound_fraction"], w.bound_rtts))
            if "floor_fraction" in s and client != "raw-twisted":
                notes.append("%.0f%% of floor" % (100 * s["floor_fraction"],))
            if not s["verified"]:
                wrong = any("checksum" in p or "SHA-256" in p for p in s["problems"])
                notes.append("NOT VERIFIED: " + ("wrong bytes delivered" if wrong
                                                 else "; ".join(s["problems"])[:80]))
            rows.append([
                w.name, client,
                "%.1f %s" % (s["throughput"], s["unit"]),
                "%.2f" % s["mailclient_ratio"] if "mailclient_ratio" in s else "",
                "%.0f" % s["cpu_us_per_message"] if w.mode != "large" else "%.2f s" % s["cpu_s"],
                "%.1f" % s["rss_peak_mb"], "%.1f" % s["rss_growth_mb"], "; ".join(notes),
            ])
    return rows


def printTable(rows: List[List[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(widths[j]) for j, c in enumerate(row)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def rstTable(rows: List[List[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    rule = " ".join("=" * w for w in widths)
    out = [rule]
    for i, row in enumerate(rows):
        out.append(" ".join(c.ljust(widths[j]) for j, c in enumerate(row)).rstrip())
        if i == 0:
            out.append(rule)
    out.append(rule)
    return "\n".join(out) + "\n"


COLORS = {"mailclient": "#2b7bba", "mailclient-tls": "#7fb2dc", "mailclient-serial": "#a9cbe8", "raw-twisted": "#999999", "twisted": "#e6862b", "aiosmtplib": "#4c9f50",
          "smtplib": "#9b59b6", "raw-data": "#7f7f7f", "raw-bdat": "#b0b0b0"}


def plot(results: List[Dict[str, Any]], machine: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(res, "throughput") for res in results]
    large = [res for res in results if res["workload"]["mode"] == "large"]
    panels += [(res, "memory") for res in large]
    ncols = 4
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (res, kind) in zip(axes.flat, panels):
        w = Workload(**res["workload"])
        clients = [c for c in w.clients if not res["summary"].get(c, {}).get("failed")]
        if kind == "throughput":
            values = [res["summary"][c]["throughput"] for c in clients]
            ax.set_title("%s\n%s" % (w.name, w.unit + " (higher is better)"), fontsize=9)
        else:
            values = [res["summary"][c]["rss_peak_mb"] for c in clients]
            ax.set_title("%s\npeak RSS MB (lower is better)" % (w.name,), fontsize=9)
        bars = ax.barh(clients, values, color=[COLORS.get(c, "#333") for c in clients])
        for bar, c, v in zip(bars, clients, values):
            s = res["summary"][c]
            label = "%.0f" % v if v >= 10 else "%.1f" % v
            if not s["verified"]:
                bar.set_hatch("//")
                label += " (wrong)"
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + label,
                    va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, max(values) * 1.45 if values else 1)
        ax.tick_params(labelsize=8)
    fig.suptitle("mailclient benchmark, %s, %s (%s cores), Python %s, mailclient %s"
                 % (machine["date"], machine["cpu"], machine["cores"], machine["python"],
                    machine.get("mailclient_commit")), fontsize=9)
    fig.tight_layout()
    # Small enough to commit (about 100 KB).
    fig.savefig(path, dpi=80, pil_kwargs={"optimize": True})
    plt.close(fig)


# Profiling

# Where a function's own time is counted, by the file it is in (first match
# wins); builtins (file "~") by their name.
CATEGORIES = [
    ("reply parsing", ("mailclient/_reply.py",)),
    ("DATA/BDAT encoding", ("mailclient/_data.py", "mailclient/_chunking.py",
                            "mailclient/_client.py:resumeProducing",
                            "mailclient/_client.py:transformChunk",
                            "basic.py:resumeProducing", "basic.py:beginFileTransfer",
                            "'replace' of 'bytes'")),
    ("line handling", ("twisted/protocols/basic.py:",)),
    ("log keeping", ("mailclient/_log.py", "twisted/python/util.py")),
    ("SMTP state machine", ("mailclient/", "twisted/mail/")),
    ("socket send/recv (kernel)", ("'send' of '_socket", "'recv' of '_socket", "'sendfile'")),
    ("file reads", ("'read' of '_io", "'readinto' of '_io")),
    ("waiting in epoll", ("'poll' of 'select.epoll'",)),
    ("Twisted reactor, transport, Deferreds", ("twisted/",)),
    ("benchmark harness", ("benchmarks/",)),
]


def _category(key: Any) -> str:
    filename, line, func = key
    where = "%s:%s" % (filename.replace("\\", "/"), func)
    for name, patterns in CATEGORIES:
        if any(p in where for p in patterns):
            return name
    return "other (Python runtime)"


def profileBreakdown(stats: Any) -> List[Any]:
    """
    Own time per category, largest first: [(category, seconds, share)].
    """
    totals: Dict[str, float] = {}
    for key, (cc, nc, tt, ct, callers) in stats.stats.items():
        totals[_category(key)] = totals.get(_category(key), 0.0) + tt
    whole = sum(totals.values()) or 1.0
    return sorted(((k, v, v / whole) for k, v in totals.items()), key=lambda x: -x[1])


def profileRun(workload: Workload, clients: List[str], prefix: str) -> Dict[str, Any]:
    """
    Run C{clients} on C{workload} under cProfile; write the top functions
    and the breakdown by category to results/<prefix>profile-*.txt.
    """
    import pstats

    summaries: Dict[str, Any] = {}
    want = common.expected(workload)
    with Sink(workload) as sink:
        for client in clients:
            out = RESULTS_DIR / ("%sprofile-%s-%s.pstats" % (prefix, client, workload.name))
            if workload.mode == "large":
                warm(workload, client)
            before = sink.stats()
            result = runClient(client, workload, sink.port, profile=out)
            time.sleep(0.05)
            problems = verify(result, before, sink.stats(), want)
            text = RESULTS_DIR / ("%sprofile-%s-%s.txt" % (prefix, client, workload.name))
            if not out.exists():
                print("profile of %s on %s failed: %s" % (client, workload.name, problems))
                continue
            st = pstats.Stats(str(out))
            breakdown = profileBreakdown(st)
            with open(text, "w") as f:
                f.write("cProfile of %s, workload %s (%d messages of %d bytes): %.3f s wall, "
                        "%.3f s CPU under the profiler%s\n\n"
                        % (client, workload.name, workload.messages, workload.size,
                           result.get("elapsed_s", -1), result.get("cpu_s", -1),
                           "" if not problems else " (NOT VERIFIED: %s)" % ("; ".join(problems),)))
                f.write("Own time by category:\n")
                for name, secs, share in breakdown:
                    f.write("  %-40s %8.3f s  %5.1f%%\n" % (name, secs, 100 * share))
                f.write("\n")
                st.stream = f
                st.strip_dirs().sort_stats("tottime").print_stats(30)
                st.sort_stats("cumulative").print_stats(40)
            out.unlink()
            summaries[client] = {
                "elapsed_s": result.get("elapsed_s"), "cpu_s": result.get("cpu_s"),
                "verified": not problems,
                "breakdown": [{"category": n, "seconds": s_, "share": sh} for n, s_, sh in breakdown],
            }
            print("wrote", text)
            for name, secs, share in breakdown:
                print("  %-40s %8.3f s  %5.1f%%" % (name, secs, 100 * share))
    return summaries


# Targets of issue 7


def _summary(results: List[Dict[str, Any]], name: str) -> Optional[Dict[str, Any]]:
    for res in results:
        if res["workload"]["name"] == name:
            return res["summary"]
    return None


def targets(results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """
    Each target of issue 7 that the selected workloads measure: what was
    measured, the goal, and whether it is met.
    """
    out: List[Dict[str, Any]] = []

    def add(target: str, measured: Optional[float], goal: float, fmt: str = "%.2f",
            lower: bool = False) -> None:
        if measured is None:
            return
        met = measured <= goal if lower else measured >= goal
        out.append({"target": target, "measured": fmt % measured,
                    "goal": ("<= " if lower else ">= ") + fmt % goal, "met": met})

    def ratio(workload: str, peer: str) -> Optional[float]:
        s = _summary(results, workload)
        if s and peer in s and "mailclient_ratio" in s[peer]:
            return s[peer]["mailclient_ratio"]
        return None

    def field(workload: str, client: str, key: str) -> Optional[float]:
        s = _summary(results, workload)
        if s and client in s and key in s[client]:
            return s[client][key]
        return None

    add("(1) one connection: mailclient / smtplib", ratio("one-connection", "smtplib"), 2)
    add("(1) one connection: mailclient / stock Twisted", ratio("one-connection", "twisted"), 50)
    for w in ("one-connection-20ms", "many-recipients-20ms"):
        add("(%s) 20 ms latency: fraction of the 1-RTT bound" % ("1" if w.startswith("one") else "4",),
            field(w, "mailclient", "bound_fraction"), 0.8, "%.2f")
    add("(2) separate connections: mailclient / aiosmtplib", ratio("separate-connections", "aiosmtplib"), 2)
    add("(2) separate connections, default TLS setting: mailclient-tls / aiosmtplib",
        _divide(field("separate-connections", "mailclient-tls", "throughput"),
                field("separate-connections", "aiosmtplib", "throughput")), 2)
    add("(5) pool: mailclient / aiosmtplib", ratio("pool", "aiosmtplib"), 2)
    for w, raw in (("large-message", "raw-bdat"), ("large-message-data", "raw-data"),
                   ("large-message-500mb", "raw-bdat")):
        s = _summary(results, w)
        if not s or "mailclient" not in s or s["mailclient"].get("failed"):
            continue
        out.append({"target": "(3) %s: correct bytes delivered" % (w,),
                    "measured": "verified" if s["mailclient"]["verified"] else "WRONG",
                    "goal": "verified", "met": bool(s["mailclient"]["verified"])})
        add("(3) %s: mailclient / stock Twisted MB/s" % (w,), ratio(w, "twisted"), 1)
        r = ratio(w, raw)
        add("(3) %s: mailclient / %s (sendfile of pre-encoded bytes)" % (w, raw), r, 0.7)
        add("(3) %s: mailclient RSS growth, MB" % (w,),
            field(w, "mailclient", "rss_growth_mb"), 20, "%.1f", lower=True)
    # Issue 18: the paths people use without opting in.
    add("(18) lock-step, one connection: mailclient / aiosmtplib", ratio("lockstep", "aiosmtplib"), 1.3)
    add("(18) lock-step, one connection: mailclient / smtplib", ratio("lockstep", "smtplib"), 0.8)
    add("(18) lock-step, 20 ms: fraction of the 4-RTT bound",
        field("lockstep-20ms", "mailclient", "bound_fraction"), 0.95)
    for peer in ("aiosmtplib", "smtplib"):
        add("(18) lock-step, 20 ms: mailclient / %s" % (peer,), ratio("lockstep-20ms", peer), 1.0)
    add("(18) separate connections, default settings: mailclient-tls / aiosmtplib",
        _divide(field("separate-connections", "mailclient-tls", "throughput"),
                field("separate-connections", "aiosmtplib", "throughput")), 2)
    add("(18) DATA body: mailclient / stock Twisted MB/s", ratio("large-message-data", "twisted"), 1)
    add("(18) DATA body: mailclient RSS growth, MB",
        field("large-message-data", "mailclient", "rss_growth_mb"), 20, "%.1f", lower=True)
    # "beat all of them on every workload"
    for res in results:
        for peer, s in res["summary"].items():
            if peer.startswith("mailclient") or peer.startswith("raw-"):
                continue
            if "mailclient_ratio" in s:
                add("%s: mailclient / %s" % (res["workload"]["name"], peer),
                    s["mailclient_ratio"], 1.0)
    return out


def _divide(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or not b else a / b


def targetRows(checks: List[Dict[str, Any]]) -> List[List[str]]:
    rows = [["target", "measured", "goal", "met"]]
    for c in checks:
        rows.append([c["target"], c["measured"], c["goal"], "yes" if c["met"] else "NO"])
    return rows


def report(path: Path) -> int:
    """
    Rebuild summary.rst and the plot from a results file.
    """
    saved = json.loads(path.read_text())
    results = saved["results"]
    rows = table(results)
    checks = targets(results)
    saved["targets"] = checks
    printTable(rows)
    print()
    printTable(targetRows(checks))
    path.write_text(json.dumps(saved, indent=1))
    prefix = path.name[: -len("results.json")]
    (path.parent / (prefix + "summary.rst")).write_text(
        rstTable(rows) + "\n" + rstTable(targetRows(checks)))
    plot(results, saved["machine"], path.parent / (prefix + "throughput.png"))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="mailclient benchmark (issue 7)")
    parser.add_argument("--quick", action="store_true", help="small workloads, 1 round")
    parser.add_argument("--only", help="comma-separated workload names")
    parser.add_argument("--clients", help="comma-separated clients (default: all)")
    parser.add_argument("--rounds", type=int,
                        help="rounds per workload (default 3, quick 1; the large-message "
                             "workloads at least 5 in a full run)")
    parser.add_argument("--note", default="", help="a note on the conditions, kept in the JSON")
    parser.add_argument("--extensions",
                        help="EHLO keywords the sink advertises in every workload, comma-"
                             "separated ('' for none), instead of each workload's own")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: rebuild the table, targets and plot from the "
                             "last results.json")
    parser.add_argument("--merge", action="store_true",
                        help="replace only the workloads run in the last results (table, "
                             "targets and plot are rebuilt from the merged results)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of timing, run cProfile on mailclient (or --clients) in "
                             "the workloads of --only (default: %s)" % (",".join(PROFILED),))
    args = parser.parse_args()

    all_workloads = common.workloads(args.quick)
    prefix = "quick-" if args.quick else ""
    if args.report:
        return report(RESULTS_DIR / (prefix + "results.json"))
    names = [w.name for w in all_workloads]
    selected = all_workloads
    if args.profile and not args.only:
        args.only = ",".join(PROFILED)
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - set(names)
        if unknown:
            parser.error("unknown workloads %s; choose from %s" % (sorted(unknown), names))
        selected = [w for w in all_workloads if w.name in wanted]
    rounds = args.rounds or (1 if args.quick else 3)
    RESULTS_DIR.mkdir(exist_ok=True)

    for size in sorted({w.size for w in selected if w.mode == "large"}):
        print("preparing the %d MB message file..." % (size // MB), flush=True)
        common.largeMessage(size)

    if args.profile:
        clients = args.clients.split(",") if args.clients else ["mailclient"]
        profiles = {}
        for w in selected:
            profiles[w.name] = profileRun(w, [c for c in clients if c in w.clients], prefix)
        (RESULTS_DIR / (prefix + "profile.json")).write_text(json.dumps(profiles, indent=1))
        return 0

    machine = machineInfo()
    print("machine:", json.dumps(machine))
    results = []
    for w in selected:
        if args.extensions is not None:
            w.extensions = args.extensions
        if args.clients:
            w.clients = [c for c in w.clients if c in args.clients.split(",")]
        results.append(runWorkload(w, w.clients, max(rounds, w.min_rounds)))

    machine["loadavg_end"] = list(os.getloadavg())
    rows = table(results)
    checks = targets(results)
    print()
    printTable(rows)
    print()
    printTable(targetRows(checks))
    if args.merge and (RESULTS_DIR / (prefix + "results.json")).exists():
        # Replace these workloads in the last results, keep the others.
        old = json.loads((RESULTS_DIR / (prefix + "results.json")).read_text())
        fresh = {res["workload"]["name"]: res for res in results}
        kept = {res["workload"]["name"]: res for res in old["results"]}
        kept.update(fresh)
        results = [kept[w.name] for w in all_workloads if w.name in kept]
        reruns = old["machine"].get("reruns", []) + [dict(machine, workloads=sorted(fresh))]
        machine = dict(old["machine"], reruns=reruns)
        args.note = " | ".join(n for n in (old.get("note"), args.note) if n)
        rows = table(results)
        checks = targets(results)
    out = {"machine": machine, "rounds": rounds, "note": args.note, "quick": args.quick,
           "results": results, "targets": checks}
    (RESULTS_DIR / (prefix + "results.json")).write_text(json.dumps(out, indent=1))
    (RESULTS_DIR / (prefix + "summary.rst")).write_text(
        rstTable(rows) + "\n" + rstTable(targetRows(checks)))
    plot(results, machine, RESULTS_DIR / (prefix + "throughput.png"))
    print("\nwrote %s" % (RESULTS_DIR / (prefix + "results.json")))
    bad = [(res["workload"]["name"], c) for res in results
           for c, s in res["summary"].items() if not s["verified"]]
    if bad:
        print("runs that failed verification: %s" % (bad,))
    return 1 if any(c == "mailclient" for _, c in bad) else 0


if __name__ == "__main__":
    sys.exit(main())
