"""
The parts of the relay-queue benchmark (benchmarks/queue_bench.py): a
durable PostgreSQL cluster and the harness's own connections to it
(L{queuebench.postgres}), the sink and the relay worker processes
(L{queuebench.processes}), one timed run of each kind (L{queuebench.runs})
and the report (L{queuebench.report}).

(Not named C{queue}: with benchmarks/ on C{sys.path} that would hide the
standard library's C{queue} module, which Twisted and psycopg use.)
"""
