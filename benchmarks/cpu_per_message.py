"""
CPU per message of mailclient's ESMTP state machine alone, in process, with
no network and no reactor: a client offered PIPELINING, CHUNKING, 8BITMIME
and SIZE sends N one-recipient 1 KB messages to replies fed straight in.

    python benchmarks/cpu_per_message.py [N] [prof]

Used to find and check the per-message costs named in
docs/performance.rst ("prof" prints a cProfile of the run).  It is not a
comparison with other clients: benchmarks/run.py is.
"""

import cProfile
import io
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from twisted.internet.testing import StringTransport  # noqa: E402

from mailclient.smtp import ESMTPClient  # noqa: E402

BODY = (b"Subject: x\r\n\r\n" + b"y" * 70 + b"\r\n") * 13
N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000

class Bulk(ESMTPClient):
    def __init__(self):
        ESMTPClient.__init__(self, None, None, b"client.example")
        self.left = N
        self.ok = 0
    def getMailFrom(self):
        if self.left == 0:
            return None
        self.left -= 1
        return "alice@example.com"
    def getMailTo(self):
        return ["bob@example.org"]
    def getMailData(self):
        return io.BytesIO(BODY)
    def sentMail(self, code, resp, numOk, addresses, log):
        self.ok += numOk
    def sendError(self, exc):
        raise exc



c = Bulk()
t = StringTransport()
c.makeConnection(t)
c.dataReceived(b"220 hi\r\n")
c.dataReceived(b"250-mx\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")


def run():
    while c.left or c.ok < N:
        while t.producer is not None:
            t.producer.resumeProducing()
        t.clear()
        c.dataReceived(b"250 ok\r\n250 ok\r\n250 ok\r\n")
        if c.ok >= N:
            break


t0 = time.process_time()
if "prof" in sys.argv:
    profiler = cProfile.Profile()
    profiler.runcall(run)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
else:
    run()
print("ok", c.ok, "CPU us/msg", (time.process_time() - t0) / N * 1e6)
