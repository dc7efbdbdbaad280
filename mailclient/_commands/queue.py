"""
C{mailclient queue}: create, upgrade, look at and change a relay queue,
a queue directory or a PostgreSQL queue alike, without a relay running (or
while one runs).

  - C{init}, C{upgrade}: make the directory, or create and upgrade the
    versioned tables of a PostgreSQL queue;
  - C{list}, C{show}: one line per message (or JSON), streamed; one
    message's envelope, schedule and header;
  - C{flush}, C{delete}, C{requeue}: make waiting messages due now, remove
    messages, bring quarantined ones back.

Every failure is a L{CommandError}: one line and an exit code of
L{QUEUE_EXIT_CODES}.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import closing
from typing import IO, Callable, TextIO

from mailclient._commands.common import (
    EX_OK,
    EX_USAGE,
    QUEUE_EXIT_CODES,
    CommandError,
    Flag,
    Option,
    addOptions,
    exitCodeHelp,
)
from mailclient._commands.queuedb import PostgresQueue
from mailclient._commands.queuedir import DirectoryQueue
from mailclient._commands.queuestore import (
    QUEUE_OPTION,
    STATES,
    MessageInfo,
    QueueLocation,
    checkId,
    formatTime,
    parseQueue,
    queueErrors,
    splitHeader,
)

QUEUE_EXAMPLES = """\
examples:
  # A queue directory: create it, look at it, retry everything now.
  mailclient queue init --queue /var/spool/mailclient
  mailclient queue list --queue /var/spool/mailclient
  mailclient queue flush --queue /var/spool/mailclient

  # A PostgreSQL queue (the password in ~/.pgpass, never in the URI).
  export MAILCLIENT_QUEUE=postgresql://admin@db.example.com/mail
  mailclient queue init
  mailclient queue list --state quarantined --json
  mailclient queue show 4f1c2e0a9d6b4c7e8f0a1b2c3d4e5f60
  mailclient queue requeue 4f1c2e0a9d6b4c7e8f0a1b2c3d4e5f60
  mailclient queue delete --all --yes
