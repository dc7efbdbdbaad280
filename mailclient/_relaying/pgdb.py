"""
Talking to PostgreSQL without blocking the reactor: the database of the
PostgreSQL relay queue.

Every transaction is written once, as a I{program}: a generator that yields
the L{Statement}s to run and is sent each one's L{Result}; what it returns is
the result of the transaction, and an exception it raises rolls the
transaction back.  A program marked L{oneStatement} runs its one statement
on its own, autocommitted: one round trip, where a transaction block takes
three (C{BEGIN}, the statement, C{COMMIT}).  Two drivers run programs,
behind one method, C{run(program, *args) -> Deferred}:

  - L{ThreadedDatabase}: for any other reactor.  Its threads make psycopg
    connections (connecting blocks); the programs run on the reactor's own
    thread, each statement sent with libpq's asynchronous interface, the
    reactor watching the sockets (L{mailclient._relaying.pgreactor}): no
    thread is woken to run a statement.  On a reactor that cannot watch
    sockets, each program runs in one of its threads instead;
  - L{AsyncioDatabase}: C{psycopg.AsyncConnection}s, each program run as a
    coroutine on the asyncio loop of Twisted's asyncio reactor
    (C{Deferred.fromFuture}).

L{connectDatabase} picks the one that suits the reactor.  (L{Listener}, in
L{mailclient._relaying.pglisten}, waits for C{NOTIFY} on a connection of its
own.)

psycopg (3) is an optional dependency (C{mailclient[postgresql]}): it is
imported only when a database is opened.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Generator, ParamSpec, Protocol, TypeVar, cast
from collections.abc import Coroutine

from twisted.internet import defer
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorCore,
    IReactorFDSet,
    IReactorFromThreads,
    IReadDescriptor,
)
from twisted.logger import Logger

from mailclient._relaying.pgthreads import WorkerThreads

if TYPE_CHECKING:
    from typing import TypeAlias

    import psycopg

    from mailclient._relaying.pgreactor import ReactorPrograms
    from psycopg.abc import Params
    from psycopg.pq.abc import PGconn
    from psycopg.rows import TupleRow

    #: The connections of the two drivers.
    SyncConnection: TypeAlias = psycopg.Connection[TupleRow]
    AsyncConnection: TypeAlias = psycopg.AsyncConnection[TupleRow]

_log = Logger()

T = TypeVar("T")
P = ParamSpec("P")


class QueueDatabaseError(Exception):
    """
    The PostgreSQL relay queue cannot be used; the message is one line.
    """


class DriverMissing(QueueDatabaseError):
    """
    psycopg is not installed.
    """


class DatabaseUnreachable(QueueDatabaseError):
    """
    The database cannot be reached, or the connection to it was lost.
    """


class PermissionDenied(QueueDatabaseError):
    """
    The database role may not do what the queue needs.
    """


class SchemaMissing(QueueDatabaseError):
    """
    The queue's tables are not in the database (see C{createSchema}).
    """


class SchemaVersionError(QueueDatabaseError):
    """
    The queue's tables are of a version this mailclient does not use (see
    C{upgradeSchema}).
    """


class StaleLeaseError(QueueDatabaseError):
    """
    A worker acted on a message (or destination slot) whose lease it no
    longer holds: another worker may hold it now, so nothing was changed.
    """


def oneLine(error: BaseException, limit: int = 300) -> str:
    """
    The first non-empty line of what C{error} says (libpq's messages span
    several), at most C{limit} characters.
    """
    for line in str(error).splitlines():
        line = line.strip()
        if line:
            return line[:limit]
    return type(error).__name__


def driver() -> ModuleType:
    """
    The psycopg module.

    @raise DriverMissing: if it is not installed.
    """
    try:
        return importlib.import_module("psycopg")
    except ImportError:
        raise DriverMissing(
            "the PostgreSQL relay queue needs psycopg 3: "
            "pip install 'mailclient[postgresql]'") from None


def translate(error: BaseException, connecting: bool = False) -> BaseException:
    """
    The queue's own exception for a psycopg error, when there is one;
    otherwise C{error} itself.
    """
    if isinstance(error, QueueDatabaseError):
        return error
    psycopg = driver()
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        return PermissionDenied("permission denied on the relay queue: %s" % (oneLine(error),))
    if isinstance(error, psycopg.OperationalError):
        if connecting:
            return DatabaseUnreachable(
                "cannot connect to the relay queue database: %s" % (oneLine(error),))
        return DatabaseUnreachable(
            "lost the relay queue database: %s" % (oneLine(error),))
    return error


@dataclass(frozen=True)
class Statement:
    """
    One SQL statement of a program, with its parameters (psycopg's
    C{%s}/C{%(name)s} placeholders).
    """

    sql: str
    params: Params | None = None


@dataclass(frozen=True)
class Result:
    """
    What a statement gave: its rows (none for a statement that returns
    none) and how many rows it touched.
    """

    rows: list[TupleRow]
    rowcount: int

    def one(self) -> TupleRow | None:
        """
        The first row, if any.
        """
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        """
        The first column of the first row, if any.
        """
        row = self.one()
        return None if row is None else row[0]


Program = Generator[Statement, Result, T]

#: The programs marked L{oneStatement}.
_ONE_STATEMENT: set[Callable[..., object]] = set()

C = TypeVar("C", bound=Callable[..., object])


def oneStatement(program: C) -> C:
    """
    Mark C{program} as running exactly one statement: the drivers run it
    outside a transaction block, as one autocommitted statement (its own
    commit, in one round trip).  The statement is committed when the
    program gets its result, so whatever the program raises then cannot
    undo it: such a program may raise only for a result that changed
    nothing (a fenced statement that matched no row).  Yielding a second
    statement is a programming error (raised, the first one committed).
    """
    _ONE_STATEMENT.add(program)
    return program


def isOneStatement(program: Callable[..., object]) -> bool:
    """
    Whether C{program} is marked L{oneStatement}.
    """
    return program in _ONE_STATEMENT


class _SecondStatement(Exception):
    """
    A program marked L{oneStatement} yielded a second statement.
    """


def nextStatement(program: Program[T], result: Result, single: bool) -> Statement:
    """
    Give C{program} the result of its statement and return its next one
    (L{StopIteration} once it is done): a one-statement (C{single})
    program has none.
    """
    statement = program.send(result)
    if single:
        raise _SecondStatement("a one-statement program yielded a second statement")
    return statement


def _driveSync(cursor: psycopg.Cursor[TupleRow], program: Program[T], single: bool = False
               ) -> T:
    try:
        statement = next(program)
        while True:
            cursor.execute(statement.sql, statement.params)
            rows = cursor.fetchall() if cursor.description is not None else []
            statement = nextStatement(program, Result(rows, cursor.rowcount), single)
    except StopIteration as stop:
        return stop.value
    finally:
        program.close()


async def _driveAsync(cursor: psycopg.AsyncCursor[TupleRow], program: Program[T],
                      single: bool = False) -> T:
    try:
        statement = next(program)
        while True:
            await cursor.execute(statement.sql, statement.params)
            rows = await cursor.fetchall() if cursor.description is not None else []
            statement = nextStatement(program, Result(rows, cursor.rowcount), single)
    except StopIteration as stop:
        return stop.value
    finally:
        program.close()


class ListenConnection(Protocol):
    """
    What a L{Listener} uses of the connection it listens on (a psycopg
    C{Connection} or C{AsyncConnection}).
    """

    @property
    def pgconn(self) -> PGconn:
        ...

    def fileno(self) -> int:
        ...


class Database(Protocol):
    """
    What the queue needs of a database: run a program in a transaction, and
    give a connection to listen on.
    """

    def run(
        self, program: Callable[P, Program[T]], *args: P.args, **kw: P.kwargs
    ) -> defer.Deferred[T]:
        ...

    def listenConnection(self, channel: str) -> defer.Deferred[ListenConnection]:
        ...

    def closeConnection(self, connection: ListenConnection) -> defer.Deferred[None]:
        ...

    def close(self) -> defer.Deferred[None]:
        ...


def _broken(connection: SyncConnection | AsyncConnection) -> bool:
    return bool(connection.closed or connection.broken)


class ThreadedDatabase:
    """
    Runs programs on at most C{size} psycopg connections, made by threads
    of its own: for any reactor.  The programs run on the reactor's thread
    (C{IReactorFDSet}: L{ReactorPrograms}), or, on a reactor that cannot
    watch sockets, in those threads.

    @ivar conninfo: The libpq connection string (C{"host=/run/postgresql
        dbname=mail"}, or a C{postgresql://} URI).
    """

    def __init__(
        self, conninfo: str, reactor: IReactorCore | None = None, size: int = 4,
        connectTimeout: float = 10,
    ) -> None:
        self.psycopg = driver()
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        self.reactor = reactor
        self.conninfo = conninfo
        self.connectTimeout = connectTimeout
        # Every reactor runs calls from other threads (IReactorFromThreads).
        self._threads = WorkerThreads(cast(IReactorFromThreads, reactor), size,
                                      "mailclient-postgresql")
        self._lock = threading.Lock()
        self._free: list[SyncConnection] = []
        self._closed = False
        self._shutdown: object = None
        self._programs: ReactorPrograms | None = None

    def _connect(self, autocommit: bool = False) -> SyncConnection:
        try:
            return self.psycopg.connect(
                self.conninfo, autocommit=autocommit,
                connect_timeout=max(1, int(self.connectTimeout)))
        except Exception as e:
            raise translate(e, connecting=True) from None

    def _acquire(self) -> SyncConnection:
        with self._lock:
            while self._free:
                connection = self._free.pop()
                if not _broken(connection):
                    return connection
        return self._connect()

    def _release(self, connection: SyncConnection) -> None:
        with self._lock:
            if not self._closed and not _broken(connection):
                self._free.append(connection)
                return
        connection.close()

    def _runInThread(self, program: Callable[[], Program[T]], single: bool = False) -> T:
        connection = self._acquire()
        try:
            if single:
                # Outside a transaction block: the statement commits itself.
                connection.autocommit = True
                try:
                    with connection.cursor() as cursor:
                        result = _driveSync(cursor, program(), True)
                finally:
                    if not _broken(connection):
                        connection.autocommit = False
            else:
                with connection.cursor() as cursor:
                    result = _driveSync(cursor, program())
                connection.commit()
        except BaseException as e:
            if not _broken(connection):
                try:
                    connection.rollback()
                except Exception:
                    pass
            self._release(connection)
            raise translate(e) from None
        self._release(connection)
        return result

    def _start(self) -> None:
        if self._closed:
            raise DatabaseUnreachable("the relay queue database was closed")
        if self._shutdown is None:
            # Stop its threads with the reactor (they wait for programs).
            self._shutdown = self.reactor.addSystemEventTrigger(
                "during", "shutdown", self._stopPool)

    def _inThread(self, f: Callable[[], T]) -> defer.Deferred[T]:
        return self._threads.run(f)

    def run(
        self, program: Callable[P, Program[T]], *args: P.args, **kw: P.kwargs
    ) -> defer.Deferred[T]:
        """
        Run C{program(*args, **kw)} in one transaction (one autocommitted
        statement if it is marked L{oneStatement}): its result, or its
        exception (the transaction then rolled back).  The program runs on
        the reactor's thread, or in one of the database's threads (then it
        must not touch the reactor).
        """
        try:
            self._start()
        except QueueDatabaseError:
            return defer.fail()
        single = isOneStatement(program)
        if IReactorFDSet.providedBy(self.reactor):
            return self._reactorPrograms().run(lambda: program(*args, **kw), single)
        return self._inThread(
            lambda: self._runInThread(lambda: program(*args, **kw), single))

    def _reactorPrograms(self) -> ReactorPrograms:
        """
        Where programs run when the reactor can watch sockets: on its
        thread, on connections made in a thread.
        """
        if self._programs is None:
            from mailclient._relaying.pgreactor import ReactorPrograms

            self._programs = ReactorPrograms(
                lambda: self._inThread(lambda: self._connect(autocommit=True)),
                cast(IReactorFDSet, self.reactor), self._threads.size)
        return self._programs

    def listenConnection(self, channel: str) -> defer.Deferred[ListenConnection]:
        """
        A new connection, in autocommit, listening on C{channel}.
        """
        def connect() -> ListenConnection:
            connection = self._connect(autocommit=True)
            try:
                connection.execute('LISTEN "%s"' % (channel,))
            except Exception as e:
                connection.close()
                raise translate(e) from None
            return connection

        try:
            self._start()
        except QueueDatabaseError:
            return defer.fail()
        return self._inThread(connect)

    def closeConnection(self, connection: ListenConnection) -> defer.Deferred[None]:
        """
        Close a connection made by L{listenConnection}.
        """
        cast("SyncConnection", connection).close()
        return defer.succeed(None)

    def _stopPool(self) -> None:
        if self._shutdown is not None:
            try:
                self.reactor.removeSystemEventTrigger(self._shutdown)
            except (KeyError, ValueError, TypeError):
                pass
            self._shutdown = None
        self._threads.stop()

    def close(self) -> defer.Deferred[None]:
        """
        Stop the threads (waiting for running programs) and close the
        connections.
        """
        self._closed = True
        if self._programs is not None:
            self._programs.close()
        self._stopPool()
        with self._lock:
            free, self._free = self._free, []
        for connection in free:
            connection.close()
        return defer.succeed(None)


class AsyncioDatabase:
    """
    Runs programs with C{psycopg.AsyncConnection}s (at most C{size} at
    once) on an asyncio event loop: for Twisted's asyncio reactor, whose
    loop it is, or any code running an asyncio loop.
    """

    def __init__(
        self, conninfo: str, loop: asyncio.AbstractEventLoop | None = None, size: int = 4,
        connectTimeout: float = 10,
    ) -> None:
        self.psycopg = driver()
        self.conninfo = conninfo
        self.loop = loop
        self.size = max(1, size)
        self.connectTimeout = connectTimeout
        self._free: list[AsyncConnection] = []
        self._semaphore: asyncio.Semaphore | None = None
        self._closed = False

    def _future(self, coroutine: Coroutine[object, object, T]) -> defer.Deferred[T]:
        return defer.Deferred.fromFuture(asyncio.ensure_future(coroutine, loop=self.loop))

    async def _connect(self, autocommit: bool = False) -> AsyncConnection:
        try:
            return await self.psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=autocommit,
                connect_timeout=max(1, int(self.connectTimeout)))
        except Exception as e:
            raise translate(e, connecting=True) from None

    async def _run(self, program: Callable[[], Program[T]], single: bool = False) -> T:
        if self._closed:
            raise DatabaseUnreachable("the relay queue database was closed")
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.size)
        async with self._semaphore:
            connection = None
            while self._free and connection is None:
                connection = self._free.pop()
                if _broken(connection):
                    connection = None
            if connection is None:
                connection = await self._connect()
            try:
                if single:
                    await connection.set_autocommit(True)
                    try:
                        async with connection.cursor() as cursor:
                            result = await _driveAsync(cursor, program(), True)
                    finally:
                        if not _broken(connection):
                            await connection.set_autocommit(False)
                else:
                    async with connection.cursor() as cursor:
                        result = await _driveAsync(cursor, program())
                    await connection.commit()
            except BaseException as e:
                if not _broken(connection):
                    try:
                        await connection.rollback()
                    except Exception:
                        pass
                await self._release(connection)
                raise translate(e) from None
            await self._release(connection)
            return result

    async def _release(self, connection: AsyncConnection) -> None:
        if self._closed or _broken(connection):
            await connection.close()
        else:
            self._free.append(connection)

    def run(
        self, program: Callable[P, Program[T]], *args: P.args, **kw: P.kwargs
    ) -> defer.Deferred[T]:
        """
        Run C{program(*args, **kw)} in one transaction (one autocommitted
        statement if it is marked L{oneStatement}), on the event loop.
        """
        return self._future(self._run(lambda: program(*args, **kw), isOneStatement(program)))

    def listenConnection(self, channel: str) -> defer.Deferred[ListenConnection]:
        """
        A new connection, in autocommit, listening on C{channel}.
        """
        async def connect() -> ListenConnection:
            connection = await self._connect(autocommit=True)
            try:
                await connection.execute('LISTEN "%s"' % (channel,))
            except Exception as e:
                await connection.close()
                raise translate(e) from None
            return connection

        return self._future(connect())

    def closeConnection(self, connection: ListenConnection) -> defer.Deferred[None]:
        """
        Close a connection made by L{listenConnection}.
        """
        return self._future(cast("AsyncConnection", connection).close())

    def close(self) -> defer.Deferred[None]:
        """
        Close the idle connections; those in use close when their program
        ends.
        """
        self._closed = True

        async def closeAll() -> None:
            free, self._free = self._free, []
            for connection in free:
                await connection.close()

        return self._future(closeAll())


def isAsyncioReactor(reactor: object) -> bool:
    """
    Whether C{reactor} runs on an asyncio event loop.
    """
    return getattr(reactor, "_asyncioEventloop", None) is not None


def connectDatabase(
    conninfo: str, reactor: IReactorCore | None = None, size: int = 4,
    connectTimeout: float = 10, asyncio: bool | None = None,
) -> ThreadedDatabase | AsyncioDatabase:
    """
    A database for the relay queue at C{conninfo}: an L{AsyncioDatabase}
    when C{reactor} (default: the global one) is Twisted's asyncio reactor,
    else a L{ThreadedDatabase}.  Nothing is connected until it is used.

    @param asyncio: Force one driver (C{True}: asyncio, C{False}:
        threads).
    @raise DriverMissing: if psycopg is not installed.
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    if asyncio is None:
        asyncio = isAsyncioReactor(reactor)
    if asyncio:
        return AsyncioDatabase(conninfo, getattr(reactor, "_asyncioEventloop", None), size,
                               connectTimeout)
    return ThreadedDatabase(conninfo, reactor, size, connectTimeout)


class QueueReactor(Protocol):
    """
    What the PostgreSQL queue needs of its reactor: delayed calls (Twisted's
    C{IReactorTime}) and watching a socket (C{IReactorFDSet}).
    """

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: object, **kwargs: object
    ) -> IDelayedCall:
        ...

    def seconds(self) -> float:
        ...

    def addReader(self, reader: IReadDescriptor) -> None:
        ...

    def removeReader(self, reader: IReadDescriptor) -> None:
        ...
