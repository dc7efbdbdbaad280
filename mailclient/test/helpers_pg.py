"""
A real PostgreSQL for the tests of the PostgreSQL relay queue: a throw-away
cluster in a temporary directory, reached only over a Unix socket in that
directory (C{listen_addresses=''}), run by an unprivileged user when the
tests run as root (C{initdb} refuses root): C{postgres} if it exists, else a
system user C{mailclient-pg}, created with C{useradd}.

One cluster per test class: started by the class's first test (or
C{setUpClass}, under pytest), stopped after its last one (or
C{tearDownClass}), and in any case when the process exits.  Each test gets
a queue schema of its own in it.

Tests are skipped, with the reason, when psycopg or PostgreSQL's programs
cannot be found.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence

from twisted.internet import defer
from twisted.trial.unittest import SkipTest

#: The superuser role of the test clusters.
ADMIN = "mailclient_admin"

#: The system user made to run PostgreSQL when there is no C{postgres}.
SYSTEM_USER = "mailclient-pg"

_NO_DRIVER = "psycopg is not installed: pip install 'mailclient[postgresql]'"
_NO_SERVER = ("PostgreSQL's initdb and pg_ctl were not found "
              "(on Debian: apt-get install postgresql)")


def _run(command: Sequence[str], **kw: Any) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, **kw)


def findBinaries() -> Optional[str]:
    """
    The directory of C{initdb} and C{pg_ctl}: from C{PATH}, C{pg_config
    --bindir}, or the newest C{/usr/lib/postgresql/*/bin}.
    """
    initdb = shutil.which("initdb")
    if initdb is not None and shutil.which("pg_ctl") is not None:
        return os.path.dirname(initdb)
    candidates: List[str] = []
    pgConfig = shutil.which("pg_config")
    if pgConfig is not None:
        result = _run([pgConfig, "--bindir"])
        if result.returncode == 0:
            candidates.append(result.stdout.strip())

    def version(path: str) -> float:
        try:
            return float(path.split(os.sep)[-2])
        except ValueError:
            return 0.0

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    for directory in candidates:
        if all(os.access(os.path.join(directory, p), os.X_OK) for p in ("initdb", "pg_ctl")):
            return directory
    return None


def _systemUser() -> str:
    """
    The unprivileged user to run PostgreSQL as, when we are root.
    """
    for name in ("postgres", SYSTEM_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    nologin = shutil.which("nologin") or "/bin/false"
    result = _run(["useradd", "--system", "--no-create-home", "--shell", nologin, SYSTEM_USER])
    if result.returncode != 0:
        raise SkipTest("cannot create a user to run PostgreSQL (running as root): "
                       + result.stdout.strip()[:200])
    return SYSTEM_USER


#: The settings of the test clusters: nothing is synced to disk (a
#: throw-away cluster has nothing to keep through a crash of the machine).
#: The benchmark (benchmarks/queue_bench.py) turns durability back on.
TEST_SETTINGS: Dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class PostgresCluster:
    """
    A PostgreSQL cluster in a temporary directory.

    @ivar directory: The directory (the data directory and the socket are
        in it).
    """

    def __init__(self, settings: Optional[Mapping[str, str]] = None) -> None:
        #: The server's settings (C{-c name=value}): L{TEST_SETTINGS},
        #: updated with C{settings}.
        self.settings: Dict[str, str] = dict(TEST_SETTINGS)
        self.settings.update(settings or {})
        self.directory: Optional[str] = None
        self.user: Optional[str] = None
        self.bindir: Optional[str] = None
        self._stopped = False

    def _as(self, command: List[str]) -> List[str]:
        if self.user is None:
            return command
        if shutil.which("runuser"):
            return ["runuser", "-u", self.user, "--"] + command
        return ["su", "-s", "/bin/sh", self.user, "-c",
                " ".join("'%s'" % (c.replace("'", "'\\''"),) for c in command)]

    def start(self) -> None:
        """
        Make and start the cluster.

        @raise SkipTest: if psycopg or PostgreSQL cannot be found.
        """
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise SkipTest(_NO_DRIVER) from None
        self.bindir = findBinaries()
        if self.bindir is None:
            raise SkipTest(_NO_SERVER)
        if os.geteuid() == 0:
            self.user = _systemUser()
        self.directory = tempfile.mkdtemp(prefix="mcpg-")
        if self.user is not None:
            os.chown(self.directory, pwd.getpwnam(self.user).pw_uid, -1)
        data = os.path.join(self.directory, "data")
        result = _run(self._as([
            os.path.join(self.bindir, "initdb"), "-D", data, "-A", "trust", "-U", ADMIN,
            "-E", "UTF8", "--locale=C", "--no-sync"]))
        if result.returncode != 0:
            self.stop()
            raise RuntimeError("initdb failed: " + result.stdout[-2000:])
        options = " ".join(
            ["-c listen_addresses='' -c unix_socket_directories=%s" % (self.directory,)]
            + ["-c %s=%s" % item for item in self.settings.items()])
        result = _run(self._as([
            os.path.join(self.bindir, "pg_ctl"), "-D", data, "-l",
            os.path.join(self.directory, "log"), "-w", "-t", "60", "-o", options, "start"]))
        if result.returncode != 0:
            log = ""
            try:
                with open(os.path.join(self.directory, "log")) as f:
                    log = f.read()[-2000:]
            except OSError:
                pass
            self.stop()
            raise RuntimeError("pg_ctl start failed: " + result.stdout[-1000:] + log)

    def restart(self) -> None:
        """
        Restart the server (C{pg_ctl restart -m fast}: every connection is
        ended, what was committed stays).
        """
        assert self.directory is not None and self.bindir is not None
        data = os.path.join(self.directory, "data")
        # (The log file again: without it the new server would write to,
        # and hold open, the pipe this waits on.)
        result = _run(self._as([os.path.join(self.bindir, "pg_ctl"), "-D", data, "-m", "fast",
                                "-l", os.path.join(self.directory, "log"),
                                "-w", "-t", "60", "restart"]))
        if result.returncode != 0:
            raise RuntimeError("pg_ctl restart failed: " + result.stdout[-1000:])

    def stop(self) -> None:
        """
        Stop the cluster and remove its directory.
        """
        if self._stopped or self.directory is None:
            return
        self._stopped = True
        data = os.path.join(self.directory, "data")
        if self.bindir is not None and os.path.exists(os.path.join(data, "postmaster.pid")):
            _run(self._as([os.path.join(self.bindir, "pg_ctl"), "-D", data, "-m", "immediate",
                           "-w", "stop"]))
        shutil.rmtree(self.directory, ignore_errors=True)

    def conninfo(self, user: str = ADMIN, database: str = "postgres") -> str:
        """
        The libpq connection string of the cluster.
        """
        return "host=%s user=%s dbname=%s" % (self.directory, user, database)

    def execute(self, sql: str, params: Any = None, user: str = ADMIN) -> List[Any]:
        """
        Run one statement in its own transaction, blocking; return its rows.
        """
        import psycopg

        with psycopg.connect(self.conninfo(user), autocommit=True) as connection:
            cursor = connection.execute(sql, params)
            return cursor.fetchall() if cursor.description is not None else []


#: Running clusters, by test class.
_clusters: Dict[type, PostgresCluster] = {}
#: Tests of each class that have run.
_ran: Dict[type, int] = {}


def _stopAll() -> None:
    for cluster in list(_clusters.values()):
        cluster.stop()
    _clusters.clear()


atexit.register(_stopAll)


def clusterFor(testClass: type) -> PostgresCluster:
    """
    The running cluster of C{testClass}, started if need be.
    """
    cluster = _clusters.get(testClass)
    if cluster is None:
        cluster = PostgresCluster()
        cluster.start()
        _clusters[testClass] = cluster
    return cluster


def stopClusterOf(testClass: type) -> None:
    """
    Stop the cluster of C{testClass}, if it runs.
    """
    cluster = _clusters.pop(testClass, None)
    _ran.pop(testClass, None)
    if cluster is not None:
        cluster.stop()


_schemas = itertools.count(1)


class PostgresTestMixin:
    """
    Mixed into a trial C{TestCase}: a real PostgreSQL, C{self.cluster}, and
    a schema name of its own, C{self.schema}, for each test.
    """

    cluster: PostgresCluster

    @classmethod
    def setUpClass(cls) -> None:
        try:
            clusterFor(cls)
        except SkipTest:
            pass

    @classmethod
    def tearDownClass(cls) -> None:
        stopClusterOf(cls)

    def setUp(self) -> Any:
        cls = type(self)
        self.cluster = clusterFor(cls)
        self.schema = "t%d_%d" % (os.getpid() % 100000, next(_schemas))
        self.addCleanup(self._countRun)

    def _countRun(self) -> None:
        cls = type(self)
        _ran[cls] = _ran.get(cls, 0) + 1
        total = len([n for n in dir(cls) if n.startswith("test") and callable(getattr(cls, n))])
        if _ran[cls] >= total:
            stopClusterOf(cls)

    def database(self, asyncio: bool = False, **kw: Any) -> Any:
        """
        A threaded database on the cluster, closed after the test.
        """
        from mailclient._relaying.pgdb import ThreadedDatabase

        database = ThreadedDatabase(self.cluster.conninfo(), **kw)
        self.addCleanup(database.close)
        return database

    @defer.inlineCallbacks
    def createQueueSchema(self, database: Any) -> Any:
        """
        Create the queue's tables in C{self.schema}.
        """
        from mailclient._relaying.pgschema import createSchema

        version = yield createSchema(database, self.schema)
        return version
