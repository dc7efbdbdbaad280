"""
The BDAT producer (CHUNKING, RFC 3030): the body in counted chunks.

Each chunk goes out as one write, C{BDAT <size>[ LAST]} followed by the
chunk's bytes, pulled from the file as the transport drains (constant
memory).  One chunk is read ahead so the last can carry C{LAST}.  Line
endings are normalised to CRLF; nothing is dot-stuffed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from twisted.python.failure import Failure
from zope.interface import implementer
from twisted.internet.interfaces import IConsumer, IPullProducer

from mailclient._wire.types import BinaryFile


@implementer(IPullProducer)
class ChunkSender:
    """
    Write a message as BDAT chunks to a transport.

    @ivar chunkSize: the most bytes a chunk holds once encoded.  Line
        endings converted to CRLF make a chunk longer than what was read,
        so the size of the next read is adjusted to keep chunks at or just
        under it: a transport sends 256 KiB in two 128 KiB writes, and a
        few bytes over would cost a third one.
    @ivar smallChunk: chunks shorter than this go out in one write with
        their command line; longer ones in a write of their own.
    """

    chunkSize = 1 << 18
    smallChunk = 1 << 14

    def __init__(
        self,
        file: BinaryFile | None,
        transport: IConsumer,
        encode: Callable[[bytes], bytes],
        onChunk: Callable[[bytes, bool], None],
        onError: Callable[[Failure], None],
        onDone: Callable[[], None],
    ) -> None:
        """
        @param encode: normalises each chunk read (may raise to refuse the
            message, for example on 8-bit data).
        @param onChunk: called with the BDAT command line and whether it is
            the last, just before each chunk is written.
        @param onError: called if reading or encoding fails; the producer is
            stopped by then.
        @param onDone: called once the transport has passed the last chunk
            on (not when the sender is stopped early); the producer is
            unregistered by then.
        """
        self._file = file
        self._transport = transport
        self._encode = encode
        self._onChunk = onChunk
        self._onError = onError
        self._onDone = onDone
        self._ahead: bytes | None = None
        self._readSize = self.chunkSize
        self._started = False
        self._pending: bytes | None = None
        self._pendingLast = False
        self.allWritten = False
        self.finished = False

    def start(self) -> None:
        """
        Register with the transport, which then pulls the chunks.
        """
        self._transport.registerProducer(self, False)

    def _readEncoded(self) -> bytes | None:
        while True:
            size = self._readSize
            # (No file: the AttributeError fails the message.)
            raw = cast(BinaryFile, self._file).read(size)
            if not raw:
                return None
            data = self._encode(raw)
            if len(raw) == size:
                self._adjust(size, len(data))
            if data:
                return data

    def _adjust(self, size: int, encoded: int) -> None:
        """
        Choose the size of the next read from how much the last one grew.
        """
        limit = self.chunkSize
        if encoded > limit:
            # Read less, with a margin for lines denser than these.
            size = size * limit // encoded - (size >> 6)
        elif encoded < limit - (limit >> 5):
            size += (limit - encoded) >> 1
        self._readSize = max(1, min(limit, size))

    def resumeProducing(self) -> None:
        if self.finished:
            return
        if self.allWritten:
            # The transport has passed every byte on.
            self._done()
            return
        pending = self._pending
        if pending is not None:
            # The second half of a chunk: its command line went out in the
            # previous turn, so this write is a transport's only buffer and
            # is sent as it is, never copied into a joined buffer.
            self._pending = None
            self._transport.write(pending)
            if self._pendingLast:
                self._lastWritten()
            return
        try:
            if not self._started:
                self._started = True
                self._ahead = self._readEncoded()
            current = self._ahead
            following = self._readEncoded() if current is not None else None
        except Exception:
            self.stop()
            self._onError(Failure())
            return
        last = following is None
        data = current or b""
        line = b"BDAT %d%s" % (len(data), b" LAST" if last else b"")
        self._onChunk(line, last)
        self._ahead = following
        if len(data) < self.smallChunk:
            self._transport.write(line + b"\r\n" + data)
            if last:
                self._lastWritten()
            return
        # A large chunk follows its command line in the next turn: written
        # together, the transport would join them, copying the whole chunk
        # into freshly allocated memory.
        self._pending = data
        self._pendingLast = last
        self._transport.write(line + b"\r\n")

    def _lastWritten(self) -> None:
        # Stay registered until the transport has passed the last bytes on
        # (it asks for more then), so that onDone comes once they left.
        self.allWritten = True

    def _done(self) -> None:
        self.stop()
        self._onDone()

    def stop(self) -> None:
        """
        Write no more chunks.

        A chunk whose command line has gone out is completed first: the
        server counts its bytes, and the connection stays in step.
        """
        if not self.finished:
            self.finished = True
            pending, self._pending = self._pending, None
            if pending is not None:
                self._transport.write(pending)
            self._file = None
            self._transport.unregisterProducer()

    def stopProducing(self) -> None:
        # The transport is going away; the client reports that.
        self.finished = True
        self._pending = None
        self._file = None
