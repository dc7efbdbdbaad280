"""
C{mailclient relay}: a relay worker on a queue, until Ctrl-C or SIGTERM.

  - C{--queue DIR}: a relaying manager on the queue directory (one per
    directory: it holds the directory's lock), looking at it every
    C{--interval} seconds and whenever an attempt ends;
  - C{--queue postgresql://...}: a worker of the PostgreSQL queue (a
    L{PGQueue} fed to the manager by a L{PGRelayService}), any number of
    them on any number of hosts.

Everything to a smart host (C{--smart-host}), with a login and the TLS
level given, or to each recipient domain's mail exchanges, refusing
private addresses unless told otherwise (DNS under an attacker's control
must not point the relay at internal services).

Every input is checked before the reactor starts; a failure to start is
one line and an exit code of L{RELAY_EXIT_CODES}.  Each delivery report is
a line on standard error, as are warnings and errors, never a traceback;
stopping lets the messages being sent finish (within C{--stop-timeout}),
gives back what was claimed and not started, and exits with 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import shutil
import tempfile
import weakref
from typing import Any, Callable, TextIO, cast

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent
from twisted.python.failure import Failure
from zope.interface import implementer

from mailclient._commands.common import (
    EX_CANTCREAT,
    EX_OK,
    EX_SOFTWARE,
    EX_UNAVAILABLE,
    EX_USAGE,
    RELAY_EXIT_CODES,
    CommandError,
    checkHost,
    checkPort,
    checkSeconds,
    exitCodeHelp,
    fail,
    hostPort,
    internalErrorLine,
)
from mailclient._commands.inputs import PASSWORD_ENV
from mailclient._commands.queuestore import (
    QUEUE_ENV,
    DirectoryQueue,
    QueueLocation,
    osError,
    parseQueue,
    queueError,
)

_log = Logger()

PROG = "mailclient"
LINE_PROG = "mailclient relay"

RELAY_EXAMPLES = """\
examples:
  # Relay a queue directory through a submission server, logging in
  # (the certificate must verify; the password comes from the environment).
  export MAILCLIENT_PASSWORD='...'
  mailclient relay --queue /var/spool/mailclient \\
      --smart-host smtp.example.com:587 --user relay@example.com

  # Relay to each recipient domain's mail exchanges.
  mailclient relay --queue /var/spool/mailclient --identity relay.example.com

  # One worker of a PostgreSQL queue (its password in ~/.pgpass); start
  # as many as you like, on any host.
  mailclient relay --queue postgresql://relay@db.example.com/mail \\
      --smart-host smtp.example.com:465 --user relay@example.com \\
      --password-file /etc/mailclient/smtp-password
