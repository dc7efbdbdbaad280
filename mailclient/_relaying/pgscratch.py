"""
A worker's scratch directory: the copies, in Twisted's C{-H}/C{-D} format,
of the messages it has claimed from the PostgreSQL queue, so that relayers
can open them by path.  The copies need no durability (the database holds
the messages): they are written without C{fsync}, and removed whenever the
worker starts and stops.
"""

from __future__ import annotations

import os

from mailclient._relaying.msgoptions import MessageOptions, writeMessageOptions
from mailclient._wire.queuestate import OPTIONS_SUFFIX
from mailclient._relaying.queue import holdLock
from mailclient._relaying.queuefiles import AtomicFile, Path, dumpEnvelope, removeIfPresent

#: The lock file a worker holds in its scratch directory.
SCRATCH_LOCK = ".pgqueue.lock"

#: The files a worker writes in its scratch directory.
_SUFFIXES = ("-H", "-D", "-C", "-H.tmp")


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
        if options is not None:
            writeMessageOptions(path, options, fsync=False)
        with AtomicFile(path + "-H", path + "-H.tmp", fsync=False) as header:
            header.write(dumpEnvelope(sender, recipient))
        try:
            with AtomicFile(path + "-D", path + "-C", fsync=False) as body:
                body.write(data)
            os.utime(path + "-D", (queuedAt, queuedAt))
        except BaseException:
            self.remove(name)
            raise

    def remove(self, name: str) -> None:
        """
        Remove the copy of a message (data first, as the queue does).
        """
        path = self.path(name)
        removeIfPresent(path + "-D")
        removeIfPresent(path + "-H")
        removeIfPresent(path + OPTIONS_SUFFIX)
