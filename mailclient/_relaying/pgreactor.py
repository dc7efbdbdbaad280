"""
The threaded driver's programs, run on the reactor's own thread:
L{ReactorPrograms} sends each statement with libpq's asynchronous interface
(C{psycopg.pq}) on connections in non-blocking mode, whose sockets the
reactor watches.  No thread is woken, and no lock handed over, to run a
statement: running a program in a thread cost, on every confirmation of a
delivery, about twice the CPU of the statement itself, and more when the
reactor was busy (each hand-over of the interpreter's lock between the
threads is a context switch).

A program runs in a transaction (C{BEGIN} sent before its first statement,
C{COMMIT} after its last, C{ROLLBACK} if it fails), or, if it is marked
L{oneStatement}, as one autocommitted statement.  Parameters are dumped,
and values loaded, by the adapters of each connection
(C{psycopg.Connection.adapters}), as its cursors would: a program gets
what it would get from a cursor.  A statement is prepared on a connection
the second time it runs there.  The connections are made by the threaded
driver's threads (connecting blocks).
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Callable, Generic, Protocol, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

from mailclient._relaying.pgdb import (
    DatabaseUnreachable,
    Program,
    Result,
    Statement,
    driver,
    nextStatement,
    translate,
)

if TYPE_CHECKING:
    from psycopg.abc import Dumper, Loader
    from psycopg.pq.abc import PGconn, PGresult
    from psycopg.rows import TupleRow

    from mailclient._relaying.pgdb import SyncConnection

T = TypeVar("T")

#: A placeholder of psycopg's syntax: C{%s}, C{%(name)s}, or C{%%}.
_PLACEHOLDER = re.compile(r"%(?:\((\w+)\))?s|%%")

#: The most statements prepared on one connection.
MAX_PREPARED = 64

#: A statement is prepared on a connection when it runs there the second
#: time (psycopg's cursors wait for the fifth).
PREPARE_AFTER = 2

#: The most statements whose runs are counted on one connection.
MAX_COUNTED = 1000


class FDReactor(Protocol):
    """
    What L{ReactorPrograms} needs of its reactor: to watch sockets.
    """

    def addReader(self, reader: IReadDescriptor) -> None:
        ...

    def removeReader(self, reader: IReadDescriptor) -> None:
        ...

    def addWriter(self, writer: IWriteDescriptor) -> None:
        ...

    def removeWriter(self, writer: IWriteDescriptor) -> None:
        ...


class _Query:
    """
    A statement's SQL in libpq's syntax (C{$1}, ...), and where its
    parameters come from: C{count} positions, or C{names}.
    """

    __slots__ = ("sql", "names", "count")

    def __init__(self, sql: str) -> None:
        names: list[str] = []
        count = 0

        def number(match: re.Match[str]) -> str:
            nonlocal count
            name = match.group(1)
            if match.group(0) == "%%":
                return "%"
            if name is None:
                count += 1
                return "$%d" % (count,)
            if name not in names:
                names.append(name)
            return "$%d" % (names.index(name) + 1,)

        self.sql = _PLACEHOLDER.sub(number, sql)
        if count and names:
            raise ValueError("a statement mixes %s and %(name)s placeholders")
        self.names = names
        self.count = count


class _Adapter:
    """
    Dumps parameters and loads values with the adapters of a psycopg
    connection.
    """

    def __init__(self, connection: SyncConnection) -> None:
        psycopg = driver()
        self.connection = connection
        self.encoding = connection.info.encoding
        self._auto = psycopg.adapt.PyFormat.AUTO
        self._text = psycopg.pq.Format.TEXT
        self._dumpers: dict[type, Dumper] = {}
        self._loaders: dict[int, Loader | None] = {}

    def dump(self, value: object) -> tuple[bytes | None, int, int]:
        """
        C{value} as libpq takes it: its bytes (L{None}: NULL), the oid of
        its type (0: the server infers it) and its format.
        """
        if value is None:
            return None, 0, 0
        cls = type(value)
        dumper = self._dumpers.get(cls)
        if dumper is None:
            dumper = self._dumpers[cls] = self.connection.adapters.get_dumper(
                cls, self._auto)(cls, self.connection)
        dumper = dumper.upgrade(value, self._auto)
        data = dumper.dump(value)
        return None if data is None else bytes(data), dumper.oid, int(dumper.format)

    def load(self, oid: int, data: bytes | None) -> object:
        """
        A value of type C{oid}, in text format, as a Python object.
        """
        if data is None:
            return None
        try:
            loader = self._loaders[oid]
        except KeyError:
            cls = self.connection.adapters.get_loader(oid, self._text)
            loader = self._loaders[oid] = None if cls is None else cls(oid, self.connection)
        if loader is None:
            return data.decode(self.encoding)
        return loader.load(data)

    def rows(self, result: PGresult) -> list[TupleRow]:
        """
        The rows of C{result}.
        """
        load = self.load
        columns = range(result.nfields)
        oids = [result.ftype(i) for i in columns]
        return [tuple([load(oids[i], result.get_value(row, i)) for i in columns])
                for row in range(result.ntuples)]


@implementer(IReadDescriptor, IWriteDescriptor)
class _Connection:
    """
    A connection in autocommit and in non-blocking mode, running one
    statement at a time (L{execute}, L{command}).
    """

    def __init__(self, connection: SyncConnection, reactor: FDReactor,
                 lost: Callable[[_Connection], object]) -> None:
        self.psycopg = driver()
        self.connection = connection
        self.pgconn: PGconn = connection.pgconn
        self.pgconn.nonblocking = 1
        self.adapter = _Adapter(connection)
        self.reactor = reactor
        self._lost = lost
        self._queries: dict[str, _Query] = {}
        # Statements run here, by SQL and parameter types: how many times,
        # and the name each has once prepared (on its second run).
        self._runs: dict[tuple[str, tuple[int, ...]], int] = {}
        self._prepared: dict[tuple[str, tuple[int, ...]], bytes] = {}
        self._names = 0
        self._waiting: defer.Deferred[Result] | None = None
        self._then: Callable[[], None] | None = None
        self._preparing: tuple[str, tuple[int, ...]] | None = None
        self._last: PGresult | None = None
        self._writing = False
        self.closed = False
        # The reactor watches a duplicate: libpq closes its socket as soon
        # as it sees the connection end, before the reactor stops watching.
        self._fd = os.dup(self.pgconn.socket)
        reactor.addReader(self)

    @property
    def idle(self) -> bool:
        """
        Whether it is open and outside a transaction.
        """
        return not self.closed and self.pgconn.transaction_status == 0

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "PostgreSQL queue"

    def command(self, sql: bytes) -> defer.Deferred[Result]:
        """
        Run C{sql}, a command without parameters (C{BEGIN}, C{COMMIT}).
        """
        if self.closed:
            return defer.fail(DatabaseUnreachable("the relay queue database was closed"))
        d = self._waiting = defer.Deferred()
        self._send(lambda: self.pgconn.send_query(sql), None)
        return d

    def execute(self, statement: Statement) -> defer.Deferred[Result]:
        """
        Run C{statement}: the Deferred fires with its L{Result}, or fails
        with the queue's exception (L{translate}) for psycopg's.  As with
        psycopg, C{%} means nothing in a statement without parameters.
        """
        if self.closed:
            return defer.fail(DatabaseUnreachable("the relay queue database was closed"))
        params = statement.params
        if params is None:
            sql, values = statement.sql, []
        else:
            query = self._queries.get(statement.sql)
            if query is None:
                query = self._queries[statement.sql] = _Query(statement.sql)
            if query.names:
                if not isinstance(params, Mapping):
                    raise TypeError("the statement takes named parameters")
                values = [params[name] for name in query.names]
            else:
                if isinstance(params, Mapping):
                    raise TypeError("the statement takes positional parameters")
                values = list(params)
                if len(values) != query.count:
                    raise TypeError("the statement takes %d parameters, not %d"
                                    % (query.count, len(values)))
            sql = query.sql
        data: list[bytes | None] = []
        types: list[int] = []
        formats: list[int] = []
        for value in values:
            dumped, oid, format = self.adapter.dump(value)
            data.append(dumped)
            types.append(oid)
            formats.append(format)
        encoded = sql.encode(self.adapter.encoding)
        key = (sql, tuple(types))
        name = self._prepared.get(key)
        d = self._waiting = defer.Deferred()

        def execute() -> None:
            if name is None:
                self.pgconn.send_query_params(encoded, data, types, formats)
            else:
                self.pgconn.send_query_prepared(name, data, formats)

        if name is None and len(self._prepared) < MAX_PREPARED:
            runs = self._runs.get(key, 0) + 1
            if len(self._runs) < MAX_COUNTED or key in self._runs:
                self._runs[key] = runs
            if runs >= PREPARE_AFTER:
                # Prepared first, then executed: one more round trip, once.
                self._names += 1
                name = self._prepared[key] = b"mailclient_%d" % (self._names,)
                self._preparing = key
                self._send(lambda: self.pgconn.send_prepare(name, encoded, types), execute)
                return d
        self._send(execute, None)
        return d

    def _send(self, send: Callable[[], None], then: Callable[[], None] | None) -> None:
        self._then = then
        self._last = None
        try:
            send()
            self._flush()
        except Exception as e:
            self._fail(e)

    def _flush(self) -> None:
        more = self.pgconn.flush()
        if more and not self._writing:
            self._writing = True
            self.reactor.addWriter(self)
        elif not more and self._writing:
            self._writing = False
            self.reactor.removeWriter(self)

    def doWrite(self) -> None:
        try:
            self._flush()
        except Exception as e:
            self._fail(e)

    def doRead(self) -> None:
        pgconn = self.pgconn
        try:
            pgconn.consume_input()
            while self._waiting is not None and not pgconn.is_busy():
                result = pgconn.get_result()
                if result is None:
                    self._step()
                else:
                    self._last = result
            # Anything but CONNECTION_OK (0): the connection is gone.
            if int(pgconn.status) != 0:
                raise self.psycopg.OperationalError("the connection was closed")
        except Exception as e:
            self._fail(e)

    def _step(self) -> None:
        """
        The results of what was sent are all in.
        """
        result, self._last = self._last, None
        then, self._then = self._then, None
        preparing, self._preparing = self._preparing, None
        try:
            rows = self._check(result)
        except Exception as e:
            if preparing is not None:
                # Not prepared: run unprepared next time.
                self._prepared.pop(preparing, None)
                self._runs[preparing] = -MAX_PREPARED
            self._finish(Failure(translate(e)))
            return
        if then is not None:
            self._send(then, None)
            return
        assert result is not None
        count = result.command_tuples
        self._finish(Result(rows, -1 if count is None else count))

    def _check(self, result: PGresult | None) -> list[TupleRow]:
        pq = self.psycopg.pq
        if result is None:
            raise self.psycopg.InterfaceError("no result for the statement")
        status = result.status
        if status == pq.ExecStatus.FATAL_ERROR:
            raise self._error(result)
        if status == pq.ExecStatus.TUPLES_OK:
            return self.adapter.rows(result)
        if status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.EMPTY_QUERY):
            raise self.psycopg.InterfaceError(
                "unexpected result of a statement: %s" % (pq.ExecStatus(status).name,))
        return []

    def _error(self, result: PGresult) -> Exception:
        psycopg = self.psycopg
        sqlstate = result.error_field(psycopg.pq.DiagnosticField.SQLSTATE)
        message = result.error_message.decode(self.adapter.encoding, "replace").strip()
        cls = psycopg.DatabaseError
        if sqlstate:
            try:
                cls = psycopg.errors.lookup(sqlstate.decode("ascii"))
            except KeyError:
                pass
        error: Exception = cls(message)
        return error

    def _finish(self, outcome: Result | Failure) -> None:
        d, self._waiting = self._waiting, None
        if d is None:
            return
        if isinstance(outcome, Failure):
            d.errback(outcome)
        else:
            d.callback(outcome)

    def _fail(self, error: Exception) -> None:
        """
        The connection is lost (or unusable): fail what it runs, and close
        it.
        """
        self._finish(Failure(translate(error)))
        self.close()

    def close(self) -> None:
        """
        Stop watching the connection and close it.
        """
        if self.closed:
            return
        self.closed = True
        self.reactor.removeReader(self)
        if self._writing:
            self._writing = False
            self.reactor.removeWriter(self)
        os.close(self._fd)
        self._fd = -1
        try:
            self.connection.close()
        except Exception:
            pass
        self._finish(Failure(DatabaseUnreachable(
            "lost the relay queue database: the connection was closed")))
        self._lost(self)

    def connectionLost(self, reason: Failure) -> None:
        self.close()


class _Run(Generic[T]):
    """
    One program run on one connection: in a transaction (C{BEGIN} before
    its first statement, C{COMMIT} after its last, C{ROLLBACK} if it
    fails), or, if C{single}, as one autocommitted statement.
    """

    def __init__(self, connection: _Connection, program: Callable[[], Program[T]],
                 single: bool, done: Callable[[_Connection], None],
                 d: defer.Deferred[T]) -> None:
        self.connection = connection
        self.single = single
        self.done = done
        self.d = d
        self.begun = False

        def first() -> Statement:
            self.generator = program()
            return next(self.generator)

        self._advance(first)

    def _advance(self, step: Callable[[], Statement]) -> None:
        """
        Run the program's next statement, C{step()}; or end with what it
        returns, or abort with what it raises.
        """
        try:
            statement = step()
        except StopIteration as stop:
            self._end(stop.value)
            return
        except BaseException:
            self._abort(Failure())
            return
        self._run(statement)

    def _run(self, statement: Statement) -> None:
        if not self.single and not self.begun:
            self.begun = True
            self.connection.command(b"BEGIN").addCallbacks(
                lambda _: self._run(statement), self._abort)
            return
        try:
            sent = self.connection.execute(statement)
        except BaseException:
            self._abort(Failure())
            return
        sent.addCallbacks(self._got, self._abort)

    def _got(self, result: Result) -> None:
        self._advance(lambda: nextStatement(self.generator, result, self.single))

    def _end(self, value: T) -> None:
        self._close()
        if not self.begun:
            self._deliver(value)
            return
        self.connection.command(b"COMMIT").addCallbacks(
            lambda _: self._deliver(value), self._deliver)

    def _abort(self, failure: Failure) -> None:
        self._close()
        if self.begun and not self.connection.closed:
            self.connection.command(b"ROLLBACK").addBoth(lambda _: self._deliver(failure))
            return
        self._deliver(failure)

    def _close(self) -> None:
        generator = getattr(self, "generator", None)
        if generator is not None:
            generator.close()

    def _deliver(self, outcome: T | Failure) -> None:
        self.done(self.connection)
        if isinstance(outcome, Failure):
            self.d.errback(outcome)
        else:
            self.d.callback(outcome)


class ReactorPrograms:
    """
    Runs programs on at most C{size} connections made by C{connect}
    (blocking: the threaded driver runs it in a thread), in the reactor's
    thread, one program per connection at a time.
    """

    def __init__(self, connect: Callable[[], defer.Deferred[SyncConnection]],
                 reactor: FDReactor, size: int) -> None:
        self.connect = connect
        self.reactor = reactor
        self.size = max(1, size)
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._connecting = 0
        # Each job: what runs it on a connection, and what fails it.
        self._jobs: collections.deque[tuple[Callable[[_Connection], object],
                                            Callable[[Failure], None]]] = collections.deque()
        self._closed = False

    def run(self, program: Callable[[], Program[T]], single: bool = False
            ) -> defer.Deferred[T]:
        """
        Run C{program()} in a transaction (C{single}: as one autocommitted
        statement): its result, or its exception.
        """
        if self._closed:
            return defer.fail(DatabaseUnreachable("the relay queue database was closed"))
        d: defer.Deferred[T] = defer.Deferred()
        self._jobs.append((lambda connection: _Run(connection, program, single, self._release,
                                                   d), d.errback))
        self._next()
        return d

    def _next(self) -> None:
        while self._jobs and self._idle:
            run, _ = self._jobs.popleft()
            run(self._idle.pop())
        while (len(self._jobs) > self._connecting
               and len(self._all) + self._connecting < self.size):
            self._connecting += 1
            self.connect().addCallbacks(self._connected, self._cannotConnect)

    def _connected(self, connection: SyncConnection) -> None:
        self._connecting -= 1
        if self._closed:
            connection.close()
            return
        try:
            made = _Connection(connection, self.reactor, self._dropped)
        except Exception as e:
            connection.close()
            self._failOne(Failure(translate(e)))
            return
        self._all.add(made)
        self._idle.append(made)
        self._next()

    def _cannotConnect(self, failure: Failure) -> None:
        self._connecting -= 1
        self._failOne(failure)

    def _failOne(self, failure: Failure) -> None:
        # The oldest program fails with why; the others try again.
        if self._jobs:
            _, fail = self._jobs.popleft()
            fail(failure)
        self._next()

    def _dropped(self, connection: _Connection) -> None:
        self._all.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
        if not self._closed:
            self._next()

    def _release(self, connection: _Connection) -> None:
        if connection.closed:
            return
        if self._closed or not connection.idle:
            connection.close()
            return
        self._idle.append(connection)
        self._next()

    def close(self) -> None:
        """
        Fail the programs waiting for a connection, close the idle
        connections, and the others once their program is done.
        """
        self._closed = True
        jobs, self._jobs = self._jobs, collections.deque()
        for _, fail in jobs:
            fail(Failure(DatabaseUnreachable("the relay queue database was closed")))
        for connection in list(self._idle):
            connection.close()
