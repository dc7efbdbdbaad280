"""
What the benchmark runner and every client share: the workloads, the
messages (generated the same way in every process, so the sink's counters
can be checked against what should have arrived), and the measurement
helpers the client processes use.
"""

from __future__ import annotations

import gc
import hashlib
import json
import random
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA_DIR = HERE / ".data"
RESULTS_DIR = HERE / "results"

SENDER = "bench@example.com"
IDENTITY = "bench.invalid"
_MASK = (1 << 256) - 1


# Workloads


@dataclass
class Workload:
    """
    One benchmark workload.

    @ivar mode: how messages are sent: C{one} (one connection), C{lockstep}
        (one connection, and the Twisted clients are a bare C{SMTPClient}
        subclass that says HELO and sends one command at a time, as most
        existing Twisted code does), C{separate}
        (a connection per message, C{concurrency} at a time), C{pool}
        (C{concurrency} persistent connections) or C{large} (one big message
        streamed from a file).
    @ivar clients: who runs it: C{mailclient}, C{twisted} (stock
        C{twisted.mail.smtp}), C{aiosmtplib}, C{smtplib}; C{mailclient-tls}
        is mailclient's C{sendmail} with its defaults, which build a
        certificate-verifying TLS context for every call (C{mailclient}
        passes C{tls=False}: the sink offers no STARTTLS);
        C{mailclient-serial} is the one-connection client without
        C{pipelineMessages} (each message waits for the previous one's
        replies, the default); C{raw-data} and C{raw-bdat} write pre-encoded
        bytes with C{sendfile}; C{raw-twisted} is a bare protocol on
        Twisted's reactor speaking the same conversation from prepared
        bytes, the floor of any client on that reactor.
    """

    name: str
    title: str
    mode: str
    messages: int = 1
    recipients: int = 1
    size: int = 1024
    concurrency: int = 1
    delay_ms: float = 0.0
    extensions: str = "PIPELINING,CHUNKING,8BITMIME,SIZE"
    #: At least this many rounds (short, noisy workloads get more).
    min_rounds: int = 1
    #: Round trips a message needs at the least (for the latency bound):
    #: 1 when pipelined, 4 in lock-step (MAIL, RCPT, DATA, end of data).
    bound_rtts: int = 1
    clients: List[str] = field(
        default_factory=lambda: ["mailclient", "twisted", "aiosmtplib", "smtplib",
                                 "mailclient-serial"]
    )

    @property
    def unit(self) -> str:
        return "MB/s" if self.mode == "large" else "msg/s"

    def to_json(self) -> dict:
        return asdict(self)


MB = 1024 * 1024


def stopProcess(proc: "subprocess.Popen[bytes]") -> None:
    """
    End a helper process (a sink): SIGTERM, then SIGKILL after 10 s; close
    its pipes.
    """
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def workloads(quick: bool = False) -> List[Workload]:
    """
    The workloads of issue 7; C{quick} makes each a fraction of its size
    for a smoke run of the harness.
    """
    q = (lambda full, small: small) if quick else (lambda full, small: full)
    return [
        Workload(
            "one-connection",
            "1 KB messages, 1 recipient, one connection",
            "one",
            messages=q(2000, 200),
        ),
        Workload(
            "separate-connections",
            "1 KB messages, a connection each, 50 at a time",
            "separate",
            messages=q(2000, 200),
            concurrency=50,
            clients=["mailclient", "twisted", "aiosmtplib", "smtplib", "mailclient-tls",
                     "raw-twisted"],
        ),
        Workload(
            "large-message",
            "one 100 MB message streamed from a file",
            "large",
            size=q(100 * MB, 10 * MB),
            min_rounds=q(5, 1),
            clients=["mailclient", "twisted", "aiosmtplib", "smtplib", "raw-data", "raw-bdat"],
        ),
        Workload(
            "large-message-data",
            "as large-message, server without CHUNKING (DATA, dot-stuffed)",
            "large",
            size=q(100 * MB, 10 * MB),
            extensions="PIPELINING,8BITMIME,SIZE",
            min_rounds=q(5, 1),
            clients=["mailclient", "twisted", "raw-data"],
        ),
        Workload(
            "large-message-500mb",
            "one 500 MB message from a file: memory must not grow with size",
            "large",
            size=q(500 * MB, 30 * MB),
            min_rounds=q(5, 1),
            clients=["mailclient", "raw-bdat"],
        ),
        Workload(
            "many-recipients",
            "1 KB messages, 20 recipients each, one connection",
            "one",
            messages=q(500, 50),
            recipients=20,
        ),
        Workload(
            "one-connection-20ms",
            "as one-connection, 20 ms reply latency",
            "one",
            messages=q(100, 20),
            delay_ms=20,
        ),
        Workload(
            "many-recipients-20ms",
            "as many-recipients, 20 ms reply latency",
            "one",
            messages=q(25, 5),
            recipients=20,
            delay_ms=20,
        ),
        Workload(
            "lockstep",
            "1 KB messages, SMTPClient subclass (HELO, lock-step), one connection",
            "lockstep",
            messages=q(2000, 200),
            extensions="",
            min_rounds=q(5, 1),
            clients=["mailclient", "twisted", "aiosmtplib", "smtplib", "raw-twisted"],
        ),
        Workload(
            "lockstep-20ms",
            "as lockstep, 20 ms reply latency",
            "lockstep",
            messages=q(200, 20),
            extensions="",
            delay_ms=20,
            bound_rtts=4,
            min_rounds=q(5, 1),
            clients=["mailclient", "twisted", "aiosmtplib", "smtplib", "raw-twisted"],
        ),
        Workload(
            "lockstep-many-recipients",
            "1 KB messages, 20 recipients each, SMTPClient subclass, one connection",
            "lockstep",
            messages=q(500, 50),
            recipients=20,
            extensions="",
            min_rounds=q(5, 1),
            clients=["mailclient", "twisted", "aiosmtplib", "smtplib", "raw-twisted"],
        ),
        Workload(
            "pool",
            "1 KB messages through a pool of 10 connections",
            "pool",
            messages=q(10000, 1000),
            concurrency=10,
            clients=["mailclient", "twisted", "aiosmtplib", "smtplib", "mailclient-serial",
                     "mailclient-pool"],
        ),
    ]


