"""
A fast, counting SMTP sink for the benchmarks.

Run it as its own process::

    python benchmarks/sink.py --port 0 --extensions PIPELINING,CHUNKING,8BITMIME,SIZE --delay-ms 20

It prints ``PORT <n>`` on its first line of output, then serves until killed.

It accepts every message (no storage) and keeps counters so that each
benchmark run can be verified exactly: messages delivered, recipients, body
bytes after dot-unstuffing, an order-independent checksum (the sum of the
SHA-256 of every body, modulo 2**256) and the SHA-256 of the last body.
``XSTATS`` on the SMTP port itself answers ``250 <json>`` with the counters;
protocol errors made by clients (bad command sequences, unknown commands) are
counted too.

``--record-ids`` also keeps, for each message, the value of its
``Message-ID`` header (read from the first 8 KB of the body), and ``XIDS``
answers ``250 <json>`` with ``{"ids": {message-id: times delivered},
"without_id": n}``, so that a run can check which messages arrived and
which arrived twice (benchmarks/queue_bench.py).  Off by default: the other
benchmarks do not pay for it.

``--delay-ms N`` delays every reply (greeting included) by N milliseconds
after the command that caused it arrived, which is what a client sees over a
link with an N ms round trip.  Replies keep their order; replies to commands
that arrived together (a pipelined group) leave together.

Speed matters more than generality here: it is a plain ``asyncio.Protocol``
that parses commands from its buffer, answers a whole pipelined group with
one write, and streams DATA and BDAT bodies through the hash without keeping
them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import signal
import sys
from typing import Deque, Dict, List, Optional, Tuple

_MASK = (1 << 256) - 1
_MAX_LINE = 64 * 1024
# How much of each body --record-ids looks at for the Message-ID header.
_HEAD = 8192


class Stats:
    """
    Counters shared by all connections of one sink.
    """

    def __init__(self, recordIds: bool = False) -> None:
        #: Times each Message-ID was delivered (with --record-ids).
        self.ids: Optional[Dict[str, int]] = {} if recordIds else None
        self.without_id = 0
        self.connections = 0
        self.messages = 0
        self.recipients = 0
        self.bytes = 0
        self.checksum = 0
        self.last_sha256 = ""
        self.errors = 0
        self.bdat_chunks = 0
        self.data_commands = 0
        self.commands = 0

    def as_dict(self) -> dict:
        return {
            "connections": self.connections,
            "messages": self.messages,
            "recipients": self.recipients,
            "bytes": self.bytes,
            "checksum": "%064x" % (self.checksum,),
            "last_sha256": self.last_sha256,
            "errors": self.errors,
            "bdat_chunks": self.bdat_chunks,
            "data_commands": self.data_commands,
            "commands": self.commands,
        }

    def ids_dict(self) -> Dict[str, object]:
        return {"ids": self.ids or {}, "without_id": self.without_id}


def messageId(head: bytes) -> Optional[str]:
    """
    The value of the C{Message-ID} header among the headers at the start of
    C{head} (CRLF line endings), or L{None}.
    """
    end = head.find(b"\r\n\r\n")
    if end >= 0:
        head = head[:end]
    for line in head.split(b"\r\n"):
        if line[:11].lower() == b"message-id:":
            return line[11:].strip().decode("ascii", "replace")
    return None


_CMD, _DATA, _BDAT = range(3)


class SinkProtocol(asyncio.Protocol):
    """
    One SMTP server connection.
    """

    def __init__(self, stats: Stats, ehlo: bytes, delay: float) -> None:
        self.stats = stats
        self.ehlo = ehlo
        self.delay = delay
        self.transport: Optional[asyncio.Transport] = None
        self.pending = b""
        self.mode = _CMD
        self.closing = False
        # Delayed replies, oldest first: (due time, bytes).
        self.queue: Deque[Tuple[float, bytes]] = collections.deque()
        self.timer: Optional[asyncio.TimerHandle] = None
        self._resetTransaction()

    # Connection and reply plumbing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.loop = asyncio.get_running_loop()
        self.stats.connections += 1
        self._send([b"220 sink.invalid ESMTP benchmark sink\r\n"])

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None

    def _send(self, replies: List[bytes]) -> None:
        if not replies or self.transport is None:
            return
        data = b"".join(replies)
        if not self.delay:
            self.transport.write(data)
            if self.closing:
                self.transport.close()
            return
        self.queue.append((self.loop.time() + self.delay, data))
        if self.timer is None:
            self.timer = self.loop.call_at(self.queue[0][0], self._flush)

    def _flush(self) -> None:
        self.timer = None
        if self.transport is None:
            return
        now = self.loop.time()
        out = []
        while self.queue and self.queue[0][0] <= now:
            out.append(self.queue.popleft()[1])
        if out:
            self.transport.write(b"".join(out))
        if self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self._flush)
        elif self.closing:
            self.transport.close()

    # Parsing

    def data_received(self, data: bytes) -> None:
        buf = self.pending + data if self.pending else data
        self.pending = b""
        pos = 0
        end = len(buf)
        out: List[bytes] = []
        while pos < end and not self.closing:
            if self.mode == _CMD:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    if end - pos > _MAX_LINE:
                        self.stats.errors += 1
                        out.append(b"500 5.5.6 Line too long\r\n")
                        self.closing = True
                        pos = end
                    break
                line = buf[pos:nl]
                pos = nl + 1
                if line.endswith(b"\r"):
                    line = line[:-1]
                self._command(line, out)
            elif self.mode == _DATA:
                pos = self._dataBytes(buf, pos, out)
            else:
                pos = self._bdatBytes(buf, pos, out)
        if pos < end and not self.closing:
            self.pending = buf[pos:]
        self._send(out)

    def _resetTransaction(self) -> None:
        self.mailFrom = False
        self.rcpts = 0
        self.hasher = hashlib.sha256()
        self.nbytes = 0
        self.bdatFailed = False
        self.head = b""

    def _deliver(self) -> bytes:
        st = self.stats
        digest = self.hasher.digest()
        st.messages += 1
        st.recipients += self.rcpts
        st.bytes += self.nbytes
        st.checksum = (st.checksum + int.from_bytes(digest, "big")) & _MASK
        st.last_sha256 = digest.hex()
        if st.ids is not None:
            mid = messageId(self.head)
            if mid is None:
                st.without_id += 1
            else:
                st.ids[mid] = st.ids.get(mid, 0) + 1
        self._resetTransaction()
        return b"250 2.0.0 Ok: queued as %d\r\n" % (st.messages,)

    def _command(self, line: bytes, out: List[bytes]) -> None:
        self.stats.commands += 1
        verb = line[:4].upper()
        if verb == b"RCPT":
            if not self.mailFrom:
                self.stats.errors += 1
                out.append(b"503 5.5.1 Need MAIL before RCPT\r\n")
            else:
                self.rcpts += 1
                out.append(b"250 2.1.5 Ok\r\n")
        elif verb == b"MAIL":
            if self.mailFrom:
                self.stats.errors += 1
                out.append(b"503 5.5.1 Nested MAIL command\r\n")
            else:
                self.mailFrom = True
                out.append(b"250 2.1.0 Ok\r\n")
        elif verb == b"DATA":
            self.stats.data_commands += 1
            if not self.rcpts:
                self.stats.errors += 1
                out.append(b"503 5.5.1 Need RCPT before DATA\r\n")
            else:
                self.mode = _DATA
                # A virtual CRLF before the body: a terminator or a stuffed
                # dot on the first line is then found like any other.
                self.tail = b"\r\n"
                self.virtualCRLF = True
                out.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        elif verb == b"BDAT":
            self._bdatCommand(line, out)
        elif verb == b"RSET":
            self._resetTransaction()
            out.append(b"250 2.0.0 Ok\r\n")
        elif verb in (b"EHLO", b"HELO"):
            self._resetTransaction()
            out.append(self.ehlo if verb == b"EHLO" else b"250 sink.invalid\r\n")
        elif verb == b"NOOP":
            out.append(b"250 2.0.0 Ok\r\n")
        elif verb == b"QUIT":
            out.append(b"221 2.0.0 Bye\r\n")
            self.closing = True
        elif line.upper() == b"XSTATS":
            out.append(b"250 " + json.dumps(self.stats.as_dict()).encode() + b"\r\n")
        elif line.upper() == b"XIDS" and self.stats.ids is not None:
            out.append(b"250 " + json.dumps(self.stats.ids_dict()).encode() + b"\r\n")
        else:
            self.stats.errors += 1
            out.append(b"500 5.5.2 Command not recognized\r\n")

    def _dataBytes(self, buf: bytes, pos: int, out: List[bytes]) -> int:
        """
        Consume DATA body bytes from C{buf[pos:]}; return the new position.

        C{self.tail} holds the bytes not yet decided: it always starts with
        the CRLF that ended the last complete line (or the virtual one), so
        the terminator and stuffed dots are found across chunk boundaries.
        """
        tail = self.tail
        seg = tail + buf[pos:] if pos else tail + buf
        idx = seg.find(b"\r\n.\r\n")
        if idx >= 0:
            self._emit(seg[: idx + 2])
            self.mode = _CMD
            self.tail = b""
            out.append(self._deliver())
            return pos + idx + 5 - len(tail)
        cut = seg.rfind(b"\r\n")
        if cut > 0:
            self._emit(seg[:cut])
            self.tail = seg[cut:]
        else:
            self.tail = seg
        return len(buf)

    def _emit(self, part: bytes) -> None:
        if b"\r\n.." in part:
            part = part.replace(b"\r\n..", b"\r\n.")
        if self.virtualCRLF:
            part = part[2:]
            self.virtualCRLF = False
        if self.stats.ids is not None and len(self.head) < _HEAD:
            self.head += part[: _HEAD - len(self.head)]
        self.hasher.update(part)
        self.nbytes += len(part)

    def _bdatCommand(self, line: bytes, out: List[bytes]) -> None:
        parts = line.split()
        try:
            size = int(parts[1])
            if size < 0 or len(parts) > 3:
                raise ValueError(size)
            last = len(parts) == 3 and parts[2].upper() == b"LAST"
            if len(parts) == 3 and not last:
                raise ValueError(parts[2])
        except (IndexError, ValueError):
            self.stats.errors += 1
            out.append(b"501 5.5.4 Syntax: BDAT <size> [LAST]\r\n")
            return
        self.stats.bdat_chunks += 1
        self.bdatFailed = not self.rcpts
        self.bdatLeft = size
        self.bdatLast = last
        self.mode = _BDAT
        if size == 0:
            self._bdatDone(out)

    def _bdatBytes(self, buf: bytes, pos: int, out: List[bytes]) -> int:
        take = min(self.bdatLeft, len(buf) - pos)
        if not self.bdatFailed:
            if self.stats.ids is not None and len(self.head) < _HEAD:
                self.head += buf[pos : pos + min(take, _HEAD - len(self.head))]
            self.hasher.update(memoryview(buf)[pos : pos + take])
            self.nbytes += take
        self.bdatLeft -= take
        if not self.bdatLeft:
            self._bdatDone(out)
        return pos + take

    def _bdatDone(self, out: List[bytes]) -> None:
        self.mode = _CMD
        if self.bdatFailed:
            self.stats.errors += 1
            self._resetTransaction()
            out.append(b"503 5.5.1 Need RCPT before BDAT\r\n")
        elif self.bdatLast:
            out.append(self._deliver())
        else:
            out.append(b"250 2.0.0 Chunk accepted\r\n")


def ehloReply(extensions: List[str], sizeLimit: int) -> bytes:
    """
    The EHLO reply advertising C{extensions}.
    """
    lines = [b"sink.invalid"]
    for ext in extensions:
        ext = ext.strip().upper()
        if not ext:
            continue
        if ext == "SIZE":
            lines.append(b"SIZE %d" % (sizeLimit,))
        else:
            lines.append(ext.encode("ascii"))
    return b"".join(
        b"250" + (b" " if i == len(lines) - 1 else b"-") + text + b"\r\n"
        for i, text in enumerate(lines)
    )


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats(args.record_ids)
    ehlo = ehloReply(args.extensions.split(","), args.size_limit)
    delay = args.delay_ms / 1000.0
    server = await loop.create_server(
        lambda: SinkProtocol(stats, ehlo, delay),
        args.host,
        args.port,
        backlog=1024,
        reuse_address=True,
    )
    port = server.sockets[0].getsockname()[1]
    print("PORT %d" % (port,), flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Exit when the parent goes away (its end of our stdin closes).
    if args.exit_on_stdin_eof:
        def stdinReadable() -> None:
            if not sys.stdin.buffer.read1(1024):
                stop.set()

        loop.add_reader(sys.stdin.fileno(), stdinReadable)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--extensions",
        default="PIPELINING,CHUNKING,8BITMIME,SIZE",
        help="comma-separated EHLO keywords to advertise ('' for none)",
    )
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay every reply")
    parser.add_argument("--size-limit", type=int, default=2**31, help="the SIZE value (0: no limit)")
    parser.add_argument(
        "--record-ids",
        action="store_true",
        help="keep each message's Message-ID, for XIDS (used by queue_bench.py)",
    )
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="stop when standard input is closed (used by run.py)",
    )
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
