"""
The tables of the PostgreSQL relay queue: creating them, upgrading them,
checking them.  Explicit and versioned: a worker never changes the schema,
it only checks that the one it finds is the one it knows
(L{checkSchema}); an administrator creates it (L{createSchema}) and upgrades
it (L{upgradeSchema}) with a role allowed to.

All the queue's objects live in one PostgreSQL schema (default
C{mailclient}), so that several queues can share a database and a role can
be given exactly what a worker needs.
"""

from __future__ import annotations

import re
from typing import Generator
from collections.abc import Mapping, Sequence

from twisted.internet import defer

from mailclient._relaying.pgdb import (
    Database,
    PermissionDenied,
    Result,
    SchemaMissing,
    SchemaVersionError,
    Statement,
)

#: The version of the tables this mailclient uses.  2: a message's options
#: (such as REQUIRETLS), C{messages.options}.
SCHEMA_VERSION = 2

#: The PostgreSQL schema the queue's tables are in by default.
DEFAULT_SCHEMA = "mailclient"

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}\Z")

#: The statements that make the current version; C{{s}} is the schema.
_CREATE = [
    "CREATE SCHEMA IF NOT EXISTS {s}",
    """CREATE TABLE {s}.schema_version (
        version integer NOT NULL,
        installed_at timestamptz NOT NULL DEFAULT clock_timestamp()
    )""",
    """CREATE TABLE {s}.messages (
        id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_][A-Za-z0-9._-]{{0,199}}$'),
        sender text NOT NULL,
        recipient text NOT NULL,
        domain text,
        data bytea NOT NULL,
        queued_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        next_attempt timestamptz NOT NULL DEFAULT clock_timestamp(),
        failures integer NOT NULL DEFAULT 0,
        last_failure timestamptz,
        last_reason text,
        warned boolean NOT NULL DEFAULT false,
        quarantined boolean NOT NULL DEFAULT false,
        claims integer NOT NULL DEFAULT 0,
        lease_token uuid,
        lease_worker text,
        lease_until timestamptz,
        origin text,
        options jsonb
    )""",
    "CREATE INDEX messages_due ON {s}.messages (next_attempt) WHERE NOT quarantined",
    "CREATE INDEX messages_lease ON {s}.messages (lease_token) WHERE lease_token IS NOT NULL",
    """CREATE TABLE {s}.destinations (
        destination text PRIMARY KEY,
        not_before timestamptz,
        last_reason text,
        max_connections integer CHECK (max_connections IS NULL OR max_connections >= 0)
    )""",
    """CREATE TABLE {s}.slots (
        token uuid PRIMARY KEY,
        destination text NOT NULL,
        worker text NOT NULL,
        lease_until timestamptz NOT NULL
    )""",
    "CREATE INDEX slots_destination ON {s}.slots (destination, lease_until)",
    """CREATE FUNCTION {s}.notify_queued() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('{s}_queued', '');
        RETURN NULL;
    END
    $$""",
    """CREATE TRIGGER messages_queued AFTER INSERT ON {s}.messages
        FOR EACH STATEMENT EXECUTE FUNCTION {s}.notify_queued()""",
]

#: For each version after the first, the statements that turn the one
#: before into it.
MIGRATIONS: Mapping[int, Sequence[str]] = {
    2: ["ALTER TABLE {s}.messages ADD COLUMN IF NOT EXISTS options jsonb"],
}

#: The tables a worker reads and writes.
TABLES = ("messages", "destinations", "slots")


def checkSchemaName(schema: str) -> str:
    """
    Return C{schema} if it can name the queue's PostgreSQL schema: lower
    case letters, digits and underscores, at most 40.

    @raise ValueError: if not.
    """
    if not isinstance(schema, str) or _SCHEMA_NAME.match(schema) is None:
        raise ValueError(
            "%r cannot name the relay queue's schema: use lower-case letters, digits "
            "and underscores (at most 40)" % (schema,))
    return schema


def channelOf(schema: str) -> str:
    """
    The C{LISTEN}/C{NOTIFY} channel on which workers of the queue in
    C{schema} are told about new mail.
    """
    return checkSchemaName(schema) + "_queued"


def _lock(schema: str) -> Statement:
    # One creator or upgrader at a time, for this schema.
    return Statement("SELECT pg_advisory_xact_lock(hashtext(%s))", ("mailclient-schema:" + schema,))


def _installed(schema: str) -> Generator[Statement, Result, int | None]:
    found = yield Statement("SELECT to_regclass(%s) IS NOT NULL", (schema + ".schema_version",))
    if not found.scalar():
        return None
    version = yield Statement("SELECT max(version) FROM %s.schema_version" % (schema,))
    return int(version.scalar() or 0)


def _versionError(schema: str, version: int, known: int) -> SchemaVersionError:
    if version > known:
        return SchemaVersionError(
            "the relay queue schema %s is version %d, newer than this mailclient's %d: "
            "upgrade mailclient" % (schema, version, known))
    return SchemaVersionError(
        "the relay queue schema %s is version %d, this mailclient needs version %d: "
        "run upgradeSchema" % (schema, version, known))


