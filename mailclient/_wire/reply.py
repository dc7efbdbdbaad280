"""
Reply framing: turn the lines a server sends into complete replies.

Pure: no reactor, no transport.  L{ReplyAssembler.feed} takes one line (the
CRLF removed) and returns a L{Reply} when the line completes one, L{None}
when more lines are needed, and raises L{MalformedReply} for anything that is
not an RFC 5321 reply line.
"""

from __future__ import annotations

from typing import NamedTuple

# A reply may span several lines; a server that never ends one must not make
# us buffer without limit.  Every line counts, informational lines too: the
# bound is on what the server sends between two complete replies.
MAX_REPLY_LINES = 1000
MAX_REPLY_BYTES = 65536


class MalformedReply(ValueError):
    """
    A line that is not a valid SMTP reply line, or a reply that is too long.
    """


class Reply(NamedTuple):
    """
    One complete server reply.

    @ivar code: The three-digit reply code.
    @ivar lines: The text of each line, without the code and separator.
    """

    code: int
    lines: list[bytes]

    @property
    def text(self) -> bytes:
        """
        The lines joined with LF, as Twisted passes them to state handlers.
        """
        return b"\n".join(self.lines)


def _parseCode(line: bytes) -> int:
    code = line[:3]
    if len(code) != 3 or not code.isdigit():
        raise MalformedReply("not an SMTP reply line: %r" % (line[:80],))
    sep = line[3:4]
    if sep not in (b"", b" ", b"-"):
        raise MalformedReply("not an SMTP reply line: %r" % (line[:80],))
    return int(code)


class ReplyAssembler:
    """
    Collects reply lines into L{Reply} objects.

    Lines whose code starts with C{0} are informational and ignored, as
    Twisted does; but they count, like every other line, against the
    bounds of the reply they come before (L{MAX_REPLY_LINES},
    L{MAX_REPLY_BYTES}).
    """

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._count = 0
        self._size = 0
        self._code: int | None = None

    @property
    def partial(self) -> list[bytes]:
        """
        The text of the lines of the reply being assembled.
        """
        return self._lines

    @property
    def pending(self) -> bool:
        """
        Whether a multi-line reply has been started but not finished.
        """
        return self._code is not None

    def feed(self, line: bytes) -> Reply | None:
        """
        Add one line; return the reply it completes, if any.

        @raise MalformedReply: if the line is not a reply line, if the lines
            of one reply carry different codes, or if the reply grows beyond
            L{MAX_REPLY_LINES} lines or L{MAX_REPLY_BYTES} bytes.
        """
        if (
            self._count == 0 and line[3:4] == b" " and line[:3].isdigit()
            and line[:1] != b"0" and len(line) <= MAX_REPLY_BYTES
            and b"\r" not in line and b"\n" not in line
        ):
            # The common case, a whole one-line reply: the same checks as
            # below, in one pass.
            return Reply(int(line[:3]), [line[4:]])
        code = _parseCode(line)
        if b"\r" in line or b"\n" in line:
            # A line break inside a line: the two sides would not agree on
            # where replies begin ("220 \r250 ok" is not a 250 reply).
            raise MalformedReply("bare CR or LF in a reply line: %r" % (line[:80],))
        self._count += 1
        self._size += len(line)
        if self._count > MAX_REPLY_LINES or self._size > MAX_REPLY_BYTES:
            raise MalformedReply(
                "reply too long (more than %d lines or %d bytes)"
                % (MAX_REPLY_LINES, MAX_REPLY_BYTES)
            )
        if line[:1] == b"0":
            return None
        if self._code is not None and code != self._code:
            raise MalformedReply(
                "reply line with code %d inside a reply with code %d"
                % (code, self._code)
            )
        self._lines.append(line[4:])
        if line[3:4] == b"-":
            self._code = code
            return None
        reply = Reply(code, self._lines)
        self.reset()
        return reply

    def reset(self) -> None:
        """
        Forget any partly assembled reply.
        """
        self._lines = []
        self._count = 0
        self._size = 0
        self._code = None
