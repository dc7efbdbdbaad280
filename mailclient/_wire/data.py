"""
The DATA encoder: message bytes in, SMTP wire bytes out.

Pure and incremental.  Input may use LF, CRLF, CR or any mix of them as line
endings and may be cut into chunks anywhere (even between a CR and its LF);
the output always uses CRLF, never contains a bare CR or LF, and has every
line that starts with C{.} dot-stuffed (RFC 5321, section 4.5.2), including
the first line of the body and lines that begin exactly at a chunk boundary.
L{DataEncoder.finish} returns the end-of-data marker so that the body always
ends with exactly one C{CRLF.CRLF}.
"""

from __future__ import annotations


class DataEncoder:
    """
    Encode a message body for the DATA command, one chunk at a time.

    The state kept between chunks is two flags: whether the output so far
    ends at the start of a line, and whether the last input byte was a CR
    (so that an LF at the start of the next chunk completes that line break
    instead of starting another).
    """

    __slots__ = ("_atLineStart", "_pendingCR", "_dotStuff")

    def __init__(self, dotStuff: bool = True) -> None:
        """
        @param dotStuff: double leading dots (for DATA); BDAT chunks
            (RFC 3030) need only the line endings normalised.
        """
        self._atLineStart = True
        self._pendingCR = False
        self._dotStuff = dotStuff

    def encode(self, chunk: bytes) -> bytes:
        """
        Encode one chunk of the message.

        @param chunk: Any bytes of the message, continuing the previous chunk.
        @return: The bytes to write to the transport (possibly empty).
        """
        if not chunk:
            return b""
        if self._pendingCR and chunk[:1] == b"\n":
            # The CR that ended the previous chunk already produced CRLF.
            chunk = chunk[1:]
            if not chunk:
                self._pendingCR = False
                return b""
        self._pendingCR = chunk[-1:] == b"\r"
        # Whole-chunk bytes methods only: no Python work per line.
        if b"\r" not in chunk:
            chunk = chunk.replace(b"\n", b"\r\n")
        else:
            crlf = chunk.count(b"\r\n")
            if crlf != chunk.count(b"\r") or crlf != chunk.count(b"\n"):
                # Some CR or LF stands alone (or a CR ends the chunk).
                chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                chunk = chunk.replace(b"\n", b"\r\n")
            # Otherwise every line already ends with CRLF: nothing to do.
        # Every LF now follows a CR.  Stuff after converting: searching for
        # the three bytes CRLF. is faster than for LF. (longer skips).
        if self._dotStuff:
            if b"\n." in chunk:
                chunk = chunk.replace(b"\r\n.", b"\r\n..")
            if self._atLineStart and chunk[:1] == b".":
                chunk = b"." + chunk
        self._atLineStart = chunk[-1:] == b"\n"
        return chunk

    def finish(self) -> bytes:
        """
        Return the end-of-data marker, completing the last line if needed.
        """
        return self.terminator(self._atLineStart)

    @staticmethod
    def terminator(atLineStart: bool) -> bytes:
        """
        The end-of-data marker after output that does (or does not) end at
        the start of a line.
        """
        return b".\r\n" if atLineStart else b"\r\n.\r\n"


def encodeData(data: bytes) -> bytes:
    """
    Encode a whole message body, end-of-data marker included.
    """
    encoder = DataEncoder()
    return encoder.encode(data) + encoder.finish()