# Messages

_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or "
    "his from at which but have an they you were her she there one all we "
    "their been has when who will more no if out so said what up its about "
    "into than them can only other new some could time these two may then do "
    "first any my now such like our over man me even most made after also "
    "message delivery server client pipeline chunk benchmark latency socket"
).split()


def _textLines(rng: random.Random, width: int = 76) -> Iterator[bytes]:
    """
    Endless lines of words, each at most C{width} characters, about one in
    twenty starting with a dot (an ellipsis or a quoted code line), so that
    every client's dot-stuffing is exercised.
    """
    while True:
        words: List[str] = []
        length = 0
        target = rng.randint(width - 20, width)
        while length < target:
            w = rng.choice(_WORDS)
            words.append(w)
            length += len(w) + 1
        line = " ".join(words)[:width]
        if rng.random() < 0.05:
            line = ("..." if rng.random() < 0.5 else ".") + line[3:]
        yield line.encode("ascii")


@dataclass
class Message:
    """
    One message to send: envelope, and the body with LF line endings (the
    "local" form that all four libraries accept).
    """

    index: int
    recipients: List[str]
    data: bytes

    @property
    def sender(self) -> str:
        return SENDER

    @property
    def wire_body(self) -> bytes:
        """
        What the sink must receive: CRLF line endings, dots unstuffed.
        """
        return self.data.replace(b"\n", b"\r\n")


def recipients(count: int, index: int = 0) -> List[str]:
    return ["rcpt%d.%d@example.net" % (index % 1000, j) for j in range(count)]


def message(index: int, size: int = 1024, nrcpt: int = 1) -> Message:
    """
    Message number C{index}: C{size} bytes (LF line endings), with headers,
    a dot-stuffable line and a unique Message-ID, so a lost or duplicated
    message changes the sink's checksum.
    """
    rcpts = recipients(nrcpt, index)
    head = (
        "From: Benchmark <%s>\n"
        "To: %s\n"
        "Subject: Benchmark message %d\n"
        "Message-ID: <%d.bench@example.com>\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        ".This line starts with a dot.\n" % (SENDER, rcpts[0], index, index)
    ).encode("ascii")
    rng = random.Random(index)
    lines = _textLines(rng, 72)
    body = [head]
    length = len(head)
    while length < size:
        line = next(lines)[: max(size - length - 1, 0)] + b"\n"
        body.append(line)
        length += len(line)
    return Message(index, rcpts, b"".join(body))


def messages(workload: Workload) -> List[Message]:
    return [
        message(i, workload.size, workload.recipients) for i in range(workload.messages)
    ]


def expected(workload: Workload) -> dict:
    """
    The sink counters a correct run of C{workload} adds.
    """
    if workload.mode == "large":
        info = largeMessage(workload.size)
        return {
            "messages": 1,
            "recipients": workload.recipients,
            "bytes": info["wire_body_bytes"],
            "last_sha256": info["wire_body_sha256"],
            "checksum": int(info["wire_body_sha256"], 16),
        }
    total = 0
    checksum = 0
    for m in messages(workload):
        body = m.wire_body
        total += len(body)
        checksum += int.from_bytes(hashlib.sha256(body).digest(), "big")
    return {
        "messages": workload.messages,
        "recipients": workload.messages * workload.recipients,
        "bytes": total,
        "checksum": checksum & _MASK,
    }


