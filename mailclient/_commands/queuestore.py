"""
The relay queue that C{mailclient relay} and C{mailclient queue} work on,
named by C{--queue}: a queue directory (Twisted's C{-H}/C{-D} files, with
mailclient's C{-R} schedules) or a PostgreSQL database
(C{postgresql://...}).  Reading and changing it without a relaying manager,
with the same operations on both, and every failure as a L{CommandError}
with its exit code (L{queueError}).

The database is used synchronously (psycopg, imported only when a database
is named): the C{queue} commands need no reactor.  The schema functions of
L{mailclient._relaying.pgschema} run on it through L{PostgresQueue.run},
which makes it a C{Database} whose Deferreds have fired when they are
returned.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any, Callable, Generator, TypeVar
from urllib.parse import parse_qs, urlsplit

from twisted.internet import defer
from twisted.python.failure import Failure

from mailclient._commands.common import (
    EX_CANTCREAT,
    EX_CONFIG,
    EX_DATAERR,
    EX_IOERR,
    EX_NOINPUT,
    EX_NOPERM,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    EX_USAGE,
    CommandError,
)
from mailclient._relaying.pgdb import (
    DatabaseUnreachable,
    DriverMissing,
    PermissionDenied,
    QueueDatabaseError,
    Result,
    SchemaMissing,
    SchemaVersionError,
    Statement,
    driver,
    oneLine,
    translate,
)
from mailclient._relaying.queue import (
    LOCK_NAME,
    AtomicFile,
    EnvelopeError,
    QueueBusyError,
    checkQueueFile,
    openQueueFile,
    readEnvelope,
)
from mailclient._wire.queuestate import (
    MAX_RETRY_FILE,
    RETRY_SUFFIX,
    RetryState,
    decodeRetryState,
    encodeRetryState,
    recipientDomainOf,
)
from mailclient._wire.text import displayText

T = TypeVar("T")

#: The environment variable naming the queue when C{--queue} is not given.
QUEUE_ENV = "MAILCLIENT_QUEUE"

#: What a C{--queue} naming a database starts with.
SCHEMES = ("postgresql://", "postgres://")

#: The most bytes of a message read for its header.
MAX_HEADER = 1 << 20

#: The states of a queued message.
STATES = ("waiting", "leased", "quarantined")

INIT_HINT = "mailclient queue init"
UPGRADE_HINT = "mailclient queue upgrade"


# -- Naming the queue ------------------------------------------------------

@dataclass(frozen=True)
class QueueLocation:
    """
    The queue C{--queue} names: a directory, or a database and schema.
    """

    directory: str | None = None
    conninfo: str | None = None
    schema: str = "mailclient"

    @property
    def isDatabase(self) -> bool:
        return self.conninfo is not None

    def describe(self) -> str:
        """
        How messages name the queue (a database URI never holds a password:
        see L{parseQueue}).
        """
        if self.conninfo is not None:
            return "%s (schema %s)" % (self.conninfo, self.schema)
        return str(self.directory)


def parseQueue(value: str | None, schema: str | None) -> QueueLocation:
    """
    The queue named by C{--queue} (default: C{$MAILCLIENT_QUEUE}) and
    C{--schema}.

    @raise CommandError: with L{EX_USAGE}: no queue, a database URI with a
        password in it (others could read it in the process list: libpq
        reads it from C{~/.pgpass} or C{$PGPASSWORD}), an invalid schema,
        or C{--schema} for a directory.
    """
    if value is None:
        value = os.environ.get(QUEUE_ENV) or None
    if not value:
        raise CommandError(EX_USAGE, "no queue: give --queue DIR or --queue "
                           "postgresql://... (or set $%s)" % (QUEUE_ENV,))
    if not value.lower().startswith(SCHEMES):
        if schema is not None:
            raise CommandError(EX_USAGE, "--schema has no use with a queue directory")
        return QueueLocation(directory=value)
    try:
        parts = urlsplit(value)
        password = parts.password
        query = parse_qs(parts.query, keep_blank_values=True)
    except ValueError:
        raise CommandError(EX_USAGE, "--queue: %r is not a postgresql:// URI" % (value,))
    if password is not None or "password" in query:
        raise CommandError(
            EX_USAGE, "--queue: the database password must not be on the command line, "
            "where others can read it: put it in ~/.pgpass (or $PGPASSWORD)")
    from mailclient._relaying.pgschema import DEFAULT_SCHEMA, checkSchemaName

    try:
        checked = checkSchemaName(schema if schema is not None else DEFAULT_SCHEMA)
    except ValueError as e:
        raise CommandError(EX_USAGE, "--schema: %s" % (e,))
    return QueueLocation(conninfo=value, schema=checked)


# -- Failures --------------------------------------------------------------

def _hinted(text: str) -> str:
    return (text.replace("run createSchema", "run '%s'" % (INIT_HINT,))
                .replace("run upgradeSchema", "run '%s'" % (UPGRADE_HINT,)))


def queueError(error: BaseException) -> CommandError | None:
    """
    The one line and exit code for a failure to use a queue, or L{None}
    for an exception that is not one (a bug).
    """
    if isinstance(error, CommandError):
        return error
    if isinstance(error, DriverMissing):
        return CommandError(EX_UNAVAILABLE, "a PostgreSQL queue needs psycopg 3: "
                            "pip install 'mailclient[postgresql]'")
    if isinstance(error, SchemaMissing):
        return CommandError(EX_CONFIG, _hinted(str(error)))
    if isinstance(error, SchemaVersionError):
        return CommandError(EX_CONFIG, _hinted(str(error)))
    if isinstance(error, PermissionDenied):
        return CommandError(EX_NOPERM, str(error))
    if isinstance(error, QueueDatabaseError):
        return CommandError(EX_UNAVAILABLE, str(error))
    if isinstance(error, QueueBusyError):
        return CommandError(EX_TEMPFAIL, str(error))
    try:
        psycopg = driver()
    except DriverMissing:
        return None
    if isinstance(error, psycopg.Error):
        return CommandError(EX_UNAVAILABLE, "the relay queue database refused: %s"
                            % (oneLine(error),))
    return None


def osError(error: OSError, what: str) -> CommandError:
    """
    The failure to C{what} (a phrase: "read the queue directory /x"):
    permission denied is L{EX_NOPERM}, the rest L{EX_IOERR}.
    """
    reason = error.strerror or str(error)
    if error.errno in (errno.EACCES, errno.EPERM):
        return CommandError(EX_NOPERM, "cannot %s: %s" % (what, reason))
    return CommandError(EX_IOERR, "cannot %s: %s" % (what, reason))


def checkId(value: str) -> str:
    """
    A message id given on the command line: a name, never a path.

    @raise CommandError: with L{EX_USAGE}.
    """
    if (not value or value in (".", "..") or "/" in value or os.sep in value
            or any(ord(c) < 32 or c == "\x7f" for c in value) or len(value) > 255):
        raise CommandError(EX_USAGE, "%r is not a message id" % (value,))
    return value


def unknown(ids: Sequence[str]) -> CommandError:
    """
    The failure for ids that name no queued message.
    """
    return CommandError(EX_NOINPUT, "no queued message %s %s (nothing was changed)"
                        % ("has the id" if len(ids) == 1 else "has the ids",
                           ", ".join(ids)))


# -- What the commands show -----------------------------------------------

@dataclass
class MessageInfo:
    """
    One queued message, as C{queue list} and C{queue show} describe it
    (never its body).

    @ivar nextAttempt: When it may be tried again; L{None}: at once.
    @ivar due: Whether it may be tried now.
    @ivar problem: Why a message of a queue directory cannot be relayed.
    """

    id: str
    state: str
    queuedAt: float | None = None
    sender: str | None = None
    recipient: str | None = None
    domain: str | None = None
    failures: int = 0
    nextAttempt: float | None = None
    due: bool = True
    lastFailure: float | None = None
    lastReason: str = ""
    warned: bool = False
    worker: str | None = None
    leaseUntil: float | None = None
    size: int | None = None
    origin: str | None = None
    problem: str | None = None


def splitHeader(data: bytes) -> tuple[bytes, bool]:
    """
    The header block at the start of C{data} (up to the empty line, not
    included), and whether the empty line was found.
    """
    end = 0
    for line in data.splitlines(keepends=True):
        if line in (b"\n", b"\r\n"):
            return data[:end], True
        end += len(line)
    return data, False


# -- A queue directory -----------------------------------------------------

def _optionsSuffixes() -> tuple[str, ...]:
    # The per-message options side file (REQUIRETLS), where this mailclient
    # has one.
    try:
        from mailclient._relaying.msgoptions import OPTIONS_SUFFIX
    except ImportError:  # pragma: no cover - older trees
        return ()
    return (OPTIONS_SUFFIX,)


def _text(value: object) -> str:
    if isinstance(value, (str, bytes)):
        return displayText(value)
    return repr(value)


class DirectoryQueue:
    """
    A queue directory, read and changed without a relaying manager (one may
    be relaying it at the same time: every change is a rename or a
    removal, as the manager's own).
    """

    def __init__(self, path: str, write: bool = False) -> None:
        self.path = path
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise CommandError(EX_NOINPUT, "the queue directory %s does not exist (%s "
                               "--queue %s creates it)" % (path, INIT_HINT, path)) from None
        except OSError as e:
            raise osError(e, "use the queue directory %s" % (path,)) from None
        if not stat.S_ISDIR(info.st_mode):
            raise CommandError(EX_NOINPUT, "the queue %s is not a directory" % (path,))
        wanted = os.R_OK | os.X_OK | (os.W_OK if write else 0)
        if not os.access(path, wanted):
            raise CommandError(EX_NOPERM, "permission denied: cannot %s the queue "
                               "directory %s" % ("write" if write else "read", path))

    @staticmethod
    def create(path: str) -> bool:
        """
        Make the queue directory, private (mode 0700), and its parents.

        @return: Whether it was made (C{False}: it exists).
        @raise CommandError: if it cannot be made, or is not a directory.
        """
        if os.path.isdir(path):
            return False
        if os.path.lexists(path):
            raise CommandError(EX_CANTCREAT, "cannot create the queue directory %s: "
                               "something else has that name" % (path,))
        try:
            os.makedirs(path, 0o700)
            os.chmod(path, 0o700)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM):
                raise CommandError(EX_NOPERM, "cannot create the queue directory %s: %s"
                                   % (path, e.strerror or e)) from None
            raise CommandError(EX_CANTCREAT, "cannot create the queue directory %s: %s"
                               % (path, e.strerror or e)) from None
        return True

    def _base(self, name: str) -> str:
        return os.path.join(self.path, name)

    def names(self) -> list[str]:
        """
        The names of the queued messages, oldest first (as the queue relays
        them).  Only names are kept in memory, never envelopes or bodies.
        """
        found: list[tuple[float, str]] = []
        try:
            with os.scandir(self.path) as entries:
                for entry in entries:
                    if not entry.name.endswith("-D") or len(entry.name) < 3:
                        continue
                    try:
                        mtime = entry.stat(follow_symlinks=False).st_mtime
                    except FileNotFoundError:
                        continue
                    found.append((mtime, entry.name[:-2]))
        except OSError as e:
            raise osError(e, "read the queue directory %s" % (self.path,)) from None
        return [name for _, name in sorted(found)]

    def exists(self, name: str) -> bool:
        return os.path.lexists(self._base(name) + "-D")

    def _schedule(self, name: str) -> RetryState | None:
        try:
            with openQueueFile(self._base(name) + RETRY_SUFFIX) as f:
                return decodeRetryState(f.read(MAX_RETRY_FILE + 1))
        except (OSError, ValueError):
            # As the queue: a schedule that cannot be read costs only the
            # back-off.
            return None

    def info(self, name: str, now: float | None = None) -> MessageInfo | None:
        """
        What is known of message C{name}; L{None} if it is gone.
        """
        if now is None:
            now = time.time()
        base = self._base(name)
        try:
            data = os.stat(base + "-D", follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise osError(e, "read the queue directory %s" % (self.path,)) from None
        info = MessageInfo(name, "waiting", queuedAt=data.st_mtime, size=data.st_size)
        try:
            sender, recipient = readEnvelope(base + "-H")
            checkQueueFile(base + "-D")
        except FileNotFoundError:
            info.state, info.problem = "quarantined", "its envelope file (-H) is missing"
        except (EnvelopeError, OSError) as e:
            info.state = "quarantined"
            info.problem = " ".join(str(e).split())[:300] or type(e).__name__
        else:
            info.sender, info.recipient = _text(sender), _text(recipient)
            info.domain = recipientDomainOf(recipient)
        state = self._schedule(name)
        if state is not None:
            info.failures = state.failures
            info.nextAttempt = state.nextAttempt
            info.lastFailure = state.lastFailure
            info.lastReason = state.lastReason
            info.warned = state.warned
        info.due = info.nextAttempt is None or info.nextAttempt <= now
        return info

    def messages(self, domain: str | None = None, state: str | None = None
                 ) -> Iterator[MessageInfo]:
        """
        The queued messages, oldest first, read one at a time.
        """
        now = time.time()
        for name in self.names():
            info = self.info(name, now)
            if info is None:
                continue
            if domain is not None and info.domain != domain.lower():
                continue
            if state is not None and info.state != state:
                continue
            yield info

    def find(self, ids: Sequence[str]) -> list[MessageInfo]:
        """
        The messages named C{ids}.

        @raise CommandError: with L{EX_NOINPUT} if any is not queued.
        """
        found = {i: self.info(i) for i in dict.fromkeys(ids)}
        missing = [i for i, info in found.items() if info is None]
        if missing:
            raise unknown(missing)
        return [info for info in found.values() if info is not None]

    def show(self, id: str, body: bool) -> tuple[MessageInfo, bytes, IO[bytes] | None]:
        """
        A message, the start of its data (at least its header) and, with
        C{body}, its data file, open at the end of what was read.
        """
        [info] = self.find([id])
        try:
            f = openQueueFile(self._base(id) + "-D")
        except FileNotFoundError:
            raise unknown([id]) from None
        except (EnvelopeError, OSError) as e:
            info.problem = info.problem or str(e)
            return info, b"", None
        try:
            head = f.read(MAX_HEADER)
        except OSError as e:
            f.close()
            raise osError(e, "read the message %s" % (id,)) from None
        if body:
            return info, head, f
        f.close()
        return info, head, None

    def _writeSchedule(self, name: str, state: RetryState) -> None:
        path = self._base(name) + RETRY_SUFFIX
        try:
            os.remove(path + ".tmp")
        except FileNotFoundError:
            pass
        with AtomicFile(path, path + ".tmp") as f:
            f.write(encodeRetryState(state))

    def _makeDue(self, info: MessageInfo, now: float) -> bool:
        state = self._schedule(info.id)
        if state is None or state.nextAttempt is None or state.nextAttempt <= now:
            return False
        if not self.exists(info.id):
            return False
        self._writeSchedule(info.id, replace(state, nextAttempt=None))
        return True

    def flush(self, domain: str | None = None) -> tuple[int, int]:
        """
        Make every message that waits for its next attempt due now: its
        C{-R} schedule keeps its failures and warning, without a next
        attempt.

        @return: How many were made due, and C{0} (a directory has no
            destination back-offs).
        """
        now = time.time()
        count = 0
        try:
            for info in self.messages(domain, "waiting"):
                if self._makeDue(info, now):
                    count += 1
        except OSError as e:
            raise osError(e, "write the queue directory %s" % (self.path,)) from None
        return count, 0

    def _remove(self, name: str) -> None:
        base = self._base(name)
        # The data file first, as the queue does: a crash in between leaves
        # a stray envelope, never a message.
        for suffix in ("-D", "-H", RETRY_SUFFIX) + _optionsSuffixes():
            try:
                os.remove(base + suffix)
            except FileNotFoundError:
                pass

    def delete(self, ids: Sequence[str], force: bool) -> int:
        """
        Remove the messages C{ids} (all of them, or none if one is not
        queued).  A directory has no leases: C{force} changes nothing.
        """
        names = [info.id for info in self.find(ids)]
        try:
            for name in names:
                self._remove(name)
        except OSError as e:
            raise osError(e, "delete from the queue directory %s" % (self.path,)) from None
        return len(names)

    def deleteAll(self, force: bool) -> tuple[int, int]:
        """
        Remove every message.

        @return: How many were removed, and C{0} left.
        """
        count = 0
        try:
            for name in self.names():
                if self.exists(name):
                    self._remove(name)
                    count += 1
        except OSError as e:
            raise osError(e, "delete from the queue directory %s" % (self.path,)) from None
        return count, 0

    def requeue(self, ids: Sequence[str]) -> list[tuple[str, bool]]:
        """
        Bring messages back to waiting: each must be readable now (a
        relaying manager quarantines a message only while it runs); its
        next attempt is now.

        @return: Each id, and whether it was changed: C{True} for a message
            that waited for a later attempt and is due now, C{False} for
            one left as it was (it was due already).  A directory keeps no
            quarantine of its own, so this is what C{requeue} can report.
            (It used to be always C{False}, so C{requeue} said "left as it
            is" of messages whose schedule it had just changed.)
        @raise CommandError: with L{EX_DATAERR} if one still cannot be read.
        """
        infos = self.find(ids)
        broken = [i for i in infos if i.state == "quarantined"]
        if broken:
            raise CommandError(EX_DATAERR, "cannot requeue %s: %s (fix or delete it; "
                               "nothing was changed)" % (broken[0].id, broken[0].problem))
        now = time.time()
        changed = []
        try:
            for info in infos:
                changed.append((info.id, self._makeDue(info, now)))
        except OSError as e:
            raise osError(e, "write the queue directory %s" % (self.path,)) from None
        return changed

    def isRelayed(self) -> bool:
        """
        Whether a relaying manager holds the queue now.
        """
        import fcntl

        try:
            fd = os.open(os.path.join(self.path, LOCK_NAME),
                         os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False


# -- A PostgreSQL queue ----------------------------------------------------

def fired(d: defer.Deferred[T]) -> T:
    """
    The result of a Deferred that has fired; its exception, raised.
    """
    results: list[Any] = []
    d.addBoth(results.append)
    if not results:  # pragma: no cover - a bug
        raise RuntimeError("the Deferred has not fired")
    result = results[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result  # type: ignore[no-any-return]


_Program = Generator[Statement, Result, Any]

#: The columns of a message read by L{_info}: never its data.
_COLUMNS = (
    "id, extract(epoch FROM queued_at)::float8, sender, recipient, domain, failures,"
    " extract(epoch FROM next_attempt)::float8, next_attempt <= clock_timestamp(),"
    " extract(epoch FROM last_failure)::float8, last_reason, warned, quarantined,"
    " lease_worker, extract(epoch FROM lease_until)::float8,"
    " coalesce(lease_until > clock_timestamp(), false), origin, octet_length(data)")

_STATE_SQL = {
    "waiting": "NOT quarantined AND (lease_until IS NULL OR lease_until <= clock_timestamp())",
    "leased": "NOT quarantined AND lease_until > clock_timestamp()",
    "quarantined": "quarantined",
}


def _info(row: Sequence[Any]) -> MessageInfo:
    (name, queuedAt, sender, recipient, domain, failures, nextAttempt, due, lastFailure,
     reason, warned, quarantined, worker, leaseUntil, leased, origin, size) = row[:17]
    state = "quarantined" if quarantined else "leased" if leased else "waiting"
    return MessageInfo(
        name, state, queuedAt=queuedAt, sender=sender, recipient=recipient, domain=domain,
        failures=failures, nextAttempt=None if due else nextAttempt, due=bool(due),
        lastFailure=lastFailure, lastReason=reason or "", warned=warned,
        worker=worker if leased else None, leaseUntil=leaseUntil if leased else None,
        size=size, origin=origin)


def _findProgram(s: str, ids: list[str], lock: bool) -> _Program:
    found = yield Statement(
        "SELECT %s FROM %s.messages WHERE id = ANY(%%s)%s"
        % (_COLUMNS, s, " FOR UPDATE" if lock else ""), (ids,))
    infos = {row[0]: _info(row) for row in found.rows}
    missing = [i for i in ids if i not in infos]
    if missing:
        raise unknown(missing)
    return [infos[i] for i in ids]


def _showProgram(s: str, id: str, limit: int | None) -> _Program:
    data = "data" if limit is None else "substring(data FROM 1 FOR %d)" % (limit,)
    found = yield Statement(
        "SELECT %s, %s FROM %s.messages WHERE id = %%s" % (_COLUMNS, data, s), (id,))
    row = found.one()
    if row is None:
        raise unknown([id])
    return _info(row), bytes(row[17])


def _flushProgram(s: str, domain: str | None, channel: str) -> _Program:
    where = " AND domain = %s" if domain is not None else ""
    params = (domain,) if domain is not None else ()
    made = yield Statement(
        "UPDATE %s.messages SET next_attempt = clock_timestamp() WHERE NOT quarantined"
        " AND next_attempt > clock_timestamp()%s" % (s, where), params)
    cleared = yield Statement(
        "UPDATE %s.destinations SET not_before = NULL WHERE not_before > clock_timestamp()%s"
        % (s, where.replace("domain", "destination")), params)
    yield Statement("SELECT pg_notify(%s, 'flushed')", (channel,))
    return made.rowcount, cleared.rowcount


def _deleteProgram(s: str, ids: list[str], force: bool) -> _Program:
    infos = yield from _findProgram(s, ids, True)
    leased = [i for i in infos if i.state == "leased"]
    if leased and not force:
        first = leased[0]
        raise CommandError(
            EX_TEMPFAIL, "%s is being relayed by worker %s (lease until %s): nothing was "
            "deleted (--force deletes it anyway; the worker may still deliver it)"
            % (first.id, first.worker, formatTime(first.leaseUntil)))
    yield Statement("DELETE FROM %s.messages WHERE id = ANY(%%s)" % (s,), (ids,))
    return len(infos)


def _deleteAllProgram(s: str, force: bool) -> _Program:
    if force:
        deleted = yield Statement("DELETE FROM %s.messages" % (s,))
        return deleted.rowcount, 0
    deleted = yield Statement(
        "DELETE FROM %s.messages WHERE lease_until IS NULL OR lease_until <= clock_timestamp()"
        % (s,))
    left = yield Statement("SELECT count(*) FROM %s.messages" % (s,))
    return deleted.rowcount, int(left.scalar() or 0)


def _requeueProgram(s: str, ids: list[str], channel: str) -> _Program:
    infos = yield from _findProgram(s, ids, True)
    yield Statement(
        "UPDATE %s.messages SET quarantined = false, next_attempt = clock_timestamp()"
        " WHERE id = ANY(%%s) AND quarantined" % (s,), (ids,))
    yield Statement("SELECT pg_notify(%s, 'requeued')", (channel,))
    return [(info.id, info.state == "quarantined") for info in infos]


class PostgresQueue:
    """
    A PostgreSQL queue, on one synchronous connection (made when first
    needed), for the C{queue} commands.  Also a C{Database} for the schema
    functions (L{run}).
    """

    def __init__(self, location: QueueLocation, connectTimeout: float = 10) -> None:
        assert location.conninfo is not None
        self.psycopg = driver()
        self.location = location
        self.schema = location.schema
        self.connectTimeout = connectTimeout
        self._connection: Any = None

    def _connect(self) -> Any:
        if self._connection is None:
            try:
                self._connection = self.psycopg.connect(
                    self.location.conninfo, connect_timeout=max(1, int(self.connectTimeout)),
                    application_name="mailclient queue")
            except Exception as e:
                raise translate(e, connecting=True) from None
        return self._connection

    def _rollback(self) -> None:
        connection = self._connection
        if connection is None:
            return
        if connection.closed or connection.broken:
            self._connection = None
            return
        try:
            connection.rollback()
        except Exception:
            self._connection = None

    def call(self, program: Callable[..., _Program], *args: Any) -> Any:
        """
        Run C{program(*args)} in one transaction and return its result.
        """
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                steps = program(*args)
                try:
                    statement = next(steps)
                    while True:
                        cursor.execute(statement.sql, statement.params)
                        rows = cursor.fetchall() if cursor.description is not None else []
                        statement = steps.send(Result(rows, cursor.rowcount))
                except StopIteration as stop:
                    result = stop.value
                finally:
                    steps.close()
            connection.commit()
        except BaseException as e:
            self._rollback()
            raise translate(e) from None
        return result

    # The Database protocol, for pgschema.

    def run(self, program: Callable[..., _Program], *args: Any, **kw: Any
            ) -> defer.Deferred[Any]:
        """
        Run a program now; the Deferred has fired when it is returned.
        """
        try:
            return defer.succeed(self.call(lambda: program(*args, **kw)))
        except Exception:
            return defer.fail()

    def listenConnection(self, channel: str) -> defer.Deferred[Any]:
        return defer.fail(NotImplementedError("the queue commands do not listen"))

    def closeConnection(self, connection: Any) -> defer.Deferred[None]:
        return defer.succeed(None)

    def close(self) -> defer.Deferred[None]:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
        return defer.succeed(None)

    # The schema.

    def version(self) -> int | None:
        """
        The version of the queue's tables, L{None} if there are none.
        """
        from mailclient._relaying.pgschema import schemaVersion

        return fired(schemaVersion(self, self.schema))  # type: ignore[no-any-return]

    def checkVersion(self) -> int:
        """
        @raise SchemaMissing: there are no tables.
        @raise SchemaVersionError: they are of another version.
        """
        from mailclient._relaying import pgschema

        version = self.version()
        known = pgschema.SCHEMA_VERSION
        if version is None:
            raise SchemaMissing("the relay queue schema %s is not in the database: run "
                                "createSchema" % (self.schema,))
        if version > known:
            raise SchemaVersionError(
                "the relay queue schema %s is version %d, newer than this mailclient's "
                "%d: upgrade mailclient" % (self.schema, version, known))
        if version < known:
            raise SchemaVersionError(
                "the relay queue schema %s is version %d, this mailclient needs version "
                "%d: run upgradeSchema" % (self.schema, version, known))
        return version

    def create(self) -> tuple[bool, int]:
        """
        Create the queue's tables.

        @return: Whether they were made now, and their version.
        """
        from mailclient._relaying import pgschema

        before = self.version()
        version = fired(pgschema.createSchema(self, self.schema))
        return before is None, version

    def upgrade(self) -> tuple[int, int]:
        """
        Upgrade the queue's tables to this mailclient's version.

        @return: Their version before and after.
        """
        from mailclient._relaying import pgschema

        before = self.version()
        if before is None:
            raise SchemaMissing("the relay queue schema %s is not in the database: run "
                                "createSchema" % (self.schema,))
        after = fired(pgschema.upgradeSchema(self, self.schema, pgschema.MIGRATIONS,
                                             pgschema.SCHEMA_VERSION))
        return before, after

    @property
    def channel(self) -> str:
        from mailclient._relaying.pgschema import channelOf

        return channelOf(self.schema)

    # Messages.

    def messages(self, domain: str | None = None, state: str | None = None
                 ) -> Iterator[MessageInfo]:
        """
        The queued messages, oldest first, read through a server-side cursor
        (a few hundred at a time; never their data).
        """
        conditions = []
        params: list[Any] = []
        if domain is not None:
            conditions.append("domain = %s")
            params.append(domain.lower())
        if state is not None:
            conditions.append(_STATE_SQL[state])
        where = " WHERE " + " AND ".join(conditions) if conditions else ""
        connection = self._connect()
        try:
            with connection.cursor(name="mailclient_queue_list") as cursor:
                cursor.itersize = 500
                cursor.execute("SELECT %s FROM %s.messages%s ORDER BY queued_at, id"
                               % (_COLUMNS, self.schema, where), params)
                for row in cursor:
                    yield _info(row)
            connection.commit()
        except Exception as e:
            self._rollback()
            raise translate(e) from None

    def find(self, ids: Sequence[str]) -> list[MessageInfo]:
        return self.call(_findProgram, self.schema, list(dict.fromkeys(ids)),  # type: ignore[no-any-return]
                         False)

    def show(self, id: str, body: bool) -> tuple[MessageInfo, bytes, IO[bytes] | None]:
        info, data = self.call(_showProgram, self.schema, id, None if body else MAX_HEADER)
        return info, data, None

    def flush(self, domain: str | None = None) -> tuple[int, int]:
        return self.call(_flushProgram, self.schema,  # type: ignore[no-any-return]
                         None if domain is None else domain.lower(), self.channel)

    def delete(self, ids: Sequence[str], force: bool) -> int:
        return self.call(_deleteProgram, self.schema,  # type: ignore[no-any-return]
                         list(dict.fromkeys(ids)), force)

    def deleteAll(self, force: bool) -> tuple[int, int]:
        return self.call(_deleteAllProgram, self.schema, force)  # type: ignore[no-any-return]

    def requeue(self, ids: Sequence[str]) -> list[tuple[str, bool]]:
        return self.call(_requeueProgram, self.schema,  # type: ignore[no-any-return]
                         list(dict.fromkeys(ids)), self.channel)


def openQueue(location: QueueLocation, write: bool = False
              ) -> DirectoryQueue | PostgresQueue:
    """
    The queue at C{location}, checked: the directory exists (and can be
    written, with C{write}); the database's tables are there at this
    mailclient's version.
    """
    if location.directory is not None:
        return DirectoryQueue(location.directory, write)
    queue = PostgresQueue(location)
    try:
        queue.checkVersion()
    except BaseException:
        queue.close()
        raise
    return queue


def formatTime(when: float | None) -> str:
    """
    A time as ISO 8601 in UTC (C{2024-05-01T12:00:00Z}); C{-} for none.
    """
    if when is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


__all__ = [
    "DatabaseUnreachable", "DirectoryQueue", "MessageInfo", "PostgresQueue",
    "QueueLocation", "formatTime", "openQueue", "parseQueue", "queueError",
]
