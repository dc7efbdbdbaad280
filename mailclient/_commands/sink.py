"""
C{mailclient sink}: the embedded test server as a local catch-all, printing
each message or storing it in a Maildir, optionally requiring STARTTLS
(with a generated certificate) and AUTH.

Everything that can fail (the options, the Maildir, the CA file, the
listening socket) is done before the reactor runs, so a failure is one line
and an exit code, never a traceback or a sink that hangs without listening.
"""

from __future__ import annotations

import argparse
import errno
import mailbox
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, TextIO

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTCP

from mailclient._commands.common import (
    EX_CANTCREAT,
    EX_NOPERM,
    EX_UNAVAILABLE,
    EX_USAGE,
    CommandError,
    ICommandReactor,
    checkIPAddress,
    checkPort,
    fail,
    hostPort,
)

if TYPE_CHECKING:
    from mailclient.testing import SMTPTestServer

PROG = "mailclient"

#: The ESMTP extensions the sink always offers.
EXTENSIONS = ["PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 0"]


def _maildir(path: str) -> mailbox.Maildir:
    """
    Open the Maildir at C{path}, creating it (or its C{tmp}, C{new} and
    C{cur} directories) if needed, and check a message can be written.

    @raise CommandError: with L{EX_CANTCREAT}.
    """
    def cannot(what: str, e: OSError | str) -> CommandError:
        reason = e if isinstance(e, str) else (e.strerror or str(e))
        return CommandError(EX_CANTCREAT, "--maildir %s: cannot %s: %s" % (path, what, reason))

    try:
        if os.path.exists(path) and not os.path.isdir(path):
            raise cannot("use it", "it is not a directory")
        box = mailbox.Maildir(path, create=True)
        for sub in ("tmp", "new", "cur"):
            subdir = os.path.join(path, sub)
            if not os.path.isdir(subdir):
                os.mkdir(subdir, 0o700)
        with tempfile.NamedTemporaryFile(dir=os.path.join(path, "tmp"),
                                         prefix=".mailclient-check-"):
            pass
    except OSError as e:
        raise cannot("create or write it", e) from None
    return box


def _credentials(value: str) -> tuple[str, str]:
    user, colon, password = value.partition(":")
    if not colon or not user or not password or re.search(r"[\r\n\0]", value):
        raise CommandError(EX_USAGE, "--auth: give USER:PASSWORD, both non-empty")
    return user, password


def _listenError(e: Exception, where: str) -> CommandError:
    code = getattr(getattr(e, "socketError", None), "errno", None)
    reason = os.strerror(code) if isinstance(code, int) else str(e)
    if code in (errno.EACCES, errno.EPERM):
        return CommandError(EX_NOPERM, "cannot listen on %s: %s" % (where, reason))
    return CommandError(EX_UNAVAILABLE, "cannot listen on %s: %s" % (where, reason))


@dataclass
class Sink:
    """
    A sink ready to run: listening, with its Maildir and CA file.
    """

    server: SMTPTestServer
    interface: str
    box: mailbox.Maildir | None
    out: TextIO
    err: TextIO
    notes: list[str] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    seen: int = 0

    def close(self) -> None:
        for cleanup in self.cleanups:
            cleanup()

    def drain(self) -> None:
        """
        Print or store the messages that arrived since the last call.

        @raise OSError: if one cannot be stored.
        """
        out = self.out
        messages = self.server.messages
        for message in messages[self.seen:]:
            sender = message.mailFrom.decode("utf-8", "replace")
            recipients = ", ".join("<%s>" % r.decode("utf-8", "replace")
                                   for r in message.rcptTo)
            if self.box is not None:
                key = self.box.add(message.data)
                out.write("stored %s from <%s> for %s\n" % (key, sender, recipients))
            else:
                out.write("== from <%s> to %s\n%s\n" % (
                    sender, recipients, message.data.decode("utf-8", "replace")))
            out.flush()
            self.seen += 1

    def start(self, reactor: ICommandReactor) -> defer.Deferred[int]:
        """
        Print the address (now that the reactor handles signals, whoever
        reads the line may signal us at once) and watch for messages.  The
        Deferred fires only if a message cannot be stored.
        """
        done: defer.Deferred[int] = defer.Deferred()

        def drain() -> None:
            try:
                self.drain()
            except OSError as e:
                if loop.running:
                    loop.stop()
                fail(self.err, PROG, "cannot store a message in the Maildir: %s"
                     % (e.strerror or e,))
                if not done.called:
                    done.callback(EX_CANTCREAT)

        loop = task.LoopingCall(drain)
        loop.clock = reactor
        loop.start(0.2)

        def shutdown() -> defer.Deferred[None]:
            if loop.running:
                loop.stop()
                drain()
            return self.server.stopListening()

        reactor.addSystemEventTrigger("before", "shutdown", shutdown)
        self.out.write("mailclient sink listening on %s\n"
                       % (hostPort(self.interface, self.server.portNumber),))
        for note in self.notes:
            self.out.write(note + "\n")
        self.out.flush()
        return done


def prepareSink(args: argparse.Namespace, out: TextIO, err: TextIO,
                reactor: IReactorTCP | None = None) -> Sink:
    """
    Check the options, open the Maildir, write the CA certificate and listen.

    @raise CommandError: with the line to print and the exit code.
    """
    from mailclient.testing import SMTPTestServer

    port = checkPort(args.port, "--port", allowZero=True)
    interface = checkIPAddress(args.interface, "--interface")
    credentials = None if args.auth is None else _credentials(args.auth)
    if args.write_ca is not None and not args.starttls:
        raise CommandError(EX_USAGE, "--write-ca needs --starttls")
    box = None if args.maildir is None else _maildir(args.maildir)

    extensions = list(EXTENSIONS)
    notes = []
    cleanups: list[Callable[[], None]] = []
    if args.starttls:
        from mailclient._protocol.tls import tlsAvailable

        try:
            if not tlsAvailable():
                raise ImportError("pyOpenSSL")
            from mailclient.testing import localCertificates

            pem = localCertificates().caCertificatePEM
        except ImportError:
            raise CommandError(EX_UNAVAILABLE, "--starttls: TLS support is not installed: "
                               "pip install 'mailclient[tls]'") from None
        path = args.write_ca
        if path is None:
            directory = tempfile.mkdtemp(prefix="mailclient-sink-")
            cleanups.append(lambda: shutil.rmtree(directory, True))
            path = os.path.join(directory, "ca.pem")
        try:
            with open(path, "wb") as f:
                f.write(pem)
        except OSError as e:
            for cleanup in cleanups:
                cleanup()
            raise CommandError(EX_CANTCREAT, "--write-ca %s: cannot write it: %s"
                               % (path, e.strerror or e)) from None
        extensions.append("STARTTLS")
        notes.append("mailclient sink requires STARTTLS; the CA certificate is in %s "
                     "(mailclient send --cafile %s)" % (path, path))
    if credentials is not None:
        extensions.append("AUTH PLAIN LOGIN")
        notes.append("mailclient sink requires AUTH PLAIN or LOGIN as %s" % (credentials[0],))

    server = SMTPTestServer(
        hostname="localhost", extensions=extensions,
        credentials=None if credentials is None else dict([credentials]),
        requireAuth=credentials is not None, requireTLS=args.starttls)
    try:
        server.listenTCP(reactor, interface=interface, port=port)
    except Exception as e:
        for cleanup in cleanups:
            cleanup()
        raise _listenError(e, hostPort(interface, port)) from None
    return Sink(server, interface, box, out, err, notes, cleanups)
