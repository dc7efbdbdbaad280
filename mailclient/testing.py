"""
A real, scriptable SMTP server for testing code that sends mail.

L{SMTPTestServer} speaks SMTP (ESMTP, PIPELINING, STARTTLS, AUTH, CHUNKING,
...) and records every session, so tests can assert on what a client sent;
its replies can be scripted to fail, stall, disconnect or misbehave.  Run it
on a loopback port (L{SMTPTestServer.listenTCP}) or connect a client to it in
memory (L{SMTPTestServer.connectInMemory}, with real TLS).

    server = SMTPTestServer(credentials={"alice": "secret"})
    server.script("RCPT", [None, Reply(550, b"5.1.1 no such user")])
    connection = server.connectInMemory(myClientFactory)
    connection.pump()
    [message] = server.messages

STARTTLS presents a certificate for the server's host name signed by a CA
made for the test run (L{SMTPTestServer.clientTLSOptions} trusts it);
C{SMTPTestServer(starttls=False)} offers none.  See C{docs/testing.rst} for
a guide.  This module never imports C{twisted.mail}.
"""

from mailclient._testing.certs import LocalCertificates, generateCertificates, localCertificates
from mailclient._testing.actions import (
    DATA_END,
    GREETING,
    Abort,
    Action,
    ActionLike,
    Delay,
    Disconnect,
    EndlessLine,
    Garbage,
    NoReply,
    Reply,
    Trickle,
)
from mailclient._testing.memory import MemoryConnection
from mailclient._testing.records import ReceivedMessage, Session
from mailclient._testing.server import SMTPTestServer
from mailclient._testing.trial import SMTPTestCaseMixin

__all__ = [
    "DATA_END",
    "GREETING",
    "Abort",
    "Action",
    "ActionLike",
    "Delay",
    "Disconnect",
    "EndlessLine",
    "Garbage",
    "LocalCertificates",
    "MemoryConnection",
    "NoReply",
    "ReceivedMessage",
    "Reply",
    "SMTPTestCaseMixin",
    "SMTPTestServer",
    "Session",
    "Trickle",
    "generateCertificates",
    "localCertificates",
]
