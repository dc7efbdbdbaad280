"""
How long a client waits: per-phase reply limits (RFC 5321, section
4.5.3.2), the minimum rate of a message body, and the limit of a session.

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeouts:
    """
    How long, in seconds, the client waits at each phase of a session.

    The defaults are RFC 5321's minimums.  Give an instance as the
    C{timeouts} attribute of a client (or to the factories and C{sendmail});
    the Twisted-compatible C{timeout} attribute, when set, still applies one
    limit to every phase instead.

    @ivar greeting: waiting for the server's greeting (220).
    @ivar mail: waiting for the reply to MAIL; also used for EHLO, HELO,
        STARTTLS, AUTH, RSET and QUIT.
    @ivar rcpt: waiting for the reply to each RCPT.
    @ivar dataInit: waiting for the 354 reply to DATA.
    @ivar dataBlock: between two writes of message data (the transport
        accepting each block), and waiting for the reply to each BDAT chunk
        but the last.
    @ivar dataTermination: waiting for the final reply after the end of the
        data (the server may be delivering the message meanwhile).
    @ivar minimumRate: the message body must leave at this many bytes per
        second at least, averaged from its start once C{rateGrace} seconds
        have passed (a server that reads a trickle keeps no connection
        forever); L{None}: no minimum.
    @ivar rateGrace: how long the body may go slower than C{minimumRate}.
    @ivar session: a fixed limit for a whole session; L{None} (the default)
        leaves it at the sum of the limits of the commands sent plus the
        time the bodies take at C{minimumRate}, which holds by construction:
        no reply, however it is trickled, extends its own deadline.

    Each reply gets its own deadline: lines that do not complete a reply
    (informational lines, the lines of a multi-line reply, a line trickled
    a byte at a time) never extend it.
    """

    greeting: float | None = 300.0
    mail: float | None = 300.0
    rcpt: float | None = 300.0
    dataInit: float | None = 120.0
    dataBlock: float | None = 180.0
    dataTermination: float | None = 600.0
    minimumRate: float | None = 1024.0
    rateGrace: float = 60.0
    session: float | None = None

    def tooSlow(self, sent: int, elapsed: float) -> bool:
        """
        Whether a body of which C{sent} bytes left in C{elapsed} seconds
        goes under the minimum rate.
        """
        rate = self.minimumRate
        return rate is not None and elapsed > self.rateGrace and sent < rate * elapsed

    def forReply(self, verb: bytes, last: bool = False) -> float | None:
        """
        The limit for the reply to a pipelined command C{verb} (for BDAT,
        C{last} says whether the chunk is the last).
        """
        if verb == b"RCPT":
            return self.rcpt
        if verb == b"DATA":
            return self.dataInit
        if verb == b"BDAT":
            return self.finalReply if last else self.dataBlock
        return self.mail

    @property
    def finalReply(self) -> float | None:
        """
        The limit for the final reply to a message sent with BDAT: the
        longer of C{mail} (the reply to its last command) and
        C{dataTermination} (RFC 5321 4.5.3.2.6); L{None} if either is.
        """
        if self.mail is None or self.dataTermination is None:
            return None
        return max(self.mail, self.dataTermination)

    def forCommand(self, line: bytes) -> float | None:
        """
        The limit for the reply to the command line C{line}.
        """
        verb = line[:4].upper()
        if verb == b"RCPT":
            return self.rcpt
        if verb == b"DATA":
            return self.dataInit
        if verb == b"BDAT":
            return self.dataTermination if line.rstrip().upper().endswith(b"LAST") else self.dataBlock
        if line in (b".", b"\r\n."):
            return self.dataTermination
        return self.mail