"""

TLS_LEVELS = ("none", "may", "encrypt", "verify")


def configureRelayParser(relay: argparse.ArgumentParser) -> None:
    """
    Add the options of C{mailclient relay} to its parser.
    """
    relay.add_argument(
        "--queue", metavar="DIR|URI",
        help="the queue: a directory, or a PostgreSQL database as postgresql://"
             "[USER@]HOST[:PORT]/DBNAME (default: $%s)" % (QUEUE_ENV,))
    relay.add_argument(
        "--smart-host", metavar="HOST[:PORT]",
        help="relay everything through this server; an IPv6 address in brackets with "
             "a port (default: each recipient domain's mail exchanges; port 25)")
    relay.add_argument(
        "--tls-level", choices=TLS_LEVELS,
        help="TLS on every connection: none, may (STARTTLS when offered), encrypt "
             "(required), verify (required, the certificate verified) (default: may; "
             "verify to a smart host given --user or --cafile)")
    relay.add_argument(
        "--cafile", metavar="FILE",
        help="trust the CA certificates in this PEM file for the smart host (default: "
             "the system's trust store)")
    relay.add_argument(
        "--implicit-tls", action="store_true",
        help="speak TLS from the first byte to the smart host (default: only on port "
             "465)")
    relay.add_argument(
        "--user", metavar="NAME",
        help="log in to the smart host with this user name (default: no login)")
    relay.add_argument(
        "--password-file", metavar="FILE",
        help="read the password from this file, which only you may read (default: $%s)"
             % (PASSWORD_ENV,))
    relay.add_argument(
        "--password-env", default=PASSWORD_ENV, metavar="NAME",
        help="the environment variable holding the password (default: %s)"
             % (PASSWORD_ENV,))
    relay.add_argument(
        "--insecure-password-file", action="store_true",
        help="accept a --password-file that others can read (default: refuse it)")
    relay.add_argument(
        "--no-esmtp", action="store_true",
        help="speak plain SMTP (HELO): no TLS, no login, as Twisted's "
             "SmartHostSMTPRelayingManager (default: ESMTP)")
    relay.add_argument(
        "--allow-private-addresses", action="store_true",
        help="connect to mail exchanges at loopback, private or link-local addresses "
             "(default: refuse them)")
    relay.add_argument(
        "--identity", metavar="NAME",
        help="the name given in EHLO/HELO and in bounces (default: this host's name)")
    relay.add_argument(
        "--max-connections", default="2", metavar="N",
        help="the most connections open at once (default: 2)")
    relay.add_argument(
        "--max-messages-per-connection", default="10", metavar="N",
        help="the most messages sent over one connection (default: 10)")
    relay.add_argument(
        "--interval", metavar="SECONDS",
        help="the longest time between two looks at the queue (default: 5 for a "
             "directory, 30 for PostgreSQL, whose workers are woken at once when mail "
             "is queued)")
    relay.add_argument(
        "--stop-timeout", default="30", metavar="SECONDS",
        help="when stopping, how long to wait for the messages being sent (default: 30)")
    relay.add_argument(
        "--schema", metavar="NAME",
        help="PostgreSQL: the schema of the queue's tables (default: mailclient)")
    relay.add_argument(
        "--scratch", metavar="DIR",
        help="PostgreSQL: this worker's own directory for the messages it claimed "
             "(default: a new temporary directory, removed at exit)")
    relay.add_argument(
        "--worker", metavar="NAME",
        help="PostgreSQL: this worker's name in its leases (default: host name, process "
             "id and a random suffix)")
    relay.add_argument(
        "--lease", metavar="SECONDS",
        help="PostgreSQL: how long a claim lasts unless renewed: a dead worker's "
             "messages come back after it (default: 60)")
    relay.add_argument(
        "--destination-limit", metavar="N",
        help="PostgreSQL: the most connections the whole fleet opens to one "
             "destination (default: no limit, or the destinations table's)")
    relay.add_argument(
        "-v", "--verbose", action="store_true",
        help="also print the informational log lines (default: deliveries, warnings "
             "and errors only)")


RELAY_EPILOG = RELAY_EXAMPLES + "\n" + exitCodeHelp(RELAY_EXIT_CODES)


# -- Checking the options --------------------------------------------------

def checkCount(value: str, option: str, minimum: int = 1) -> int:
    """
    A whole number, at least C{minimum}.

    @raise CommandError: with L{EX_USAGE}.
    """
    try:
        number = int(value, 10)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise CommandError(EX_USAGE, "%s: %r is not a whole number of at least %d"
                           % (option, value, minimum))
    return number


def parseSmartHost(value: str) -> tuple[str, int]:
    """
    C{HOST}, C{HOST:PORT}, C{[IPV6]:PORT} or a bare IPv6 address; the port
    defaults to 25.

    @raise CommandError: with L{EX_USAGE}.
    """
    option = "--smart-host"
    bracketed = re.fullmatch(r"\[([^\]]*)\](?::(.*))?", value)
    if bracketed is not None:
        host, port = bracketed.group(1), bracketed.group(2)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise CommandError(EX_USAGE, "%s: %r is not [IPv6 address]:port"
                               % (option, value)) from None
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, None
        if ":" in host and not _isIPAddress(host):
            # checkHost's hint ("a port goes in --port") is send's: relay
            # has no --port.
            raise CommandError(EX_USAGE, "%s: %r is not HOST[:PORT] (an IPv6 address "
                               "goes in brackets with a port: [2001:db8::1]:25)"
                               % (option, value))
    checkHost(host, option)
    return host, 25 if port is None else checkPort(port, option)


def _isIPAddress(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _checkIdentity(value: str) -> str:
    literal = re.fullmatch(r"\[(?:IPv6:)?([0-9A-Fa-f.:]+)\]", value)
    if literal is not None:
        try:
            address = ipaddress.ip_address(literal.group(1))
        except ValueError:
            address = None
        if address is not None and (address.version == 6) == value.startswith("[IPv6:"):
            return value
        raise CommandError(EX_USAGE, "--identity: %r is not an address literal "
                           "([192.0.2.1] or [IPv6:2001:db8::1])" % (value,))
    return checkHost(value, "--identity")


def _isLoopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _noUse(option: str, why: str) -> CommandError:
    return CommandError(EX_USAGE, "%s has no use %s" % (option, why))


_DATABASE_ONLY = (("--scratch", "scratch"), ("--worker", "worker"),
                  ("--lease", "lease"), ("--destination-limit", "destination_limit"))


def _checkCombinations(args: argparse.Namespace, location: QueueLocation,
                       smartHost: tuple[str, int] | None) -> None:
    if args.no_esmtp:
        for option, given in (("--tls-level", args.tls_level), ("--cafile", args.cafile),
                              ("--implicit-tls", args.implicit_tls),
                              ("--user", args.user)):
            if given:
                raise _noUse(option, "with --no-esmtp (plain SMTP has no TLS or login)")
    if smartHost is None:
        for option, given in (("--user", args.user), ("--cafile", args.cafile),
                              ("--implicit-tls", args.implicit_tls)):
            if given:
                raise _noUse(option, "without --smart-host")
    elif args.allow_private_addresses:
        raise _noUse("--allow-private-addresses",
                     "with --smart-host (a smart host is never refused)")
    if not location.isDatabase:
        for option, name in _DATABASE_ONLY:
            if getattr(args, name) is not None:
                raise _noUse(option, "with a queue directory")
    if (args.user is not None and smartHost is not None and not _isLoopback(smartHost[0])
            and args.tls_level in ("none", "may", "encrypt")):
        raise CommandError(
            EX_USAGE, "--user with --tls-level %s: the password is sent only over TLS "
            "whose certificate verifies; use --tls-level verify (the default with "
            "--user)" % (args.tls_level,))


# -- The relay ------------------------------------------------------------

class _DirectoryService(service.Service):
    """
    Runs a relaying manager on a queue directory: C{checkState} every
    C{interval} seconds and as soon as an attempt ends.  Stopping waits (at
    most C{timeout} seconds) for the attempts under way, then lets the
    directory go to another manager.
    """

    def __init__(self, manager: Any, interval: float, clock: Any) -> None:
        self.manager = manager
        self.interval = interval
        self.clock = clock
        self.attempts: set[defer.Deferred[Any]] = set()
        self._loop: task.LoopingCall | None = None
        self._soon: Any = None

    def startService(self) -> None:
        service.Service.startService(self)
        self._loop = task.LoopingCall(self.check)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True)

    def check(self) -> None:
        self._soon = None
        if not self.running:
            return
        try:
            attempts = self.manager.checkState()
        except Exception as e:
            _log.error("Cannot relay the queue: {error}",
                       error=" ".join(str(e).split()) or type(e).__name__)
            return
        if attempts is None:
            return
        self.attempts.add(attempts)

        def over(result: object) -> None:
            self.attempts.discard(attempts)
            if self.running and self._soon is None:
                self._soon = self.clock.callLater(0, self.check)

        attempts.addBoth(over)

    def stopService(  # type: ignore[override]
        self, timeout: float = 30, onTimeout: Callable[[], object] | None = None,
    ) -> defer.Deferred[bool]:
        """
        Stop; the Deferred fires with whether every attempt ended in time.

        @param onTimeout: Called if some have not after C{timeout} seconds
            (to close their connections); their end is then awaited a little
            longer (L{SETTLE_TIMEOUT}) before the directory is let go.
        """
        service.Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._soon is not None and self._soon.active():
            self._soon.cancel()
        self._soon = None
        d = _bounded(defer.DeferredList(list(self.attempts)), timeout, self.clock)

        def late(finished: bool) -> defer.Deferred[bool]:
            if finished or onTimeout is None or not self.attempts:
                return defer.succeed(finished)
            onTimeout()
            return _bounded(defer.DeferredList(list(self.attempts)), SETTLE_TIMEOUT,
                            self.clock).addCallback(lambda _: False)

        def release(finished: bool) -> bool:
            self.manager.queue.releaseRelayLock()
            return finished

        return d.addCallback(late).addCallback(release)


#: How long, after closing the connections still sending when the stop
#: timeout ended, their messages' outcomes (deferred) may take to be
#: recorded before the queue is closed.
SETTLE_TIMEOUT = 10.0


def _trackingFactory(base: type[Any], relayers: weakref.WeakSet[Any]) -> type[Any]:
    """
    The relayer factory class C{base}, adding each relayer it builds to
    C{relayers}, so that a relay that stops can close their connections.
    """
    class TrackingRelayerFactory(base):  # type: ignore[misc]
        def buildProtocol(self, addr: Any) -> Any:
            relayer = super().buildProtocol(addr)
            if relayer is not None:
                relayers.add(relayer)
            return relayer

    TrackingRelayerFactory.__name__ = base.__name__
    TrackingRelayerFactory.__qualname__ = base.__qualname__
    return TrackingRelayerFactory


def _bounded(d: defer.Deferred[Any], timeout: float, clock: Any) -> defer.Deferred[bool]:
    """
    Fires with C{True} when C{d} has (whatever its result), or with
    C{False} after C{timeout} seconds, whichever comes first.
    """
    done: defer.Deferred[bool] = defer.Deferred()

    def expired() -> None:
        if not done.called:
            done.callback(False)

    timer = clock.callLater(timeout, expired)

    def ended(result: object) -> None:
        if timer.active():
            timer.cancel()
        if not done.called:
            done.callback(True)

    d.addBoth(ended)
    return done


def _authenticatingFactory(user: str) -> type:
    """
    An ESMTP relayer factory whose relayers log in as C{user} (CRAM-MD5,
    LOGIN or PLAIN, the best the server offers) and require it.
    """
    from mailclient.relaymanager import ESMTPManagedRelayer, ESMTPManagedRelayerFactory
    from mailclient._wire.sasl import (
        CramMD5ClientAuthenticator,
        LOGINAuthenticator,
        PLAINAuthenticator,
    )

    class AuthenticatingRelayerFactory(ESMTPManagedRelayerFactory):
        def buildProtocol(self, addr: Any) -> Any:
            relayer = ESMTPManagedRelayerFactory.buildProtocol(self, addr)
            if isinstance(relayer, ESMTPManagedRelayer):
                for mechanism in (CramMD5ClientAuthenticator, LOGINAuthenticator,
                                  PLAINAuthenticator):
                    relayer.registerAuthenticator(mechanism(user))
                relayer.requireAuthentication = True
            return relayer

    return AuthenticatingRelayerFactory


class Relay:
    """
    A relay ready to run: its queue opened (and, for a directory, locked),
    its manager configured.

    @ivar counts: How many messages were delivered, deferred and bounced.
    """

    def __init__(self, manager: Any, location: QueueLocation, err: TextIO,
                 description: str, interval: float, stopTimeout: float) -> None:
        self.manager = manager
        self.queue = manager.queue
        self.location = location
        self.err = err
        self.description = description
        self.interval = interval
        self.stopTimeout = stopTimeout
        self.counts = {"delivered": 0, "deferred": 0, "bounced": 0}
        self.service: Any = None
        self.database: Any = None
        self.cleanups: list[Callable[[], object]] = []
        self.started = False
        self._announced = False
        self._stopping: defer.Deferred[None] | None = None
        self._relayers: weakref.WeakSet[Any] = weakref.WeakSet()
        manager.factory = _trackingFactory(manager.factory, self._relayers)
        manager.deliveryObservers.append(self._reported)

    def say(self, text: str) -> None:
        try:
            fail(self.err, LINE_PROG, text)
        except (OSError, ValueError):
            pass

    def announce(self) -> None:
        if not self._announced:
            self._announced = True
            self.say("relaying %s; stop with Ctrl-C or SIGTERM" % (self.description,))

    def _reported(self, report: Any) -> None:
        outcome = getattr(report.outcome, "value", str(report.outcome))
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        self.say(report.describe())

    def start(self, reactor: Any) -> defer.Deferred[None]:
        """
        Start relaying.  The Deferred fails with a L{CommandError} if the
        relay cannot start (the PostgreSQL queue's schema is checked now).
        """
        if self.location.isDatabase:
            from mailclient._relaying.pgworker import PGRelayService

            self.service = PGRelayService(self.manager, self.queue,
                                          pollInterval=self.interval, reactor=reactor)
            d = defer.maybeDeferred(self.service.startService)
        else:
            # Its first look at the queue is made at once: say so first.
            self.announce()
            self.service = _DirectoryService(self.manager, self.interval, reactor)
            d = defer.maybeDeferred(self.service.startService)
        self._clock = reactor

        def started(_: object) -> None:
            self.started = True
            self.announce()

        def failed(failure: Failure) -> Failure:
            error = cast(BaseException, failure.value)
            if isinstance(error, OSError):
                # Only the scratch directory is made or written on start.
                scratch = getattr(self.queue, "directory", "")
                if isinstance(error, PermissionError):
                    raise osError(error, "use the scratch directory %s" % (scratch,))
                raise CommandError(EX_CANTCREAT, "cannot use the scratch directory %s: %s"
                                   % (scratch, error.strerror or error))
            mapped = queueError(error)
            if mapped is not None:
                raise mapped
            return failure

        return d.addCallbacks(started, failed)

    def stop(self) -> defer.Deferred[None]:
        """
        Stop relaying: wait (at most the stop timeout) for the messages
        being sent, give back what was not started, close the queue.
        """
        if self._stopping is None:
            self._stopping = defer.maybeDeferred(self._stop)
            self._stopping.addErrback(self._stopFailed)
        return self._stopping

    def _stopFailed(self, failure: Failure) -> None:
        self.say("error while stopping: %s"
                 % (internalErrorLine(cast(BaseException, failure.value)),))
        self._cleanUp()

    def _stop(self) -> defer.Deferred[None]:
        started, self.started = self.started, False
        busy = len(self.queue.getRelayed()) if started else 0
        if busy:
            self.say("stopping: waiting for %d message%s being sent (at most %s s)"
                     % (busy, "" if busy == 1 else "s", _seconds(self.stopTimeout)))
        if self.service is None or not self.service.running:
            d: defer.Deferred[Any] = defer.succeed(True)
        elif isinstance(self.service, _DirectoryService):
            d = self.service.stopService(self.stopTimeout, self._closeConnections)
        else:
            # The queue's stop waits (up to its lease) for the messages being
            # sent; the database must stay open until it is over.  Closing it
            # when the stop timeout ended, with the connections still open,
            # left their outcomes to a closed database ("error: Cannot free
            # connection slots", "Not recording the failure") and printed
            # their reports after the "stopped" line.
            stopping = self.service.stopService()
            d = _bounded(stopping, self.stopTimeout, self._clock)

            def late(finished: bool) -> bool | defer.Deferred[bool]:
                if finished:
                    return True
                self._closeConnections()
                return _bounded(stopping, SETTLE_TIMEOUT, self._clock).addCallback(
                    lambda _: False)

            d.addCallback(late)

        def stopped(finished: bool) -> defer.Deferred[None] | None:
            if started:
                left = len(self.queue.getRelayed())
                text = "stopped: %d delivered, %d deferred, %d returned to their senders" % (
                    self.counts["delivered"], self.counts["deferred"], self.counts["bounced"])
                if not finished and left:
                    text += "; %d still being sent: %s" % (left, (
                        "their leases end and another worker sends them again"
                        if self.location.isDatabase else
                        "they stay queued and are sent again at the next start"))
                self.say(text)
            return self._cleanUp()

        return d.addCallback(stopped)

    def _closeConnections(self) -> None:
        """
        The stop timeout ended with messages still being sent: close their
        connections now, while the queue is open, so that each is recorded
        as deferred (and reported) before the relay stops.
        """
        sending = [r for r in list(self._relayers)
                   if getattr(getattr(r, "transport", None), "connected", False)]
        if not sending:
            return
        self.say("stop timeout: closing %d connection%s still sending; their messages "
                 "stay queued" % (len(sending), "" if len(sending) == 1 else "s"))
        for relayer in sending:
            relayer.transport.abortConnection()

    def _cleanUp(self) -> defer.Deferred[None] | None:
        cleanups, self.cleanups = self.cleanups, []
        for cleanup in cleanups:
            try:
                cleanup()
            except Exception as e:
                self.say("error while stopping: %s" % (internalErrorLine(e),))
        if self.database is not None:
            database, self.database = self.database, None
            return defer.maybeDeferred(database.close).addErrback(lambda _: None)
        return None


def _seconds(value: float) -> str:
    return ("%f" % (value,)).rstrip("0").rstrip(".")


def _describe(location: QueueLocation, smartHost: tuple[str, int] | None,
              args: argparse.Namespace, maxConnections: int, perConnection: int) -> str:
    if smartHost is not None:
        where = "through %s" % (hostPort(*smartHost),)
    else:
        where = "to each domain's mail exchanges (%s)" % (
            "private addresses allowed" if args.allow_private_addresses
            else "private addresses refused")
    if args.no_esmtp:
        tls = "plain SMTP, no TLS"
    else:
        level = args.tls_level or ("verify" if smartHost is not None and (
            args.user or args.cafile) else "may")
        implicit = smartHost is not None and (args.implicit_tls or smartHost[1] == 465)
        tls = "TLS %s%s" % (level, ", implicit" if implicit else "")
        if args.user:
            tls += ", login as %s" % (args.user,)
    return "the queue %s %s (%s), at most %d connection%s of %d message%s" % (
        location.describe(), where, tls, maxConnections,
        "" if maxConnections == 1 else "s", perConnection,
        "" if perConnection == 1 else "s")


def _openDirectory(path: str) -> Any:
    from mailclient.relaymanager import Queue

    DirectoryQueue(path, write=True)
    try:
        queue = Queue(path)
        queue.noisy = False
        queue.acquireRelayLock()
    except OSError as e:
        raise osError(e, "use the queue directory %s" % (path,)) from None
    except Exception as e:
        mapped = queueError(e)
        if mapped is None:
            raise
        raise mapped from None
    return queue


def prepareRelay(args: argparse.Namespace, err: TextIO, reactor: Any = None) -> Relay:
    """
    Check the options of C{relay}, read the password, open the queue (a
    directory is locked now: one relay per directory) and configure the
    relaying manager.

    @raise CommandError: with the line to print and the exit code.
    """
    from mailclient._commands.inputs import _loadCAFile, _readPassword
    from mailclient._wire.host import getDNSName

    location = parseQueue(args.queue, args.schema)
    smartHost = None if args.smart_host is None else parseSmartHost(args.smart_host)
    _checkCombinations(args, location, smartHost)
    maxConnections = checkCount(args.max_connections, "--max-connections")
    perConnection = checkCount(args.max_messages_per_connection,
                               "--max-messages-per-connection")
    interval = checkSeconds(args.interval, "--interval") if args.interval is not None \
        else (30.0 if location.isDatabase else 5.0)
    stopTimeout = checkSeconds(args.stop_timeout, "--stop-timeout")
    # Given or not (None): compared with the default's text, "--lease 60"
    # with a queue directory went unnoticed while "--lease 61" was refused.
    lease = checkSeconds(args.lease, "--lease") if args.lease is not None else 60.0
    limit = None if args.destination_limit is None else checkCount(
        args.destination_limit, "--destination-limit")
    identity = _checkIdentity(args.identity) if args.identity is not None \
        else getDNSName().decode("ascii")
    if args.user is not None and (not args.user or re.search(
            r"[\x00-\x1f\x7f\ud800-\udfff]", args.user)):
        raise CommandError(EX_USAGE, "--user: %r is not a user name" % (args.user,))
    if (args.tls_level in ("encrypt", "verify") or args.cafile or args.implicit_tls):
        from mailclient._protocol.tls import tlsAvailable

        if not tlsAvailable():
            raise CommandError(EX_UNAVAILABLE, "TLS support is not installed: pip "
                               "install 'mailclient[tls]'")
    if args.cafile is not None:
        _loadCAFile(args.cafile)
    password = _readPassword(args)

    if location.directory is not None:
        queue = _openDirectory(location.directory)
        cleanups: list[Callable[[], object]] = [queue.releaseRelayLock]
        database = None
    else:
        queue, database, cleanups = _openDatabase(args, location, reactor, lease, limit)
    try:
        manager = _manager(args, queue, smartHost, maxConnections, perConnection,
                           identity, password, reactor)
    except BaseException:
        for cleanup in cleanups:
            cleanup()
        raise
    relay = Relay(manager, location, err,
                  _describe(location, smartHost, args, maxConnections, perConnection),
                  interval, stopTimeout)
    relay.database = database
    relay.cleanups = cleanups
    return relay


def _openDatabase(args: argparse.Namespace, location: QueueLocation, reactor: Any,
                  lease: float, limit: int | None) -> tuple[Any, Any, list[Callable[[], object]]]:
    from mailclient._relaying.pgdb import DriverMissing, connectDatabase
    from mailclient._relaying.pgqueue import PGQueue

    assert location.conninfo is not None
    try:
        database = connectDatabase(location.conninfo, reactor=reactor, size=4)
    except DriverMissing as e:
        raise queueError(e) or CommandError(EX_UNAVAILABLE, str(e)) from None
    cleanups: list[Callable[[], object]] = []
    scratch = args.scratch
    if scratch is None:
        scratch = tempfile.mkdtemp(prefix="mailclient-relay-")
        cleanups.append(lambda: shutil.rmtree(scratch, ignore_errors=True))
    elif os.path.lexists(scratch) and not os.path.isdir(scratch):
        raise CommandError(EX_CANTCREAT, "--scratch %s: not a directory" % (scratch,))
    queue = PGQueue(database, scratch, schema=location.schema, worker=args.worker,
                    lease=lease, destinationLimit=limit, reactor=reactor)
    queue.noisy = False
    return queue, database, cleanups


def _manager(args: argparse.Namespace, queue: Any, smartHost: tuple[str, int] | None,
             maxConnections: int, perConnection: int, identity: str,
             password: bytes | None, reactor: Any) -> Any:
    from mailclient.relaymanager import (
        SmartHostESMTPRelayingManager,
        SmartHostSMTPRelayingManager,
    )

    managerClass = (SmartHostSMTPRelayingManager if args.no_esmtp
                    else SmartHostESMTPRelayingManager)
    manager = managerClass(
        queue, maxConnections, perConnection, smartHost=smartHost, reactor=reactor,
        tlsSecurityLevel=args.tls_level, tlsCAFile=args.cafile)
    manager.refusePrivateAddresses = not args.allow_private_addresses
    manager.reportingMTA = identity
    identityBytes = identity.encode("ascii")
    if args.no_esmtp:
        manager.fArgs = (identityBytes,)
        return manager
    if args.implicit_tls:
        manager.smartHostImplicitTLS = True
    secret = None
    if password is not None:
        secret = _Secret(password)
        manager.factory = _authenticatingFactory(args.user)
    manager.fArgs = (secret, None, identityBytes)
    return manager


class _Secret:
    """
    The relayers' C{secret}: the password, whatever the server's address;
    never shown (not even by C{repr}).
    """

    def __init__(self, password: bytes) -> None:
        self._password = password

    def __call__(self, address: object) -> bytes:
        return self._password

    def __repr__(self) -> str:
        return "<password>"


# -- Running it ------------------------------------------------------------

@implementer(ILogObserver)
class LogLines:
    """
    Prints log events as single lines on C{err}: warnings and errors (and,
    with C{verbose}, everything); a failure as its exception's one line,
    never a traceback.  Delivery reports are printed by the relay itself.
    """

    def __init__(self, err: TextIO, verbose: bool = False) -> None:
        self.err = err
        self.verbose = verbose

    def __call__(self, event: dict[str, Any]) -> None:
        if "deliveryReport" in event:
            return
        level = event.get("log_level")
        failure = event.get("log_failure")
        serious = level in (LogLevel.warn, LogLevel.error, LogLevel.critical)
        if failure is None and not serious and not self.verbose:
            return
        try:
            text = formatEvent(event)
        except Exception:
            text = ""
        text = " ".join(text.split())[:1000]
        if failure is not None:
            text = "%s: %s" % (text, internalErrorLine(failure.value)) if text \
                else internalErrorLine(failure.value)
        if failure is not None or level in (LogLevel.error, LogLevel.critical):
            text = "error: " + text
        elif level == LogLevel.warn:
            text = "warning: " + text
        try:
            fail(self.err, LINE_PROG, text)
        except (OSError, ValueError):
            pass


def runRelay(relay: Relay, err: TextIO, verbose: bool = False) -> int:
    """
    Run C{relay} on the global reactor until Ctrl-C or SIGTERM (exit code
    0), or until it fails to start (its code).
    """
    from twisted.internet import reactor as _reactor
    from twisted.logger import globalLogBeginner

    reactor: Any = _reactor
    outcome = [EX_OK]
    globalLogBeginner.beginLoggingTo([LogLines(err, verbose)], discardBuffer=True,
                                     redirectStandardIO=False)

    def begin() -> None:
        d = relay.start(reactor)

        def failed(failure: Failure) -> None:
            error = cast(BaseException, failure.value)
            if isinstance(error, CommandError):
                outcome[0] = error.code
                fail(err, PROG, error.message)
            else:
                outcome[0] = EX_SOFTWARE
                fail(err, PROG, internalErrorLine(error))
            if reactor.running:
                reactor.stop()

        d.addErrback(failed)

    reactor.callWhenRunning(begin)
    reactor.addSystemEventTrigger("before", "shutdown", relay.stop)
    reactor.run()
    return outcome[0]


def runRelayCommand(args: argparse.Namespace, err: TextIO) -> int:
    """
    C{mailclient relay}: check, open, run.

    @raise CommandError: for a failure before the reactor starts.
    """
    relay = prepareRelay(args, err)
    try:
        return runRelay(relay, err, args.verbose)
    finally:
        for cleanup in relay.cleanups:
            cleanup()


__all__ = ["Relay", "configureRelayParser", "prepareRelay", "runRelayCommand"]
