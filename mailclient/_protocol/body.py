"""
The DATA body producer, and the message file as bytes.

L{BodySender} streams a message file to the transport as the transport
drains (constant memory), encoding each chunk with the client's
C{transformChunk}; L{binaryFile} reads a text-mode file as UTF-8.
"""

from __future__ import annotations

import io
from typing import IO, cast

from twisted.protocols import basic
from twisted.python.failure import Failure

from mailclient._wire.types import BinaryFile, MessageFile


class _TextToBytes(io.RawIOBase):
    """
    Read a text-mode file as UTF-8 bytes (Twisted's own C{mailmail} passes
    text files; Twisted's client then fails inside the producer and hangs).
    """

    def __init__(self, text: IO[str]) -> None:
        self._text = text
        self._pending = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            data = self._pending + self._text.read().encode("utf-8")
            self._pending = b""
            return data
        while len(self._pending) < size:
            more = self._text.read(size)
            if not more:
                break
            self._pending += more.encode("utf-8")
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pending = b""
        return self._text.seek(offset, whence)


def binaryFile(f: MessageFile | None) -> BinaryFile | None:
    """
    Return C{f}, or a bytes view of it if it is a text-mode file.
    """
    if isinstance(f, io.TextIOBase):
        return _TextToBytes(cast(IO[str], f))
    mode = getattr(f, "mode", "")
    if isinstance(mode, str) and mode and "b" not in mode and "r" in mode:
        return _TextToBytes(cast(IO[str], f))
    return cast("BinaryFile | None", f)  # (not in text mode)


class _TransferStopped(Exception):
    """
    The client stopped the body producer itself (it is failing the message,
    or the connection is lost and that is reported).
    """


class _ProducerStopped(Exception):
    """
    The transport stopped the body producer.
    """


#: The files whose short read means the end: an in-memory file, and a
#: buffered file (whose C{read(n)} waits for C{n} bytes or the end).
_SHORT_READ_IS_END = (io.BytesIO, io.BufferedReader)


class BodySender(basic.FileSender):
    """
    A pull producer that streams a message body to the transport.

    Unlike Twisted's C{FileSender} it never lets an exception from C{read} or
    the transform escape into the reactor (the Deferred fails instead), and
    it writes nothing, and does not update C{lastSent}, for a chunk that
    encodes to no bytes.

    It reads 64 KiB at a time (Twisted: 16 KiB), and when a short read from
    an in-memory or buffered file shows the end, it finishes in the same
    turn, so that the end of the data leaves with the last chunk instead of
    a reactor turn later.  (Other files are read until they return nothing,
    as by Twisted.)
    """

    CHUNK_SIZE = 2**16
    # The last byte written: bytes (Twisted's FileSender says "", as text).
    lastSent = b""  # type: ignore[assignment]
    _ahead = b""

    def stopProducing(self) -> None:
        # The transport will take no more of the body: the message fails
        # now, whether or not connectionLost follows.
        self.abort(Failure(_ProducerStopped()))

    def resumeProducing(self) -> None:
        last = False
        try:
            f = self.file
            if not f:
                chunk = b""
            elif self._ahead:
                chunk, self._ahead = self._ahead, b""
            else:
                chunk = f.read(self.CHUNK_SIZE)
            if not chunk:
                self._finish()
                return
            if len(chunk) < self.CHUNK_SIZE and type(f) in _SHORT_READ_IS_END:
                self._ahead = f.read(self.CHUNK_SIZE)
                last = not self._ahead
            if self.transform:
                chunk = self.transform(chunk)
        except BaseException:
            self.abort(Failure())
            return
        if chunk:
            self.consumer.write(chunk)
            self.lastSent = chunk[-1:]
        if last and self.file is not None:
            self._finish()

    def _finish(self) -> None:
        self.file = None
        self.consumer.unregisterProducer()
        d, self.deferred = self.deferred, None
        if d is not None:
            d.callback(self.lastSent)

    def abort(self, reason: Failure | BaseException) -> None:
        """
        Stop producing and fail the transfer with C{reason}.
        """
        if self.file is None and self.deferred is None:
            return
        self.file = None
        self.consumer.unregisterProducer()
        d, self.deferred = self.deferred, None
        if d is not None:
            d.errback(reason)
