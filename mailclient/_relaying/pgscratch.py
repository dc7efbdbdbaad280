"""
A worker's scratch directory: the copies, in Twisted's C{-H}/C{-D} format,
of the messages it has claimed from the PostgreSQL queue, so that relayers
can open them by path.  The copies need no durability (the database holds
the messages): they are written without C{fsync}, and removed whenever the
worker starts and stops.  Nothing is lost if they vanish (a reboot): so a
file system in memory suits them best (L{scratchParent}).
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping

from mailclient._relaying.msgoptions import MessageOptions, writeMessageOptions
from mailclient._wire.queuestate import OPTIONS_SUFFIX
from mailclient._relaying.queue import holdLock
from mailclient._relaying.queuefiles import Path, dumpEnvelope, removeIfPresent

#: The lock file a worker holds in its scratch directory.
SCRATCH_LOCK = ".pgqueue.lock"

#: The files a worker writes in its scratch directory (and wrote before).
_SUFFIXES = ("-D", "-H", "-C", "-H.tmp", OPTIONS_SUFFIX, OPTIONS_SUFFIX + ".tmp")

#: How a copy is opened: made or emptied, never through a link.
_CREATE = (os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
           | getattr(os, "O_CLOEXEC", 0))


def _writeCopy(path: str, data: bytes, mtime: float | None = None) -> None:
    """
    Write C{data} to the file at C{path} (mode 0600), with C{mtime} its
    time if given.  Not atomically: no one reads a copy before the worker
    has written it, and what a worker that died left is removed by the
    next one (L{ScratchDirectory.take}).
    """
    fd = os.open(path, _CREATE, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if mtime is not None:
            if os.utime in os.supports_fd:
                os.utime(fd, (mtime, mtime))
            else:  # pragma: no cover - every POSIX system Python runs on
                os.utime(path, (mtime, mtime))
    finally:
        os.close(fd)


def _usable(directory: str, private: bool) -> bool:
    """
    Whether this user may make its scratch directories in C{directory}:
    a directory it may write, which no other user can take its entries
    from: its own and closed to others if C{private}, else at least
    sticky if anyone may write it (as C{/dev/shm} and C{/tmp} are).
    """
    try:
        info = os.stat(directory)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or not os.access(directory, os.W_OK | os.X_OK):
        return False
    if private:
        return info.st_uid == os.getuid() and not info.st_mode & 0o077
    return not info.st_mode & stat.S_IWOTH or bool(info.st_mode & stat.S_ISVTX)


def scratchParent(environ: Mapping[str, str] | None = None) -> str:
    """
    Where a worker makes its scratch directory when it is not told
    (C{mailclient relay} without C{--scratch}): a file system in memory
    when there is one at hand, since its copies need not outlive the
    process and creating files there costs a fraction of what it does on a
    disk's: C{$XDG_RUNTIME_DIR} (the user's own, a tmpfs), else
    C{/dev/shm} (a tmpfs, sticky), else the system's temporary directory.
    The directory made there is the worker's alone (mode 0700).
    """
    environ = os.environ if environ is None else environ
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime) and _usable(runtime, private=True):
        return runtime
    if _usable("/dev/shm", private=False):
        return "/dev/shm"
    return tempfile.gettempdir()


class ScratchDirectory:
    """
    The scratch directory of one worker (one worker per directory: see
    L{take}).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock: int | None = None

    def path(self, name: str) -> str:
        """
        The base path of the copy of message C{name}.
        """
        return os.path.join(os.fsdecode(self.directory), name)

    def take(self) -> None:
        """
        Make the directory if need be, lock it (an advisory lock on
        L{SCRATCH_LOCK}) and empty it of copies left by a worker that died.

        @raise QueueBusyError: if another worker holds it.
        """
        directory = os.fsdecode(self.directory)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._lock = holdLock(
            os.path.join(directory, SCRATCH_LOCK),
            "the scratch directory %s is used by another worker: one per worker" % (directory,))
        self.empty()

    def release(self) -> None:
        """
        Empty the directory and unlock it.
        """
        if self._lock is None:
            return
        self.empty()
        fd, self._lock = self._lock, None
        os.close(fd)

    def empty(self) -> None:
        """
        Remove every copy.
        """
        with os.scandir(os.fsdecode(self.directory)) as entries:
            for entry in entries:
                if entry.name.endswith(_SUFFIXES) and entry.is_file(follow_symlinks=False):
                    removeIfPresent(entry.path)

    def write(self, name: str, sender: str, recipient: str, data: bytes, queuedAt: float,
              options: MessageOptions | None = None) -> None:
        """
        Write the copy of a message: its options (if any, as the directory
        queue's C{-O} file), its envelope, then its data, with the data
        file's time the time it was queued (Twisted's managers, and
        bounces, read a message's age from it).
        """
        path = self.path(name)
        try:
            if options is not None:
                writeMessageOptions(path, options, fsync=False)
            _writeCopy(path + "-H", dumpEnvelope(sender, recipient))
            _writeCopy(path + "-D", data, queuedAt)
        except BaseException:
            self.remove(name)
            raise

    def remove(self, name: str, options: bool = True) -> None:
        """
        Remove the copy of a message (data first, as the queue does); its
        options file too unless C{options} is false (none was written).
        """
        path = self.path(name)
        removeIfPresent(path + "-D")
        removeIfPresent(path + "-H")
        if options:
            removeIfPresent(path + OPTIONS_SUFFIX)
