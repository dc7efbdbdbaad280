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

Every input is checked before the reactor starts
(L{mailclient._commands.relayoptions}); a failure to start is one line and
an exit code of L{RELAY_EXIT_CODES}.  Each delivery report is
a line on standard error, as are warnings and errors, never a traceback;
stopping lets the messages being sent finish (within C{--stop-timeout}),
gives back what was claimed and not started, and exits with 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import weakref
from typing import TYPE_CHECKING, Callable, TextIO, TypeVar, cast

from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime, ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent
from twisted.python.failure import Failure
from zope.interface import implementer

from mailclient._commands.common import (
    EX_CANTCREAT,
    EX_OK,
    EX_SOFTWARE,
    EX_UNAVAILABLE,
    CommandError,
    ICommandReactor,
    fail,
    globalReactor,
    internalErrorLine,
)
from mailclient._commands.queuedir import DirectoryQueue
from mailclient._commands.queuestore import QueueLocation, osError, queueError, queueErrors
from mailclient._commands.relayoptions import RelayOptions, checkRelayOptions

if TYPE_CHECKING:
    from twisted.logger import LogEvent

    from mailclient._relaying.attempt import DeliveryReport
    from mailclient._relaying.managed import (
        ESMTPManagedRelayerFactory,
        SMTPManagedRelayerFactory,
    )
    from mailclient._relaying.manager import SmartHostSMTPRelayingManager
    from mailclient._relaying.pgdb import Database
    from mailclient._relaying.pgqueue import PGQueue
    from mailclient._relaying.pgworker import PGRelayService
    from mailclient._relaying.queue import Queue

T = TypeVar("T")

_log = Logger()

PROG = "mailclient"
LINE_PROG = "mailclient relay"


def _say(err: TextIO, text: str) -> None:
    """
    Print a line of the relay on C{err}; one that cannot be written is
    lost, and the relay goes on.
    """
    try:
        fail(err, LINE_PROG, text)
    except (OSError, ValueError):
        pass


# -- The relay ------------------------------------------------------------

