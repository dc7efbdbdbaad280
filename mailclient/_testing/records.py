# -*- test-case-name: mailclient.test.test_testing -*-
"""
What the server records: each connection's L{Session} and the messages it
received (L{ReceivedMessage}), and the BDAT chunk being received.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


@dataclass
class ReceivedMessage:
    """
    One message the server received in full.

    @ivar mailFrom: the reverse path without angle brackets (C{b""} for the
        null sender).
    @ivar mailParams: the MAIL FROM parameters, keyword (upper-cased) to value
        (L{None} for a keyword with no value).
    @ivar rcptTo: the accepted recipients, without angle brackets, in order.
    @ivar rcptParams: the RCPT TO parameters of each accepted recipient.
    @ivar data: the content exactly as received: dot-unstuffed (DATA), line
        endings untouched, without the terminating C{.} line.
    @ivar via: C{"DATA"} or C{"BDAT"}.
    """

    mailFrom: bytes
    mailParams: dict[bytes, bytes | None] = field(default_factory=dict)
    rcptTo: list[bytes] = field(default_factory=list)
    rcptParams: list[dict[bytes, bytes | None]] = field(default_factory=list)
    data: bytes = b""
    via: str = ""

    @property
    def bareLineEndings(self) -> bool:
        """
        Whether C{data} holds a CR not followed by LF or an LF not preceded by
        CR (RFC 5321 section 2.3.8 forbids both).
        """
        return _BARE.search(self.data) is not None


@dataclass
class Session:
    """
    Everything that happened on one connection.

    @ivar commands: each command line received, without CRLF, in order,
        including SASL responses exactly as sent (tests need them), but not
        message content.
    @ivar replies: the bytes of each reply sent, in order.
    @ivar tls: whether STARTTLS was completed (set when TLS starts).
    @ivar authenticated: the user name that authenticated, if any.
    @ivar helo: the argument of the last accepted HELO or EHLO.
    @ivar messages: messages accepted on this connection.
    @ivar refused: messages received in full but refused at their end.
    @ivar plaintextAfterSTARTTLS: bytes the client sent after its STARTTLS
        command and before the TLS handshake (they were in the same read, or
        arrived while the reply was delayed); the server discards them.
    @ivar pipeliningViolations: commands that were followed by more commands
        before their reply though PIPELINING was not advertised, or that RFC
        2920 says must end a pipelined group (EHLO, DATA, STARTTLS, ...).
    @ivar closed: whether the connection is gone.
    """

    commands: list[bytes] = field(default_factory=list)
    replies: list[bytes] = field(default_factory=list)
    tls: bool = False
    authenticated: bytes | None = None
    helo: bytes | None = None
    messages: list[ReceivedMessage] = field(default_factory=list)
    refused: list[ReceivedMessage] = field(default_factory=list)
    plaintextAfterSTARTTLS: bytes = b""
    pipeliningViolations: list[bytes] = field(default_factory=list)
    closed: bool = False
    _log: list[tuple[str, bytes]] = field(default_factory=list, repr=False)

    def transcript(self) -> str:
        """
        Return the conversation, one line each, as C{C: ...} and C{S: ...}.
        Message content is summarised as C{C: [N bytes of message data]}.
        """
        out = []
        for who, data in self._log:
            for line in data.splitlines() or [b""]:
                out.append(f"{who}: {line.decode('utf-8', 'backslashreplace')}")
        return "\n".join(out)


@dataclass
class _Chunk:
    remaining: int
    last: bool
    pieces: list[bytes] = field(default_factory=list)
