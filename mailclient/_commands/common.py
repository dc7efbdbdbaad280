"""
What the subcommands of C{mailclient} share: exit codes, the one-line
error, declaring options and checking their values, and running the
reactor so that nothing ends in a traceback.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, TextIO, cast

from twisted.internet.interfaces import (
    IReactorCore,
    IReactorFDSet,
    IReactorTCP,
    IReactorTime,
)
from twisted.logger import ILogObserver
from zope.interface import implementer

if TYPE_CHECKING:
    from twisted.internet import defer
    from twisted.logger import LogEvent


class ICommandReactor(IReactorCore, IReactorTime, IReactorTCP, IReactorFDSet):
    """
    What the commands use of the reactor: running and stopping it, timed
    calls, TCP, and (the PostgreSQL queue's notifications) watching a
    socket.
    """


def globalReactor() -> ICommandReactor:
    """
    The global reactor, installed now if none is.  (Twisted declares it a
    module; the reactors the commands run on provide L{ICommandReactor}.)
    """
    from twisted.internet import reactor

    return cast(ICommandReactor, reactor)


# sysexits.h, as sendmail uses them.
EX_OK = 0
EX_FAILED = 1
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_NOHOST = 68
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_PROTOCOL = 76
EX_NOPERM = 77
EX_CONFIG = 78

#: What each exit code of C{mailclient send} means; C{--help} and
#: C{docs/cli.rst} show this table (a test keeps them in step).
SEND_EXIT_CODES: list[tuple[int, str]] = [
    (EX_OK, "The server accepted the message for every recipient."),
    (EX_FAILED, "Refused: the server refused (5xx) the sender, the message or "
                "some recipients (see the OK lines before retrying), or its "
                "certificate did not verify."),
    (EX_USAGE, "Usage error: an unknown, conflicting or invalid option, an "
               "invalid address on the command line, no recipients."),
    (EX_DATAERR, "The message cannot be sent as it is: an address in its "
                 "header cannot be parsed, its header is ambiguous, it is "
                 "empty, or the server cannot take its size or 8-bit data."),
    (EX_NOINPUT, "A file named on the command line (message, --cafile, "
                 "--password-file) does not exist or cannot be read."),
    (EX_NOHOST, "The server's host name was not found."),
    (EX_UNAVAILABLE, "The server lacks what the options require (STARTTLS "
                     "for --starttls, a login mechanism for --user), refused "
                     "service at the greeting, or TLS support is not "
                     "installed."),
    (EX_SOFTWARE, "Internal error: a bug in mailclient; please report it."),
    (EX_IOERR, "The message could not be read while it was being sent."),
    (EX_TEMPFAIL, "Temporary failure: a 4xx reply, a timeout, a connection "
                  "refused or lost, an interruption.  Try again later."),
    (EX_PROTOCOL, "Protocol error: the server's replies made no sense, or it "
                  "does not speak TLS on the port given with --tls."),
    (EX_NOPERM, "The server refused the login (user name or password)."),
    (EX_CONFIG, "Configuration error: --cafile holds no usable certificate, "
                "or --password-file is empty, has several lines or is "
                "readable by others."),
]

#: The exit codes of C{mailclient sink}.
SINK_EXIT_CODES: list[tuple[int, str]] = [
    (EX_OK, "Stopped by Ctrl-C or SIGTERM."),
    (EX_USAGE, "Usage error: an unknown or invalid option."),
    (EX_UNAVAILABLE, "Cannot listen: the address is in use or not on this "
                     "machine, or --starttls without TLS support installed."),
    (EX_SOFTWARE, "Internal error: a bug in mailclient; please report it."),
    (EX_CANTCREAT, "The --maildir directory or the --write-ca file cannot be "
                   "created or written, or a message cannot be stored."),
    (EX_NOPERM, "No permission to listen on the port."),
]

#: The exit codes of C{mailclient migrate}.
MIGRATE_EXIT_CODES: list[tuple[int, str]] = [
    (0, "Nothing left to migrate (with --write: everything was rewritten)."),
    (1, "Not fully migrated: without --write, changes are needed (the diff "
        "shows them); with or without it, something that must be changed by "
        "hand remains (the 'not migrated' lines say what)."),
    (2, "A path could not be read or written."),
    (EX_USAGE, "Usage error: an unknown option, no path."),
    (EX_SOFTWARE, "Internal error: a bug in mailclient; please report it."),
]

#: The exit codes of C{mailclient relay}.
RELAY_EXIT_CODES: list[tuple[int, str]] = [
    (EX_OK, "Stopped by Ctrl-C or SIGTERM."),
    (EX_USAGE, "Usage error: an unknown, conflicting or invalid option, --user "
               "without a password, --queue with a database password in it."),
    (EX_NOINPUT, "The queue directory does not exist, or a file named on the "
                 "command line (--cafile, --password-file) cannot be read."),
    (EX_UNAVAILABLE, "The queue's database cannot be reached, or psycopg (for a "
                     "PostgreSQL queue) or TLS support is not installed."),
    (EX_SOFTWARE, "Internal error: a bug in mailclient; please report it."),
    (EX_CANTCREAT, "The --scratch directory cannot be created or written."),
    (EX_TEMPFAIL, "Another relay holds the queue directory (or the --scratch "
                  "directory): one relay per directory.  Try again later."),
    (EX_NOPERM, "Permission denied: the queue directory cannot be written, or "
                "the database role lacks privileges on the queue's tables."),
    (EX_CONFIG, "Configuration error: the queue's schema is missing (mailclient "
                "queue init) or of another version (mailclient queue upgrade); "
                "--cafile holds no certificate; --password-file is empty, has "
                "several lines or is readable by others."),
]

#: The exit codes of C{mailclient queue}.
QUEUE_EXIT_CODES: list[tuple[int, str]] = [
    (EX_OK, "Done."),
    (EX_USAGE, "Usage error: an unknown or invalid option, a missing --queue, "
               "delete with neither message ids nor --all --yes."),
    (EX_DATAERR, "requeue: a message of a queue directory still cannot be read "
                 "(its envelope or data file is damaged)."),
    (EX_NOINPUT, "The queue directory does not exist, or no queued message has "
                 "an id given (nothing was changed)."),
    (EX_UNAVAILABLE, "The queue's database cannot be reached or refused the "
                     "request, or psycopg is not installed."),
    (EX_SOFTWARE, "Internal error: a bug in mailclient; please report it."),
    (EX_CANTCREAT, "init: the queue directory cannot be created."),
    (EX_IOERR, "Reading or writing the queue directory failed."),
    (EX_TEMPFAIL, "delete: a message is being relayed by a worker (nothing was "
                  "deleted; --force deletes it anyway)."),
    (EX_NOPERM, "Permission denied: on the queue directory, or the database "
                "role lacks privileges on the queue's tables."),
    (EX_CONFIG, "The queue's schema is missing (mailclient queue init) or of "
                "another version (mailclient queue upgrade)."),
]


def exitCodeHelp(codes: list[tuple[int, str]]) -> str:
    """
    The exit-code table for a C{--help} epilog.
    """
    import textwrap

    lines = ["exit codes:"]
    for code, meaning in codes:
        wrapped = textwrap.wrap(meaning, 68, break_on_hyphens=False)
        lines.append("  %-3d %s" % (code, wrapped[0]))
        lines.extend("      " + more for more in wrapped[1:])
    return "\n".join(lines)


@dataclass(frozen=True)
class Option:
    """
    An option that takes a value: its names (C{"-f --file"}), its help,
    the name of its value in the help (L{None}: argparse's), its default
    and its choices.
    """

    names: str
    help: str
    metavar: str | None = None
    default: str | None = None
    choices: tuple[str, ...] | None = None

    def addTo(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(*self.names.split(), metavar=self.metavar, default=self.default,
                            choices=self.choices, help=self.help)


@dataclass(frozen=True)
class Flag:
    """
    An option that takes no value: given or not.
    """

    names: str
    help: str

    def addTo(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(*self.names.split(), action="store_true", help=self.help)


def addOptions(parser: argparse.ArgumentParser, options: Sequence[Option | Flag]) -> None:
    """
    Declare C{options} on C{parser}, in their order (the order of
    C{--help}).
    """
    for option in options:
        option.addTo(parser)


class CommandError(Exception):
    """
    The command cannot go on: print C{message} on one line and exit with
    C{code}.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def fail(err: TextIO, prog: str, message: str) -> None:
    """
    Print the one line that says why C{prog} failed.
    """
    line = " ".join(message.split())
    err.write("%s: %s\n" % (prog, line))
    err.flush()


def internalErrorLine(exc: BaseException) -> str:
    """
    The one line printed for an exception nobody expected.
    """
    text = " ".join(str(exc).split())[:300]
    return "internal error (a bug in mailclient; please report it): %s%s" % (
        type(exc).__name__, ": " + text if text else "")


def hostPort(host: str, port: int) -> str:
    """
    C{host:port}, with an IPv6 address in brackets (C{[::1]:25}).
    """
    if ":" in host:
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


def checkPort(value: str, option: str, allowZero: bool = False) -> int:
    """
    The TCP port C{value}, 1 to 65535 (0 too if C{allowZero}).

    @raise CommandError: with L{EX_USAGE}.
    """
    low = 0 if allowZero else 1
    try:
        port = int(value, 10)
    except ValueError:
        port = -1
    if not low <= port <= 65535:
        raise CommandError(EX_USAGE, "%s: %r is not a port number (%d to 65535)"
                           % (option, value, low))
    return port


def checkSeconds(value: str, option: str) -> float:
    """
    A positive, finite number of seconds.

    @raise CommandError: with L{EX_USAGE}.
    """
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise CommandError(EX_USAGE, "%s: %r is not a positive number of seconds"
                           % (option, value))
    return seconds


_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")


def checkHost(value: str, option: str) -> str:
    """
    A host name or an IP address, as C{--host} takes it.

    @raise CommandError: with L{EX_USAGE}, saying what is wrong.
    """
    def bad(why: str) -> CommandError:
        return CommandError(EX_USAGE, "%s: %r %s" % (option, value, why))

    if value.startswith("[") and value.endswith("]"):
        inner = value[1:-1]
        try:
            ipaddress.ip_address(inner)
        except ValueError:
            raise bad("is not a host name or an IP address") from None
        raise bad("has brackets: give the address without them (%s %s)"
                  % (option, inner))
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if ":" in value:
        raise bad("is not a host name or an IP address (a port goes in --port)")
    name = value[:-1] if value.endswith(".") else value
    try:
        ascii = name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        raise bad("is not a valid host name") from None
    labels = ascii.split(".")
    if not name or len(ascii) > 253 or not all(_LABEL.match(label) for label in labels):
        raise bad("is not a host name or an IP address")
    if all(label.isdigit() for label in labels):
        raise bad("is not a valid IP address")
    return value


def checkIPAddress(value: str, option: str) -> str:
    """
    An IPv4 or IPv6 address to listen on.

    @raise CommandError: with L{EX_USAGE}.
    """
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return value
    if value.startswith("[") and value.endswith("]"):
        checkHost(value, option)
    raise CommandError(EX_USAGE, "%s: %r is not an IP address (such as 127.0.0.1 "
                                 "or ::1)" % (option, value))


def checkHeloName(value: str, option: str) -> str:
    """
    A name to give in EHLO/HELO: a host name or an address literal
    (C{[192.0.2.1]}, C{[IPv6:2001:db8::1]}).

    @raise CommandError: with L{EX_USAGE}.
    """
    literal = re.fullmatch(r"\[(?:IPv6:)?([0-9A-Fa-f.:]+)\]", value)
    if literal is not None:
        try:
            address = ipaddress.ip_address(literal.group(1))
        except ValueError:
            pass
        else:
            if (address.version == 6) == value.startswith("[IPv6:"):
                return value
        raise CommandError(EX_USAGE, "%s: %r is not an address literal "
                           "([192.0.2.1] or [IPv6:2001:db8::1])" % (option, value))
    return checkHost(value, option)


def checkUserName(value: str | None) -> str | None:
    """
    The C{--user} given, if any: not empty, no control characters.

    @raise CommandError: with L{EX_USAGE}.
    """
    if value is not None and (not value or re.search(r"[\x00-\x1f\x7f\ud800-\udfff]", value)):
        raise CommandError(EX_USAGE, "--user: %r is not a user name" % (value,))
    return value


@implementer(ILogObserver)
class _LoggedErrors:
    """
    A log observer that keeps the failures logged as errors (an unhandled
    error in a Deferred, an exception in a timed call): in this program
    they are bugs, reported as one line and exit code 70.
    """

    def __init__(self, onError: Callable[[], None]) -> None:
        self.failures: list[BaseException] = []
        self._onError = onError

    def __call__(self, event: LogEvent) -> None:
        from twisted.logger import LogLevel

        failure = event.get("log_failure")
        if failure is None or event.get("log_level") not in (LogLevel.error,
                                                            LogLevel.critical):
            return
        self.failures.append(failure.value)
        if len(self.failures) == 1:
            self._onError()


def runReactor(
    start: Callable[[ICommandReactor], defer.Deferred[int]],
    err: TextIO,
    prog: str,
    interrupted: tuple[int, str | None] = (EX_OK, None),
    onInterrupt: Callable[[], None] | None = None,
) -> int:
    """
    Run the global reactor until C{start(reactor)}'s Deferred fires with an
    exit code, and return the code.

    Failures Twisted would log (and print as tracebacks at exit) are
    caught: the first is reported as an internal error and the code is 70.

    @param interrupted: the code, and the line to print, if the reactor is
        stopped (Ctrl-C, SIGTERM) before the Deferred fires; what the
        Deferred fires with while the reactor stops is then ignored.
    @param onInterrupt: called then, before the line is printed.
    @raise BaseException: what C{start} raised or failed with, for the
        last-resort handler of L{main}.
    """
    from twisted.internet import defer
    from twisted.logger import globalLogBeginner
    from twisted.python.failure import Failure

    reactor = globalReactor()
    outcome: list[object] = []
    wasInterrupted: list[bool] = []

    def stop() -> None:
        if reactor.running:
            reactor.stop()

    def shuttingDown() -> None:
        if outcome or logged.failures:
            return
        wasInterrupted.append(True)
        if onInterrupt is not None:
            onInterrupt()
        code, line = interrupted
        if line:
            fail(err, prog, line)

    def stopSoon() -> None:
        reactor.callLater(0, stop)

    logged = _LoggedErrors(stopSoon)
    globalLogBeginner.beginLoggingTo([logged], discardBuffer=True,
                                     redirectStandardIO=False)

    def begin() -> None:
        d = defer.maybeDeferred(start, reactor)

        def finished(result: object) -> None:
            outcome.append(result)
            stop()

        d.addBoth(finished)

    reactor.callWhenRunning(begin)
    reactor.addSystemEventTrigger("before", "shutdown", shuttingDown)
    reactor.run()
    # Unhandled errors in Deferreds are logged when they are collected.
    gc.collect()
    if logged.failures:
        fail(err, prog, internalErrorLine(logged.failures[0]))
        return EX_SOFTWARE
    if wasInterrupted or not outcome:
        return interrupted[0]
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    assert isinstance(result, int)
    return result


def lastResort(run: Callable[[], int], err: TextIO | None = None) -> int:
    """
    Call C{run} and return its exit code; a L{CommandError} is printed as
    its one line, and any other exception as one line naming the bug, with
    exit code 70: no path prints a traceback.
    """
    stream = err if err is not None else sys.stderr
    try:
        return run()
    except SystemExit:
        raise
    except CommandError as e:
        fail(stream, "mailclient", e.message)
        return e.code
    except KeyboardInterrupt:
        fail(stream, "mailclient", "interrupted")
        return 130
    except BaseException as e:
        fail(stream, "mailclient", internalErrorLine(e))
        return EX_SOFTWARE
