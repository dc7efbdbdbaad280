"""
The transactions of the PostgreSQL relay queue, as programs for
L{mailclient._relaying.pgdb} (generators of L{Statement}s; each runs in one
transaction, and an exception rolls it back).

Every time that decides anything (when a message is due, when a lease or a
destination's back-off ends) is the database's clock (C{clock_timestamp()}),
never a worker's.  Every change to a claimed message is fenced by its lease
token: a worker whose lease was taken over changes nothing
(L{StaleLeaseError}).  The programs of one statement (confirming a delivery,
releasing, renewing, ...) are marked L{oneStatement}: each runs as one
autocommitted statement.

The first argument of each program is the PostgreSQL schema of the queue,
checked by L{checkSchemaName} before it gets here.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailclient._relaying.pgdb import Program, StaleLeaseError, Statement, oneStatement
from mailclient._wire.queuestate import RetryDelay, RetryState, recipientDomainOf

if TYPE_CHECKING:
    from psycopg.rows import TupleRow

#: The columns of a claimed message, in L{ClaimedMessage}'s order.
_CLAIMED = (
    "m.id, m.sender, m.recipient, m.domain, m.data,"
    " extract(epoch FROM m.queued_at)::float8, m.failures,"
    " extract(epoch FROM m.next_attempt)::float8,"
    " extract(epoch FROM m.last_failure)::float8, m.last_reason, m.warned, m.options")

#: What makes a lease end C{%s} seconds from now.
_LEASE = "clock_timestamp() + make_interval(secs => %s)"


@dataclass
class ClaimedMessage:
    """
    A message a worker claimed: all it needs to relay it.
    """

    name: str
    sender: str
    recipient: str
    domain: str | None
    data: bytes
    queuedAt: float
    state: RetryState
    #: Its options (C{MessageOptions.toState()}), if any.
    options: object = None


@dataclass
class ClaimedBatch:
    """
    Messages claimed together for one destination under one lease token,
    at most one connection's worth; C{slot} tells whether a connection slot
    of the destination was taken for them (released when they are all
    settled).
    """

    token: uuid.UUID
    destination: str | None
    slot: bool
    messages: list[ClaimedMessage] = field(default_factory=list)


@dataclass
class Claim:
    """
    What L{claimNextProgram} gives: the batches claimed, and how many
    seconds until the next message may be claimable (0: one may be now;
    L{None}: nothing is queued).
    """

    batches: list[ClaimedBatch]
    due: float | None


@dataclass
class _Batch:
    """
    A batch a worker holds (see L{ClaimedBatch}).
    """


    token: uuid.UUID
    destination: str | None
    slot: bool
    names: set[str] = field(default_factory=set)
    #: Connections still open for it (see L{PGQueue.holdSlots}).
    holds: int = 0


@dataclass
class _Held:
    """
    A message a worker holds, and the batch it came in.
    """


    name: str
    batch: _Batch
    queuedAt: float
    state: RetryState
    started: bool = False
    lost: bool = False
    #: Whether its copy has an options file.
    options: bool = False


#: Frees the connection slots C{%(slots)s} (a uuid[]) and notifies
#: C{%(channel)s} for each destination that has a connection limit (its
#: C{max_connections}, else C{%(cap)s}) and had all its slots taken: a
#: claimer may have found it full, and may take the slot now.  Freeing a
#: slot of a destination without a limit, or below it, can unblock no one.
#: The slots are counted in the statement's snapshot, the ones it frees
#: included.  Two CTEs, C{freed} and C{woken}; C{woken} runs only if the
#: statement reads it.
_FREE_SLOTS = (
    "freed AS (DELETE FROM {s}.slots WHERE token = ANY(%(slots)s::uuid[])"
    "  RETURNING destination),"
    " woken AS (SELECT pg_notify(%(channel)s, 'slot')"
    "  FROM (SELECT DISTINCT destination FROM freed) f"
    "  LEFT JOIN {s}.destinations d ON d.destination = f.destination"
    "  WHERE coalesce(d.max_connections, %(cap)s) > 0"
    "  AND (SELECT count(*) FROM {s}.slots x WHERE x.destination = f.destination"
    "       AND x.lease_until > clock_timestamp())"
    "      >= coalesce(d.max_connections, %(cap)s))")


def _state(row: TupleRow) -> RetryState:
    failures, nextAttempt, lastFailure, reason, warned = row[6:11]
    return RetryState(
        failures=failures,
        nextAttempt=nextAttempt if failures else None,
        lastFailure=lastFailure,
        lastReason=reason or "",
        warned=warned,
    )


def _checkText(value: str | bytes, what: str) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the %s is not UTF-8: %r" % (what, value)) from None
    if "\x00" in value:
        raise ValueError("the %s holds a NUL character" % (what,))
    return value


@oneStatement
def enqueueProgram(
    s: str, name: str, sender: str | bytes, recipient: str | bytes, data: bytes,
    origin: str | None = None, options: Mapping[str, object] | None = None,
) -> Program[bool]:
    """
    Queue a message under C{name}, unless one of that name is queued: return
    whether it was.  The insert trigger wakes the listening workers.

    @param options: the message's options (C{MessageOptions.toState()}),
        kept with it in the same row.
    """
    sender = _checkText(sender, "sender")
    recipient = _checkText(recipient, "recipient")
    inserted = yield Statement(
        "INSERT INTO %s.messages (id, sender, recipient, domain, data, origin, options)"
        " VALUES (%%s, %%s, %%s, %%s, %%s, %%s, %%s::jsonb)"
        " ON CONFLICT (id) DO NOTHING RETURNING id" % (s,),
        (name, sender, recipient, recipientDomainOf(recipient), bytes(data), origin,
         None if not options else json.dumps(dict(options))))
    return bool(inserted.rows)


def claimProgram(
    s: str, worker: str, lease: float, limit: int, batchSize: int, maxBatches: int | None,
    smartHost: str | None, defaultLimit: int | None,
) -> Program[list[ClaimedBatch]]:
    """
    Claim at most C{limit} due messages, at most C{maxBatches} batches of
    at most C{batchSize}, each under a new lease token, skipping messages
    other workers are claiming (C{SKIP LOCKED}), destinations backed off,
    and destinations whose connection slots (C{max_connections}, else
    C{defaultLimit}; L{None}: no limit) are all taken by live leases, by any
    worker.  With C{smartHost}, every message's destination is that key.

    @return: The L{ClaimedBatch}es.
    """
    batches, _ = yield from _claim(s, worker, lease, limit, batchSize, maxBatches, smartHost,
                                   defaultLimit)
    return batches


def claimNextProgram(
    s: str, worker: str, lease: float, limit: int, batchSize: int, maxBatches: int | None,
    smartHost: str | None, defaultLimit: int | None, freeSlots: list[uuid.UUID],
    channel: str,
) -> Program[Claim]:
    """
    What a worker does each time it looks at the queue, in one
    transaction: free the connection slots C{freeSlots} (of batches it is
    done with; see L{_FREE_SLOTS}), claim as L{claimProgram} does, and,
    if fewer messages were due than C{limit}, find when the next one
    may be (L{nextDueProgram}, the messages just claimed counted as
    leased).

    @return: A L{Claim}.
    """
    if freeSlots:
        yield Statement(
            ("WITH " + _FREE_SLOTS + " SELECT (SELECT count(*) FROM woken)").format(s=s),
            {"slots": freeSlots, "channel": channel, "cap": defaultLimit})
    batches, candidates = yield from _claim(s, worker, lease, limit, batchSize, maxBatches,
                                            smartHost, defaultLimit)
    if candidates >= limit:
        # As many were due as it could take: more may be.
        return Claim(batches, 0.0)
    due = yield from nextDueProgram(s, smartHost)
    return Claim(batches, due)


def _claim(
    s: str, worker: str, lease: float, limit: int, batchSize: int, maxBatches: int | None,
    smartHost: str | None, defaultLimit: int | None,
) -> Program[tuple[list[ClaimedBatch], int]]:
    """
    L{claimProgram}'s statements; also how many messages were found
    claimable before the connection limits were counted.
    """
    candidates = yield Statement(
        "SELECT m.id, coalesce(%(smart)s, m.domain) FROM {s}.messages m"
        " WHERE NOT m.quarantined AND m.next_attempt <= clock_timestamp()"
        " AND (m.lease_until IS NULL OR m.lease_until < clock_timestamp())"
        " AND NOT EXISTS (SELECT 1 FROM {s}.destinations d"
        "   WHERE d.destination = coalesce(%(smart)s, m.domain)"
        "   AND (d.not_before > clock_timestamp()"
        "     OR (SELECT count(*) FROM {s}.slots x WHERE x.destination = d.destination"
        "         AND x.lease_until > clock_timestamp())"
        "        >= coalesce(d.max_connections, %(cap)s)))"
        " ORDER BY m.next_attempt, m.queued_at, m.id"
        " LIMIT %(limit)s FOR UPDATE OF m SKIP LOCKED".format(s=s),
        {"smart": smartHost, "cap": defaultLimit, "limit": max(0, limit)})
    found = len(candidates.rows)
    groups: dict[str | None, list[str]] = {}
    for name, destination in candidates.rows:
        groups.setdefault(destination, []).append(name)
    destinations = sorted(d for d in groups if d is not None)
    free: dict[str, int | None] = {}
    unlimited: list[str] = []
    if destinations:
        # What each destination allows: read without a lock first.  A
        # destination with no connection limit needs no more: no claim can
        # take its last slot.  (One whose limit is set meanwhile gets it for
        # the claims that start after: this one is before.)
        read = yield Statement(
            "SELECT destination, coalesce(not_before > clock_timestamp(), false),"
            " max_connections FROM %s.destinations WHERE destination = ANY(%%s)" % (s,),
            (destinations,))
        settings: dict[str, tuple[str, bool, int | None]] = {r[0]: r for r in read.rows}
        missing = [d for d in destinations if d not in settings]
        if missing:
            # First seen: its row is made (or made by another worker meanwhile).
            yield Statement(
                "INSERT INTO %s.destinations (destination) SELECT unnest(%%s::text[])"
                " ORDER BY 1 ON CONFLICT (destination) DO NOTHING" % (s,), (missing,))
            added = yield Statement(
                "SELECT destination, coalesce(not_before > clock_timestamp(), false),"
                " max_connections FROM %s.destinations WHERE destination = ANY(%%s)" % (s,),
                (missing,))
            settings.update((r[0], r) for r in added.rows)
        limited = sorted(
            d for d, backedOff, maxConnections in settings.values()
            if not backedOff and (maxConnections if maxConnections is not None
                                  else defaultLimit) is not None)
        counts: dict[str, int] = {}
        if limited:
            # Each limited destination's row is locked (in one order, so two
            # workers never wait for each other) while its live slots are
            # counted and new ones taken: the count is the fleet's, whatever
            # the race.  It is counted by a statement of its own, after the
            # lock: a statement sees what was committed when it started.
            locked = yield Statement(
                "SELECT destination, coalesce(not_before > clock_timestamp(), false),"
                " max_connections FROM %s.destinations WHERE destination = ANY(%%s)"
                " ORDER BY destination FOR UPDATE" % (s,), (limited,))
            settings.update((r[0], r) for r in locked.rows)
            taken = yield Statement(
                "WITH expired AS (DELETE FROM {s}.slots WHERE destination = ANY(%(d)s)"
                "  AND lease_until < clock_timestamp())"
                " SELECT destination, count(*) FROM {s}.slots WHERE destination = ANY(%(d)s)"
                " AND lease_until >= clock_timestamp() GROUP BY destination".format(s=s),
                {"d": limited})
            counts = dict(taken.rows)
        for destination, backedOff, maxConnections in settings.values():
            cap = maxConnections if maxConnections is not None else defaultLimit
            if backedOff:
                free[destination] = 0
            elif cap is None:
                free[destination] = None
                unlimited.append(destination)
            else:
                free[destination] = max(0, cap - counts.get(destination, 0))
    batches: list[ClaimedBatch] = []
    size = max(1, batchSize)
    for destination, names in groups.items():
        left = free.get(destination) if destination is not None else None
        while names and (maxBatches is None or len(batches) < maxBatches):
            if left is not None:
                if left <= 0:
                    break
                left -= 1
            batch = ClaimedBatch(uuid.uuid4(), destination, destination is not None)
            batch.messages = [ClaimedMessage(n, "", "", None, b"", 0.0, RetryState())
                              for n in names[:size]]
            del names[:size]
            batches.append(batch)
    if not batches:
        return [], found
    slots = [b for b in batches if b.slot]
    names = [m.name for b in batches for m in b.messages]
    tokens = [b.token for b in batches for _ in b.messages]
    lease_ = _LEASE.replace("%s", "%(lease)s")
    # The slots are taken by the same statement, which also drops the
    # expired slots (of dead workers) of the destinations without a limit,
    # not counted above.
    stale = sorted({b.destination for b in slots if b.destination in unlimited})
    ctes = []
    if slots:
        ctes.append("taken AS (INSERT INTO {s}.slots (token, destination, worker, lease_until)"
                    " SELECT unnest(%(slots)s::uuid[]), unnest(%(destinations)s::text[]),"
                    " %(worker)s, {lease})")
    if stale:
        ctes.append("expired AS (DELETE FROM {s}.slots WHERE destination = ANY(%(expired)s)"
                    " AND lease_until < clock_timestamp())")
    claimed = yield Statement(
        (("WITH " + ", ".join(ctes) + " " if ctes else "")
         + "UPDATE {s}.messages m SET lease_token = v.token, lease_worker = %(worker)s,"
         " lease_until = {lease}, claims = m.claims + 1"
         " FROM unnest(%(names)s::text[], %(tokens)s::uuid[]) AS v(id, token)"
         " WHERE m.id = v.id RETURNING {columns}").format(s=s, lease=lease_, columns=_CLAIMED),
        {"slots": [b.token for b in slots], "destinations": [b.destination for b in slots],
         "worker": worker, "lease": lease, "names": names, "tokens": tokens,
         "expired": stale})
    rows = {row[0]: row for row in claimed.rows}
    for batch in batches:
        messages = []
        for placeholder in batch.messages:
            row = rows.get(placeholder.name)
            if row is not None:
                messages.append(ClaimedMessage(
                    row[0], row[1], row[2], row[3], bytes(row[4]), row[5], _state(row),
                    row[11]))
        batch.messages = messages
    return batches, found


@oneStatement
def renewProgram(
    s: str, tokens: list[uuid.UUID], lease: float
) -> Program[tuple[set[str], set[uuid.UUID]]]:
    """
    Extend the leases of the messages and slots held under C{tokens}.

    @return: The names of the messages, and the tokens of the slots, still
        held.
    """
    renewed = yield Statement(
        "WITH m AS (UPDATE {s}.messages SET lease_until = {lease}"
        "  WHERE lease_token = ANY(%(tokens)s::uuid[]) RETURNING id),"
        " x AS (UPDATE {s}.slots SET lease_until = {lease}"
        "  WHERE token = ANY(%(tokens)s::uuid[]) RETURNING token)"
        " SELECT array(SELECT id FROM m), array(SELECT token FROM x)".format(
            s=s, lease=_LEASE.replace("%s", "%(lease)s")),
        {"lease": lease, "tokens": tokens})
    names, slots = renewed.rows[0]
    return set(names), set(slots)


@oneStatement
def confirmProgram(
    s: str, name: str, token: uuid.UUID, slots: list[uuid.UUID] | None = None,
    channel: str = "", cap: int | None = None,
) -> Program[bool]:
    """
    A message was delivered: remove it, if its lease is still C{token}'s,
    in one statement committed on its own.  With C{slots}, also free those
    connection slots in the same statement (see L{_FREE_SLOTS}: C{channel}
    and C{cap}), whether or not the message was still leased.
    """
    if not slots:
        deleted = yield Statement(
            "DELETE FROM %s.messages WHERE id = %%s AND lease_token = %%s" % (s,), (name, token))
        count = deleted.rowcount
    else:
        result = yield Statement(
            ("WITH confirmed AS (DELETE FROM {s}.messages WHERE id = %(id)s"
             "  AND lease_token = %(token)s RETURNING 1), " + _FREE_SLOTS
             + " SELECT (SELECT count(*) FROM confirmed), (SELECT count(*) FROM woken)"
             ).format(s=s),
            {"id": name, "token": token, "slots": slots, "channel": channel, "cap": cap})
        count = result.rows[0][0]
    if count != 1:
        raise StaleLeaseError(
            "message %s is no longer leased to this worker: not removed" % (name,))
    return True


def failProgram(
    s: str, name: str, token: uuid.UUID, reason: str, retryDelay: RetryDelay,
    warning: tuple[str, str | bytes, bytes] | None = None,
) -> Program[RetryState]:
    """
    A message failed for now: count it, schedule the next attempt
    C{retryDelay(failures)} seconds from now on the database's clock, and
    release it (any worker may take it then).  With C{warning} (the name,
    recipient and report of its delay warning), also queue the warning and
    mark the message warned, unless it was warned before: all in one
    transaction.

    @return: Its new L{RetryState}.
    """
    held = yield Statement(
        "SELECT failures, warned FROM %s.messages WHERE id = %%s AND lease_token = %%s"
        " FOR UPDATE" % (s,), (name, token))
    if not held.rows:
        raise StaleLeaseError(
            "message %s is no longer leased to this worker: failure not recorded" % (name,))
    if warning is not None and not held.rows[0][1]:
        warningName, recipient, report = warning
        yield Statement("UPDATE %s.messages SET warned = true WHERE id = %%s" % (s,), (name,))
        yield from enqueueProgram(s, warningName, "", recipient, report, origin=name)
    failures = int(held.rows[0][0]) + 1
    delay = float(retryDelay(failures))
    if math.isnan(delay) or delay < 0:
        raise ValueError("retryDelay(%d) gave %r, not a delay" % (failures, delay))
    updated = yield Statement(
        "UPDATE %s.messages SET failures = %%s,"
        " next_attempt = clock_timestamp() + make_interval(secs => %%s),"
        " last_failure = clock_timestamp(), last_reason = %%s,"
        " lease_token = NULL, lease_worker = NULL, lease_until = NULL WHERE id = %%s"
        " RETURNING extract(epoch FROM next_attempt)::float8,"
        " extract(epoch FROM last_failure)::float8, warned" % (s,),
        (failures, min(delay, 10.0 ** 9), reason, name))
    nextAttempt, lastFailure, warned = updated.rows[0]
    return RetryState(failures, nextAttempt, lastFailure, reason, warned)


def returnProgram(
    s: str, name: str, token: uuid.UUID, bounce: str, recipient: str | bytes, report: bytes
) -> Program[bool]:
    """
    Return a message to its sender: queue its bounce (C{report}, from the
    null sender, under the name C{bounce}) and remove it, in one
    transaction.  The bounce's name comes from the message's, so a second
    try (by this worker or another) makes no second bounce.

    @return: Whether the bounce was queued now.
    """
    deleted = yield Statement(
        "DELETE FROM %s.messages WHERE id = %%s AND lease_token = %%s RETURNING id" % (s,),
        (name, token))
    if not deleted.rows:
        raise StaleLeaseError(
            "message %s is no longer leased to this worker: not returned" % (name,))
    queued = yield from enqueueProgram(s, bounce, "", recipient, report, origin=name)
    return queued


def warnProgram(
    s: str, name: str, token: uuid.UUID, warning: str, recipient: str | bytes, report: bytes
) -> Program[bool]:
    """
    Queue the one delay warning of a message (C{report}, from the null
    sender, under the name C{warning}) and mark the message warned, in one
    transaction.

    @return: Whether the warning was queued now (C{False}: it was before).
    """
    held = yield Statement(
        "SELECT warned FROM %s.messages WHERE id = %%s AND lease_token = %%s FOR UPDATE"
        % (s,), (name, token))
    if not held.rows:
        raise StaleLeaseError(
            "message %s is no longer leased to this worker: no warning sent" % (name,))
    if held.rows[0][0]:
        return False
    yield Statement("UPDATE %s.messages SET warned = true WHERE id = %%s" % (s,), (name,))
    queued = yield from enqueueProgram(s, warning, "", recipient, report, origin=name)
    return queued


@oneStatement
def releaseProgram(
    s: str, names: list[str], tokens: list[uuid.UUID], slots: list[uuid.UUID], channel: str,
    cap: int | None = None,
) -> Program[list[str]]:
    """
    Give back messages (each with its token) and connection slots, so that
    any worker may take them at once, in one statement.  The listening
    workers are woken if messages were given back, or if a slot was freed
    that a worker may be waiting for (see L{_FREE_SLOTS}: C{cap} is this
    worker's default connection limit).

    @return: The names of the messages released.
    """
    result = yield Statement(
        ("WITH released AS (UPDATE {s}.messages m SET lease_token = NULL,"
         "  lease_worker = NULL, lease_until = NULL"
         "  FROM unnest(%(names)s::text[], %(tokens)s::uuid[]) AS v(id, token)"
         "  WHERE m.id = v.id AND m.lease_token = v.token RETURNING m.id), " + _FREE_SLOTS
         + ", given AS (SELECT pg_notify(%(channel)s, 'released')"
         "  WHERE EXISTS (SELECT 1 FROM released))"
         " SELECT array(SELECT id FROM released), (SELECT count(*) FROM woken),"
         " (SELECT count(*) FROM given)").format(s=s),
        {"names": names, "tokens": tokens, "slots": slots, "channel": channel, "cap": cap})
    return list(result.rows[0][0])


@oneStatement
def quarantineProgram(s: str, name: str, token: uuid.UUID, reason: str) -> Program[bool]:
    """
    Stop relaying a message that cannot be relayed, leaving it in the
    table (C{quarantined}) for an administrator.
    """
    updated = yield Statement(
        "UPDATE %s.messages SET quarantined = true, last_reason = %%s, lease_token = NULL,"
        " lease_worker = NULL, lease_until = NULL WHERE id = %%s AND lease_token = %%s"
        % (s,), (reason, name, token))
    if updated.rowcount != 1:
        raise StaleLeaseError(
            "message %s is no longer leased to this worker: not quarantined" % (name,))
    return True


@oneStatement
def backOffProgram(s: str, destination: str, delay: float, reason: str) -> Program[float]:
    """
    Let no worker connect to C{destination} for C{delay} seconds (or
    longer, if it is backed off longer already).

    @return: When the back-off ends, in seconds since the epoch (the
        database's clock).
    """
    until = yield Statement(
        "INSERT INTO {s}.destinations AS d (destination, not_before, last_reason)"
        " VALUES (%s, clock_timestamp() + make_interval(secs => %s), %s)"
        " ON CONFLICT (destination) DO UPDATE SET"
        " not_before = greatest(d.not_before, excluded.not_before),"
        " last_reason = excluded.last_reason"
        " RETURNING extract(epoch FROM not_before)::float8".format(s=s),
        (destination, max(0.0, min(delay, 10.0 ** 9)), reason))
    return until.scalar()


@oneStatement
def limitProgram(s: str, destination: str, limit: int | None) -> Program[None]:
    """
    Set the fleet's connection limit for C{destination} (L{None}: each
    worker's default).
    """
    yield Statement(
        "INSERT INTO {s}.destinations AS d (destination, max_connections) VALUES (%s, %s)"
        " ON CONFLICT (destination) DO UPDATE SET max_connections = excluded.max_connections"
        .format(s=s), (destination, limit))


@oneStatement
def nextDueProgram(s: str, smartHost: str | None) -> Program[float | None]:
    """
    How many seconds until a message may be claimable (negative: one is
    now); L{None} when nothing is queued.  Connection slots are not
    counted: freeing one a worker may be waiting for wakes the listening
    workers, and a worker that finds due messages it cannot claim looks
    again soon (C{PGRelayService.idleDelay}).
    """
    due = yield Statement(
        "SELECT extract(epoch FROM min(greatest(m.next_attempt,"
        " coalesce(m.lease_until, m.next_attempt), coalesce(d.not_before, m.next_attempt)))"
        " - clock_timestamp())::float8 FROM {s}.messages m"
        " LEFT JOIN {s}.destinations d ON d.destination = coalesce(%s, m.domain)"
        " WHERE NOT m.quarantined".format(s=s), (smartHost,))
    return due.scalar()


@oneStatement
def statsProgram(s: str) -> Program[dict[str, int]]:
    """
    Counts of the queue's messages: C{queued} (all), C{due} (may be
    claimed now), C{leased}, C{deferred} (failed for now at least once),
    C{quarantined}; and C{slots} (live connection slots).
    """
    counts = yield Statement(
        "SELECT count(*),"
        " count(*) FILTER (WHERE NOT quarantined AND next_attempt <= clock_timestamp()"
        "   AND (lease_until IS NULL OR lease_until < clock_timestamp())),"
        " count(*) FILTER (WHERE lease_until >= clock_timestamp()),"
        " count(*) FILTER (WHERE failures > 0),"
        " count(*) FILTER (WHERE quarantined),"
        " (SELECT count(*) FROM {s}.slots WHERE lease_until > clock_timestamp())"
        " FROM {s}.messages".format(s=s))
    row = counts.one() or (0, 0, 0, 0, 0, 0)
    keys = ("queued", "due", "leased", "deferred", "quarantined", "slots")
    return {k: int(v or 0) for k, v in zip(keys, row)}
