"""
Per-message relay options kept with a queued message: a side file
C{<name>-O} next to its C{-D} (data) and C{-H} (envelope) files.

The envelope stays Twisted's pickled C{[from, to]}, readable by Twisted;
Twisted's C{Queue} only looks at C{-D} and C{-H} files, so it ignores the
side file.  What is kept (JSON, one object):

  - C{"requireTLS": true}: the message asked for REQUIRETLS (RFC 8689).

A message without a side file has no options.  The file is written before
the message's C{-D} appears (see L{enqueueWithOptions}), so a relay never
sees the message without its options; it is removed with the message.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailclient._wire.queuestate import OPTIONS_SUFFIX

if TYPE_CHECKING:
    from mailclient._relaying.queue import Queue

#: The largest side file read.
_MAX_SIZE = 4096


class MessageOptionsError(ValueError):
    """
    A side file that cannot be read as message options.
    """


@dataclass(frozen=True)
class MessageOptions:
    """
    What a queued message asks of its relaying.

    @ivar requireTLS: REQUIRETLS (RFC 8689): relay only over verified TLS
        to servers that offer REQUIRETLS, and send C{REQUIRETLS} on C{MAIL
        FROM}.
    """

    requireTLS: bool = False

    def toState(self) -> dict[str, object]:
        """
        The options as plain data (what the side file holds, and what
        another queue may store).
        """
        return {"requireTLS": True} if self.requireTLS else {}

    @classmethod
    def fromState(cls, state: object) -> MessageOptions:
        """
        The options L{toState} gave (unknown keys are ignored).

        @raise MessageOptionsError: if C{state} is not such a mapping.
        """
        if not isinstance(state, dict):
            raise MessageOptionsError("message options are not a JSON object")
        requireTLS = state.get("requireTLS", False)
        if not isinstance(requireTLS, bool):
            raise MessageOptionsError("requireTLS is not true or false")
        return cls(requireTLS=requireTLS)


NO_OPTIONS = MessageOptions()


def optionsPath(basePath: str) -> str:
    """
    The side file of the message whose base path (without C{-D} or C{-H})
    is C{basePath}.
    """
    return basePath + OPTIONS_SUFFIX


def writeMessageOptions(basePath: str, options: MessageOptions, fsync: bool = True) -> None:
    """
    Write the side file of a message (atomically: under a temporary name,
    then renamed); options that ask for nothing remove it.
    """
    path = optionsPath(basePath)
    state = options.toState()
    if not state:
        removeMessageOptions(basePath)
        return
    temporary = path + ".tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(state, sort_keys=True).encode("ascii"))
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.remove(temporary)
        except FileNotFoundError:
            pass
        raise


def readMessageOptions(basePath: str) -> MessageOptions:
    """
    The options of the message at C{basePath}: those of its side file, or
    none when it has none.

    @raise MessageOptionsError: if the side file is not message options
        (the relay quarantines such a message rather than relay it without
        the TLS it asked for).
    """
    path = optionsPath(basePath)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return NO_OPTIONS
    except OSError as e:
        raise MessageOptionsError("cannot open %s: %s" % (path, e.strerror)) from None
    with os.fdopen(fd, "rb") as f:
        data = f.read(_MAX_SIZE + 1)
    if len(data) > _MAX_SIZE:
        raise MessageOptionsError("%s is larger than %d bytes" % (path, _MAX_SIZE))
    try:
        state = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MessageOptionsError("%s is not JSON" % (path,)) from None
    return MessageOptions.fromState(state)


def removeMessageOptions(basePath: str) -> None:
    """
    Remove the side file of a message, if it has one.
    """
    try:
        os.remove(optionsPath(basePath))
    except FileNotFoundError:
        pass


def enqueueWithOptions(
    queue: Queue, sender: str | bytes, recipient: str | bytes, data: bytes,
    options: MessageOptions,
) -> str:
    """
    Add a complete message to C{queue} (mailclient's L{Queue}) with its
    options: the side file first, then the envelope, then the data (the
    message appears when its C{-D} does).

    @return: The base name of the new message.
    """
    from mailclient._relaying.queuefiles import dumpEnvelope

    header, message = queue.createNewMessage()
    base = header.name[: -len("-H")]
    try:
        writeMessageOptions(base, options, getattr(queue, "fsync", True))
        header.write(dumpEnvelope(sender, recipient))
        header.close()
        message.fp.write(data)
        message.eomReceived()
    except BaseException:
        header.discard()
        message.connectionLost()
        for leftover in (base + "-H", optionsPath(base)):
            try:
                os.remove(leftover)
            except FileNotFoundError:
                pass
        raise
    return os.path.basename(base)
