"""
The files of the on-disk relay queue: reading them safely and writing them
atomically.

An envelope (C{-H} file) is read with an unpickler that can only build
lists, strings and bytes, so a queue file cannot run code, and within
bounds of size, count and depth.  A queue file is opened only if it is a
regular file of the queue's owner, without following a link or blocking on
a FIFO.  A new file is written under a temporary name and renamed into
place (L{AtomicFile}), so readers never see it half written.
"""

from __future__ import annotations

import io
import os
import pickle
import reprlib
import stat
from types import TracebackType
from typing import IO, Callable, TypeAlias

from mailclient._wire.queuestate import OPTIONS_SUFFIX, RETRY_SUFFIX

#: An envelope is two addresses; anything larger is not one.
_MAX_ENVELOPE_SIZE = 64 * 1024

#: What an envelope file may build when it is decoded: this many objects at
#: most (a shared object counts each time it is reached), nested this deep.
_MAX_ENVELOPE_OBJECTS = 1000
_MAX_ENVELOPE_DEPTH = 8

#: How an envelope that is not one is shown in an error: bounded, whatever
#: it holds.
_describe = reprlib.Repr()
_describe.maxlevel = 2
_describe.maxlist = _describe.maxtuple = _describe.maxdict = 4
_describe.maxstring = _describe.maxother = 60

Path: TypeAlias = str | bytes | os.PathLike[str]
EnvelopeAddress: TypeAlias = str | bytes


class EnvelopeError(ValueError):
    """
    A queue envelope (C{-H} file) is not a pickled list of two strings: it is
    truncated, corrupt, or refers to something other than lists, strings and
    bytes.
    """


def _latin1Encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 pickles bytes with protocols 0-2 as _codecs.encode(s, "latin1").
    if encoding not in ("latin1", "latin-1"):
        raise EnvelopeError("unexpected encoding %r in queue envelope" % (encoding,))
    return text.encode("latin-1")


def _empty(kind: type) -> Callable[..., object]:
    """
    The constructor C{kind} as a pickle may call it: with no argument (an
    empty value, as protocol 2 writes C{bytes()}), or with a string of its
    own kind.  Never C{bytes(400000000)}.
    """

    def make(*args: object) -> object:
        if not args:
            return kind()
        if len(args) == 1 and isinstance(args[0], (str, bytes, list, tuple)):
            value = args[0]
            if len(value) <= _MAX_ENVELOPE_SIZE and (kind is list or isinstance(value, kind)):
                return kind(value)
        raise EnvelopeError("queue envelope calls %s with unexpected arguments" % (kind.__name__,))

    return make


_ALLOWED: dict[tuple[str, str], Callable[..., object]] = {
    ("_codecs", "encode"): _latin1Encode,
}
# Protocols 0-2 name builtins by their Python 2 module, __builtin__.
for _module in ("builtins", "__builtin__"):
    _ALLOWED.update({(_module, t.__name__): _empty(t) for t in (list, str, bytes)})


def _checkShape(value: object) -> None:
    """
    Walk what an envelope file built, without recursion and within
    L{_MAX_ENVELOPE_OBJECTS} and L{_MAX_ENVELOPE_DEPTH}: a small file can
    nest lists deeply or share them so that showing the value would take
    gigabytes.

    @raise EnvelopeError: if it is larger or deeper.
    """
    budget = _MAX_ENVELOPE_OBJECTS
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise EnvelopeError("queue envelope holds too many objects")
        if depth > _MAX_ENVELOPE_DEPTH:
            raise EnvelopeError("queue envelope nests too deeply")
        if isinstance(item, (list, tuple, set, frozenset)):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, dict):
            for key, child in item.items():
                stack.append((key, depth + 1))
                stack.append((child, depth + 1))


class _EnvelopeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Callable[..., object]:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise EnvelopeError(
                "queue envelope refers to %s.%s; only lists, strings and bytes "
                "are allowed" % (module, name)
            ) from None


def loadPickle(data: bytes) -> object:
    """
    Decode a pickled envelope file without running any code: only lists,
    strings, bytes and what pickle writes without naming a class (numbers,
    tuples, dicts, None) come out.

    Python 2 byte strings are decoded as UTF-8 (undecodable bytes are kept
    as surrogate escapes).

    @raise EnvelopeError: if C{data} is not such a pickle.
    """
    try:
        value = _EnvelopeUnpickler(
            io.BytesIO(data), encoding="utf-8", errors="surrogateescape"
        ).load()
    except EnvelopeError:
        raise
    except Exception as e:
        raise EnvelopeError(
            "unreadable queue envelope: %s" % (type(e).__name__,)) from None
    _checkShape(value)
    return value


def loadEnvelope(data: bytes) -> list[EnvelopeAddress]:
    """
    Decode a pickled C{[from, to]} envelope without running any code.

    @raise EnvelopeError: if C{data} is not a pickled list (or tuple) of two
        strings or byte strings.
    """
    envelope = loadPickle(data)
    if (
        not isinstance(envelope, (list, tuple))
        or len(envelope) != 2
        or not all(isinstance(a, (str, bytes)) for a in envelope)
    ):
        raise EnvelopeError(
            "queue envelope is not [from, to]: %s" % (_describe.repr(envelope),))
    return list(envelope)


