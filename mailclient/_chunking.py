"""
The BDAT producer (CHUNKING, RFC 3030): the body in counted chunks.

Each chunk goes out as one write, C{BDAT <size>[ LAST]} followed by the
chunk's bytes, pulled from the file as the transport drains (constant
memory).  One chunk is read ahead so the last can carry C{LAST}.  Line
endings are normalised to CRLF; nothing is dot-stuffed.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.python.failure import Failure
from zope.interface import implementer
from twisted.internet.interfaces import IPullProducer


@implementer(IPullProducer)
class ChunkSender:
    """
    Write a message as BDAT chunks to a transport.

    @ivar chunkSize: how many bytes to read from the file per chunk.
    """

    chunkSize = 1 << 18

    def __init__(
        self,
        file: Any,
        transport: Any,
        encode: Callable[[bytes], bytes],
        onChunk: Callable[[bytes, bool], None],
        onError: Callable[[Failure], None],
    ) -> None:
        """
        @param encode: normalises each chunk read (may raise to refuse the
            message, for example on 8-bit data).
        @param onChunk: called with the BDAT command line and whether it is
            the last, just before each chunk is written.
        @param onError: called if reading or encoding fails; the producer is
            stopped by then.
        """
        self._file = file
        self._transport = transport
        self._encode = encode
        self._onChunk = onChunk
        self._onError = onError
        self._ahead: Optional[bytes] = None
        self._started = False
        self.finished = False

    def start(self) -> None:
        """
        Register with the transport, which then pulls the chunks.
        """
        self._transport.registerProducer(self, False)

    def _readEncoded(self) -> Optional[bytes]:
        while True:
            raw = self._file.read(self.chunkSize)
            if not raw:
                return None
            data = self._encode(raw)
            if data:
                return data

    def resumeProducing(self) -> None:
        if self.finished:
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
        # Two buffers: the chunk itself is not copied to prepend its command.
        self._transport.writeSequence([line + b"\r\n", data])
        self._ahead = following
        if last:
            self.stop()

    def stop(self) -> None:
        """
        Write no more chunks.
        """
        if not self.finished:
            self.finished = True
            self._file = None
            self._transport.unregisterProducer()

    def stopProducing(self) -> None:
        # The transport is going away; the client reports that.
        self.finished = True
        self._file = None