def _createProgram(schema: str, statements: Sequence[str], version: int) -> Generator[
        Statement, Result, int]:
    yield _lock(schema)
    installed = yield from _installed(schema)
    if installed is not None:
        if installed != version:
            raise _versionError(schema, installed, version)
        return installed
    for sql in statements:
        yield Statement(sql.format(s=schema))
    yield Statement("INSERT INTO %s.schema_version (version) VALUES (%%s)" % (schema,), (version,))
    return version


def createSchema(database: Database, schema: str = DEFAULT_SCHEMA) -> defer.Deferred[int]:
    """
    Create the queue's tables, at L{SCHEMA_VERSION}, in one transaction.
    Nothing is done if they exist at that version already.

    @return: A Deferred that fires with the version, or fails with
        L{SchemaVersionError} (they exist at another version) or
        L{PermissionDenied}.
    """
    checkSchemaName(schema)
    return database.run(_createProgram, schema, _CREATE, SCHEMA_VERSION)


def _upgradeProgram(schema: str, migrations: Mapping[int, Sequence[str]], target: int
                    ) -> Generator[Statement, Result, int]:
    yield _lock(schema)
    installed = yield from _installed(schema)
    if installed is None:
        raise SchemaMissing(
            "the relay queue schema %s is not in the database: run createSchema" % (schema,))
    if installed > target:
        raise _versionError(schema, installed, target)
    for version in range(installed + 1, target + 1):
        if version not in migrations:
            raise SchemaVersionError(
                "no upgrade of the relay queue schema %s to version %d" % (schema, version))
        for sql in migrations[version]:
            yield Statement(sql.format(s=schema))
        yield Statement("UPDATE %s.schema_version SET version = %%s, installed_at = "
                        "clock_timestamp()" % (schema,), (version,))
    return target


def upgradeSchema(
    database: Database, schema: str = DEFAULT_SCHEMA,
    migrations: Mapping[int, Sequence[str]] = MIGRATIONS, target: int = SCHEMA_VERSION,
) -> defer.Deferred[int]:
    """
    Upgrade the queue's tables to L{SCHEMA_VERSION}, one version after the
    other, in one transaction (nothing changes if any step fails).  Stop
    every worker of an older mailclient first.

    @return: A Deferred that fires with the version, or fails with
        L{SchemaMissing}, L{SchemaVersionError} (they are newer) or
        L{PermissionDenied}.
    """
    checkSchemaName(schema)
    return database.run(_upgradeProgram, schema, migrations, target)


def _checkProgram(schema: str, version: int) -> Generator[Statement, Result, int]:
    installed = yield from _installed(schema)
    if installed is None:
        raise SchemaMissing(
            "the relay queue schema %s is not in the database: run createSchema" % (schema,))
    if installed != version:
        raise _versionError(schema, installed, version)
    denied = yield Statement(
        "SELECT t.name, p.privilege FROM unnest(%s::text[]) WITH ORDINALITY AS t(name, n),"
        " unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) WITH ORDINALITY"
        " AS p(privilege, m) WHERE NOT has_table_privilege(t.name, p.privilege)"
        " ORDER BY t.n, p.m",
        (["%s.%s" % (schema, table) for table in TABLES],))
    if denied.rows:
        table = denied.rows[0][0]
        missing = [privilege for name, privilege in denied.rows if name == table]
        who = yield Statement("SELECT current_user")
        raise PermissionDenied(
            "permission denied on the relay queue: the role %s may not %s %s"
            % (who.scalar(), ", ".join(missing), table))
    return installed


def checkSchema(
    database: Database, schema: str = DEFAULT_SCHEMA, version: int = SCHEMA_VERSION
) -> defer.Deferred[int]:
    """
    Check that the queue's tables are there, at the version this mailclient
    uses, and that the role may use them.

    @return: A Deferred that fires with the version, or fails with
        L{SchemaMissing}, L{SchemaVersionError}, L{PermissionDenied} or
        C{DatabaseUnreachable}.
    """
    checkSchemaName(schema)
    return database.run(_checkProgram, schema, version)


def schemaVersion(
    database: Database, schema: str = DEFAULT_SCHEMA
) -> defer.Deferred[int | None]:
    """
    The version of the queue's tables in the database, or L{None} if they
    are not there.
    """
    checkSchemaName(schema)
    return database.run(_installed, schema)


def _dropProgram(schema: str) -> Generator[Statement, Result, None]:
    yield _lock(schema)
    yield Statement("DROP SCHEMA IF EXISTS %s CASCADE" % (schema,))


def dropSchema(database: Database, schema: str = DEFAULT_SCHEMA) -> defer.Deferred[None]:
    """
    Remove the queue's schema and everything in it, queued mail included.
    """
    checkSchemaName(schema)
    return database.run(_dropProgram, schema)
