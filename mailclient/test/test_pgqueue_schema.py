"""
Tests for L{mailclient._relaying.pgschema} and the errors of
L{mailclient._relaying.pgdb}: creating, upgrading and checking the queue's
tables, on a real PostgreSQL, and the one-line errors a worker gets.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mailclient._relaying import pgdb
from mailclient._relaying.pgdb import (
    DatabaseUnreachable,
    DriverMissing,
    PermissionDenied,
    QueueDatabaseError,
    SchemaMissing,
    SchemaVersionError,
    ThreadedDatabase,
)
from mailclient._relaying.pgqueue import PGQueue
from mailclient._relaying.pgschema import (
    SCHEMA_VERSION,
    channelOf,
    checkSchema,
    checkSchemaName,
    createSchema,
    dropSchema,
    schemaVersion,
    upgradeSchema,
)
from mailclient.test.helpers_pg import PostgresTestMixin


class SchemaTests(PostgresTestMixin, TestCase):
    """
    Creating, upgrading and checking the schema.
    """

    def setUp(self) -> Any:
        super().setUp()
        self.db = self.database()

    def sql(self, statement: str, params: Any = None) -> Any:
        return self.cluster.execute(statement.format(s=self.schema), params)

    def assertOneLine(self, error: BaseException, *parts: str) -> None:
        text = str(error)
        self.assertNotIn("\n", text)
        for part in parts:
            self.assertIn(part, text)

    @defer.inlineCallbacks
    def test_create(self) -> Any:
        """
        L{createSchema} makes the tables at L{SCHEMA_VERSION}; a second call
        changes nothing.
        """
        self.assertIsNone((yield schemaVersion(self.db, self.schema)))
        self.assertEqual((yield createSchema(self.db, self.schema)), SCHEMA_VERSION)
        self.assertEqual((yield createSchema(self.db, self.schema)), SCHEMA_VERSION)
        self.assertEqual((yield checkSchema(self.db, self.schema)), SCHEMA_VERSION)
        tables = self.sql("SELECT table_name FROM information_schema.tables"
                          " WHERE table_schema = %s ORDER BY 1", (self.schema,))
        self.assertEqual([t[0] for t in tables],
                         ["destinations", "messages", "schema_version", "slots"])
        self.assertEqual(self.sql("SELECT version FROM {s}.schema_version"), [(SCHEMA_VERSION,)])

    @defer.inlineCallbacks
    def test_concurrentCreate(self) -> Any:
        """
        Workers creating the schema at the same time make it once.
        """
        others = [self.database() for _ in range(3)]
        versions = yield defer.gatherResults([createSchema(d, self.schema) for d in others])
        self.assertEqual(versions, [SCHEMA_VERSION] * 3)
        self.assertEqual(self.sql("SELECT count(*) FROM {s}.schema_version"), [(1,)])

    @defer.inlineCallbacks
    def test_missing(self) -> Any:
        """
        A worker on a database without the schema gets L{SchemaMissing}.
        """
        error = yield self.assertFailure(checkSchema(self.db, self.schema), SchemaMissing)
        self.assertOneLine(error, self.schema, "createSchema")
        queue = PGQueue(self.db, self.mktemp(), schema=self.schema, listen=False)
        yield self.assertFailure(queue.start(), SchemaMissing)
        yield self.assertFailure(upgradeSchema(self.db, self.schema), SchemaMissing)

    @defer.inlineCallbacks
    def test_wrongVersion(self) -> Any:
        """
        A schema of another version is refused, saying what to do.
        """
        yield createSchema(self.db, self.schema)
        self.sql("UPDATE {s}.schema_version SET version = %s", (SCHEMA_VERSION + 1,))
        error = yield self.assertFailure(checkSchema(self.db, self.schema), SchemaVersionError)
        self.assertOneLine(error, "version %d" % (SCHEMA_VERSION + 1,), "upgrade mailclient")
        yield self.assertFailure(createSchema(self.db, self.schema), SchemaVersionError)
        yield self.assertFailure(upgradeSchema(self.db, self.schema), SchemaVersionError)
        self.sql("UPDATE {s}.schema_version SET version = 0")
        error = yield self.assertFailure(checkSchema(self.db, self.schema), SchemaVersionError)
        self.assertOneLine(error, "version 0", "upgradeSchema")
        queue = PGQueue(self.db, self.mktemp(), schema=self.schema, listen=False)
        yield self.assertFailure(queue.start(), SchemaVersionError)

    @defer.inlineCallbacks
    def test_upgrade(self) -> Any:
        """
        L{upgradeSchema} applies each version's statements in turn, in one
        transaction: a failing step leaves the schema as it was.
        """
        yield createSchema(self.db, self.schema)
        migrations = {
            SCHEMA_VERSION + 1: ["ALTER TABLE {s}.messages ADD COLUMN priority integer"],
            SCHEMA_VERSION + 2: ["ALTER TABLE {s}.messages ADD COLUMN note text"],
        }
        self.assertEqual((yield upgradeSchema(self.db, self.schema)), SCHEMA_VERSION)
        version = yield upgradeSchema(self.db, self.schema, migrations, SCHEMA_VERSION + 2)
        self.assertEqual(version, SCHEMA_VERSION + 2)
        self.assertEqual((yield schemaVersion(self.db, self.schema)), SCHEMA_VERSION + 2)
        self.sql("SELECT priority, note FROM {s}.messages")
        error = yield self.assertFailure(
            upgradeSchema(self.db, self.schema, migrations, SCHEMA_VERSION + 3),
            SchemaVersionError)
        self.assertOneLine(error, "no upgrade", "version %d" % (SCHEMA_VERSION + 3,))

        broken = {SCHEMA_VERSION + 3: ["ALTER TABLE {s}.messages ADD COLUMN x integer",
                                       "SELECT no_such_function()"]}
        yield self.assertFailure(
            upgradeSchema(self.db, self.schema, broken, SCHEMA_VERSION + 3), Exception)
        self.assertEqual((yield schemaVersion(self.db, self.schema)), SCHEMA_VERSION + 2)
        columns = self.sql("SELECT column_name FROM information_schema.columns"
                           " WHERE table_schema = %s AND column_name = 'x'", (self.schema,))
        self.assertEqual(columns, [])

    @defer.inlineCallbacks
    def test_upgradeFromVersion1(self) -> Any:
        """
        A queue made by the first version (no C{options} column) is
        upgraded to the current one by L{upgradeSchema}, its messages kept.
        """
        yield createSchema(self.db, self.schema)
        self.sql("ALTER TABLE {s}.messages DROP COLUMN options")
        self.sql("UPDATE {s}.schema_version SET version = 1")
        self.sql("INSERT INTO {s}.messages (id, sender, recipient, data)"
                 " VALUES ('old', 'a@example.com', 'b@example.org', 'x')")
        yield self.assertFailure(checkSchema(self.db, self.schema), SchemaVersionError)
        self.assertEqual((yield upgradeSchema(self.db, self.schema)), SCHEMA_VERSION)
        self.assertEqual(self.sql("SELECT id, options FROM {s}.messages"), [("old", None)])
        self.assertEqual((yield checkSchema(self.db, self.schema)), SCHEMA_VERSION)

    @defer.inlineCallbacks
    def test_drop(self) -> Any:
        """
        L{dropSchema} removes everything.
        """
        yield createSchema(self.db, self.schema)
        yield dropSchema(self.db, self.schema)
        self.assertIsNone((yield schemaVersion(self.db, self.schema)))

    @defer.inlineCallbacks
    def test_permissionDenied(self) -> Any:
        """
        A role that may not use the tables gets L{PermissionDenied}, naming
        what it lacks.
        """
        yield createSchema(self.db, self.schema)
        role = "worker_" + self.schema
        self.sql("CREATE ROLE %s LOGIN" % (role,))
        limited = ThreadedDatabase(self.cluster.conninfo(user=role))
        self.addCleanup(limited.close)
        error = yield self.assertFailure(checkSchema(limited, self.schema), PermissionDenied)
        self.assertOneLine(error, "permission denied", self.schema)
        self.sql("GRANT USAGE ON SCHEMA {s} TO %s" % (role,))
        self.sql("GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO %s" % (role,))
        error = yield self.assertFailure(checkSchema(limited, self.schema), PermissionDenied)
        self.assertOneLine(error, role, "INSERT, UPDATE, DELETE", self.schema + ".messages")
        queue = PGQueue(limited, self.mktemp(), schema=self.schema, listen=False)
        yield self.assertFailure(queue.start(), PermissionDenied)
        self.sql("GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO %s" % (role,))
        self.assertEqual((yield checkSchema(limited, self.schema)), SCHEMA_VERSION)
        # Creating needs more.
        error = yield self.assertFailure(createSchema(limited, "other_" + self.schema),
                                         PermissionDenied)
        self.assertOneLine(error, "permission denied")

    @defer.inlineCallbacks
    def test_unreachable(self) -> Any:
        """
        A database that cannot be reached gives L{DatabaseUnreachable}, in
        one line.
        """
        nowhere = ThreadedDatabase("host=%s/nowhere dbname=x" % (self.cluster.directory,))
        self.addCleanup(nowhere.close)
        error = yield self.assertFailure(checkSchema(nowhere, self.schema), DatabaseUnreachable)
        self.assertOneLine(error, "cannot connect to the relay queue database")
        queue = PGQueue(nowhere, self.mktemp(), schema=self.schema)
        yield self.assertFailure(queue.start(), DatabaseUnreachable)

    @defer.inlineCallbacks
    def test_connectionLost(self) -> Any:
        """
        A connection that dies under a transaction fails it with
        L{DatabaseUnreachable}; the next transaction connects again.
        """
        yield createSchema(self.db, self.schema)
        from mailclient._relaying.pgdb import Statement

        def dying() -> Any:
            yield Statement("SELECT pg_terminate_backend(pg_backend_pid())")

        error = yield self.assertFailure(self.db.run(dying), DatabaseUnreachable)
        self.assertOneLine(error, "lost the relay queue database")
        self.assertEqual((yield checkSchema(self.db, self.schema)), SCHEMA_VERSION)

    @defer.inlineCallbacks
    def test_closed(self) -> Any:
        """
        A closed database runs nothing more.
        """
        database = ThreadedDatabase(self.cluster.conninfo())
        yield database.close()
        yield self.assertFailure(checkSchema(database, self.schema), DatabaseUnreachable)


class NamesTests(SynchronousTestCase):
    """
    Schema names, and the errors' shape.
    """

    def test_schemaNames(self) -> None:
        """
        Schema names are plain lower-case identifiers.
        """
        self.assertEqual(checkSchemaName("mail_queue2"), "mail_queue2")
        for bad in ("", "Mail", "a-b", "a;drop", "2x", "x" * 41, 'a"b'):
            self.assertRaises(ValueError, checkSchemaName, bad)
        self.assertEqual(channelOf("mailclient"), "mailclient_queued")

    def test_errorsAreQueueErrors(self) -> None:
        """
        Every error of the queue's database is a L{QueueDatabaseError}.
        """
        for kind in (DatabaseUnreachable, PermissionDenied, SchemaMissing, SchemaVersionError,
                     DriverMissing, pgdb.StaleLeaseError):
            self.assertTrue(issubclass(kind, QueueDatabaseError))

    def test_oneLine(self) -> None:
        """
        libpq's messages of several lines become their first line.
        """
        error = Exception('connection failed: FATAL:  role "x" does not exist\n\nDETAIL: y')
        self.assertEqual(pgdb.oneLine(error),
                         'connection failed: FATAL:  role "x" does not exist')
        self.assertEqual(pgdb.oneLine(Exception("")), "Exception")

    def test_driverMissing(self) -> None:
        """
        Without psycopg, opening a database says which extra to install.
        """
        def missing(name: str) -> Any:
            raise ImportError(name)

        self.patch(pgdb.importlib, "import_module", missing)
        error = self.assertRaises(DriverMissing, ThreadedDatabase, "host=/x")
        self.assertIn("mailclient[postgresql]", str(error))
        self.assertRaises(DriverMissing, pgdb.connectDatabase, "host=/x")