class _DirectoryService(service.Service):
    """
    Runs a relaying manager on a queue directory: C{checkState} every
    C{interval} seconds and as soon as an attempt ends.  Stopping waits (at
    most C{timeout} seconds) for the attempts under way, then lets the
    directory go to another manager.
    """

    def __init__(self, manager: SmartHostSMTPRelayingManager, interval: float,
                 clock: IReactorTime) -> None:
        self.manager = manager
        self.interval = interval
        self.clock = clock
        #: Each fires when an attempt under way has ended.
        self.attempts: set[defer.Deferred[None]] = set()
        self._loop: task.LoopingCall | None = None
        self._soon: IDelayedCall | None = None

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
        ended: defer.Deferred[None] = defer.Deferred()
        self.attempts.add(ended)

        def over(result: object) -> None:
            self.attempts.discard(ended)
            if self.running and self._soon is None:
                self._soon = self.clock.callLater(0, self.check)
            ended.callback(None)

        attempts.addBoth(over)

    def stopService(self) -> defer.Deferred[None]:
        """
        Stop (L{stopWithin} 30 seconds).
        """
        return self.stopWithin(30).addCallback(lambda _: None)

    def stopWithin(
        self, timeout: float, onTimeout: Callable[[], object] | None = None,
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


def _trackingFactory(base: type[SMTPManagedRelayerFactory], relayers: weakref.WeakSet[Protocol]
                     ) -> type[SMTPManagedRelayerFactory]:
    """
    The relayer factory class C{base} (under its own name), adding each
    relayer it builds to C{relayers}, so that a relay that stops can close
    their connections.
    """
    def buildProtocol(self: SMTPManagedRelayerFactory, addr: IAddress | None
                      ) -> Protocol | None:
        relayer = base.buildProtocol(self, addr)
        if relayer is not None:
            relayers.add(relayer)
        return relayer

    # A subclass of a class known only now: made by type(), as mypy checks
    # only class statements with static bases.
    return cast("type[SMTPManagedRelayerFactory]", type(
        base.__name__, (base,),
        {"buildProtocol": buildProtocol, "__qualname__": base.__qualname__}))


def _bounded(d: defer.Deferred[T], timeout: float, clock: IReactorTime
             ) -> defer.Deferred[bool]:
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


def _authenticatingFactory(user: str) -> type[ESMTPManagedRelayerFactory]:
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
        def buildProtocol(self, addr: IAddress | None) -> Protocol:
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

    def __init__(self, manager: SmartHostSMTPRelayingManager, location: QueueLocation,
                 err: TextIO, description: str, interval: float, stopTimeout: float) -> None:
        self.manager = manager
        self.queue: Queue | PGQueue = manager.queue
        self.location = location
        self.err = err
        self.description = description
        self.interval = interval
        self.stopTimeout = stopTimeout
        self.counts = {"delivered": 0, "deferred": 0, "bounced": 0}
        self.service: _DirectoryService | PGRelayService | None = None
        self.database: Database | None = None
        self.cleanups: list[Callable[[], object]] = []
        self.started = False
        self._announced = False
        self._stopping: defer.Deferred[None] | None = None
        self._relayers: weakref.WeakSet[Protocol] = weakref.WeakSet()
        manager.factory = _trackingFactory(manager.factory, self._relayers)
        manager.deliveryObservers.append(self._reported)

    def say(self, text: str) -> None:
        _say(self.err, text)

    def announce(self) -> None:
        if not self._announced:
            self._announced = True
            self.say("relaying %s; stop with Ctrl-C or SIGTERM" % (self.description,))

    def _reported(self, report: DeliveryReport) -> None:
        outcome = getattr(report.outcome, "value", str(report.outcome))
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        self.say(report.describe())

    def start(self, reactor: ICommandReactor) -> defer.Deferred[None]:
        """
        Start relaying.  The Deferred fails with a L{CommandError} if the
        relay cannot start (the PostgreSQL queue's schema is checked now).
        """
        if self.location.isDatabase:
            from mailclient._relaying.pgworker import PGRelayService

            # The queue of a database's relay is a PGQueue (prepareRelay).
            self.service = PGRelayService(self.manager, cast("PGQueue", self.queue),
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
            d: defer.Deferred[bool] = defer.succeed(True)
        elif isinstance(self.service, _DirectoryService):
            d = self.service.stopWithin(self.stopTimeout, self._closeConnections)
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
        sending = [r.transport for r in list(self._relayers)
                   if getattr(r.transport, "connected", False)]
        if not sending:
            return
        self.say("stop timeout: closing %d connection%s still sending; their messages "
                 "stay queued" % (len(sending), "" if len(sending) == 1 else "s"))
        for transport in sending:
            cast(ITCPTransport, transport).abortConnection()

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


def _openDirectory(path: str) -> Queue:
    from mailclient.relaymanager import Queue

    DirectoryQueue(path, write=True)
    try:
        with queueErrors():
            queue = Queue(path)
            queue.noisy = False
            queue.acquireRelayLock()
    except OSError as e:
        raise osError(e, "use the queue directory %s" % (path,)) from None
    return queue


def prepareRelay(args: argparse.Namespace, err: TextIO,
                 reactor: ICommandReactor | None = None) -> Relay:
    """
    Check the options of C{relay}, read the password, open the queue (a
    directory is locked now: one relay per directory) and configure the
    relaying manager.

    @raise CommandError: with the line to print and the exit code.
    """
    options = checkRelayOptions(args)
    location = options.location
    queue: Queue | PGQueue
    if location.directory is not None:
        queue = _openDirectory(location.directory)
        cleanups: list[Callable[[], object]] = [queue.releaseRelayLock]
        database = None
    else:
        queue, database, cleanups = _openDatabase(options, reactor)
    try:
        manager = _manager(options, queue, reactor)
    except BaseException:
        for cleanup in cleanups:
            cleanup()
        raise
    relay = Relay(manager, location, err, options.describe(), options.interval,
                  options.stopTimeout)
    relay.database = database
    relay.cleanups = cleanups
    return relay


def _openDatabase(options: RelayOptions, reactor: ICommandReactor | None
                  ) -> tuple[PGQueue, Database, list[Callable[[], object]]]:
    from mailclient._relaying.pgdb import DriverMissing, connectDatabase
    from mailclient._relaying.pgqueue import PGQueue
    from mailclient._relaying.pgscratch import scratchParent

    location, args = options.location, options.args
    assert location.conninfo is not None
    try:
        database = connectDatabase(location.conninfo, reactor=reactor, size=4)
    except DriverMissing as e:
        raise queueError(e) or CommandError(EX_UNAVAILABLE, str(e)) from None
    cleanups: list[Callable[[], object]] = []
    scratch = args.scratch
    if scratch is None:
        # In memory when it can be: the copies are the database's.
        scratch = tempfile.mkdtemp(prefix="mailclient-relay-", dir=scratchParent())
        cleanups.append(lambda: shutil.rmtree(scratch, ignore_errors=True))
    elif os.path.lexists(scratch) and not os.path.isdir(scratch):
        raise CommandError(EX_CANTCREAT, "--scratch %s: not a directory" % (scratch,))
    queue = PGQueue(database, scratch, schema=location.schema, worker=args.worker,
                    lease=options.lease, destinationLimit=options.destinationLimit,
                    reactor=reactor)
    queue.noisy = False
    return queue, database, cleanups


def _manager(options: RelayOptions, queue: Queue | PGQueue,
             reactor: ICommandReactor | None) -> SmartHostSMTPRelayingManager:
    from mailclient.relaymanager import (
        SmartHostESMTPRelayingManager,
        SmartHostSMTPRelayingManager,
    )

    args = options.args
    managerClass = (SmartHostSMTPRelayingManager if args.no_esmtp
                    else SmartHostESMTPRelayingManager)
    # A PGQueue has every method of a Queue that a manager uses.
    manager = managerClass(
        cast("Queue", queue), options.maxConnections, options.perConnection,
        smartHost=options.smartHost, reactor=reactor, tlsSecurityLevel=args.tls_level,
        tlsCAFile=args.cafile)
    manager.refusePrivateAddresses = not args.allow_private_addresses
    manager.reportingMTA = options.identity
    identityBytes = options.identity.encode("ascii")
    if args.no_esmtp:
        manager.fArgs = (identityBytes,)
        return manager
    if args.implicit_tls:
        manager.smartHostImplicitTLS = True
    secret = None
    if options.password is not None:
        secret = _Secret(options.password)
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

    def __call__(self, event: LogEvent) -> None:
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
        _say(self.err, text)


def runRelay(relay: Relay, err: TextIO, verbose: bool = False) -> int:
    """
    Run C{relay} on the global reactor until Ctrl-C or SIGTERM (exit code
    0), or until it fails to start (its code).
    """
    from twisted.logger import globalLogBeginner

    reactor = globalReactor()
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


__all__ = ["Relay", "prepareRelay", "runRelayCommand"]
