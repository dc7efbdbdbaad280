"""
The on-disk relay queue, in Twisted's format.

A queued message is two files in one directory: C{<name>-H}, the envelope
C{[from, to]} pickled as a list of two strings, and C{<name>-D}, the message
itself.  Only names with a C{-D} file are messages; a C{-D} file appears (by
rename) only once the message is complete, so a half-written message is never
relayed.  Twisted's C{twisted.mail.relaymanager.Queue} reads and writes the
same files, so either side can fill a queue the other relays.

What differs from Twisted: envelopes are read with an unpickler that can only
build lists, strings and bytes (a queue file cannot run code); the envelope is
written to a temporary name and renamed too; waiting messages are listed
oldest first; a message whose envelope cannot be read is quarantined instead
of crashing the relaying manager.  How the files are read and written is in
L{mailclient._relaying.queuefiles}.
"""

from __future__ import annotations

import os
import time
from typing import IO, Any

from twisted.internet import defer
from twisted.logger import Logger

from mailclient._relaying.queuefiles import (
    AtomicFile,
    EnvelopeAddress,
    Path,
    dumpEnvelope,
    loadPickleFile,
    openQueueFile,
    removeIfPresent,
    removeMessageFiles,
)
# The queue's file helpers, importable from here as they were.
from mailclient._relaying.queuefiles import (  # noqa: F401
    EnvelopeError,
    QueueFileError,
    checkQueueFile,
    isNullSender,
    loadEnvelope,
    loadPickle,
    readEnvelope,
    readEnvelopeData,
)
from mailclient._wire.queuestate import (
    RETRY_SUFFIX,
    RetryDelay,
    RetryState,
    bounceName,
    decodeRetryState,
    defaultRetryDelay,
    encodeRetryState,
    originalOf,
    warningName,
)

_log = Logger()

#: A retry file holds a few numbers and a reason.
_MAX_RETRY_READ = 16 * 1024 + 1


class QueueBusyError(Exception):
    """
    Another relaying manager (in this process or another) holds the queue:
    two managers on one directory would deliver every message twice.
    """


#: The lock file a relaying manager holds in the queue's directory.  (Not a
#: C{-D} file: Twisted's and mailclient's queues both ignore it.)
LOCK_NAME = ".relaying.lock"


def holdLock(path: str, busy: str) -> int:
    """
    Take an advisory lock on the file at C{path} (made if need be), without
    waiting: return its descriptor, which lets the lock go when closed.

    @raise QueueBusyError: saying C{busy}, if another holds the lock.
    """
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise QueueBusyError(busy) from None
    return fd


class QueuedMessage:
    """
    A message receiver (Twisted's C{IMessage}: C{lineReceived},
    C{eomReceived}, C{connectionLost}) that writes a message into the queue.

    Lines are stored LF-terminated, as Twisted's C{FileMessage} stores them.
    The message becomes visible (C{-D}) only at C{eomReceived}.

    @ivar fp: The temporary file being written.
    @ivar name: Its path.
    @ivar finalName: The path of the C{-D} file.
    """

    def __init__(self, fp: AtomicFile, name: str, finalName: str) -> None:
        self.fp = fp
        self.name = name
        self.finalName = finalName

    def lineReceived(self, line: bytes) -> None:
        """
        Store one line of the message (without its line ending).
        """
        self.fp.write(line + b"\n")

    def eomReceived(self) -> "defer.Deferred[str]":
        """
        Complete the message: it appears in the queue under C{finalName}.

        @return: A Deferred that has fired with C{finalName}.
        """
        self.fp.close()
        return defer.succeed(self.finalName)

    def connectionLost(self) -> None:
        """
        Forget the partial message.
        """
        self.fp.discard()