def loadPickleFile(path: Path) -> object:
    """
    What the envelope file at C{path} holds, decoded by L{loadPickle}.

    @raise OSError: if it cannot be read.
    @raise EnvelopeError: if it is not a safe pickle.
    """
    with openQueueFile(path) as f:
        return loadPickle(readEnvelopeData(f, path))


def readEnvelope(path: Path) -> list[EnvelopeAddress]:
    """
    Read the envelope file at C{path} (see L{loadEnvelope}).

    @raise OSError: if it cannot be read (for example, it does not exist).
    @raise EnvelopeError: if it is not an envelope.
    """
    with openQueueFile(path) as f:
        return loadEnvelope(readEnvelopeData(f, path))


class QueueFileError(EnvelopeError):
    """
    A queue file is not a regular file of the queue's owner (a link, a
    FIFO, a device, someone else's file): it is not read, and its message is
    quarantined.
    """


def openQueueFile(path: Path, owner: int | None = None) -> IO[bytes]:
    """
    Open a queue file (C{-H} or C{-D}) for reading, without following a
    symbolic link and without blocking (a FIFO would block the reactor for
    ever), and only if it is a regular file owned by C{owner} (default: the
    owner of its directory).

    @raise QueueFileError: if it is not.
    @raise OSError: if it cannot be opened (for example, it is gone).
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if os.path.islink(path):
            raise QueueFileError("queue file %r is a symbolic link" % (os.fsdecode(path),)) from None
        raise e
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise QueueFileError("queue file %r is not a regular file" % (os.fsdecode(path),))
        if owner is None:
            owner = os.stat(os.path.dirname(os.path.abspath(os.fsdecode(path)))).st_uid
        if info.st_uid != owner:
            raise QueueFileError(
                "queue file %r belongs to uid %d, not the queue's owner %d"
                % (os.fsdecode(path), info.st_uid, owner))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def checkQueueFile(path: Path) -> None:
    """
    Check that C{path} can be read as a queue file (see L{openQueueFile}).

    @raise QueueFileError: if it cannot.
    @raise OSError: if it cannot be opened.
    """
    openQueueFile(path).close()


def readEnvelopeData(f: IO[bytes], path: Path) -> bytes:
    """
    Read an envelope file, at most L{_MAX_ENVELOPE_SIZE} bytes.

    @raise EnvelopeError: if it is larger.
    """
    data = f.read(_MAX_ENVELOPE_SIZE + 1)
    if len(data) > _MAX_ENVELOPE_SIZE:
        raise EnvelopeError("queue envelope %r is too large" % (os.fsdecode(path),))
    return data


def dumpEnvelope(sender: EnvelopeAddress, recipient: EnvelopeAddress) -> bytes:
    """
    Pickle an envelope the way Twisted's C{DomainQueuer} does (a list of two
    strings), with a protocol every Python 3 can read.
    """
    return pickle.dumps([sender, recipient], protocol=2)


def isNullSender(sender: EnvelopeAddress) -> bool:
    """
    Whether C{sender} is the null reverse-path (bounces are sent from it,
    and are never bounced).
    """
    if isinstance(sender, bytes):
        sender = sender.decode("utf-8", "surrogateescape")
    return sender.strip() in ("", "<>")


def removeIfPresent(path: str) -> None:
    """
    Remove the file at C{path}, if there is one.
    """
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def removeMessageFiles(base: str) -> None:
    """
    Remove the files of the queued message at C{base} (its path without a
    suffix): the data file first, so that a crash in between leaves a stray
    envelope, never a message; then the envelope and the side files (the
    retry schedule, the message's options such as REQUIRETLS).
    """
    for suffix in ("-D", "-H", RETRY_SUFFIX, OPTIONS_SUFFIX):
        removeIfPresent(base + suffix)


class AtomicFile:
    """
    A binary file written under a temporary name and renamed to its final
    name when closed, so readers never see it half written.

    Leaving a C{with} block with an exception discards the file instead.
    """

    def __init__(self, finalName: str, tempName: str, fsync: bool = True) -> None:
        self.name = finalName
        self.tempName = tempName
        self._fsync = fsync
        self._file: IO[bytes] = open(tempName, "xb")

    @property
    def closed(self) -> bool:
        """
        Whether the file was closed (committed or discarded).
        """
        return self._file.closed

    def write(self, data: bytes) -> int:
        """
        Write C{data}.
        """
        return self._file.write(data)

    def flush(self) -> None:
        """
        Flush buffered data to the temporary file.
        """
        self._file.flush()

    def close(self) -> None:
        """
        Flush, close and rename the file to its final name.
        """
        if self._file.closed:
            return
        try:
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.tempName, self.name)
        except BaseException:
            # Not committed: nothing is left under either name.
            self._file.close()
            removeIfPresent(self.tempName)
            raise

    def discard(self) -> None:
        """
        Close and remove the temporary file; nothing appears under the final
        name.
        """
        if self._file.closed:
            return
        self._file.close()
        removeIfPresent(self.tempName)

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(
        self,
        excType: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if excType is None:
            self.close()
        else:
            self.discard()
