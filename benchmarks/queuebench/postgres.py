"""
The PostgreSQL side of the queue benchmark.

  - L{DurableCluster}: a throw-away cluster in a temporary directory
    (mailclient.test.helpers_pg's, reached only over its Unix socket, run
    by an unprivileged user when we are root) with durability on: C{fsync},
    C{synchronous_commit} and C{full_page_writes}, PostgreSQL's defaults,
    as a production queue runs;
  - L{Setup}: the harness's connection for making the queue (the library's
    C{createSchema}) and filling it (the library's C{enqueueProgram}, all
    messages in one transaction: enqueueing is not measured);
  - L{Control}: the harness's connection to the queue's database during a
    run, in autocommit, counting its own transactions so that they can be
    taken out of the database's commit counter;
  - L{Monitor}: a connection to another database of the cluster, which
    reads the counters (C{pg_stat_database}, C{pg_stat_wal}: shared views)
    without adding to the queue database's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Generator
from typing import Any, TypeVar
from urllib.parse import quote

from mailclient._relaying.pgdb import Result, Statement
from mailclient._relaying.pgschema import channelOf, createSchema, dropSchema
from mailclient._relaying.pgsql import backOffProgram, enqueueProgram
from mailclient.test.helpers_pg import ADMIN, PostgresCluster

#: The database the queue is in.
DATABASE = "bench"

#: Durability as for a production queue (the test helper turns it off).
DURABLE_SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_connections": "100",
}

#: The settings recorded with the results.
REPORTED_SETTINGS = ("server_version", "fsync", "synchronous_commit", "full_page_writes",
                     "wal_sync_method", "shared_buffers", "commit_delay", "wal_level")

T = TypeVar("T")


def _psycopg() -> Any:
    import psycopg

    return psycopg


class DurableCluster:
    """
    A durable PostgreSQL cluster in a temporary directory, with the
    database L{DATABASE} in it.

    @raise RuntimeError: from L{start}, when PostgreSQL or psycopg cannot be
        found (with what to install).
    """

    def __init__(self) -> None:
        self.cluster = PostgresCluster(DURABLE_SETTINGS)

    def start(self) -> None:
        from twisted.trial.unittest import SkipTest

        try:
            self.cluster.start()
        except SkipTest as e:
            raise RuntimeError(str(e)) from None
        self.cluster.execute("CREATE DATABASE %s" % (DATABASE,))

    def stop(self) -> None:
        self.cluster.stop()

    @property
    def directory(self) -> str:
        assert self.cluster.directory is not None
        return self.cluster.directory

    def conninfo(self, database: str = DATABASE) -> str:
        """
        The libpq connection string of C{database}.
        """
        return self.cluster.conninfo(ADMIN, database)

    def uri(self) -> str:
        """
        The C{postgresql://} URI of the queue's database, as
        C{mailclient relay --queue} takes it (the socket's directory in
        C{host=}).
        """
        return "postgresql://%s@/%s?host=%s" % (ADMIN, DATABASE, quote(self.directory, safe=""))

    def postmasterPid(self) -> int:
        with open(os.path.join(self.directory, "data", "postmaster.pid")) as f:
            return int(f.readline())

    def _waldump(self) -> str | None:
        # initdb may be a link to the directory of the server's programs.
        assert self.cluster.bindir is not None
        initdb = os.path.realpath(os.path.join(self.cluster.bindir, "initdb"))
        for directory in (os.path.dirname(initdb), self.cluster.bindir):
            path = os.path.join(directory, "pg_waldump")
            if os.access(path, os.X_OK):
                return path
        return shutil.which("pg_waldump")

    def walTransactions(self, start: str, end: str) -> dict[str, int] | None:
        """
        The transaction records in the WAL between LSNs C{start} and
        C{end} (C{pg_waldump}; L{None} without it): C{commits}, the
        transactions that wrote something (a read-only transaction writes
        no record, and waits for no flush), and C{aborts}.
        """
        if start == end:
            return {"commits": 0, "aborts": 0}
        waldump = self._waldump()
        if waldump is None:
            return None
        result = subprocess.run(
            [waldump, "-p",
             os.path.join(self.directory, "data", "pg_wal"), "-s", start, "-e", end,
             "-r", "Transaction"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = result.stdout.splitlines()
        if result.returncode != 0 and not lines:
            raise RuntimeError("pg_waldump failed: " + result.stderr.strip()[-500:])
        return {"commits": sum(1 for line in lines if "desc: COMMIT" in line),
                "aborts": sum(1 for line in lines if "desc: ABORT" in line)}

    def settings(self) -> dict[str, str]:
        rows = self.cluster.execute(
            "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY(%s)",
            (list(REPORTED_SETTINGS),))
        return {name: value for name, value in rows}


class Setup:
    """
    A connection to the queue's database that runs the library's programs
    (generators of L{Statement}s) synchronously; a program's transaction is
    committed by L{commit}, so many programs can share one.

    It also stands for a C{Database} where the library wants one
    (C{createSchema}): C{run} drives the program at once and returns a
    Deferred that has fired.
    """

    def __init__(self, cluster: DurableCluster) -> None:
        self.connection = _psycopg().connect(cluster.conninfo())

    def close(self) -> None:
        self.connection.close()

    def drive(self, program: Callable[..., Generator[Statement, Result, T]], *args: Any) -> T:
        """
        Run C{program(*args)} in the current transaction; its result.
        """
        generator = program(*args)
        with self.connection.cursor() as cursor:
            try:
                statement = next(generator)
                while True:
                    cursor.execute(statement.sql, statement.params)
                    rows = cursor.fetchall() if cursor.description is not None else []
                    statement = generator.send(Result(rows, cursor.rowcount))
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            finally:
                generator.close()

    def commit(self) -> None:
        self.connection.commit()

    def run(self, program: Callable[..., Generator[Statement, Result, T]], *args: Any) -> Any:
        from twisted.internet import defer

        try:
            result = self.drive(program, *args)
            self.commit()
        except Exception:
            self.connection.rollback()
            return defer.fail()
        return defer.succeed(result)

    def _call(self, d: Any) -> Any:
        results: list[Any] = []
        d.addBoth(results.append)
        from twisted.python.failure import Failure

        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def freshSchema(self, schema: str) -> None:
        """
        Drop the queue's schema if it is there, and create it again (the
        library's C{dropSchema} and C{createSchema}): every run starts from
        empty tables.
        """
        self._call(dropSchema(self, schema))  # type: ignore[arg-type]
        self._call(createSchema(self, schema))  # type: ignore[arg-type]

    def enqueue(self, schema: str, messages: list[tuple[str, str, str, bytes]],
                holdDestination: str | None = None) -> None:
        """
        Queue C{messages} (name, sender, recipient, data) in one
        transaction; with C{holdDestination}, back that destination off for
        a day in the same transaction (workers start, find nothing due and
        wait: L{Control.release} lets them go).
        """
        for name, sender, recipient, data in messages:
            if not self.drive(enqueueProgram, schema, name, sender, recipient, data):
                raise RuntimeError("message %s was queued already" % (name,))
        if holdDestination is not None:
            self.drive(backOffProgram, schema, holdDestination, 86400.0, "benchmark: held")
        self.commit()

    def checkpoint(self) -> None:
        """
        A checkpoint now, so that no run has one of the last run's to pay
        for, and each starts with the same full-page writes to make.
        """
        self.connection.commit()
        self.connection.autocommit = True
        try:
            self.connection.execute("CHECKPOINT")
        finally:
            self.connection.autocommit = False


class Control:
    """
    The harness's connection to the queue's database during a run
    (autocommit: each statement is one transaction), counting its
    transactions (L{transactions}) so that they can be subtracted from the
    database's commit counter.
    """

    def __init__(self, cluster: DurableCluster, schema: str) -> None:
        self.connection = _psycopg().connect(cluster.conninfo(), autocommit=True)
        self.schema = schema
        self.transactions = 0
        self.pid = int(self.connection.info.backend_pid)

    def close(self) -> None:
        self.connection.close()

    def _one(self, sql: str, params: Any = None) -> Any:
        self.transactions += 1
        return self.connection.execute(sql, params).fetchone()

    def release(self, destination: str) -> None:
        """
        End the hold of L{Setup.enqueue} and wake the workers (as a released
        message does), in one transaction.
        """
        self._one(
            "WITH done AS (UPDATE %s.destinations SET not_before = NULL, last_reason = NULL"
            " WHERE destination = %%s RETURNING 1) SELECT pg_notify(%%s, 'released')"
            " FROM done" % (self.schema,), (destination, channelOf(self.schema)))

    def queued(self) -> int:
        """
        How many messages the queue holds (quarantined ones included).
        """
        return int(self._one("SELECT count(*) FROM %s.messages" % (self.schema,))[0])

    def leasedBy(self, worker: str) -> tuple[list[str], float | None]:
        """
        The messages under a lease of C{worker}, and the seconds until the
        last of those leases ends (the database's clock).
        """
        self.transactions += 1
        rows = self.connection.execute(
            "SELECT id, extract(epoch FROM lease_until - clock_timestamp())::float8"
            " FROM %s.messages WHERE lease_worker = %%s AND lease_token IS NOT NULL"
            % (self.schema,), (worker,)).fetchall()
        return [r[0] for r in rows], max((r[1] for r in rows), default=None)

    def remaining(self, names: list[str]) -> int:
        """
        How many of C{names} are still queued.
        """
        return int(self._one("SELECT count(*) FROM %s.messages WHERE id = ANY(%%s)"
                             % (self.schema,), (names,))[0])


class Monitor:
    """
    Reads the cluster's counters from the C{postgres} database, so that
    reading them adds nothing to the queue database's.
    """

    def __init__(self, cluster: DurableCluster) -> None:
        self.connection = _psycopg().connect(cluster.conninfo("postgres"), autocommit=True)

    def close(self) -> None:
        self.connection.close()

    def counters(self) -> dict[str, int]:
        """
        The queue database's transactions (C{xact_commit},
        C{xact_rollback}) and the cluster's WAL counters (C{wal_records},
        C{wal_bytes}, C{wal_write}, C{wal_sync}: flushes to disk).
        """
        row = self.connection.execute(
            "SELECT d.xact_commit, d.xact_rollback, w.wal_records, w.wal_bytes::bigint,"
            " w.wal_write, w.wal_sync FROM pg_stat_database d, pg_stat_wal w"
            " WHERE d.datname = %s", (DATABASE,)).fetchone()
        keys = ("xact_commit", "xact_rollback", "wal_records", "wal_bytes", "wal_write",
                "wal_sync")
        return {k: int(v) for k, v in zip(keys, row)}

    def lsn(self) -> str:
        """
        Where the WAL is flushed to now.
        """
        return str(self.connection.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()[0])

    def backends(self, exclude: int) -> int:
        """
        How many client backends are connected to the queue's database,
        other than the one of process C{exclude}.
        """
        row = self.connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> %s"
            " AND backend_type = 'client backend'", (DATABASE, exclude)).fetchone()
        return int(row[0])

    def waitBackendsGone(self, exclude: int, timeout: float = 30.0) -> bool:
        """
        Wait until no client other than C{exclude} is connected to the
        queue's database (a backend flushes its statistics when it exits).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.backends(exclude):
                return True
            time.sleep(0.05)
        return False