def largeMessage(size: int) -> Dict[str, object]:
    """
    Make (once) the large message file of C{size} bytes with LF line
    endings, its pre-encoded wire form for the raw-socket baseline, and the
    SHA-256 of the body the sink must receive; and the pre-encoded bodies
    for the raw-socket baselines: for DATA (CRLF, dot-stuffed, terminated)
    and for BDAT (CRLF only).
    """
    DATA_DIR.mkdir(exist_ok=True)
    base = DATA_DIR / ("large-%d" % (size,))
    meta = base.with_suffix(".json")
    if meta.exists():
        return json.loads(meta.read_text())
    path = base.with_suffix(".eml")
    wire = base.with_suffix(".wire")
    crlfPath = base.with_suffix(".crlf")
    rng = random.Random(7)
    head = (
        "From: Benchmark <%s>\nTo: %s\nSubject: Large benchmark message\n"
        "Message-ID: <large.bench@example.com>\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\nMIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=us-ascii\n\n" % (SENDER, recipients(1)[0])
    ).encode("ascii")
    sha = hashlib.sha256()
    wireBytes = 0
    written = 0
    with open(path, "wb") as f, open(wire, "wb") as w, open(crlfPath, "wb") as c:
        lines = _textLines(rng)
        pending = [head]
        written = len(head)
        while written < size:
            line = next(lines)[: max(size - written - 1, 0)] + b"\n"
            pending.append(line)
            written += len(line)
            if len(pending) >= 4096 or written >= size:
                chunk = b"".join(pending)
                pending = []
                f.write(chunk)
                crlf = chunk.replace(b"\n", b"\r\n")
                sha.update(crlf)
                c.write(crlf)
                wireBytes += len(crlf)
                # Every chunk starts at a line start, so stuffing per chunk
                # (with the line break before it) is right.
                w.write((b"\r\n" + crlf).replace(b"\r\n.", b"\r\n..")[2:])
        w.write(b".\r\n")
    info = {
        "path": str(path),
        "wire_path": str(wire),
        "crlf_path": str(crlfPath),
        "size": size,
        "wire_body_bytes": wireBytes,
        "wire_body_sha256": sha.hexdigest(),
    }
    meta.write_text(json.dumps(info))
    return info


# Measurement, inside a client process


class Measure:
    """
    Wall clock, CPU time and peak RSS of the work a client process does.

    The kernel's peak-RSS mark is reset (C{/proc/self/clear_refs}) when the
    work starts, after imports and set-up, so the peak is that of the work
    alone; the growth is that peak less the resident size at the start.

    The peak is read from C{VmHWM} in C{/proc/self/status}, not from
    C{getrusage}: C{ru_maxrss} of a process started with C{vfork}/C{exec}
    (as C{subprocess} does) is never less than the peak of its parent, here
    the runner, so it would report the runner's memory, not the client's.
    """

    def start(self) -> None:
        gc.collect()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.peak_reset = True
        except OSError:
            self.peak_reset = False
        self.rss_start_kb = _status("VmRSS")
        self.cpu0 = _cpu()
        self.t0 = time.perf_counter()

    def stop(self) -> dict:
        elapsed = time.perf_counter() - self.t0
        cpu = _cpu() - self.cpu0
        peak = _status("VmHWM")
        return {
            "elapsed_s": elapsed,
            "cpu_s": cpu,
            "rss_start_kb": self.rss_start_kb,
            "rss_peak_kb": peak,
            "rss_growth_kb": max(peak - self.rss_start_kb, 0),
            "rss_peak_reset": self.peak_reset,
        }


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _status(field: str) -> int:
    """
    A memory figure (kB) of this process from C{/proc/self/status}.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def clientArgs(argv: Optional[List[str]] = None):
    """
    Parse the arguments every client process takes.
    """
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--workload", required=True, help="a Workload as JSON")
    p.add_argument("--profile", help="write cProfile stats to this file")
    p.add_argument("--variant", help="a variant of the client (raw socket: data or bdat)")
    args = p.parse_args(argv)
    args.workload = Workload(**json.loads(args.workload))
    return args


def report(result: dict) -> None:
    """
    Print a client's result as the one JSON line run.py reads.
    """
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def useWorkingTree() -> None:
    """
    Import mailclient from this checkout, not from an installed copy.
    """
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
