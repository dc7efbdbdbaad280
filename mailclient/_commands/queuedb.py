"""
A PostgreSQL relay queue for C{mailclient queue}: L{PostgresQueue}, the
same operations as L{mailclient._commands.queuedir.DirectoryQueue} on the
queue's tables.

The database is used synchronously (psycopg, imported only when a database
is named): the C{queue} commands need no reactor.  The schema functions of
L{mailclient._relaying.pgschema} run on it through L{PostgresQueue.run},
which makes it a C{Database} whose Deferreds have fired when they are
returned.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING, Callable, ParamSpec, TypeVar

from twisted.internet import defer
from twisted.python.failure import Failure

from mailclient._commands.common import EX_TEMPFAIL, CommandError
from mailclient._commands.queuestore import (
    MAX_HEADER,
    MessageInfo,
    QueueLocation,
    formatTime,
    unknown,
)
from mailclient._relaying.pgdb import (
    Program,
    SchemaMissing,
    SchemaVersionError,
    Statement,
    _driveSync,
    driver,
    translate,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

    from mailclient._relaying.pgdb import ListenConnection

T = TypeVar("T")
P = ParamSpec("P")


def fired(d: defer.Deferred[T]) -> T:
    """
    The result of a Deferred that has fired; its exception, raised.
    """
    results: list[T | Failure] = []
    d.addBoth(results.append)
    if not results:  # pragma: no cover - a bug
        raise RuntimeError("the Deferred has not fired")
    result = results[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result

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


def _info(row: TupleRow) -> MessageInfo:
    (name, queuedAt, sender, recipient, domain, failures, nextAttempt, due, lastFailure,
     reason, warned, quarantined, worker, leaseUntil, leased, origin, size) = row[:17]
    state = "quarantined" if quarantined else "leased" if leased else "waiting"
    return MessageInfo(
        name, state, queuedAt=queuedAt, sender=sender, recipient=recipient, domain=domain,
        failures=failures, nextAttempt=None if due else nextAttempt, due=bool(due),
        lastFailure=lastFailure, lastReason=reason or "", warned=warned,
        worker=worker if leased else None, leaseUntil=leaseUntil if leased else None,
        size=size, origin=origin)


def _findProgram(s: str, ids: list[str], lock: bool) -> Program[list[MessageInfo]]:
    found = yield Statement(
        "SELECT %s FROM %s.messages WHERE id = ANY(%%s)%s"
        % (_COLUMNS, s, " FOR UPDATE" if lock else ""), (ids,))
    infos = {row[0]: _info(row) for row in found.rows}
    missing = [i for i in ids if i not in infos]
    if missing:
        raise unknown(missing)
    return [infos[i] for i in ids]


def _showProgram(s: str, id: str, limit: int | None
                 ) -> Program[tuple[MessageInfo, bytes]]:
    data = "data" if limit is None else "substring(data FROM 1 FOR %d)" % (limit,)
    found = yield Statement(
        "SELECT %s, %s FROM %s.messages WHERE id = %%s" % (_COLUMNS, data, s), (id,))
    row = found.one()
    if row is None:
        raise unknown([id])
    return _info(row), bytes(row[17])


def _flushProgram(s: str, domain: str | None, channel: str) -> Program[tuple[int, int]]:
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


def _deleteProgram(s: str, ids: list[str], force: bool) -> Program[int]:
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


def _deleteAllProgram(s: str, force: bool) -> Program[tuple[int, int]]:
    if force:
        deleted = yield Statement("DELETE FROM %s.messages" % (s,))
        return deleted.rowcount, 0
    deleted = yield Statement(
        "DELETE FROM %s.messages WHERE lease_until IS NULL OR lease_until <= clock_timestamp()"
        % (s,))
    left = yield Statement("SELECT count(*) FROM %s.messages" % (s,))
    return deleted.rowcount, int(left.scalar() or 0)


def _requeueProgram(s: str, ids: list[str], channel: str
                    ) -> Program[list[tuple[str, bool]]]:
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
        self._connection: psycopg.Connection[TupleRow] | None = None

    def _connect(self) -> psycopg.Connection[TupleRow]:
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

    def call(self, program: Callable[P, Program[T]], *args: P.args, **kw: P.kwargs) -> T:
        """
        Run C{program(*args, **kw)} in one transaction and return its
        result.
        """
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                result = _driveSync(cursor, program(*args, **kw))
            connection.commit()
        except BaseException as e:
            self._rollback()
            raise translate(e) from None
        return result

    # The Database protocol, for pgschema.

    def run(self, program: Callable[P, Program[T]], *args: P.args, **kw: P.kwargs
            ) -> defer.Deferred[T]:
        """
        Run a program now; the Deferred has fired when it is returned.
        """
        try:
            return defer.succeed(self.call(program, *args, **kw))
        except Exception:
            return defer.fail()

    def listenConnection(self, channel: str) -> defer.Deferred[ListenConnection]:
        return defer.fail(NotImplementedError("the queue commands do not listen"))

    def closeConnection(self, connection: ListenConnection) -> defer.Deferred[None]:
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

        return fired(schemaVersion(self, self.schema))

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
        params: list[str] = []
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
        return self.call(_findProgram, self.schema, list(dict.fromkeys(ids)), False)

    def show(self, id: str, body: bool) -> tuple[MessageInfo, bytes, IO[bytes] | None]:
        info, data = self.call(_showProgram, self.schema, id, None if body else MAX_HEADER)
        return info, data, None

    def flush(self, domain: str | None = None) -> tuple[int, int]:
        return self.call(_flushProgram, self.schema,
                         None if domain is None else domain.lower(), self.channel)

    def delete(self, ids: Sequence[str], force: bool) -> int:
        return self.call(_deleteProgram, self.schema, list(dict.fromkeys(ids)), force)

    def deleteAll(self, force: bool) -> tuple[int, int]:
        return self.call(_deleteAllProgram, self.schema, force)

    def requeue(self, ids: Sequence[str]) -> list[tuple[str, bool]]:
        return self.call(_requeueProgram, self.schema, list(dict.fromkeys(ids)),
                         self.channel)


__all__ = ["PostgresQueue"]
