"""
Tests for C{mailclient queue} (L{mailclient._commands.queue} and
L{mailclient._commands.queuestore}): C{init}, C{upgrade}, C{list}, C{show},
C{flush}, C{delete} and C{requeue} on a queue directory and on a PostgreSQL
queue, and their failures: one line on standard error, the exit code of
L{QUEUE_EXIT_CODES}, never a traceback.

The commands run in-process through L{main} (the helpers of
L{mailclient.test.helpers_cli}), with a few in a subprocess.  Directory
queues are filled the way a relay fills them, in Twisted's C{-H}/C{-D}
format (L{mailclient.relaymanager.Queue}); PostgreSQL queues live in the
real throw-away cluster of L{mailclient.test.helpers_pg}, filled and
claimed by L{PGQueue}, the relay's own queue.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import stat
import subprocess
import sys
import time
from typing import Any, Dict, List, Tuple

from twisted.internet import defer
from twisted.trial import unittest

from mailclient._commands import queue as _queuecmd
from mailclient._commands.common import (
    EX_CANTCREAT,
    EX_CONFIG,
    EX_DATAERR,
    EX_NOINPUT,
    EX_NOPERM,
    EX_OK,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    EX_USAGE,
    QUEUE_EXIT_CODES,
)
from mailclient._commands.queuestore import QUEUE_ENV
from mailclient._relaying.pgqueue import PGQueue
from mailclient._relaying.pgschema import SCHEMA_VERSION
from mailclient._wire.queuestate import RETRY_SUFFIX, decodeRetryState
from mailclient.relaymanager import Queue
from mailclient.test.helpers_cli import CLITestMixin, docsTables
from mailclient.test.helpers_pg import ADMIN, PostgresTestMixin
from mailclient.test.helpers_relay import BINARY_BODY, pythonEnv, queueFiles

SENDER = "alice@example.com"

HEADER = b"From: Alice <alice@example.com>\nTo: bob@example.org\nSubject: queued\n"
BODY = b"The body, which list never reads.\n"
MESSAGE = HEADER + b"\n" + BODY


def queueURI(cluster: Any, user: str = ADMIN) -> str:
    """
    The C{--queue} URI of the test cluster: its Unix socket directory in
    the C{host} parameter (the cluster listens on no TCP port).
    """
    return "postgresql://%s@/postgres?host=%s" % (user, cluster.directory)


def summaryOf(out: str) -> str:
    """
    The last line of C{queue list}'s text output.
    """
    return out.splitlines()[-1]


def summaryLine(waiting: int, due: int, leased: int, quarantined: int) -> str:
    """
    What C{queue list}'s summary says of these counts.
    """
    total = waiting + leased + quarantined
    return "%d message%s: %d waiting (%d due now), %d leased, %d quarantined" % (
        total, "" if total == 1 else "s", waiting, due, leased, quarantined)


def listed(out: str) -> List[List[str]]:
    """
    The message lines of C{queue list}: their columns (id, queued, sender,
    recipient, failures, next attempt, state).
    """
    return [line.split("  ") for line in out.splitlines()[:-1]]


def runCommand(*argv: str) -> Tuple[int, str, str]:
    """
    Run C{python -m mailclient ARGV} in a subprocess; return C{(code, out,
    err)}.
    """
    env = pythonEnv()
    env.pop(QUEUE_ENV, None)
    result = subprocess.run([sys.executable, "-m", "mailclient"] + list(argv),
                            capture_output=True, env=env, timeout=120)
    return (result.returncode, result.stdout.decode("utf-8", "replace"),
            result.stderr.decode("utf-8", "replace"))


class _QueueCommandTestCase(CLITestMixin, unittest.TestCase):
    """
    Run C{mailclient queue ACTION} in-process; no reactor is ever started.
    """

    def setUp(self) -> None:
        CLITestMixin.setUp(self)
        self.setEnv(QUEUE_ENV, None)

    def queueArgs(self) -> List[str]:
        raise NotImplementedError()

    def queue(self, action: str, *argv: str) -> Tuple[int, str, str]:
        """
        Run C{mailclient queue ACTION} on this test's queue.
        """
        return self.runMain("queue", action, *(self.queueArgs() + list(argv)))

    def assertDone(self, result: Tuple[int, str, str]) -> str:
        """
        The command succeeded, printing nothing on standard error; return
        its output.
        """
        code, out, err = result
        self.assertEqual((code, err), (EX_OK, ""), out)
        return out

    def assertFails(self, result: Tuple[int, str, str], code: int, *expected: str) -> str:
        """
        The command failed with C{code}, printing nothing on standard output
        and one line on standard error; return the line.
        """
        got, out, err = result
        self.assertEqual(got, code, err)
        self.assertEqual(out, "")
        self.assertOneLine(err, *expected)
        return err

    def assertUsageError(self, result: Tuple[int, str, str], command: str) -> None:
        """
        An option mistake: exit code 64, the usage of C{command} and one
        error line, no traceback.
        """
        code, out, err = result
        self.assertEqual(code, EX_USAGE, err)
        self.assertEqual(out, "")
        self.assertTrue(err.startswith("usage: %s " % (command,)), err)
        self.assertEqual(len(re.findall(r"^%s: error: " % (command,), err, re.MULTILINE)), 1,
                         err)
        self.assertNotIn("Traceback", err)


class DirectoryQueueTests(_QueueCommandTestCase):
    """
    C{mailclient queue} on a queue directory.
    """

    def setUp(self) -> None:
        _QueueCommandTestCase.setUp(self)
        self.directory = os.path.join(self.tmp, "queue")

    def queueArgs(self) -> List[str]:
        return ["--queue", self.directory]

    def makeQueue(self) -> Queue:
        os.makedirs(self.directory, 0o700, exist_ok=True)
        return Queue(self.directory)

    def enqueue(self, recipient: str, data: bytes = MESSAGE, sender: str = SENDER) -> str:
        """
        Queue a message as a relay does; return its id.
        """
        return self.makeQueue().enqueue(sender, recipient, data)

    def defer(self, name: str, delay: float = 3600) -> None:
        """
        Record a temporary failure of C{name}: its next attempt is C{delay}
        seconds away.
        """
        self.makeQueue().recordFailure(name, "451 4.3.0 try again later", lambda n: delay)

    def damage(self, name: str) -> None:
        """
        Make the envelope of C{name} unreadable: a relay quarantines it.
        """
        with open(os.path.join(self.directory, name + "-H"), "wb") as f:
            f.write(b"not a pickle")

    def schedule(self, name: str) -> Any:
        with open(os.path.join(self.directory, name + RETRY_SUFFIX), "rb") as f:
            return decodeRetryState(f.read())

    def test_init(self) -> None:
        """
        C{init} makes the directory, private, and its parents; run again it
        leaves it as it is.  C{upgrade} has nothing to do on a directory.
        """
        self.directory = os.path.join(self.tmp, "spool", "queue")
        out = self.assertDone(self.queue("init"))
        self.assertIn("created the queue directory %s" % (self.directory,), out)
        self.assertTrue(os.path.isdir(self.directory))
        self.assertEqual(stat.S_IMODE(os.stat(self.directory).st_mode), 0o700)
        out = self.assertDone(self.queue("init"))
        self.assertIn("exists already", out)
        self.assertNotIn("chmod", out)
        os.chmod(self.directory, 0o755)
        out = self.assertDone(self.queue("init"))
        self.assertIn("chmod 700 %s" % (self.directory,), out)
        out = self.assertDone(self.queue("upgrade"))
        self.assertIn("nothing to upgrade", out)
        self.assertEqual(os.listdir(self.directory), [])

    def test_initOverAFile(self) -> None:
        """
        C{init} where a file has the directory's name fails with 73.
        """
        self.directory = self.writeFile("queue", b"")
        self.assertFails(self.queue("init"), EX_CANTCREAT, self.directory)

    def test_listEmpty(self) -> None:
        """
        An empty queue lists as no message, in text and in JSON.
        """
        self.makeQueue()
        out = self.assertDone(self.queue("list"))
        self.assertEqual(out, summaryLine(0, 0, 0, 0) + "\n")
        document = json.loads(self.assertDone(self.queue("list", "--json")))
        self.assertEqual(document["messages"], [])
        self.assertEqual(document["summary"], {"messages": 0, "waiting": 0, "due": 0,
                                               "leased": 0, "quarantined": 0})

    def test_list(self) -> None:
        """
        C{list} shows each message, oldest first: its envelope, failures,
        next attempt and state (a message that cannot be read is
        quarantined), then counts; C{--json} the same as JSON; C{--state}
        and C{--domain} filter.  Message bodies are never shown.
        """
        due = self.enqueue("bob@example.org")
        later = self.enqueue("carol@example.net", BINARY_BODY, sender="")
        broken = self.enqueue("dave@example.org")
        self.defer(later)
        self.damage(broken)
        # Oldest first: by the modification time of the -D file.
        for offset, name in enumerate((due, later, broken)):
            os.utime(os.path.join(self.directory, name + "-D"),
                     (time.time() - 100 + offset,) * 2)

        out = self.assertDone(self.queue("list"))
        rows = listed(out)
        self.assertEqual([row[0] for row in rows], [due, later, broken])
        self.assertEqual([row[2:4] for row in rows],
                         [["<alice@example.com>", "<bob@example.org>"],
                          ["<>", "<carol@example.net>"], ["?", "?"]])
        self.assertEqual([row[4] for row in rows], ["0", "1", "0"])
        self.assertEqual([row[6] for row in rows], ["waiting", "waiting", "quarantined"])
        self.assertEqual(rows[0][5], "now")
        self.assertRegex(rows[1][5], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(summaryOf(out), summaryLine(2, 1, 0, 1))
        self.assertNotIn("body", out)

        document = json.loads(self.assertDone(self.queue("list", "--json")))
        messages = {m["id"]: m for m in document["messages"]}
        self.assertEqual([m["id"] for m in document["messages"]], [due, later, broken])
        self.assertEqual((messages[due]["recipient"], messages[due]["domain"],
                          messages[due]["due"]), ("bob@example.org", "example.org", True))
        self.assertEqual((messages[later]["sender"], messages[later]["failures"],
                          messages[later]["due"], messages[later]["lastReason"]),
                         ("", 1, False, "451 4.3.0 try again later"))
        self.assertEqual(messages[later]["size"], len(BINARY_BODY))
        self.assertEqual(messages[broken]["state"], "quarantined")
        self.assertIn("envelope", messages[broken]["problem"])
        self.assertEqual(document["summary"], {"messages": 3, "waiting": 2, "due": 1,
                                               "leased": 0, "quarantined": 1})

        out = self.assertDone(self.queue("list", "--state", "quarantined"))
        self.assertEqual([row[0] for row in listed(out)], [broken])
        out = self.assertDone(self.queue("list", "--domain", "EXAMPLE.net"))
        self.assertEqual([row[0] for row in listed(out)], [later])
        self.assertEqual(summaryOf(out), summaryLine(1, 0, 0, 0))

    def test_listTwistedFiles(self) -> None:
        """
        A message written by Twisted's own queue (an envelope pickled with
        protocol 0, no schedule) is listed as any other.
        """
        self.makeQueue()
        base = os.path.join(self.directory, "twisted-1")
        with open(base + "-H", "wb") as f:
            pickle.dump(["alice@example.com", "erin@example.org"], f, protocol=0)
        with open(base + "-D", "wb") as f:
            f.write(MESSAGE)
        out = self.assertDone(self.queue("list"))
        [row] = listed(out)
        self.assertEqual(row[0:4], ["twisted-1", row[1], "<alice@example.com>",
                                    "<erin@example.org>"])
        self.assertEqual(row[6], "waiting")

    def test_show(self) -> None:
        """
        C{show} prints a message's envelope and schedule, then its header;
        C{--body} the whole message; C{--json} the details and the header.
        """
        name = self.enqueue("bob@example.org")
        self.defer(name)
        out = self.assertDone(self.queue("show", name))
        details, _, shown = out.partition("\n\n")
        fields = dict(line.split(": ", 1) for line in details.splitlines())
        self.assertEqual((fields["id"], fields["state"], fields["from"], fields["to"],
                          fields["failures"]),
                         (name, "waiting", "<alice@example.com>", "<bob@example.org>", "1"))
        self.assertIn("451 4.3.0 try again later", fields["last failure"])
        self.assertEqual(fields["size"], "%d bytes" % (len(MESSAGE),))
        self.assertEqual(shown, HEADER.decode())
        out = self.assertDone(self.queue("show", name, "--body"))
        self.assertTrue(out.endswith("\n\n" + MESSAGE.decode()), out)
        document = json.loads(self.assertDone(self.queue("show", name, "--json")))
        self.assertEqual((document["id"], document["header"], document["failures"]),
                         (name, HEADER.decode(), 1))
        self.assertFails(self.queue("show", name, "--json", "--body"), EX_USAGE,
                         "--body and --json")

    def test_showWithoutHeaderEnd(self) -> None:
        """
        A message with no empty line is shown whole, and the output still
        ends with a line ending (it used to end within the line).
        """
        name = self.enqueue("bob@example.org", b"no header end")
        out = self.assertDone(self.queue("show", name))
        self.assertTrue(out.endswith("\n\nno header end\n"), out)

    def test_showUnknown(self) -> None:
        """
        An id that names no message fails with 66; one that is not a name
        (a path) with 64.
        """
        self.enqueue("bob@example.org")
        self.assertFails(self.queue("show", "nosuchid"), EX_NOINPUT, "nosuchid")
        self.assertFails(self.queue("show", "../queue"), EX_USAGE, "not a message id")

    def test_flush(self) -> None:
        """
        C{flush} makes the messages waiting for a later attempt due now,
        keeping their failures; the others are left alone.
        """
        due = self.enqueue("bob@example.org")
        later = self.enqueue("carol@example.net")
        self.defer(later)
        before = os.listdir(self.directory)
        out = self.assertDone(self.queue("flush"))
        self.assertEqual(out, "made 1 message due now\n")
        state = self.schedule(later)
        self.assertEqual((state.failures, state.nextAttempt), (1, None))
        self.assertFalse(os.path.exists(os.path.join(self.directory, due + RETRY_SUFFIX)))
        self.assertEqual(sorted(os.listdir(self.directory)), sorted(before))
        self.assertEqual(summaryOf(self.assertDone(self.queue("list"))),
                         summaryLine(2, 2, 0, 0))
        out = self.assertDone(self.queue("flush"))
        self.assertEqual(out, "no message was waiting for a later attempt\n")

    def test_flushDomain(self) -> None:
        """
        C{flush --domain} makes due only the messages to that domain.
        """
        org = self.enqueue("bob@example.org")
        net = self.enqueue("carol@example.net")
        self.defer(org)
        self.defer(net)
        self.assertDone(self.queue("flush", "--domain", "example.net"))
        self.assertIsNone(self.schedule(net).nextAttempt)
        self.assertIsNotNone(self.schedule(org).nextAttempt)

    def test_delete(self) -> None:
        """
        C{delete ID} removes the message and its side files; an unknown id
        among those given deletes nothing.
        """
        gone = self.enqueue("bob@example.org")
        kept = self.enqueue("carol@example.net")
        self.defer(gone)
        self.assertFails(self.queue("delete", gone, "nosuchid"), EX_NOINPUT, "nosuchid",
                         "nothing was changed")
        self.assertEqual(len(queueFiles(self.directory)), 4)
        out = self.assertDone(self.queue("delete", gone))
        self.assertEqual(out, "deleted 1 message\n")
        self.assertEqual(sorted(os.listdir(self.directory)), [kept + "-D", kept + "-H"])

    def test_deleteAll(self) -> None:
        """
        C{delete --all} needs C{--yes}; with it every message goes, the
        quarantined ones too.
        """
        names = [self.enqueue("user%d@example.org" % (i,)) for i in range(3)]
        self.damage(names[2])
        self.assertFails(self.queue("delete", "--all"), EX_USAGE, "--yes")
        self.assertFails(self.queue("delete"), EX_USAGE, "--all --yes")
        self.assertFails(self.queue("delete", "--yes", names[0]), EX_USAGE, "--yes")
        self.assertFails(self.queue("delete", "--all", "--yes", names[0]), EX_USAGE,
                         "not both")
        self.assertEqual(len(queueFiles(self.directory)), 6)
        out = self.assertDone(self.queue("delete", "--all", "--yes"))
        self.assertEqual(out, "deleted 3 messages\n")
        self.assertEqual(os.listdir(self.directory), [])

    def test_requeueQuarantined(self) -> None:
        """
        C{requeue} of a message that still cannot be read fails with 65 and
        changes nothing; once its envelope is repaired the message is
        listed as waiting again.
        """
        name = self.enqueue("bob@example.org")
        self.damage(name)
        self.assertFails(self.queue("requeue", name), EX_DATAERR, name, "nothing was changed")
        with open(os.path.join(self.directory, name + "-H"), "wb") as f:
            pickle.dump([SENDER, "bob@example.org"], f, protocol=2)
        self.assertDone(self.queue("requeue", name))
        [row] = listed(self.assertDone(self.queue("list")))
        self.assertEqual((row[0], row[5], row[6]), (name, "now", "waiting"))

    def test_requeueSays(self) -> None:
        """
        C{requeue} says which messages it made due (a deferred one) and
        which it left as they were; it used to say "left as it is" of
        messages whose schedule it had changed.
        """
        later = self.enqueue("bob@example.org")
        due = self.enqueue("carol@example.net")
        self.defer(later)
        out = self.assertDone(self.queue("requeue", later, due))
        self.assertEqual(out.splitlines(), ["requeued %s: waiting, due now" % (later,),
                                            "%s was not quarantined: left as it is" % (due,)])
        self.assertIsNone(self.schedule(later).nextAttempt)
        self.assertFalse(os.path.exists(os.path.join(self.directory, due + RETRY_SUFFIX)))
        self.assertFails(self.queue("requeue", "nosuchid"), EX_NOINPUT, "nosuchid")

    def test_noDirectory(self) -> None:
        """
        Every action but C{init} on a directory that does not exist fails
        with 66, saying how to create it, and creates nothing.
        """
        for action, argv in (("list", []), ("show", ["x"]), ("flush", []),
                             ("delete", ["x"]), ("requeue", ["x"]), ("upgrade", [])):
            self.assertFails(self.queue(action, *argv), EX_NOINPUT, self.directory,
                             "mailclient queue init")
        self.assertFalse(os.path.exists(self.directory))

    def test_notADirectory(self) -> None:
        self.directory = self.writeFile("queue", b"")
        self.assertFails(self.queue("list"), EX_NOINPUT, "not a directory")

    def test_queueFromEnvironment(self) -> None:
        """
        Without C{--queue}, the queue is C{$MAILCLIENT_QUEUE}; with neither,
        the command fails with 64.
        """
        self.assertFails(self.runMain("queue", "list"), EX_USAGE, "--queue", QUEUE_ENV)
        name = self.enqueue("bob@example.org")
        self.setEnv(QUEUE_ENV, self.directory)
        out = self.assertDone(self.runMain("queue", "list"))
        self.assertEqual([row[0] for row in listed(out)], [name])

    def test_schemaForADirectory(self) -> None:
        self.makeQueue()
        self.assertFails(self.queue("list", "--schema", "mailclient"), EX_USAGE, "--schema")

    def test_unknownOptions(self) -> None:
        """
        An unknown option or action prints the usage of what it was given
        to and exits with 64.
        """
        self.makeQueue()
        self.assertUsageError(self.queue("list", "--bogus"), "mailclient queue list")
        self.assertUsageError(self.queue("delete", "--forse", "x"), "mailclient queue delete")
        self.assertUsageError(self.queue("list", "--state", "sleeping"),
                              "mailclient queue list")
        self.assertUsageError(self.runMain("queue", "purge"), "mailclient queue")
        self.assertUsageError(self.runMain("queue"), "mailclient queue")

    def test_subprocess(self) -> None:
        """
        The whole command in a subprocess: one line and 66 for a directory
        that does not exist; a listing on standard output otherwise.
        """
        code, out, err = runCommand("queue", "list", "--queue", self.directory)
        self.assertEqual(code, EX_NOINPUT, err)
        self.assertEqual(out, "")
        self.assertOneLine(err, self.directory)
        name = self.enqueue("bob@example.org", BINARY_BODY)
        code, out, err = runCommand("queue", "list", "--queue", self.directory)
        self.assertEqual((code, err), (EX_OK, ""))
        self.assertEqual([row[0] for row in listed(out)], [name])
        code, out, err = runCommand("queue", "show", "--body", "--queue", self.directory, name)
        self.assertEqual((code, err), (EX_OK, ""))
        self.assertIn(BINARY_BODY.decode("utf-8", "replace"), out)


class PostgresQueueTests(PostgresTestMixin, _QueueCommandTestCase):
    """
    C{mailclient queue} on a PostgreSQL queue, in a schema of its own in the
    test cluster.
    """

    def setUp(self) -> Any:
        PostgresTestMixin.setUp(self)
        _QueueCommandTestCase.setUp(self)
        self.uri = queueURI(self.cluster)

    def queueArgs(self) -> List[str]:
        return ["--queue", self.uri, "--schema", self.schema]

    def sql(self, statement: str, params: Any = None) -> List[Any]:
        return self.cluster.execute(statement.format(s=self.schema), params)

    @defer.inlineCallbacks
    def fill(self, *recipients: str, data: bytes = MESSAGE) -> Any:
        """
        Create the queue's tables and queue a message to each recipient, as
        a relay does; return their ids.
        """
        database = self.database()
        if (yield self.schemaVersion()) is None:
            yield self.createQueueSchema(database)
        queue = PGQueue(database, self.mktemp(), schema=self.schema, listen=False)
        names = []
        for recipient in recipients:
            names.append((yield queue.enqueueMessage(SENDER, recipient, data)))
        return names

    @defer.inlineCallbacks
    def worker(self) -> Any:
        """
        A started worker of the queue, stopped after the test.
        """
        queue = PGQueue(self.database(), self.mktemp(), schema=self.schema, listen=False)
        queue.noisy = False
        yield queue.start()
        self.addCleanup(queue.stop, 0)
        return queue

    def schemaVersion(self) -> Any:
        from mailclient._relaying.pgschema import schemaVersion

        return schemaVersion(self.database(), self.schema)

    def states(self) -> Dict[str, Tuple[Any, ...]]:
        return {row[0]: row[1:] for row in self.sql(
            "SELECT id, quarantined, lease_until > clock_timestamp(), failures,"
            " next_attempt > clock_timestamp() FROM {s}.messages")}

    @defer.inlineCallbacks
    def test_initAndUpgrade(self) -> Any:
        """
        C{init} creates the versioned tables; run again, it and C{upgrade}
        say there is nothing to do.
        """
        out = self.assertDone(self.queue("init"))
        self.assertIn("created the relay queue schema %s (version %d)"
                      % (self.schema, SCHEMA_VERSION), out)
        self.assertEqual((yield self.schemaVersion()), SCHEMA_VERSION)
        out = self.assertDone(self.queue("init"))
        self.assertIn("exists already at version %d: nothing to do" % (SCHEMA_VERSION,), out)
        out = self.assertDone(self.queue("upgrade"))
        self.assertIn("is at version %d already: nothing to do" % (SCHEMA_VERSION,), out)
        self.assertEqual((yield self.schemaVersion()), SCHEMA_VERSION)
        self.assertEqual(summaryOf(self.assertDone(self.queue("list"))),
                         summaryLine(0, 0, 0, 0))

    @defer.inlineCallbacks
    def test_upgradeFromVersion1(self) -> Any:
        """
        A queue of the first version is refused (78, naming C{upgrade}) by
        every other action until C{upgrade} brings it to the current
        version, its messages kept.
        """
        [name] = yield self.fill("bob@example.org")
        self.sql("ALTER TABLE {s}.messages DROP COLUMN options")
        self.sql("UPDATE {s}.schema_version SET version = 1")
        self.assertFails(self.queue("list"), EX_CONFIG, "version 1",
                         "mailclient queue upgrade")
        self.assertFails(self.queue("init"), EX_CONFIG, "mailclient queue upgrade")
        out = self.assertDone(self.queue("upgrade"))
        self.assertIn("from version 1 to version %d" % (SCHEMA_VERSION,), out)
        self.assertEqual([row[0] for row in listed(self.assertDone(self.queue("list")))],
                         [name])

    def test_schemaMissing(self) -> None:
        """
        Without the queue's tables, every action but C{init} fails with 78,
        naming C{init}.
        """
        for action, argv in (("list", []), ("show", ["x"]), ("flush", []),
                             ("delete", ["--all", "--yes"]), ("requeue", ["x"]),
                             ("upgrade", [])):
            self.assertFails(self.queue(action, *argv), EX_CONFIG, self.schema,
                             "mailclient queue init")

    @defer.inlineCallbacks
    def test_newerSchema(self) -> Any:
        yield self.fill()
        self.sql("UPDATE {s}.schema_version SET version = %s", (SCHEMA_VERSION + 1,))
        self.assertFails(self.queue("list"), EX_CONFIG, "upgrade mailclient")

    @defer.inlineCallbacks
    def test_list(self) -> Any:
        """
        C{list} shows each message, oldest first, with its state: waiting,
        leased by a worker, quarantined; C{--json} the same; C{--state}
        and C{--domain} filter.
        """
        yield self.fill()
        self.assertEqual(summaryOf(self.assertDone(self.queue("list"))),
                         summaryLine(0, 0, 0, 0))
        self.assertEqual(json.loads(self.assertDone(self.queue("list", "--json")))["messages"],
                         [])
        names = yield self.fill("bob@example.org", "carol@example.net", "dave@example.com")
        self.sql("UPDATE {s}.messages SET queued_at = clock_timestamp() - %s * interval "
                 "'1 second' WHERE id = %s", (10, names[0]))
        self.sql("UPDATE {s}.messages SET queued_at = clock_timestamp() - %s * interval "
                 "'1 second' WHERE id = %s", (5, names[1]))
        self.sql("UPDATE {s}.messages SET failures = 2, last_reason = '451 later',"
                 " next_attempt = clock_timestamp() + interval '1 hour' WHERE id = %s",
                 (names[0],))
        self.sql("UPDATE {s}.messages SET quarantined = true WHERE id = %s", (names[2],))
        worker = yield self.worker()
        self.assertEqual((yield worker.claim()), [names[1]])

        out = self.assertDone(self.queue("list"))
        rows = listed(out)
        self.assertEqual([row[0] for row in rows], names)
        self.assertEqual([row[6] for row in rows], ["waiting", "leased", "quarantined"])
        self.assertEqual([row[3] for row in rows],
                         ["<bob@example.org>", "<carol@example.net>", "<dave@example.com>"])
        self.assertEqual(rows[0][4], "2")
        self.assertNotEqual(rows[0][5], "now")
        self.assertEqual(summaryOf(out), summaryLine(1, 0, 1, 1))

        document = json.loads(self.assertDone(self.queue("list", "--json")))
        messages = {m["id"]: m for m in document["messages"]}
        self.assertEqual(messages[names[1]]["worker"], worker.worker)
        self.assertIsNotNone(messages[names[1]]["leaseUntil"])
        self.assertEqual((messages[names[0]]["failures"], messages[names[0]]["due"],
                          messages[names[0]]["lastReason"]), (2, False, "451 later"))
        self.assertEqual(messages[names[2]]["size"], len(MESSAGE))
        self.assertEqual(document["summary"], {"messages": 3, "waiting": 1, "due": 0,
                                               "leased": 1, "quarantined": 1})
        out = self.assertDone(self.queue("list", "--state", "leased"))
        self.assertEqual([row[0] for row in listed(out)], [names[1]])
        out = self.assertDone(self.queue("list", "--domain", "Example.COM"))
        self.assertEqual([row[0] for row in listed(out)], [names[2]])

    @defer.inlineCallbacks
    def test_show(self) -> Any:
        """
        C{show} prints the envelope, schedule and lease, then the header;
        C{--body} the whole message, as it is in the table.
        """
        [name] = yield self.fill("bob@example.org")
        worker = yield self.worker()
        yield worker.claim()
        out = self.assertDone(self.queue("show", name))
        details, _, shown = out.partition("\n\n")
        fields = dict(line.split(": ", 1) for line in details.splitlines())
        self.assertEqual((fields["id"], fields["state"], fields["to"]),
                         (name, "leased", "<bob@example.org>"))
        self.assertTrue(fields["leased by"].startswith(worker.worker + " until "), fields)
        self.assertEqual(shown, HEADER.decode())
        out = self.assertDone(self.queue("show", "--body", name))
        self.assertTrue(out.endswith("\n\n" + MESSAGE.decode()), out)
        document = json.loads(self.assertDone(self.queue("show", "--json", name)))
        self.assertEqual((document["state"], document["header"]), ("leased", HEADER.decode()))
        self.assertFails(self.queue("show", "nosuchid"), EX_NOINPUT, "nosuchid")

    @defer.inlineCallbacks
    def test_flush(self) -> Any:
        """
        C{flush} makes the deferred messages due now and ends the back-off
        of their destinations; quarantined messages stay as they are.
        """
        names = yield self.fill("bob@example.org", "carol@example.net")
        self.sql("UPDATE {s}.messages SET failures = 1,"
                 " next_attempt = clock_timestamp() + interval '1 hour'")
        self.sql("UPDATE {s}.messages SET quarantined = true WHERE id = %s", (names[1],))
        self.sql("INSERT INTO {s}.destinations (destination, not_before)"
                 " VALUES ('example.org', clock_timestamp() + interval '1 hour')")
        out = self.assertDone(self.queue("flush"))
        self.assertEqual(out, "made 1 message due now; ended the back-off of 1 destination\n")
        states = self.states()
        self.assertEqual(states[names[0]], (False, None, 1, False))
        self.assertEqual(states[names[1]], (True, None, 1, True))
        self.assertEqual(self.sql("SELECT not_before FROM {s}.destinations"), [(None,)])
        out = self.assertDone(self.queue("flush"))
        self.assertEqual(out, "no message was waiting for a later attempt\n")

    @defer.inlineCallbacks
    def test_delete(self) -> Any:
        """
        C{delete ID} removes messages; an unknown id among them deletes
        nothing; C{--all} needs C{--yes}.
        """
        names = yield self.fill("bob@example.org", "carol@example.net", "dave@example.org")
        self.assertFails(self.queue("delete", names[0], "nosuchid"), EX_NOINPUT, "nosuchid")
        self.assertFails(self.queue("delete", "--all"), EX_USAGE, "--yes")
        self.assertEqual(len(self.states()), 3)
        self.assertEqual(self.assertDone(self.queue("delete", names[0])),
                         "deleted 1 message\n")
        self.assertEqual(sorted(self.states()), sorted(names[1:]))
        self.assertEqual(self.assertDone(self.queue("delete", "--all", "--yes")),
                         "deleted 2 messages\n")
        self.assertEqual(self.states(), {})

    @defer.inlineCallbacks
    def test_deleteLeased(self) -> Any:
        """
        A message a worker is relaying (its lease runs) is not deleted, by
        id (75, nothing deleted) or with C{--all}, unless C{--force}.
        """
        names = yield self.fill("bob@example.org", "carol@example.net")
        self.sql("UPDATE {s}.messages SET queued_at = clock_timestamp() - interval '1 minute',"
                 " next_attempt = clock_timestamp() - interval '1 minute' WHERE id = %s",
                 (names[0],))
        worker = yield self.worker()
        self.assertEqual((yield worker.claim(limit=1)), [names[0]])
        line = self.assertFails(self.queue("delete", names[0], names[1]), EX_TEMPFAIL,
                                names[0], worker.worker, "--force")
        self.assertIn("nothing was deleted", line)
        self.assertEqual(sorted(self.states()), sorted(names))
        out = self.assertDone(self.queue("delete", "--all", "--yes"))
        self.assertEqual(out, "deleted 1 message; left 1 being relayed (--force deletes "
                              "them too)\n")
        self.assertEqual(list(self.states()), [names[0]])
        self.assertEqual(self.assertDone(self.queue("delete", "--force", names[0])),
                         "deleted 1 message\n")
        self.assertEqual(self.states(), {})

    @defer.inlineCallbacks
    def test_requeue(self) -> Any:
        """
        C{requeue} brings quarantined messages back to waiting, due now;
        it leaves the others as they are; an unknown id changes nothing.
        """
        names = yield self.fill("bob@example.org", "carol@example.net")
        worker = yield self.worker()
        yield worker.claim()
        worker.quarantine(names[0])
        yield worker.flush()
        self.assertEqual(self.states()[names[0]][0], True)
        self.assertFails(self.queue("requeue", names[0], "nosuchid"), EX_NOINPUT, "nosuchid")
        self.assertEqual(self.states()[names[0]][0], True)
        out = self.assertDone(self.queue("requeue", names[0], names[1]))
        self.assertEqual(out.splitlines(), ["requeued %s: waiting, due now" % (names[0],),
                                            "%s was not quarantined: left as it is"
                                            % (names[1],)])
        state = self.states()[names[0]]
        self.assertEqual((state[0], state[3]), (False, False))
        [row] = listed(self.assertDone(self.queue("list", "--state", "waiting")))
        self.assertEqual(row[0], names[0])

    def test_unreachable(self) -> None:
        """
        A database that cannot be reached (no server on the socket) fails
        with 69, in one line.
        """
        nowhere = os.path.join(self.tmp, "nowhere")
        os.mkdir(nowhere)
        self.uri = "postgresql://%s@/postgres?host=%s" % (ADMIN, nowhere)
        for action in ("init", "upgrade", "list", "flush"):
            self.assertFails(self.queue(action), EX_UNAVAILABLE,
                             "cannot connect to the relay queue database")

    def test_unreachableSubprocess(self) -> None:
        nowhere = os.path.join(self.tmp, "nowhere")
        os.mkdir(nowhere)
        code, out, err = runCommand("queue", "list", "--queue",
                                    "postgresql://%s@/postgres?host=%s" % (ADMIN, nowhere))
        self.assertEqual(code, EX_UNAVAILABLE, err)
        self.assertEqual(out, "")
        self.assertOneLine(err, "cannot connect to the relay queue database")

    @defer.inlineCallbacks
    def test_passwordRefused(self) -> Any:
        """
        A password in the URI (others could read it in the process list)
        is refused with 64, before connecting, and not repeated.
        """
        password = "s3cret-Pa55"
        for uri in ("postgresql://%s:%s@/postgres?host=%s"
                    % (ADMIN, password, self.cluster.directory),
                    "postgres://%s@/postgres?host=%s&password=%s"
                    % (ADMIN, self.cluster.directory, password)):
            self.uri = uri
            line = self.assertFails(self.queue("init"), EX_USAGE, "password", "~/.pgpass")
            self.assertNotIn(password, line)
        self.assertIsNone((yield self.schemaVersion()))

    def test_badSchemaName(self) -> None:
        self.assertFails(self.runMain("queue", "init", "--queue", self.uri, "--schema",
                                      "no; drop"), EX_USAGE, "--schema")

    @defer.inlineCallbacks
    def test_permissionDenied(self) -> Any:
        """
        A role without privileges on the queue's tables fails with 77,
        naming the role.
        """
        yield self.fill("bob@example.org")
        role = "reader_" + self.schema
        self.sql("CREATE ROLE %s LOGIN" % (role,))
        self.uri = queueURI(self.cluster, role)
        self.assertFails(self.queue("list"), EX_NOPERM, "permission denied")
        self.sql("GRANT USAGE ON SCHEMA {s} TO %s" % (role,))
        self.sql("GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO %s" % (role,))
        self.assertFails(self.queue("delete", "--all", "--yes"), EX_NOPERM, "permission denied",
                         "messages")
        self.assertEqual(len(self.states()), 1)


class HelpTests(CLITestMixin, unittest.TestCase):
    """
    C{mailclient queue --help} and C{docs/cli.rst} list the exit codes the
    command uses.
    """

    def test_helpHasExamplesAndExitCodes(self) -> None:
        for argv in (["queue"],) + tuple(["queue", a] for a in _queuecmd.ACTIONS):
            out, err = self.help(*argv)
            self.assertIn("examples:", out, argv)
            listed = [int(n) for n in re.findall(r"^  (\d+) ", out.split("exit codes:")[1],
                                                   re.MULTILINE)]
            self.assertEqual(listed, [c for c, _ in QUEUE_EXIT_CODES], argv)

    def help(self, *argv: str) -> Tuple[str, str]:
        code, out, err = self.runMain(*(list(argv) + ["--help"]))
        self.assertEqual(code, EX_OK, err)
        return out, err

    def test_docsTable(self) -> None:
        tables = docsTables()
        self.assertEqual(tables.get("mailclient queue"), [c for c, _ in QUEUE_EXIT_CODES])
