"""
The processes of a queue benchmark run: the sink (benchmarks/sink.py, with
C{--record-ids}) and the relay workers (C{mailclient relay}, the command a
user runs), and their CPU time.

CPU times come from psutil, which is optional (it is in the C{bench}
extra: C{pip install -e '.[bench]'}); without it the CPU columns are left
out of the results.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import common

HERE = Path(__file__).resolve().parent.parent
REPO = HERE.parent

try:
    import psutil  # type: ignore[import-untyped, unused-ignore]
except ImportError:  # pragma: no cover - psutil is optional
    psutil = None


def haveCPU() -> bool:
    """
    Whether CPU times can be measured (psutil is installed).
    """
    return psutil is not None


class Sink:
    """
    The benchmark sink in its own process, recording every message's
    Message-ID; one per run, so that its counters start at zero.
    """

    def __init__(self, extensions: str = "PIPELINING,CHUNKING,8BITMIME,SIZE") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "sink.py"), "--port", "0", "--extensions", extensions,
             "--record-ids", "--exit-on-stdin-eof"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError("the sink did not start: %r" % (line,))
        self.port = int(line.split()[1])
        self._session: socket.socket | None = None
        self._reader: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _ask(self, command: bytes) -> Any:
        # One SMTP session for all the questions of a run: polling does not
        # make a connection each time.
        if self._session is None:
            self._session = socket.create_connection(("127.0.0.1", self.port), timeout=60)
            self._reader = self._session.makefile("rb")
            self._reader.readline()
        assert self._reader is not None
        self._session.sendall(command + b"\r\n")
        reply = self._reader.readline()
        if not reply.startswith(b"250 "):
            raise RuntimeError("%s failed: %r" % (command.decode(), reply[:200]))
        return json.loads(reply[4:])

    def stats(self) -> dict[str, Any]:
        """
        The sink's counters (C{XSTATS}).
        """
        result: dict[str, Any] = self._ask(b"XSTATS")
        return result

    def ids(self) -> dict[str, Any]:
        """
        The Message-IDs delivered, with how many times each (C{XIDS}).
        """
        result: dict[str, Any] = self._ask(b"XIDS")
        return result

    def stop(self) -> None:
        if self._session is not None:
            try:
                self._session.sendall(b"QUIT\r\n")
            except OSError:
                pass
            if self._reader is not None:
                self._reader.close()
            self._session.close()
            self._session = None
        common.stopProcess(self.proc)


#: What C{mailclient relay} prints once it relays (after its queue started:
#: for PostgreSQL, the schema checked and the notifications listened to).
READY = b"mailclient relay: relaying "


class Worker:
    """
    One C{mailclient relay} process; its standard error (one line per
    delivery, warnings, errors) goes to C{log}.
    """

    def __init__(self, name: str, queue: str, smartHost: str, log: Path,
                 extra: list[str]) -> None:
        self.name = name
        self.log = log
        self._logFile = open(log, "wb")
        self.command = [
            sys.executable, "-m", "mailclient", "relay", "--queue", queue,
            "--smart-host", smartHost, "--tls-level", "none", "--identity", "bench.invalid",
            *extra,
        ]
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._logFile,
                                     cwd=str(REPO))
        self.killed = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> bytes:
        try:
            return self.log.read_bytes()
        except OSError:
            return b""

    def ready(self) -> bool:
        """
        Whether it said it relays.

        @raise RuntimeError: if it exited first.
        """
        if READY in self.output():
            return True
        if self.proc.poll() is not None:
            raise RuntimeError("worker %s exited with %d before relaying: %s" % (
                self.name, self.proc.returncode,
                self.output().decode(errors="replace")[-1500:]))
        return False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """
        SIGKILL: it dies at once, whatever it holds.
        """
        self.proc.send_signal(signal.SIGKILL)
        self.killed = True
        self.proc.wait()

    def terminate(self, timeout: float = 60.0) -> int:
        """
        SIGTERM (it finishes what it sends, gives back what it claimed and
        exits); its exit status.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._logFile.close()
        return self.proc.returncode

    def problems(self) -> list[str]:
        """
        The warning and error lines it printed.
        """
        lines = self.output().decode(errors="replace").splitlines()
        return [line for line in lines
                if line.startswith("mailclient relay: error:")
                or line.startswith("mailclient relay: warning:")
                or "Traceback" in line]

    def deliveries(self) -> int:
        """
        How many deliveries it reported.
        """
        return sum(1 for line in self.output().splitlines() if b": delivered" in line)


def waitReady(workers: list[Worker], timeout: float = 60.0, poll: float = 0.002) -> float:
    """
    Wait until every worker said it relays; the time the last one did
    (C{time.monotonic()}, within C{poll}).
    """
    deadline = time.monotonic() + timeout
    waiting = list(workers)
    while waiting:
        waiting = [w for w in waiting if not w.ready()]
        if not waiting:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("workers %s not relaying after %d s"
                               % ([w.name for w in waiting], timeout))
        time.sleep(poll)
    return time.monotonic()


def cpuSeconds(pid: int) -> float | None:
    """
    The CPU time (user and system, all threads) of process C{pid} so far,
    or L{None} if it cannot be known.
    """
    if psutil is None:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return float(times.user + times.system)


def treeCPU(pid: int) -> dict[int, float]:
    """
    The CPU times of process C{pid} and of all its descendants, by pid
    (for PostgreSQL: the postmaster, its background processes and every
    backend).
    """
    if psutil is None:
        return {}
    out: dict[int, float] = {}
    try:
        root = psutil.Process(pid)
        processes = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return out
    for process in processes:
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out[process.pid] = float(times.user + times.system)
    return out


def machineBusy() -> float | None:
    """
    CPU seconds the whole machine spent not idle so far (all processes,
    ours and others'), or L{None} without psutil.
    """
    if psutil is None:
        return None
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return float(sum(times) - idle)


class CPUSnapshot:
    """
    The CPU times of a run's processes at one moment: workers, sink,
    PostgreSQL (C{postmaster} and descendants), this harness and the whole
    machine.
    """

    def __init__(self, workers: list[Worker], sinkPid: int, postmaster: int | None) -> None:
        self.workers = {w.name: cpuSeconds(w.pid) for w in workers}
        self.sink = cpuSeconds(sinkPid)
        self.postgres = treeCPU(postmaster) if postmaster is not None else {}
        self.harness = cpuSeconds(os.getpid())
        self.machine = machineBusy()

    def since(self, before: "CPUSnapshot") -> dict[str, Any]:
        """
        CPU seconds spent by each kind of process between C{before} and
        this snapshot (L{None} where unknown); PostgreSQL's backends started
        in between count from zero.
        """
        def delta(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else a - b

        workers = {name: delta(cpu, before.workers.get(name))
                   for name, cpu in self.workers.items()}
        known = [v for v in workers.values() if v is not None]
        out: dict[str, Any] = {
            "workers": sum(known) if known and len(known) == len(workers) else None,
            "per_worker": workers,
            "sink": delta(self.sink, before.sink),
            "postgres": (sum(cpu - before.postgres.get(pid, 0.0)
                             for pid, cpu in self.postgres.items())
                         if self.postgres else None),
            "harness": delta(self.harness, before.harness),
            "machine": delta(self.machine, before.machine),
        }
        return out