"""

#: What each action does, for its help.
ACTIONS = {
    "init": ("create the queue: a private directory, or the tables of a PostgreSQL "
             "queue", "Create the queue: make the directory (mode 0700), or create the "
             "versioned tables of a PostgreSQL queue (nothing is changed if they exist "
             "at this mailclient's version)."),
    "upgrade": ("upgrade the tables of a PostgreSQL queue to this mailclient's version",
                "Upgrade the tables of a PostgreSQL queue to this mailclient's version, "
                "one version after the other, in one transaction; stop the relays of "
                "the older mailclient first.  Says from which version to which."),
    "list": ("list the queued messages, one line each",
             "List the queued messages, oldest first, one line each: id, queued time, "
             "sender, recipient, failures, next attempt, state (waiting, leased or "
             "quarantined); then a summary line.  Message bodies are never read."),
    "show": ("show a message's envelope, schedule and header",
             "Show one message: its envelope, its retry schedule, its lease, and its "
             "header (the whole message with --body)."),
    "flush": ("make every waiting message due now",
              "Make every waiting message due now, so that the relays try it at once "
              "(and, in PostgreSQL, end the back-off of its destinations and wake the "
              "workers)."),
    "delete": ("remove messages from the queue",
               "Remove messages from the queue, without returning them to their "
               "senders.  A message a worker is relaying is not removed, unless "
               "--force."),
    "requeue": ("bring quarantined messages back to waiting",
                "Bring quarantined messages back to waiting, due now."),
}


def configureQueueParser(
    queue: argparse.ArgumentParser,
    parserClass: type[argparse.ArgumentParser],
) -> dict[str, argparse.ArgumentParser]:
    """
    Add the actions of C{mailclient queue} to its parser.

    @return: Each action's parser, by C{"queue ACTION"}.
    """
    import textwrap

    formatter = argparse.RawDescriptionHelpFormatter
    common = argparse.ArgumentParser(add_help=False)
    addOptions(common, [QUEUE_OPTION, Option(
        "--schema", "the PostgreSQL schema of the queue's tables (default: mailclient)",
        "NAME")])
    sub = queue.add_subparsers(dest="queue_command", required=True, metavar="ACTION",
                               parser_class=parserClass)
    epilog = QUEUE_EXAMPLES + "\n" + exitCodeHelp(QUEUE_EXIT_CODES)
    parsers = {}
    for name, (short, description) in ACTIONS.items():
        parsers["queue " + name] = sub.add_parser(
            name, help=short, description=textwrap.fill(description, 78), epilog=epilog,
            formatter_class=formatter, allow_abbrev=False, parents=[common])
    ids = "the id of a queued message, as list shows it (no default)"
    domain = Option("--domain", "only the messages to this recipient domain (default: "
                    "all)", "DOMAIN")
    addOptions(parsers["queue list"], [
        domain,
        Option("--state", "only the messages in this state (default: all)",
               choices=STATES),
        Flag("--json", "print one JSON document: the messages and the summary (default: "
             "lines of text)"),
    ])
    show = parsers["queue show"]
    show.add_argument("id", metavar="ID", help=ids)
    addOptions(show, [
        Flag("--body", "print the whole message, body included (default: its header "
             "only)"),
        Flag("--json", "print the message's details and header as JSON (default: text)"),
    ])
    domain.addTo(parsers["queue flush"])
    delete = parsers["queue delete"]
    delete.add_argument("ids", nargs="*", metavar="ID", help=ids)
    addOptions(delete, [
        Flag("--all", "delete every queued message; needs --yes (default: only the ids "
             "given)"),
        Flag("--yes", "confirm --all (default: refuse it)"),
        Flag("--force", "delete messages being relayed too; their worker may still "
             "deliver them (default: refuse)"),
    ])
    parsers["queue requeue"].add_argument("ids", nargs="+", metavar="ID", help=ids)
    return parsers


# -- Output ---------------------------------------------------------------

def _address(value: str | None) -> str:
    return "?" if value is None else "<%s>" % (value,)


def _next(info: MessageInfo) -> str:
    return "now" if info.due else formatTime(info.nextAttempt)


def messageLine(info: MessageInfo) -> str:
    """
    The line of C{queue list} for one message.
    """
    return "  ".join([info.id, formatTime(info.queuedAt), _address(info.sender),
                      _address(info.recipient), str(info.failures), _next(info),
                      info.state])


def _iso(when: float | None) -> str | None:
    return None if when is None else formatTime(when)


def messageJSON(info: MessageInfo) -> dict[str, object]:
    """
    One message for C{--json}.
    """
    return {
        "id": info.id, "state": info.state, "queued": _iso(info.queuedAt),
        "sender": info.sender, "recipient": info.recipient, "domain": info.domain,
        "failures": info.failures, "due": info.due,
        "nextAttempt": _iso(info.nextAttempt),
        "lastFailure": _iso(info.lastFailure), "lastReason": info.lastReason or None,
        "warned": info.warned, "worker": info.worker, "leaseUntil": _iso(info.leaseUntil),
        "size": info.size, "origin": info.origin, "problem": info.problem,
    }


def _plural(count: int, word: str) -> str:
    return "%d %s%s" % (count, word, "" if count == 1 else "s")


class _Summary:
    def __init__(self) -> None:
        self.counts = {state: 0 for state in STATES}
        self.due = 0

    def add(self, info: MessageInfo) -> None:
        self.counts[info.state] += 1
        if info.state == "waiting" and info.due:
            self.due += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        return "%s: %d waiting (%d due now), %d leased, %d quarantined" % (
            _plural(self.total, "message"), self.counts["waiting"], self.due,
            self.counts["leased"], self.counts["quarantined"])

    def asJSON(self) -> dict[str, int]:
        return dict(self.counts, messages=self.total, due=self.due)


def _write(out: TextIO, text: str) -> None:
    out.write(text)


def _writeBytes(out: TextIO, data: bytes) -> None:
    """
    Write a message's bytes as they are, when C{out} has a binary side.
    """
    binary: IO[bytes] | None = getattr(out, "buffer", None)
    if binary is None:
        out.write(data.decode("utf-8", "replace"))
        return
    out.flush()
    binary.write(data)
    binary.flush()


# -- The actions ----------------------------------------------------------

Queue = DirectoryQueue | PostgresQueue


def openQueue(location: QueueLocation, write: bool = False) -> Queue:
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


def _init(location: QueueLocation, args: argparse.Namespace, out: TextIO) -> int:
    if location.directory is not None:
        path = location.directory
        if DirectoryQueue.create(path):
            _write(out, "created the queue directory %s (mode 0700)\n" % (path,))
            return EX_OK
        DirectoryQueue(path, write=True)
        import os
        import stat

        mode = stat.S_IMODE(os.stat(path).st_mode)
        note = ("; others may use it: chmod 700 %s" % (path,)) if mode & 0o077 else ""
        _write(out, "the queue directory %s exists already (mode %04o)%s\n"
               % (path, mode, note))
        return EX_OK
    with closing(PostgresQueue(location)) as queue:
        created, version = queue.create()
    if created:
        _write(out, "created the relay queue schema %s (version %d) in %s\n"
               % (location.schema, version, location.conninfo))
    else:
        _write(out, "the relay queue schema %s exists already at version %d: nothing "
                    "to do\n" % (location.schema, version))
    return EX_OK


def _upgrade(location: QueueLocation, args: argparse.Namespace, out: TextIO) -> int:
    if location.directory is not None:
        DirectoryQueue(location.directory)
        _write(out, "a queue directory has no schema: nothing to upgrade\n")
        return EX_OK
    with closing(PostgresQueue(location)) as queue:
        before, after = queue.upgrade()
    if before == after:
        _write(out, "the relay queue schema %s is at version %d already: nothing to do\n"
               % (location.schema, after))
    else:
        _write(out, "upgraded the relay queue schema %s from version %d to version %d\n"
               % (location.schema, before, after))
    return EX_OK


def _list(queue: Queue, args: argparse.Namespace, out: TextIO) -> int:
    summary = _Summary()
    messages = queue.messages(args.domain, args.state)
    if args.json:
        _write(out, '{"messages": [')
        for n, info in enumerate(messages):
            _write(out, "%s\n  %s" % ("," if n else "", json.dumps(messageJSON(info))))
            summary.add(info)
        _write(out, '\n],\n"summary": %s}\n' % (json.dumps(summary.asJSON()),))
        return EX_OK
    for info in messages:
        _write(out, messageLine(info) + "\n")
        summary.add(info)
    line = summary.line()
    if isinstance(queue, DirectoryQueue) and queue.isRelayed():
        line += "; a relay is running on this queue"
    _write(out, line + "\n")
    return EX_OK


def _details(info: MessageInfo) -> list[tuple[str, str]]:
    rows = [("id", info.id), ("state", info.state),
            ("from", _address(info.sender)), ("to", _address(info.recipient)),
            ("queued", formatTime(info.queuedAt)),
            ("failures", str(info.failures)), ("next attempt", _next(info))]
    if info.lastFailure is not None or info.lastReason:
        rows.append(("last failure", "%s %s" % (formatTime(info.lastFailure),
                                                 info.lastReason or "")))
    rows.append(("delay warning sent", "yes" if info.warned else "no"))
    if info.worker is not None or info.leaseUntil is not None:
        rows.append(("leased by", "%s until %s" % (info.worker, formatTime(info.leaseUntil))))
    if info.size is not None:
        rows.append(("size", _plural(info.size, "byte")))
    if info.origin:
        rows.append(("notice about", info.origin))
    if info.problem:
        rows.append(("cannot be relayed", info.problem))
    return rows


def _show(queue: Queue, args: argparse.Namespace, out: TextIO) -> int:
    if args.json and args.body:
        raise CommandError(EX_USAGE, "--body and --json cannot be given together")
    info, head, rest = queue.show(checkId(args.id), args.body)
    try:
        header, _ = splitHeader(head)
        if args.json:
            document = dict(messageJSON(info), header=header.decode("utf-8", "replace"))
            _write(out, json.dumps(document, indent=2) + "\n")
            return EX_OK
        for name, value in _details(info):
            _write(out, "%s: %s\n" % (name, " ".join(value.split())))
        _write(out, "\n")
        if not args.body:
            # A message with no empty line ends where its data ends, maybe
            # within a line: the output still ends with a line ending.
            _writeBytes(out, header if header.endswith(b"\n") or not header
                        else header + b"\n")
            return EX_OK
        _writeBytes(out, head)
        while rest is not None:
            chunk = rest.read(1 << 16)
            if not chunk:
                break
            _writeBytes(out, chunk)
        return EX_OK
    finally:
        if rest is not None:
            rest.close()


def _flush(queue: Queue, args: argparse.Namespace, out: TextIO) -> int:
    made, cleared = queue.flush(args.domain)
    text = ("made %s due now" % (_plural(made, "message"),) if made
            else "no message was waiting for a later attempt")
    if cleared:
        text += "; ended the back-off of %s" % (_plural(cleared, "destination"),)
    _write(out, text + "\n")
    return EX_OK


def _delete(queue: Queue, args: argparse.Namespace, out: TextIO) -> int:
    if args.all:
        if args.ids:
            raise CommandError(EX_USAGE, "give message ids or --all, not both")
        if not args.yes:
            raise CommandError(EX_USAGE, "delete --all removes every queued message: "
                               "add --yes to confirm")
        deleted, left = queue.deleteAll(args.force)
        text = "deleted %s" % (_plural(deleted, "message"),)
        if left:
            text += "; left %d being relayed (--force deletes them too)" % (left,)
        _write(out, text + "\n")
        return EX_OK
    if args.yes:
        raise CommandError(EX_USAGE, "--yes confirms --all only")
    if not args.ids:
        raise CommandError(EX_USAGE, "give the ids of the messages to delete, or "
                           "--all --yes")
    count = queue.delete([checkId(i) for i in args.ids], args.force)
    _write(out, "deleted %s\n" % (_plural(count, "message"),))
    return EX_OK


def _requeue(queue: Queue, args: argparse.Namespace, out: TextIO) -> int:
    for id, requeued in queue.requeue([checkId(i) for i in args.ids]):
        if requeued:
            _write(out, "requeued %s: waiting, due now\n" % (id,))
        else:
            _write(out, "%s was not quarantined: left as it is\n" % (id,))
    return EX_OK


_Action = Callable[[Queue, argparse.Namespace, TextIO], int]

_ACTIONS: dict[str, tuple[_Action, bool]] = {
    "list": (_list, False),
    "show": (_show, False),
    "flush": (_flush, True),
    "delete": (_delete, True),
    "requeue": (_requeue, True),
}


def _dispatch(args: argparse.Namespace, out: TextIO) -> int:
    location = parseQueue(args.queue, args.schema)
    action = args.queue_command
    if action == "init":
        return _init(location, args, out)
    if action == "upgrade":
        return _upgrade(location, args, out)
    run, write = _ACTIONS[action]
    queue = openQueue(location, write)
    try:
        return run(queue, args, out)
    finally:
        if isinstance(queue, PostgresQueue):
            queue.close()


def runQueueCommand(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """
    Run C{mailclient queue ACTION} and return its exit code.

    @raise CommandError: with the line to print.
    """
    stream = out if out is not None else sys.stdout
    try:
        with queueErrors():
            return _dispatch(args, stream)
    except BrokenPipeError:
        # The reader went away (| head): what it read was right.
        _silence(stream)
        return EX_OK


def _silence(stream: TextIO) -> None:
    """
    Stop writing to a closed pipe (at exit too).
    """
    if stream is sys.stdout:
        import os

        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
