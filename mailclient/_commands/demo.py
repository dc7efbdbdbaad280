"""
C{mailclient demo} and C{mailclient sink}: the embedded test server at work.
"""

from __future__ import annotations

import argparse
import mailbox
from collections.abc import Generator
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, TextIO

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTCP

from mailclient._wire.errors import SMTPClientError
from mailclient._protocol.transcript import redact
from mailclient._protocol.sendmail import sendmail

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorCore, IReactorTime

    class _SinkReactor(IReactorCore, IReactorTCP, IReactorTime):
        """
        The parts of the reactor C{mailclient sink} uses: a make-believe
        interface, as Twisted types its global reactor.
        """

DEMO_USER = "demo"
DEMO_PASSWORD = "correct horse battery staple"
DEMO_FROM = "alice@example.com"
DEMO_TO = ["bob@example.com", "carol@example.com"]


def demoMessage() -> EmailMessage:
    """
    The sample message: a non-ASCII subject, a text part, an attachment.
    """
    msg = EmailMessage()
    msg["From"] = "Alice <%s>" % (DEMO_FROM,)
    msg["To"] = ", ".join(DEMO_TO)
    msg["Subject"] = "Grüße from mailclient ✉"
    msg.set_content(
        "Hello!\n\n"
        ". A line starting with a dot arrives intact (dot-stuffing).\n"
        "Sent through EHLO, STARTTLS, AUTH and a verified certificate.\n"
    )
    msg.add_attachment(
        bytes(range(256)) * 4,
        maintype="application",
        subtype="octet-stream",
        filename="sample.bin",
    )
    return msg


def redactTranscript(transcript: str) -> str:
    """
    Hide credentials in a server-side transcript (the server records SASL
    exchanges as received).
    """
    out: list[str] = []
    inSASL = False
    for line in transcript.splitlines():
        if line.startswith("C: "):
            sent = line[3:].encode("utf-8", "replace")
            shown = redact(sent, inSASL).decode("utf-8", "replace")
            if sent[:5].upper() == b"AUTH ":
                inSASL = True
            out.append("C: " + shown)
        else:
            if inSASL and not line.startswith("S: 334"):
                inSASL = False
            out.append(line)
    return "\n".join(out)


# Any: the Deferreds it yields (sendmail's, then stopListening's) fire with
# different types, and a generator's sends all have one type.
@defer.inlineCallbacks
def runDemo(
    reactor: IReactorTCP, out: TextIO, quiet: bool = False
) -> Generator[defer.Deferred[Any], Any, int]:
    """
    Start the embedded server on loopback, send the sample message through
    the full client stack, and print what the server saw.
    """
    from mailclient.testing import SMTPTestServer

    server = SMTPTestServer(
        hostname="localhost",
        credentials={DEMO_USER: DEMO_PASSWORD},
        requireAuth=True,
        requireTLS=True,
    )
    server.listenTCP(reactor)
    try:
        numOk, addresses = yield sendmail(
            "127.0.0.1",
            DEMO_FROM,
            DEMO_TO,
            demoMessage(),
            senderDomainName="client.example.com",
            port=server.portNumber,
            reactor=reactor,
            username=DEMO_USER,
            password=DEMO_PASSWORD,
            requireAuthentication=True,
            requireTransportSecurity=True,
            contextFactory=server.clientTLSOptions("localhost"),
            timeout=30,
            retries=0,
        )
    except SMTPClientError as e:
        out.write("demo FAILED: %s\n" % (e,))
        return 1
    finally:
        yield server.stopListening()
    if not quiet:
        out.write("== Transcript (as the server saw it; credentials redacted)\n")
        out.write(redactTranscript(server.sessions[0].transcript()) + "\n")
        out.write("== Message as the server stored it\n")
        for message in server.messages:
            out.write(message.data.decode("utf-8", "replace") + "\n")
    for addr, code, resp in addresses:
        out.write(
            "OK %s %03d %s\n"
            % (addr.decode("utf-8", "replace"), code, resp.decode("utf-8", "replace"))
        )
    ok = numOk == len(DEMO_TO) and len(server.messages) == 1
    out.write(
        "demo %s: %d of %d recipients accepted over %s\n"
        % ("OK" if ok else "FAILED", numOk, len(DEMO_TO),
           "TLS" if server.sessions[0].tls else "cleartext")
    )
    return 0 if ok else 1


def runSink(
    reactor: _SinkReactor, args: argparse.Namespace, out: TextIO
) -> defer.Deferred[None]:
    """
    Run the embedded server as a local catch-all until interrupted, printing
    each message or storing it in a Maildir.
    """
    done: defer.Deferred[None] = defer.Deferred()
    # Start once the reactor runs: its signal handlers are installed by then,
    # so whoever reads the "listening" line may signal us at once.
    reactor.callWhenRunning(_startSink, reactor, args, out, done)
    return done


def _startSink(reactor: _SinkReactor, args: argparse.Namespace, out: TextIO,
               done: defer.Deferred[None]) -> None:
    from mailclient.testing import SMTPTestServer

    server = SMTPTestServer(
        hostname="localhost", extensions=["PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 0"]
    )
    try:
        server.listenTCP(reactor, interface=args.interface, port=args.port)
    except Exception as e:
        out.write("mailclient sink: cannot listen: %s\n" % (e,))
        done.errback(SystemExit(1))
        return
    box = mailbox.Maildir(args.maildir, create=True) if args.maildir else None
    seen = [0]

    def drain() -> None:
        messages = server.messages
        for message in messages[seen[0]:]:
            if box is not None:
                key = box.add(message.data)
                out.write("stored %s from <%s> for %s\n" % (
                    key, message.mailFrom.decode("utf-8", "replace"),
                    ", ".join("<%s>" % r.decode("utf-8", "replace") for r in message.rcptTo)))
            else:
                out.write("== from <%s> to %s\n%s\n" % (
                    message.mailFrom.decode("utf-8", "replace"),
                    ", ".join("<%s>" % r.decode("utf-8", "replace") for r in message.rcptTo),
                    message.data.decode("utf-8", "replace")))
            out.flush()
        seen[0] = len(messages)

    loop = task.LoopingCall(drain)
    loop.clock = reactor
    loop.start(0.2)

    def shutdown() -> defer.Deferred[None]:
        loop.stop()
        drain()
        return server.stopListening()

    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    out.write("mailclient sink listening on %s:%d\n" % (args.interface, server.portNumber))
    out.flush()
