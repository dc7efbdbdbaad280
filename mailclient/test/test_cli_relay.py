"""
Tests for C{mailclient relay} (L{mailclient._commands.relay}): a relay
worker on a queue directory or a PostgreSQL queue, run as a subprocess
(C{python -m mailclient relay}) against the test SMTP server of
L{mailclient.testing} on a loopback port of the test's reactor, stopped
with SIGTERM once the mail has arrived; and its failures to start, in-process
(L{main}, the helpers of L{mailclient.test.helpers_cli}) or in a subprocess:
one line on standard error, the exit code of L{RELAY_EXIT_CODES}, never a
traceback.

No DNS is needed: MX mode is tried on a message to an address literal
(C{user@[127.0.0.1]}), which the relay connects to as it is.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet import defer, error, reactor, task
from twisted.trial import unittest

from mailclient._commands import relay as _relaycmd
from mailclient._commands.common import (
    EX_CONFIG,
    EX_NOINPUT,
    EX_OK,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    EX_USAGE,
    RELAY_EXIT_CODES,
)
from mailclient._commands.inputs import PASSWORD_ENV
from mailclient._commands.main import _parser
from mailclient._commands.queuestore import QUEUE_ENV
from mailclient._relaying.pgqueue import PGQueue
from mailclient._wire.queuestate import RETRY_SUFFIX, decodeRetryState
from mailclient.relaymanager import Queue
from mailclient.test.helpers_cli import CLITestMixin, docsTables
from mailclient.test.helpers_pg import ADMIN, PostgresTestMixin
from mailclient.test.helpers_relay import (
    BINARY_BODY,
    _ChildProcess,
    pythonEnv,
    queueFiles,
    wire,
)
from mailclient.testing import GREETING, NoReply, SMTPTestServer

SENDER = "alice@example.com"
PREFIX = "mailclient relay: "

#: A delivery report: message, destination, outcome.
REPORT = re.compile(r"^mailclient relay: (\S+) to (.+?): (delivered|deferred|bounced)\b")


def message(n: int) -> bytes:
    return b"From: alice@example.com\nSubject: message %d\n\nBody %d.\n.leading dot\n" % (n, n)


def queueURI(cluster: Any) -> str:
    """
    The C{--queue} URI of the test cluster (its Unix socket directory).
    """
    return "postgresql://%s@/postgres?host=%s" % (ADMIN, cluster.directory)


def reports(err: str) -> List[Tuple[str, str, str]]:
    """
    The delivery reports among the relay's lines: C{(message, destination,
    outcome)}.
    """
    return [m.groups() for m in map(REPORT.match, err.splitlines()) if m]  # type: ignore[misc]


def commandEnv() -> Dict[str, str]:
    env = pythonEnv()
    for name in (PASSWORD_ENV, QUEUE_ENV):
        env.pop(name, None)
    return env


def runCommand(*argv: str) -> Tuple[int, str, str]:
    """
    Run C{python -m mailclient ARGV} to its end (for failures to start).
    """
    result = subprocess.run([sys.executable, "-m", "mailclient"] + list(argv),
                            capture_output=True, env=commandEnv(), timeout=120)
    return (result.returncode, result.stdout.decode("utf-8", "replace"),
            result.stderr.decode("utf-8", "replace"))


class _RelayTestCase(CLITestMixin, unittest.TestCase):
    """
    Run C{mailclient relay} in a subprocess while the test's reactor runs
    the SMTP server.
    """

    def setUp(self) -> Any:
        CLITestMixin.setUp(self)
        self.setEnv(QUEUE_ENV, None)
        self.directory = os.path.join(self.tmp, "queue")

    def enqueue(self, recipient: str, data: bytes) -> str:
        """
        Queue a message in the queue directory, as a relay does.
        """
        os.makedirs(self.directory, 0o700, exist_ok=True)
        return Queue(self.directory).enqueue(SENDER, recipient, data)

    def spawnRelay(self, *argv: str, env: Optional[Dict[str, str]] = None) -> _ChildProcess:
        """
        Start C{mailclient relay ARGV} (with C{env} added to its
        environment); it is killed after the test if it still runs.
        """
        child = _ChildProcess()
        transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            child, sys.executable,
            [sys.executable, "-m", "mailclient", "relay", "--identity", "relay.example.com"]
            + list(argv),
            env={**commandEnv(), **(env or {})}, path=self.tmp)
        child.transport = transport  # type: ignore[attr-defined]

        def kill() -> Any:
            if not child.ended.called:
                transport.signalProcess("KILL")
            return child.ended

        self.addCleanup(kill)
        return child

    @defer.inlineCallbacks
    def waitFor(self, condition: Callable[[], bool], what: str, child: _ChildProcess,
                timeout: float = 60) -> Any:
        """
        Wait until C{condition()}; fail if the relay exits first (or after
        C{timeout} seconds, a safety net only).
        """
        for _ in range(int(timeout * 10)):
            if condition():
                return
            if child.ended.called:
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        self.fail("no %s; the relay said:\n%s" % (what, child.err.decode("utf-8", "replace")))

    @defer.inlineCallbacks
    def stopRelay(self, child: _ChildProcess) -> Any:
        """
        Send SIGTERM and wait for the relay to exit; return its exit code
        and standard error, after checking that every line of it is one of
        the relay's and none is a traceback.
        """
        child.transport.signalProcess(signal.SIGTERM)  # type: ignore[attr-defined]
        reason = yield child.ended
        err = child.err.decode("utf-8", "replace")
        self.assertNotIn("Traceback", err)
        for line in err.splitlines():
            self.assertTrue(line.startswith(PREFIX), err)
        self.assertEqual(child.out, b"")
        return reason.exitCode, err

    def assertRelayed(self, err: str, names: List[str], outcome: str = "delivered") -> None:
        """
        C{err} reports each message of C{names} once, with C{outcome}, and
        nothing else; no error was printed; the last line sums them up.
        """
        got = reports(err)
        self.assertEqual(sorted(name for name, _, _ in got), sorted(names), err)
        self.assertEqual({o for _, _, o in got}, {outcome}, err)
        self.assertNotIn(PREFIX + "error:", err)
        counts = {o: len([r for r in got if r[2] == o])
                  for o in ("delivered", "deferred", "bounced")}
        self.assertEqual(err.splitlines()[-1], PREFIX + "stopped: %d delivered, %d deferred, "
                         "%d returned to their senders" % (counts["delivered"],
                                                           counts["deferred"],
                                                           counts["bounced"]))

    def assertServerGot(self, server: SMTPTestServer, sent: Dict[str, bytes]) -> None:
        """
        The server received each message of C{sent} (recipient: data) once,
        as it was queued.
        """
        received = sorted((m.rcptTo, m.mailFrom, m.data) for m in server.messages)
        expected = sorted(([r.encode()], SENDER.encode(), wire(d)) for r, d in sent.items())
        self.assertEqual(received, expected)


class DirectoryRelayTests(_RelayTestCase):
    """
    C{mailclient relay --queue DIR}.
    """

    @defer.inlineCallbacks
    def test_smartHost(self) -> Any:
        """
        The relay delivers every queued message through the smart host,
        reports each on one line, empties the queue and, on SIGTERM, exits
        with 0 and lets the directory go.
        """
        server = self.startServer()
        sent = {"bob@example.org": message(1), "carol@example.net": message(2),
                "dave@example.com": BINARY_BODY}
        names = [self.enqueue(r, d) for r, d in sent.items()]
        child = self.spawnRelay("--queue", self.directory,
                                "--smart-host", "127.0.0.1:%d" % (server.portNumber,))
        yield self.waitFor(lambda: len(server.messages) == len(sent), "delivery", child)
        code, err = yield self.stopRelay(child)
        self.assertEqual(code, EX_OK, err)
        self.assertServerGot(server, sent)
        self.assertRelayed(err, names)
        self.assertIn("relaying the queue %s through 127.0.0.1:%d"
                      % (self.directory, server.portNumber), err.splitlines()[0])
        self.assertEqual(queueFiles(self.directory), [])
        self.assertEqual([n for n in os.listdir(self.directory) if n.endswith(RETRY_SUFFIX)],
                         [])
        # The directory is free for the next relay (or queue list).
        code, out, listed = runCommand("queue", "list", "--queue", self.directory)
        self.assertEqual((code, listed), (EX_OK, ""))
        self.assertNotIn("a relay is running", out)

    @defer.inlineCallbacks
    def test_stopTimeout(self) -> Any:
        """
        Stopped while a message is being sent, the relay waits for it at
        most C{--stop-timeout}, then closes the connection: the message is
        reported deferred, before the last line, and stays queued with its
        failure counted.
        """
        server = self.startServer()
        server.script(GREETING, NoReply())
        name = self.enqueue("bob@example.org", message(1))
        child = self.spawnRelay("--queue", self.directory, "--stop-timeout", "1",
                                "--smart-host", "127.0.0.1:%d" % (server.portNumber,))
        yield self.waitFor(lambda: bool(server.sessions), "connection", child)
        code, err = yield self.stopRelay(child)
        self.assertEqual(code, EX_OK, err)
        self.assertRelayed(err, [name], "deferred")
        self.assertIn("stop timeout: closing 1 connection", err)
        self.assertEqual(queueFiles(self.directory), [name + "-D", name + "-H"])
        with open(os.path.join(self.directory, name + RETRY_SUFFIX), "rb") as f:
            self.assertEqual(decodeRetryState(f.read()).failures, 1)

    @defer.inlineCallbacks
    def test_refusesPrivateExchange(self) -> Any:
        """
        To mail exchanges, the relay refuses a loopback address by default:
        the message is deferred without any connection, and stays queued.
        """
        name = self.enqueue("bob@[127.0.0.1]", message(1))
        child = self.spawnRelay("--queue", self.directory)
        yield self.waitFor(lambda: any(r[0] == name for r in reports(child.err.decode())),
                           "report", child)
        code, err = yield self.stopRelay(child)
        self.assertEqual(code, EX_OK, err)
        self.assertRelayed(err, [name], "deferred")
        self.assertIn("private addresses refused", err.splitlines()[0])
        self.assertIn("127.0.0.1 (127.0.0.1): not a global address", err)
        self.assertEqual(queueFiles(self.directory), [name + "-D", name + "-H"])

    @defer.inlineCallbacks
    def test_allowPrivateAddresses(self) -> Any:
        """
        With C{--allow-private-addresses} the relay connects to a loopback
        exchange (on port 25, so only where the test may listen there).
        """
        server = SMTPTestServer()
        try:
            server.listenTCP(reactor, interface="127.0.0.1", port=25)
        except error.CannotListenError as e:
            raise unittest.SkipTest("cannot listen on 127.0.0.1:25: %s" % (e,))
        self.addCleanup(server.stopListening)
        name = self.enqueue("bob@[127.0.0.1]", message(1))
        child = self.spawnRelay("--queue", self.directory, "--allow-private-addresses")
        yield self.waitFor(lambda: bool(server.messages), "delivery", child)
        code, err = yield self.stopRelay(child)
        self.assertEqual(code, EX_OK, err)
        self.assertServerGot(server, {"bob@[127.0.0.1]": message(1)})
        self.assertRelayed(err, [name])
        self.assertEqual(queueFiles(self.directory), [])


class PostgresRelayTests(PostgresTestMixin, _RelayTestCase):
    """
    C{mailclient relay --queue postgresql://...}, on a schema of its own in
    the test cluster.
    """

    @defer.inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        PostgresTestMixin.setUp(self)
        _RelayTestCase.setUp(self)
        self.db = self.database()
        yield self.createQueueSchema(self.db)
        self.uri = queueURI(self.cluster)

    def sql(self, statement: str, params: Any = None) -> List[Any]:
        return self.cluster.execute(statement.format(s=self.schema), params)

    @defer.inlineCallbacks
    def enqueueAll(self, sent: Dict[str, bytes]) -> Any:
        queue = PGQueue(self.db, self.mktemp(), schema=self.schema, listen=False)
        names = []
        for recipient, data in sent.items():
            names.append((yield queue.enqueueMessage(SENDER, recipient, data)))
        return names

    def spawnWorker(self, server: SMTPTestServer, *argv: str,
                    env: Optional[Dict[str, str]] = None) -> _ChildProcess:
        return self.spawnRelay("--queue", self.uri, "--schema", self.schema,
                               "--smart-host", "127.0.0.1:%d" % (server.portNumber,),
                               *argv, env=env)

    async def test_scratchInMemory(self) -> None:
        """
        Without C{--scratch}, a worker makes its scratch directory in the
        user's runtime directory (in memory), private, and removes it when
        it stops.
        """
        server = self.startServer()
        runtime = os.path.join(self.tmp, "run")
        os.mkdir(runtime, 0o700)
        names = await self.enqueueAll({"bob@example.org": message(1)})
        child = self.spawnWorker(server, env={"XDG_RUNTIME_DIR": runtime})
        await self.waitFor(lambda: len(server.messages) == 1, "delivery", child)
        [made] = os.listdir(runtime)
        self.assertTrue(made.startswith("mailclient-relay-"), made)
        self.assertEqual(os.stat(os.path.join(runtime, made)).st_mode & 0o777, 0o700)
        code, err = await self.stopRelay(child)
        self.assertEqual(code, EX_OK, err)
        self.assertRelayed(err, names)
        self.assertEqual(os.listdir(runtime), [])

    @defer.inlineCallbacks
    def test_smartHost(self) -> Any:
        """
        A worker delivers every queued message through the smart host,
        reports each on one line and, on SIGTERM, exits with 0 leaving an
        empty queue and no connection slot taken.
        """
        server = self.startServer()
        sent = {"bob@example.org": message(1), "carol@example.net": message(2),
                "dave@example.com": BINARY_BODY}
        names = yield self.enqueueAll(sent)
        scratch = os.path.join(self.tmp, "scratch")
        child = self.spawnWorker(server, "--scratch", scratch, "--worker", "w1")
        yield self.waitFor(lambda: len(server.messages) == len(sent), "delivery", child)
        code, err = yield self.stopRelay(child)
        self.assertEqual(code, EX_OK, err)
        self.assertServerGot(server, sent)
        self.assertRelayed(err, names)
        self.assertIn("schema %s" % (self.schema,), err.splitlines()[0])
        self.assertEqual(self.sql("SELECT id FROM {s}.messages"), [])
        self.assertEqual(self.sql("SELECT token FROM {s}.slots"), [])
        # Emptied: only its lock file is left.
        self.assertEqual([n for n in os.listdir(scratch) if not n.startswith(".")], [])

    @defer.inlineCallbacks
    def test_stopTimeout(self) -> Any:
        """
        Stopped while a message is being sent, the worker waits for it at
        most C{--stop-timeout}, then closes the connection while the
        database is still open: the message is deferred (its failure
        counted, its lease and connection slot given back), not left to a
        closed database (which printed errors after the last line).
        """
        server = self.startServer()
        server.script(GREETING, NoReply())
        [name] = yield self.enqueueAll({"bob@example.org": message(1)})
        child = self.spawnWorker(server, "--stop-timeout", "1")
        yield self.waitFor(lambda: bool(server.sessions), "connection", child)
        code, err = yield self.stopRelay(child)
        self.assertEqual(code, EX_OK, err)
        self.assertRelayed(err, [name], "deferred")
        self.assertNotIn("database was closed", err)
        self.assertEqual(self.sql("SELECT id, failures, lease_until > clock_timestamp()"
                                  " FROM {s}.messages"), [(name, 1, None)])
        self.assertEqual(self.sql("SELECT token FROM {s}.slots"), [])

    def test_schemaMissing(self) -> None:
        code, out, err = runCommand("relay", "--queue", self.uri, "--schema", "nothere",
                                    "--smart-host", "127.0.0.1:25")
        self.assertEqual(code, EX_CONFIG, err)
        self.assertEqual(out, "")
        self.assertOneLine(err, "nothere", "mailclient queue init")

    def test_schemaOutdated(self) -> None:
        self.sql("ALTER TABLE {s}.messages DROP COLUMN options")
        self.sql("UPDATE {s}.schema_version SET version = 1")
        code, out, err = runCommand("relay", "--queue", self.uri, "--schema", self.schema,
                                    "--smart-host", "127.0.0.1:25")
        self.assertEqual(code, EX_CONFIG, err)
        self.assertOneLine(err, "version 1", "mailclient queue upgrade")

    def test_unreachable(self) -> None:
        """
        A database that cannot be reached fails the start with 69, in one
        line; the scratch directory made for it is removed (it is made in
        the user's runtime directory, in memory, when there is one; else
        in /dev/shm or the temporary directory).
        """
        nowhere = os.path.join(self.tmp, "nowhere")
        os.mkdir(nowhere)
        env = commandEnv()
        env["TMPDIR"] = os.path.join(self.tmp, "tmp")
        os.mkdir(env["TMPDIR"])
        env["XDG_RUNTIME_DIR"] = os.path.join(self.tmp, "run")
        os.mkdir(env["XDG_RUNTIME_DIR"], 0o700)
        result = subprocess.run(
            [sys.executable, "-m", "mailclient", "relay", "--queue",
             "postgresql://%s@/postgres?host=%s" % (ADMIN, nowhere),
             "--smart-host", "127.0.0.1:25"],
            capture_output=True, env=env, timeout=120)
        err = result.stderr.decode("utf-8", "replace")
        self.assertEqual(result.returncode, EX_UNAVAILABLE, err)
        self.assertEqual(result.stdout, b"")
        self.assertOneLine(err, "cannot connect to the relay queue database")
        self.assertEqual(os.listdir(env["TMPDIR"]), [])
        self.assertEqual(os.listdir(env["XDG_RUNTIME_DIR"]), [])


class OptionTests(_RelayTestCase):
    """
    Mistakes found before the reactor starts: in-process, one line and the
    exit code; the relay never runs.
    """

    def setUp(self) -> Any:
        _RelayTestCase.setUp(self)

        def noRelay(*a: Any, **kw: Any) -> int:
            self.fail("the relay was started")

        self.patch(_relaycmd, "runRelay", noRelay)

    def relay(self, *argv: str) -> Tuple[int, str, str]:
        return self.runMain("relay", *argv)

    def assertFails(self, argv: List[str], code: int, *expected: str) -> str:
        got, out, err = self.relay(*argv)
        self.assertEqual(got, code, err)
        self.assertEqual(out, "")
        self.assertOneLine(err, *expected)
        return err

    def test_noDirectory(self) -> None:
        self.assertFails(["--queue", self.directory], EX_NOINPUT, self.directory,
                         "mailclient queue init")
        self.assertFalse(os.path.exists(self.directory))

    def test_noQueue(self) -> None:
        self.assertFails([], EX_USAGE, "--queue", QUEUE_ENV)

    def test_passwordInURI(self) -> None:
        """
        A database password on the command line is refused before anything
        is opened, and not repeated.
        """
        for uri in ("postgresql://relay:s3cret-Pa55@db.example.com/mail",
                    "postgresql://relay@db.example.com/mail?password=s3cret-Pa55"):
            line = self.assertFails(["--queue", uri], EX_USAGE, "password", "~/.pgpass")
            self.assertNotIn("s3cret-Pa55", line)

    def test_unknownOption(self) -> None:
        code, out, err = self.relay("--queue", self.directory, "--bogus")
        self.assertEqual(code, EX_USAGE, err)
        self.assertTrue(err.startswith("usage: mailclient relay "), err)
        self.assertIn("\nmailclient relay: error: unrecognized arguments: --bogus\n", err)
        self.assertNotIn("Traceback", err)

    def test_conflicts(self) -> None:
        """
        Options that have no use together, or with this kind of queue, are
        refused with 64.
        """
        self.enqueue("bob@example.org", message(1))
        smartHost = ["--smart-host", "smtp.example.com:587"]
        for argv, expected in (
            (smartHost + ["--allow-private-addresses"], "--allow-private-addresses"),
            (["--user", "relay"], "--user has no use without --smart-host"),
            (["--cafile", "ca.pem"], "--cafile has no use without --smart-host"),
            (["--scratch", self.tmp], "--scratch has no use with a queue directory"),
            (["--worker", "w1"], "--worker has no use with a queue directory"),
            (smartHost + ["--no-esmtp", "--tls-level", "verify"], "--no-esmtp"),
            (smartHost + ["--user", "relay", "--tls-level", "may"], "--tls-level verify"),
            (["--max-connections", "0"], "--max-connections"),
            (["--stop-timeout", "soon"], "--stop-timeout"),
            (["--identity", "not a name"], "--identity"),
        ):
            self.assertFails(["--queue", self.directory] + argv, EX_USAGE, expected)

    def test_leaseWithDirectory(self) -> None:
        """
        C{--lease} is refused with a queue directory, whatever its value
        (C{--lease 60}, the default's value, used to be accepted).
        """
        self.enqueue("bob@example.org", message(1))
        for value in ("60", "61"):
            self.assertFails(["--queue", self.directory, "--lease", value], EX_USAGE,
                             "--lease has no use with a queue directory")

    def test_smartHostSyntax(self) -> None:
        """
        A C{--smart-host} that is not C{HOST[:PORT]} is refused with a hint
        about C{--smart-host}'s own syntax (not send's C{--port}).
        """
        self.enqueue("bob@example.org", message(1))
        line = self.assertFails(["--queue", self.directory, "--smart-host", "a:b:c"],
                                EX_USAGE, "'a:b:c'", "[2001:db8::1]:25")
        self.assertNotIn("--port", line)
        self.assertFails(["--queue", self.directory, "--smart-host", "smtp.example.com:0"],
                         EX_USAGE, "port")

    def test_userWithoutPassword(self) -> None:
        self.enqueue("bob@example.org", message(1))
        self.assertFails(["--queue", self.directory, "--smart-host", "127.0.0.1:587",
                          "--user", "relay"], EX_USAGE, PASSWORD_ENV)

    def test_directoryBusy(self) -> None:
        """
        One relay per queue directory: another one holding it makes the
        start fail with 75.
        """
        self.enqueue("bob@example.org", message(1))
        other = Queue(self.directory)
        other.acquireRelayLock()
        self.addCleanup(other.releaseRelayLock)
        self.assertFails(["--queue", self.directory, "--smart-host", "127.0.0.1:25"],
                         EX_TEMPFAIL, "another relaying manager")

    def prepared(self, *argv: str) -> Any:
        relay = _relaycmd.prepareRelay(_parser().parse_args(["relay"] + list(argv)),
                                       io.StringIO())

        def cleanUp() -> None:
            for cleanup in relay.cleanups:
                cleanup()

        self.addCleanup(cleanUp)
        return relay

    def test_refusePrivateAddresses(self) -> None:
        """
        The relaying manager refuses private addresses of mail exchanges
        unless C{--allow-private-addresses}; the directory is locked until
        the relay's clean-ups run.
        """
        os.makedirs(self.directory)
        relay = self.prepared("--queue", self.directory)
        self.assertIs(relay.manager.refusePrivateAddresses, True)
        self.assertIsNone(relay.manager.smartHost)
        for cleanup in relay.cleanups:
            cleanup()
        relay = self.prepared("--queue", self.directory, "--allow-private-addresses")
        self.assertIs(relay.manager.refusePrivateAddresses, False)


class HelpTests(CLITestMixin, unittest.TestCase):
    """
    C{mailclient relay --help} and C{docs/cli.rst} list the exit codes the
    command uses.
    """

    def test_help(self) -> None:
        code, out, err = self.runMain("relay", "--help")
        self.assertEqual(code, EX_OK, err)
        self.assertIn("examples:", out)
        listed = [int(n) for n in re.findall(r"^  (\d+) ", out.split("exit codes:")[1],
                                               re.MULTILINE)]
        self.assertEqual(listed, [c for c, _ in RELAY_EXIT_CODES])

    def test_docsTable(self) -> None:
        tables = docsTables()
        self.assertEqual(tables.get("mailclient relay"), [c for c, _ in RELAY_EXIT_CODES])
