"""
Per-phase reply timeouts (RFC 5321, section 4.5.3.2).
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
    """

    greeting: float | None = 300.0
    mail: float | None = 300.0
    rcpt: float | None = 300.0
    dataInit: float | None = 120.0
    dataBlock: float | None = 180.0
    dataTermination: float | None = 600.0

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