class Queue:
    """
    A queue of messages to be relayed, stored in a directory.

    @ivar directory: The directory holding the queue's files.
    @ivar n: A counter used to form unique file names.
    @ivar waiting: The base names of messages waiting to be relayed (a
        L{dict} used as an ordered set: oldest first).
    @ivar relayed: The base names of messages being relayed.
    @ivar quarantined: The base names of messages whose envelope cannot be
        read; they stay on disk and are not relayed.  (mailclient addition)
    @ivar noisy: Whether to log informational messages.
    @ivar fsync: Whether new files are synced to disk before they are
        renamed into place.  (mailclient addition)
    """

    noisy: bool = True
    fsync: bool = True

    def __init__(self, directory: Path) -> None:
        """
        @param directory: The directory holding the queue's files.
        """
        self.directory = directory
        self._init()

    def _init(self) -> None:
        self._lock: int | None = None
        self.n = 0
        self.waiting: dict[str, int] = {}
        self.relayed: dict[str, int] = {}
        self.quarantined: dict[str, int] = {}
        self.schedules: dict[str, RetryState] = {}
        self.readDirectory()

    def __getstate__(self) -> dict[str, Path]:
        """
        Return the non-volatile state of the queue: its directory.
        """
        return {"directory": self.directory}

    def __setstate__(self, state: dict[str, Path]) -> None:
        """
        Restore the directory and rebuild the volatile state from it.
        """
        self.__dict__.update(state)
        self._init()

    def _dir(self) -> str:
        return os.fsdecode(self.directory)

    def acquireRelayLock(self) -> None:
        """
        Hold the queue's relaying lock (an advisory lock on L{LOCK_NAME} in
        its directory) until L{releaseRelayLock}, or until this process
        ends.  One relaying manager may relay a queue at a time.
        (mailclient addition)

        @raise QueueBusyError: if another manager holds it.
        """
        if self._lock is not None:
            return
        self._lock = holdLock(
            os.path.join(self._dir(), LOCK_NAME),
            "the queue %s is being relayed by another relaying manager (it "
            "holds %s): one manager per queue directory" % (self._dir(), LOCK_NAME))

    def releaseRelayLock(self) -> None:
        """
        Let another relaying manager relay the queue.  (mailclient addition)
        """
        fd, self._lock = self._lock, None
        if fd is not None:
            os.close(fd)

    def readDirectory(self) -> None:
        """
        Scan the directory: add new messages (oldest first) to those waiting,
        and forget waiting messages whose files have gone.

        (mailclient additions) The retry schedule of each new message is read
        from its C{-R} file, if it has one (see L{schedule}).  A message
        whose bounce is in the queue too was returned by a process that
        stopped before removing it: it is removed now (see
        L{returnMessage}); one whose delay warning is in the queue is marked
        as warned.  While this queue holds the relaying lock, C{-R} files
        left without their message are removed.
        """
        new: list[tuple[float, str]] = []
        present = set()
        retryFiles = set()
        with os.scandir(self._dir()) as entries:
            for entry in entries:
                if entry.name.endswith(RETRY_SUFFIX):
                    retryFiles.add(entry.name[: -len(RETRY_SUFFIX)])
                    continue
                if not entry.name.endswith("-D"):
                    continue
                message = entry.name[:-2]
                present.add(message)
                if message in self.waiting or message in self.relayed:
                    continue
                try:
                    mtime = entry.stat().st_mtime
                except FileNotFoundError:
                    continue
                new.append((mtime, message))
        for message in [m for m in self.waiting if m not in present]:
            del self.waiting[message]
        for message in [m for m in self.schedules if m not in present]:
            del self.schedules[message]
        finished = self._recoverNotices(present, retryFiles)
        for _, message in sorted(new):
            if message in finished:
                continue
            if message in retryFiles and message not in self.schedules:
                self._loadSchedule(message)
            self.addMessage(message)
        if self._lock is not None:
            for message in retryFiles - present:
                removeIfPresent(self.getPath(message) + RETRY_SUFFIX)

    def _recoverNotices(self, present: set[str], retryFiles: set[str]) -> set[str]:
        """
        Finish what a process that stopped between the two steps of
        L{returnMessage} or L{sendDelayWarning} left: return the messages
        removed.
        """
        finished = set()
        for name in present:
            original = originalOf(name)
            if original is None or original not in present:
                continue
            if name == bounceName(original):
                if original not in self.relayed:
                    _log.info("Removing {message}: its bounce {bounce} is queued",
                              message=original, bounce=name)
                    self.done(original)
                    finished.add(original)
            elif name == warningName(original):
                if original in retryFiles and original not in self.schedules:
                    self._loadSchedule(original)
                state = self.schedules.get(original)
                if state is None or not state.warned:
                    self._writeSchedule(original, (state or RetryState()).asWarned())
        return finished

    def _loadSchedule(self, message: str) -> None:
        path = self.getPath(message) + RETRY_SUFFIX
        try:
            with openQueueFile(path) as f:
                self.schedules[message] = decodeRetryState(f.read(_MAX_RETRY_READ))
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            # A retry file that cannot be read costs only the back-off: the
            # message is tried at once.
            _log.warn("Ignoring the retry file of {message}: {error}",
                      message=message, error=str(e)[:300])

    def _writeSchedule(self, message: str, state: RetryState) -> None:
        path = self.getPath(message) + RETRY_SUFFIX
        # A temporary file left by a process that stopped while writing.
        removeIfPresent(path + ".tmp")
        with AtomicFile(path, path + ".tmp", self.fsync) as f:
            f.write(encodeRetryState(state))
        self.schedules[message] = state

    def schedule(self, message: str) -> RetryState | None:
        """
        The durable retry schedule of a message: how many times in a row it
        failed for now, when it may be tried again, the last failure and
        whether its delay warning was sent; L{None} if it never failed.
        Kept in the C{<name>-R} file next to the message, so that a
        restarted manager resumes the back-off.  (mailclient addition)
        """
        return self.schedules.get(os.path.basename(message))

    def isDue(self, message: str, now: float) -> bool:
        """
        Whether a message may be tried at C{now} (seconds since the epoch):
        it never failed, or its next attempt has come.  (mailclient
        addition)
        """
        state = self.schedule(message)
        return state is None or state.isDue(now)

    def queuedAt(self, message: str) -> float | None:
        """
        When a message was queued (the modification time of its C{-D}
        file), or L{None} if it is gone.  (mailclient addition)
        """
        try:
            return os.stat(self.getPath(os.path.basename(message)) + "-D").st_mtime
        except OSError:
            return None

    def recordFailure(
        self,
        message: str,
        reason: object = "",
        retryDelay: RetryDelay | None = None,
        when: float | None = None,
        warning: tuple[bytes, EnvelopeAddress] | None = None,
    ) -> RetryState:
        """
        A message failed for now at C{when} (default: now): count the
        failure and schedule its next attempt C{retryDelay(failures)}
        seconds later (by default 30 s, doubling up to an hour), durably (in
        its C{-R} file).  The message is not put back to wait: call
        L{setWaiting} for that, as before.  (mailclient addition)

        @param warning: C{(report, recipient)}: also queue the message's
            delay warning, unless it was sent before (see
            L{sendDelayWarning}).
        @return: The new schedule.
        """
        message = os.path.basename(message)
        if when is None:
            when = time.time()
        if warning is not None:
            self.sendDelayWarning(message, *warning)
        state = self.schedules.get(message) or RetryState()
        state = state.failed(when, reason, retryDelay or defaultRetryDelay)
        if os.path.exists(self.getPath(message) + "-D"):
            self._writeSchedule(message, state)
        return state

    def markWarned(self, message: str) -> None:
        """
        Record that the delay warning of a message was sent.  (mailclient
        addition)
        """
        message = os.path.basename(message)
        state = self.schedules.get(message) or RetryState()
        if os.path.exists(self.getPath(message) + "-D"):
            self._writeSchedule(message, state.asWarned())

    def _enqueueAs(
        self, name: str, sender: EnvelopeAddress, recipient: EnvelopeAddress, data: bytes
    ) -> bool:
        """
        Queue a message under the given name, unless a message of that name
        is queued already; return whether it was queued now.
        """
        path = self.getPath(name)
        if os.path.exists(path + "-D"):
            return False
        # Temporary files left by a process that stopped while writing it.
        removeIfPresent(path + "-H.tmp")
        removeIfPresent(path + "-C")
        self._write(path, sender, recipient, data)
        return True

    def returnMessage(self, message: str, report: bytes, recipient: EnvelopeAddress) -> bool:
        """
        Return a message that failed for good to its sender, once: queue
        C{report} (a delivery status notification) from the null sender to
        C{recipient} under the name L{bounceName}C{(message)}, then remove
        the message.  A process that stops between the two steps leaves
        both; the next L{readDirectory} removes the original, so a message
        is never returned twice.  (mailclient addition)

        @return: Whether a bounce was queued now (C{False}: it was queued
            already).
        """
        message = os.path.basename(message)
        queued = self._enqueueAs(bounceName(message), "", recipient, report)
        self.done(message)
        return queued

    def sendDelayWarning(self, message: str, report: bytes, recipient: EnvelopeAddress) -> bool:
        """
        Queue the one delay warning of a message: C{report} from the null
        sender to C{recipient}, under the name L{warningName}C{(message)},
        and record that it was sent.  Nothing is queued if it was sent
        before.  (mailclient addition)

        @return: Whether a warning was queued now.
        """
        message = os.path.basename(message)
        state = self.schedules.get(message)
        if state is not None and state.warned:
            return False
        if not os.path.exists(self.getPath(message) + "-D"):
            return False
        queued = self._enqueueAs(warningName(message), "", recipient, report)
        self.markWarned(message)
        return queued

    def getWaiting(self) -> list[str]:
        """
        Return the base names of messages waiting to be relayed, oldest
        first.
        """
        return list(self.waiting)

    def hasWaiting(self) -> bool:
        """
        Return whether any message is waiting to be relayed.
        """
        return len(self.waiting) > 0

    def getRelayed(self) -> list[str]:
        """
        Return the base names of messages being relayed.
        """
        return list(self.relayed)

    def setRelaying(self, message: str) -> None:
        """
        Mark a waiting message as being relayed.
        """
        del self.waiting[message]
        self.relayed[message] = 1

    def setWaiting(self, message: str) -> None:
        """
        Mark a message as waiting to be relayed again.
        """
        self.relayed.pop(message, None)
        self.waiting[message] = 1

    def addMessage(self, message: str) -> None:
        """
        Mark a message as waiting unless it is being relayed (or is
        quarantined).
        """
        if message in self.relayed or message in self.quarantined:
            return
        if message not in self.waiting:
            self.waiting[message] = 1
            if self.noisy:
                _log.info("Set {message} waiting", message=message)

    def quarantine(self, message: str) -> None:
        """
        Stop relaying a message that cannot be relayed (its envelope is
        unreadable).  Its files are left alone for the administrator; it is
        picked up again when a new L{Queue} reads the directory.
        (mailclient addition)
        """
        message = os.path.basename(message)
        self.waiting.pop(message, None)
        self.relayed.pop(message, None)
        self.quarantined[message] = 1

    def done(self, message: str) -> None:
        """
        Remove a message from the queue: its data file first, so that a
        crash in between leaves no message behind, only a stray envelope.
        """
        message = os.path.basename(message)
        removeMessageFiles(self.getPath(message))
        self.relayed.pop(message, None)
        self.waiting.pop(message, None)
        self.schedules.pop(message, None)

    def getPath(self, message: str) -> str:
        """
        Return the full base path of a message (without C{-H} or C{-D}).
        """
        return os.path.join(self._dir(), message)

    def getEnvelope(self, message: str) -> Any:
        """
        Return what the envelope file of a message holds: the C{[from, to]}
        list Twisted's C{DomainQueuer} writes (what other programs wrote
        there comes back as it is, as with Twisted, but it is read without
        running any code: see L{loadPickle}).

        @raise OSError: if the envelope file cannot be read.
        @raise EnvelopeError: if it is not a safe pickle.
        """
        return loadPickleFile(self.getPath(message) + "-H")

    def getEnvelopeFile(self, message: str) -> IO[bytes]:
        """
        Open the envelope file of a message for reading (binary; see
        L{openQueueFile}).
        """
        return openQueueFile(self.getPath(message) + "-H")

    def _newName(self) -> str:
        name = "%d_%s_%d_%d" % (os.getpid(), time.time(), self.n, id(self))
        self.n += 1
        return name

    def createNewMessage(self) -> tuple[AtomicFile, QueuedMessage]:
        """
        Create a new message in the queue.

        Write the pickled envelope to the returned file and close it (the
        file appears as C{-H} when closed), then give the message to the
        returned receiver; it appears as C{-D} at C{eomReceived}.

        @return: The envelope file and a message receiver.
        """
        path = self.getPath(self._newName())
        header = AtomicFile(path + "-H", path + "-H.tmp", self.fsync)
        tempName = path + "-C"
        message = QueuedMessage(
            AtomicFile(path + "-D", tempName, self.fsync), tempName, path + "-D"
        )
        return header, message

    def enqueue(
        self, sender: EnvelopeAddress, recipient: EnvelopeAddress, data: bytes
    ) -> str:
        """
        Add a complete message to the queue.  (mailclient addition)

        @param data: The message; its line endings are kept as they are.
        @return: The base name of the new message.
        """
        path = self.getPath(self._newName())
        self._write(path, sender, recipient, data)
        return os.path.basename(path)

    def _write(
        self, path: str, sender: EnvelopeAddress, recipient: EnvelopeAddress, data: bytes
    ) -> None:
        header = AtomicFile(path + "-H", path + "-H.tmp", self.fsync)
        body: AtomicFile | None = None
        try:
            header.write(dumpEnvelope(sender, recipient))
            body = AtomicFile(path + "-D", path + "-C", self.fsync)
            body.write(data)
            # The envelope first: a -D without its -H would be quarantined.
            header.close()
            body.close()
        except BaseException:
            # Nothing is left behind on any failure (a full disk, say): not
            # the temporary files, not an envelope without its message.
            header.discard()
            if body is not None:
                body.discard()
            for leftover in (path + "-H", path + "-D"):
                removeIfPresent(leftover)
            raise
