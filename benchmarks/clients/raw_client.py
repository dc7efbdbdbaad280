"""
The raw-socket baselines for the large message: EHLO, MAIL, RCPT, then the
body already encoded on disk, sent with socket.sendfile().  Nothing a
library could do sends these bytes faster.

``--variant data``: DATA, then the body in DATA form (CRLF, dot-stuffed,
terminated).  ``--variant bdat``: one ``BDAT <size> LAST`` with the body in
CRLF form (what a client using CHUNKING sends, without the chunk headers).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402


class Replies:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def read(self) -> int:
        """
        Read one (possibly multi-line) reply; return its code.
        """
        while True:
            while b"\r\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("connection closed")
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            if line[3:4] != b"-":
                return int(line[:3])


def expect(replies: Replies, code: int) -> None:
    got = replies.read()
    if got != code:
        raise RuntimeError("expected %d, got %d" % (code, got))


def main() -> None:
    args: Any = common.clientArgs()
    w = args.workload
    info = common.largeMessage(w.size)
    bdat = args.variant == "bdat"
    path = str(info["crlf_path"] if bdat else info["wire_path"])
    measure = common.Measure()
    measure.start()
    with socket.create_connection((args.host, args.port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        r = Replies(sock)
        expect(r, 220)
        sock.sendall(b"EHLO " + common.IDENTITY.encode() + b"\r\n")
        expect(r, 250)
        sock.sendall(b"MAIL FROM:<" + common.SENDER.encode() + b">\r\n")
        expect(r, 250)
        for rcpt in common.recipients(w.recipients):
            sock.sendall(b"RCPT TO:<" + rcpt.encode() + b">\r\n")
            expect(r, 250)
        with open(path, "rb") as f:
            if bdat:
                sock.sendall(b"BDAT %d LAST\r\n" % (os.fstat(f.fileno()).st_size,))
            else:
                sock.sendall(b"DATA\r\n")
                expect(r, 354)
            sock.sendfile(f)
        expect(r, 250)
        sock.sendall(b"QUIT\r\n")
        expect(r, 221)
    result = measure.stop()
    result.update(library="raw-" + (args.variant or "data"), version="sendfile", sent=1,
                  errors=[], error_count=0)
    common.report(result)


if __name__ == "__main__":
    main()
