"""
C{mailclient demo}: the embedded test server at work.
"""

from __future__ import annotations

from collections.abc import Generator
from email.message import EmailMessage
from typing import TextIO, cast

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTCP

from mailclient._wire.errors import SMTPClientError
from mailclient._protocol.transcript import redact
from mailclient._protocol.sendmail import sendmail
from mailclient._wire.types import SendResult

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


# It yields sendmail's Deferred, then stopListening's.
@defer.inlineCallbacks
def runDemo(
    reactor: IReactorTCP, out: TextIO, quiet: bool = False
) -> Generator[defer.Deferred[SendResult] | defer.Deferred[None], SendResult | None, int]:
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
        sent = yield sendmail(
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
        numOk, addresses = cast(SendResult, sent)
    except SMTPClientError as e:
        out.write("demo FAILED: %s\n" % (e,))
        return 1
    except Exception as e:
        # Whatever went wrong, one line: the demo never ends in a traceback.
        out.write("demo FAILED: %s: %s\n" % (type(e).__name__, e))
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
        # sendmail gives each address as the bytes it sent.
        out.write(
            "OK %s %03d %s\n"
            % (cast(bytes, addr).decode("utf-8", "replace"), code,
               resp.decode("utf-8", "replace"))
        )
    ok = numOk == len(DEMO_TO) and len(server.messages) == 1
    out.write(
        "demo %s: %d of %d recipients accepted over %s\n"
        % ("OK" if ok else "FAILED", numOk, len(DEMO_TO),
           "TLS" if server.sessions[0].tls else "cleartext")
    )
    return 0 if ok else 1
