"""
The relay queue that C{mailclient relay} and C{mailclient queue} work on,
named by C{--queue}: a queue directory (Twisted's C{-H}/C{-D} files, with
mailclient's C{-R} schedules) or a PostgreSQL database
(C{postgresql://...}).  What both kinds share: naming the queue
(L{parseQueue}), every failure as a L{CommandError} with its exit code
(L{queueError}), and what the commands show of a message
(L{MessageInfo}).  The queues themselves, read and changed without a
relaying manager with the same operations on both, are
L{mailclient._commands.queuedir} and L{mailclient._commands.queuedb}.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from mailclient._commands.common import (
    EX_CONFIG,
    EX_IOERR,
    EX_NOINPUT,
    EX_NOPERM,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    EX_USAGE,
    CommandError,
    Option,
)
from mailclient._relaying.pgdb import (
    DriverMissing,
    PermissionDenied,
    QueueDatabaseError,
    SchemaMissing,
    SchemaVersionError,
    driver,
    oneLine,
)
from mailclient._relaying.queue import QueueBusyError

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

#: C{--queue}, an option of C{relay} and of every C{queue} action.
QUEUE_OPTION = Option(
    "--queue", "the queue: a directory, or a PostgreSQL database as postgresql://"
    "[USER@]HOST[:PORT]/DBNAME (default: $%s)" % (QUEUE_ENV,), "DIR|URI")


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
    if isinstance(error, (SchemaMissing, SchemaVersionError)):
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


@contextmanager
def queueErrors() -> Iterator[None]:
    """
    Raise each failure to use a queue as its L{CommandError} (see
    L{queueError}); any other exception as it is.
    """
    try:
        yield
    except Exception as e:
        error = queueError(e)
        if error is None:
            raise
        raise error from None


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


def formatTime(when: float | None) -> str:
    """
    A time as ISO 8601 in UTC (C{2024-05-01T12:00:00Z}); C{-} for none.
    """
    if when is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


__all__ = [
    "MessageInfo", "QueueLocation", "formatTime", "parseQueue", "queueError", "queueErrors",
]
