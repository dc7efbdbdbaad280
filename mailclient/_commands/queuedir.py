"""
A queue directory for C{mailclient queue} and C{mailclient relay}:
L{DirectoryQueue}, Twisted's C{-H}/C{-D} files with mailclient's C{-R}
schedules, read and changed without a relaying manager.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import IO

from mailclient._commands.common import (
    EX_CANTCREAT,
    EX_DATAERR,
    EX_NOINPUT,
    EX_NOPERM,
    CommandError,
)
from mailclient._commands.queuestore import (
    INIT_HINT,
    MAX_HEADER,
    MessageInfo,
    osError,
    unknown,
)
from mailclient._relaying.queue import LOCK_NAME
from mailclient._relaying.queuefiles import (
    AtomicFile,
    EnvelopeError,
    checkQueueFile,
    openQueueFile,
    readEnvelope,
    removeIfPresent,
    removeMessageFiles,
)
from mailclient._wire.queuestate import (
    MAX_RETRY_FILE,
    RETRY_SUFFIX,
    RetryState,
    decodeRetryState,
    encodeRetryState,
    recipientDomainOf,
)
from mailclient._wire.text import displayText


def _text(value: object) -> str:
    if isinstance(value, (str, bytes)):
        return displayText(value)
    return repr(value)


class DirectoryQueue:
    """
    A queue directory, read and changed without a relaying manager (one may
    be relaying it at the same time: every change is a rename or a
    removal, as the manager's own).
    """

    def __init__(self, path: str, write: bool = False) -> None:
        self.path = path
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise CommandError(EX_NOINPUT, "the queue directory %s does not exist (%s "
                               "--queue %s creates it)" % (path, INIT_HINT, path)) from None
        except OSError as e:
            raise osError(e, "use the queue directory %s" % (path,)) from None
        if not stat.S_ISDIR(info.st_mode):
            raise CommandError(EX_NOINPUT, "the queue %s is not a directory" % (path,))
        wanted = os.R_OK | os.X_OK | (os.W_OK if write else 0)
        if not os.access(path, wanted):
            raise CommandError(EX_NOPERM, "permission denied: cannot %s the queue "
                               "directory %s" % ("write" if write else "read", path))

    @staticmethod
    def create(path: str) -> bool:
        """
        Make the queue directory, private (mode 0700), and its parents.

        @return: Whether it was made (C{False}: it exists).
        @raise CommandError: if it cannot be made, or is not a directory.
        """
        if os.path.isdir(path):
            return False
        if os.path.lexists(path):
            raise CommandError(EX_CANTCREAT, "cannot create the queue directory %s: "
                               "something else has that name" % (path,))
        try:
            os.makedirs(path, 0o700)
            os.chmod(path, 0o700)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM):
                raise CommandError(EX_NOPERM, "cannot create the queue directory %s: %s"
                                   % (path, e.strerror or e)) from None
            raise CommandError(EX_CANTCREAT, "cannot create the queue directory %s: %s"
                               % (path, e.strerror or e)) from None
        return True

    def _base(self, name: str) -> str:
        return os.path.join(self.path, name)

    def names(self) -> list[str]:
        """
        The names of the queued messages, oldest first (as the queue relays
        them).  Only names are kept in memory, never envelopes or bodies.
        """
        found: list[tuple[float, str]] = []
        try:
            with os.scandir(self.path) as entries:
                for entry in entries:
                    if not entry.name.endswith("-D") or len(entry.name) < 3:
                        continue
                    try:
                        mtime = entry.stat(follow_symlinks=False).st_mtime
                    except FileNotFoundError:
                        continue
                    found.append((mtime, entry.name[:-2]))
        except OSError as e:
            raise osError(e, "read the queue directory %s" % (self.path,)) from None
        return [name for _, name in sorted(found)]

    def exists(self, name: str) -> bool:
        return os.path.lexists(self._base(name) + "-D")

    def _schedule(self, name: str) -> RetryState | None:
        try:
            with openQueueFile(self._base(name) + RETRY_SUFFIX) as f:
                return decodeRetryState(f.read(MAX_RETRY_FILE + 1))
        except (OSError, ValueError):
            # As the queue: a schedule that cannot be read costs only the
            # back-off.
            return None

    def info(self, name: str, now: float | None = None) -> MessageInfo | None:
        """
        What is known of message C{name}; L{None} if it is gone.
        """
        if now is None:
            now = time.time()
        base = self._base(name)
        try:
            data = os.stat(base + "-D", follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise osError(e, "read the queue directory %s" % (self.path,)) from None
        info = MessageInfo(name, "waiting", queuedAt=data.st_mtime, size=data.st_size)
        try:
            sender, recipient = readEnvelope(base + "-H")
            checkQueueFile(base + "-D")
        except FileNotFoundError:
            info.state, info.problem = "quarantined", "its envelope file (-H) is missing"
        except (EnvelopeError, OSError) as e:
            info.state = "quarantined"
            info.problem = " ".join(str(e).split())[:300] or type(e).__name__
        else:
            info.sender, info.recipient = _text(sender), _text(recipient)
            info.domain = recipientDomainOf(recipient)
        state = self._schedule(name)
        if state is not None:
            info.failures = state.failures
            info.nextAttempt = state.nextAttempt
            info.lastFailure = state.lastFailure
            info.lastReason = state.lastReason
            info.warned = state.warned
        info.due = info.nextAttempt is None or info.nextAttempt <= now
        return info

    def messages(self, domain: str | None = None, state: str | None = None
                 ) -> Iterator[MessageInfo]:
        """
        The queued messages, oldest first, read one at a time.
        """
        now = time.time()
        for name in self.names():
            info = self.info(name, now)
            if info is None:
                continue
            if domain is not None and info.domain != domain.lower():
                continue
            if state is not None and info.state != state:
                continue
            yield info

    def find(self, ids: Sequence[str]) -> list[MessageInfo]:
        """
        The messages named C{ids}.

        @raise CommandError: with L{EX_NOINPUT} if any is not queued.
        """
        found = {i: self.info(i) for i in dict.fromkeys(ids)}
        missing = [i for i, info in found.items() if info is None]
        if missing:
            raise unknown(missing)
        return [info for info in found.values() if info is not None]

    def show(self, id: str, body: bool) -> tuple[MessageInfo, bytes, IO[bytes] | None]:
        """
        A message, the start of its data (at least its header) and, with
        C{body}, its data file, open at the end of what was read.
        """
        [info] = self.find([id])
        try:
            f = openQueueFile(self._base(id) + "-D")
        except FileNotFoundError:
            raise unknown([id]) from None
        except (EnvelopeError, OSError) as e:
            info.problem = info.problem or str(e)
            return info, b"", None
        try:
            head = f.read(MAX_HEADER)
        except OSError as e:
            f.close()
            raise osError(e, "read the message %s" % (id,)) from None
        if body:
            return info, head, f
        f.close()
        return info, head, None

    def _writeSchedule(self, name: str, state: RetryState) -> None:
        path = self._base(name) + RETRY_SUFFIX
        removeIfPresent(path + ".tmp")
        with AtomicFile(path, path + ".tmp") as f:
            f.write(encodeRetryState(state))

    def _makeDue(self, info: MessageInfo, now: float) -> bool:
        state = self._schedule(info.id)
        if state is None or state.nextAttempt is None or state.nextAttempt <= now:
            return False
        if not self.exists(info.id):
            return False
        self._writeSchedule(info.id, replace(state, nextAttempt=None))
        return True

    def flush(self, domain: str | None = None) -> tuple[int, int]:
        """
        Make every message that waits for its next attempt due now: its
        C{-R} schedule keeps its failures and warning, without a next
        attempt.

        @return: How many were made due, and C{0} (a directory has no
            destination back-offs).
        """
        now = time.time()
        count = 0
        try:
            for info in self.messages(domain, "waiting"):
                if self._makeDue(info, now):
                    count += 1
        except OSError as e:
            raise osError(e, "write the queue directory %s" % (self.path,)) from None
        return count, 0

    def _remove(self, name: str) -> None:
        removeMessageFiles(self._base(name))

    def delete(self, ids: Sequence[str], force: bool) -> int:
        """
        Remove the messages C{ids} (all of them, or none if one is not
        queued).  A directory has no leases: C{force} changes nothing.
        """
        names = [info.id for info in self.find(ids)]
        try:
            for name in names:
                self._remove(name)
        except OSError as e:
            raise osError(e, "delete from the queue directory %s" % (self.path,)) from None
        return len(names)

    def deleteAll(self, force: bool) -> tuple[int, int]:
        """
        Remove every message.

        @return: How many were removed, and C{0} left.
        """
        count = 0
        try:
            for name in self.names():
                if self.exists(name):
                    self._remove(name)
                    count += 1
        except OSError as e:
            raise osError(e, "delete from the queue directory %s" % (self.path,)) from None
        return count, 0

    def requeue(self, ids: Sequence[str]) -> list[tuple[str, bool]]:
        """
        Bring messages back to waiting: each must be readable now (a
        relaying manager quarantines a message only while it runs); its
        next attempt is now.

        @return: Each id, and whether it was changed: C{True} for a message
            that waited for a later attempt and is due now, C{False} for
            one left as it was (it was due already).  A directory keeps no
            quarantine of its own, so this is what C{requeue} can report.
            (It used to be always C{False}, so C{requeue} said "left as it
            is" of messages whose schedule it had just changed.)
        @raise CommandError: with L{EX_DATAERR} if one still cannot be read.
        """
        infos = self.find(ids)
        broken = [i for i in infos if i.state == "quarantined"]
        if broken:
            raise CommandError(EX_DATAERR, "cannot requeue %s: %s (fix or delete it; "
                               "nothing was changed)" % (broken[0].id, broken[0].problem))
        now = time.time()
        changed = []
        try:
            for info in infos:
                changed.append((info.id, self._makeDue(info, now)))
        except OSError as e:
            raise osError(e, "write the queue directory %s" % (self.path,)) from None
        return changed

    def isRelayed(self) -> bool:
        """
        Whether a relaying manager holds the queue now.
        """
        import fcntl

        try:
            fd = os.open(os.path.join(self.path, LOCK_NAME),
                         os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False


__all__ = ["DirectoryQueue"]
