"""
The C{mailclient} command: C{send}, C{demo}, C{sink}, C{migrate}, C{relay}
and C{queue}.

Every input is checked before the reactor starts; every failure is one line
on standard error and an exit code of C{sysexits.h} (the table is in
L{mailclient._commands.common} and C{docs/cli.rst}); an exception nobody
expected is one line naming it and exit code 70, never a traceback.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Generator, Iterable
from typing import IO, NoReturn, Sequence, TextIO, TypeAlias, TypeVar, cast, overload

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTCP
from twisted.python.failure import Failure

import mailclient
from mailclient._commands.common import (
    EX_DATAERR,
    EX_FAILED,
    EX_IOERR,
    EX_NOHOST,
    EX_NOPERM,
    EX_OK,
    EX_PROTOCOL,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    EX_UNAVAILABLE,
    EX_USAGE,
    MIGRATE_EXIT_CODES,
    QUEUE_EXIT_CODES,
    SEND_EXIT_CODES,
    SINK_EXIT_CODES,
    CommandError,
    Flag,
    Option,
    addOptions,
    exitCodeHelp,
    fail,
    hostPort,
    internalErrorLine,
    lastResort,
    runReactor,
)
from mailclient._commands.inputs import PASSWORD_OPTIONS, Job, prepare
from mailclient._commands.inputs import PASSWORD_ENV  # noqa: F401 - importable from here
from mailclient._protocol.sender import ESMTPSender, ESMTPSenderFactory
from mailclient._protocol.sendmail import sendmail
from mailclient._protocol.transcript import redact
from mailclient._wire.errors import (
    AUTHDeclinedError,
    AuthenticationError,
    AUTHRequiredError,
    CannotSendError,
    EHLORequiredError,
    InvalidAddressError,
    MessageReadError,
    SMTPClientError,
    SMTPConnectError,
    SMTPDeliveryError,
    SMTPProtocolError,
    SMTPTimeoutError,
    SMTPTLSError,
    TLSRequiredError,
)
from mailclient._wire.types import RecipientResult, SendResult

__all__ = ["main"]

#: What the server said to one recipient: C{(address, code, reply)}.
_Outcome: TypeAlias = RecipientResult
#: What sendmail's Deferred fires with: C{(numOk, outcomes)}.
_Sent: TypeAlias = SendResult

PROG = "mailclient"

# -- Sending ---------------------------------------------------------------

class _Tracker:
    """
    What the client sent and the server replied, so that a failure is told
    with the server's own reply, and only with one it really sent, and a
    timeout names the reply it was waiting for (pipelined commands are
    answered in order).
    """

    def __init__(self) -> None:
        self.replies: list[tuple[int, bytes]] = []
        self._lines: list[bytes] = []
        self.pending: list[str] = ["the greeting"]

    def sent(self, line: bytes, inSASL: bool) -> None:
        stripped = line.strip()
        if inSASL:
            name = "the login"
        elif stripped == b".":
            name = "the end of the message"
        else:
            verb = stripped.split(b" ", 1)[0].upper()
            if verb in (b"MAIL", b"RCPT"):
                verb = b" ".join(stripped.split(b":", 1)[0].split()).upper()
            name = "the reply to " + verb.decode("ascii", "replace")
        self.pending.append(name)

    def received(self, line: bytes) -> None:
        if len(line) < 3 or not line[:3].isdigit():
            return
        self._lines.append(line[4:])
        if line[3:4] != b"-":
            self.replies.append((int(line[:3]), b"\n".join(self._lines)))
            self._lines = []
            if self.pending:
                del self.pending[0]

    @property
    def waitingFor(self) -> str:
        """
        What the server has yet to answer first.
        """
        return self.pending[0] if self.pending else "a reply"

    def reply(self, code: int, resp: bytes) -> str | None:
        """
        C{"code text"} if the server sent this reply, else L{None}.
        """
        wanted = b" ".join(resp.split())
        for got, text in reversed(self.replies):
            if got == code and b" ".join(text.split()) == wanted:
                return ("%03d %s" % (code, " ".join(
                    text.decode("utf-8", "replace").split()))).strip()
        return None


def _factoryFor(tracker: _Tracker, transcript: TextIO | None) -> type[ESMTPSenderFactory]:
    class Sender(ESMTPSender):
        def sendLine(self, line: bytes) -> None:
            inSASL = self._mailclient.inSASL
            tracker.sent(line, inSASL)
            if transcript is not None:
                # The end-of-data line may start with the CRLF that ends
                # the body.
                shown = redact(line, inSASL).replace(b"\r\n", b"")
                transcript.write("C: %s\n" % shown.decode("utf-8", "replace"))
            ESMTPSender.sendLine(self, line)

        def lineReceived(self, line: bytes) -> object:
            tracker.received(line)
            if transcript is not None:
                transcript.write("S: %s\n" % line.decode("utf-8", "replace"))
            return ESMTPSender.lineReceived(self, line)

    class Factory(ESMTPSenderFactory):
        protocol = Sender

    return Factory


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(value.split())


def _report(out: TextIO, addresses: Sequence[_Outcome],
            exc: SMTPClientError | None) -> None:
    """
    One line per recipient: C{OK} or C{FAILED}, the address, the server's
    reply (to its RCPT, or to the command that failed the message).
    """
    for addr, code, resp in addresses:
        if isinstance(addr, bytes):
            addr = addr.decode("utf-8", "replace")
        status = "OK" if 200 <= code < 300 and exc is None else "FAILED"
        if exc is not None and 200 <= code < 300:
            code, resp = exc.code, exc.resp
        out.write("%s %s %03d %s\n" % (status, addr, code, _text(resp)))


_NOT_TLS = ("wrong version number", "unknown protocol", "packet length too long",
            "record layer failure", "http request", "wrong_version_number")


def _connectFailure(e: SMTPConnectError, where: str) -> tuple[int, str]:
    from twisted.internet import error

    cause = e.__cause__
    if isinstance(cause, error.DNSLookupError):
        return EX_NOHOST, "cannot connect to %s: host name not found" % (where,)
    if isinstance(cause, error.ConnectionRefusedError):
        return EX_TEMPFAIL, "cannot connect to %s: connection refused" % (where,)
    if isinstance(cause, (error.TCPTimedOutError, error.TimeoutError)):
        return EX_TEMPFAIL, "cannot connect to %s: timed out" % (where,)
    if isinstance(cause, error.NoRouteError):
        return EX_TEMPFAIL, "cannot connect to %s: no route to host" % (where,)
    if isinstance(cause, error.ConnectError):
        reason = cause.osError if isinstance(cause.osError, str) else None
        return EX_TEMPFAIL, "cannot connect to %s: %s" % (
            where, reason or _text(str(cause)) or type(cause).__name__)
    text = _text(e.resp)
    prefix = "Connection to the SMTP server was lost: "
    if text.startswith(prefix):
        return EX_TEMPFAIL, "lost the connection to %s (%s)" % (where, text[len(prefix):])
    return EX_TEMPFAIL, "%s: %s" % (where, text)


def _explain(e: SMTPClientError, job: Job, tracker: _Tracker,
             out: TextIO) -> tuple[int, str]:
    """
    Print the recipient lines the failure has, and return the exit code
    and the line that says why.
    """
    where = hostPort(job.host, job.port)
    reply = tracker.reply(e.code, e.resp) if e.code > 0 else None
    temporary = 400 <= e.code < 500 and reply is not None
    if isinstance(e, CannotSendError):
        return EX_DATAERR, "%s cannot take this message: %s" % (where, _text(e.resp))
    if isinstance(e, SMTPDeliveryError):
        addresses = list(cast("list[_Outcome] | None", e.addresses) or [])
        if not addresses:
            # Refused before any RCPT (at MAIL): every recipient failed.
            _report(out, [(r, e.code, e.resp) for r in job.recipients], e)
            return (EX_TEMPFAIL if 400 <= e.code < 500 else EX_FAILED,
                    "the server refused the sender <%s>%s"
                    % (job.sender, ": " + reply if reply else ""))
        _report(out, addresses, e)
        if not any(200 <= code < 300 for _, code, _ in addresses):
            allTemporary = all(400 <= code < 500 for _, code, _ in addresses)
            return (EX_TEMPFAIL if allTemporary else EX_FAILED,
                    "the server refused every recipient")
        return (EX_TEMPFAIL if 400 <= e.code < 500 else EX_FAILED,
                "the server refused the message%s" % (": " + reply if reply else "",))
    if isinstance(e, SMTPTLSError):
        text = _text(e.resp)
        if reply is not None:
            return (EX_TEMPFAIL if temporary else EX_FAILED,
                    "the server refused STARTTLS: %s" % (reply,))
        if "certificate" in text:
            return EX_FAILED, "%s (--cafile trusts a private CA; --tls-name sets the " \
                              "name to check)" % (text,)
        if job.tlsMode == "tls" and any(s in text.lower() for s in _NOT_TLS):
            return EX_PROTOCOL, "%s does not speak TLS (%s); try --starttls" % (where, text)
        return EX_PROTOCOL, "TLS with %s failed: %s" % (where, text)
    if isinstance(e, TLSRequiredError):
        if b"not installed" in e.resp:
            return EX_UNAVAILABLE, "TLS support is not installed: pip install " \
                                   "'mailclient[tls]'"
        return EX_UNAVAILABLE, "%s does not offer STARTTLS, which --starttls requires; " \
                               "nothing was sent" % (where,)
    if isinstance(e, AUTHDeclinedError):
        return (EX_TEMPFAIL if temporary else EX_NOPERM,
                "the server refused the login as %s%s"
                % (job.user, ": " + reply if reply else ""))
    if isinstance(e, AUTHRequiredError):
        if b"unencrypted" in e.resp:
            return EX_UNAVAILABLE, "not sending the password in cleartext: %s did " \
                "not offer STARTTLS (--starttls to require it, --allow-cleartext-auth " \
                "to send the password anyway)" % (where,)
        if b"Client Authentication schemes" in e.resp:
            return EX_UNAVAILABLE, "%s offers no login mechanism mailclient has " \
                                   "(CRAM-MD5, LOGIN, PLAIN)" % (where,)
        return EX_UNAVAILABLE, "cannot log in: %s" % (_text(e.resp),)
    if isinstance(e, AuthenticationError):
        if reply is not None:
            return (EX_TEMPFAIL if temporary else EX_NOPERM,
                    "the login as %s failed: %s" % (job.user, reply))
        return EX_PROTOCOL, "the login as %s failed: %s" % (job.user, _text(e.resp))
    if isinstance(e, EHLORequiredError):
        return EX_UNAVAILABLE, "%s does not support EHLO, which STARTTLS and AUTH " \
                               "need" % (where,)
    if isinstance(e, SMTPTimeoutError):
        if b"Timeout waiting" in e.resp:
            return EX_TEMPFAIL, "timed out waiting for %s from %s" % (
                tracker.waitingFor, where)
        return EX_TEMPFAIL, "%s: %s" % (where, _text(e.resp))
    if isinstance(e, SMTPConnectError):
        if reply is not None:
            return (EX_TEMPFAIL if temporary else EX_UNAVAILABLE,
                    "%s refused the connection: %s" % (where, reply))
        return _connectFailure(e, where)
    if isinstance(e, SMTPProtocolError):
        return EX_PROTOCOL, "%s broke the protocol: %s" % (where, _text(e.resp))
    if isinstance(e, MessageReadError):
        return EX_IOERR, _text(e.resp)
    if isinstance(e, InvalidAddressError):
        return EX_DATAERR, _text(e.resp)
    if reply is not None:
        return EX_TEMPFAIL if temporary else EX_FAILED, reply
    return EX_FAILED, _text(str(e).splitlines()[0] if str(e) else repr(e))


@defer.inlineCallbacks
def _deliver(
    reactor: IReactorTCP, job: Job, out: TextIO, err: TextIO
) -> Generator[defer.Deferred[_Sent], _Sent, int]:
    """
    Send the message of C{job}, print the outcome, and return the exit
    code.
    """
    tracker = _Tracker()
    tls = job.tlsMode
    try:
        result = yield sendmail(
            job.host,
            job.sender,
            job.recipients,
            job.message,
            senderDomainName=job.helo,
            port=job.port,
            reactor=reactor,
            username=job.user,
            password=job.password,
            requireTransportSecurity=tls in ("starttls", "tls"),
            requireAuthentication=job.user is not None,
            **({} if job.timeout is None else {"timeout": job.timeout}),
            implicitTLS=tls == "tls",
            contextFactory=job.context,
            allowCleartextAuthentication=job.allowCleartextAuth,
            retries=0,
            tls=tls != "none",
            _factoryClass=_factoryFor(tracker, err if job.verbose else None),
        )
    except SMTPClientError as e:
        code, line = _explain(e, job, tracker, out)
        fail(err, PROG, line)
        return code
    numOk, addresses = result
    _report(out, addresses, None)
    if numOk == len(addresses):
        return EX_OK
    fail(err, PROG, "%d of %d recipients refused; the others were sent the message"
         % (len(addresses) - numOk, len(addresses)))
    return EX_FAILED


def _send(
    reactor: IReactorTCP, args: argparse.Namespace, out: TextIO, err: TextIO,
    stdin: IO[bytes] | None = None,
) -> defer.Deferred[int]:
    """
    C{mailclient send}, on C{reactor}: check, send, report.  Fires with the
    exit code; never fails.
    """
    try:
        job = prepare(args, stdin, err)
    except CommandError as e:
        fail(err, PROG, e.message)
        return defer.succeed(e.code)
    except Exception as e:
        fail(err, PROG, internalErrorLine(e))
        return defer.succeed(EX_SOFTWARE)

    def internal(reason: Failure) -> int:
        fail(err, PROG, internalErrorLine(cast(BaseException, reason.value)))
        return EX_SOFTWARE

    def close(result: int | Failure) -> int | Failure:
        job.close()
        return result

    d = defer.maybeDeferred(_deliver, reactor, job, out, err)
    return d.addErrback(internal).addBoth(close)


# -- The command line ------------------------------------------------------

SEND_EXAMPLES = """\
examples:
  # To a local server on port 25, recipients on the command line.
  mailclient send -f report.eml ops@example.com

  # Through a submission server, recipients taken from the header,
  # logging in with a password from the environment.
  export MAILCLIENT_PASSWORD='...'
  mailclient send --host smtp.example.com --port 587 --starttls \\
      --user alice@example.com -t < report.eml

  # Implicit TLS (SMTPS) on port 465, password read from a file.
  mailclient send --host smtp.example.com --tls \\
      --user alice@example.com --password-file ~/.config/smtp-password \\
      -t -f report.eml

  # To a development sink (mailclient sink), showing the conversation.
  mailclient send --host 127.0.0.1 --port 2525 --no-tls -v -t -f report.eml
"""

SINK_EXAMPLES = """\
examples:
  # Print every message sent to 127.0.0.1:2525.
  mailclient sink

  # Store them in a Maildir; any free port, printed on the first line.
  mailclient sink --port 0 --maildir /tmp/Maildir

  # Try login and TLS locally: the sink requires both.
  mailclient sink --auth alice:secret --starttls --write-ca /tmp/sink-ca.pem
  MAILCLIENT_PASSWORD=secret mailclient send --host 127.0.0.1 --port 2525 \\
      --starttls --cafile /tmp/sink-ca.pem --user alice -t -f report.eml
"""

MAIN_EPILOG = """\
examples:
  mailclient demo
  mailclient send --host smtp.example.com --port 587 --starttls \\
      --user alice@example.com -t -f report.eml
  mailclient sink --port 2525 --maildir /tmp/Maildir
  mailclient migrate --write myapp/
  mailclient queue init --queue /var/spool/mailclient
  mailclient relay --queue /var/spool/mailclient --smart-host smtp.example.com:587 \\
      --user relay@example.com
  mailclient queue list --queue /var/spool/mailclient

'mailclient COMMAND --help' lists the options and the exit codes of COMMAND.
Exit codes follow sysexits.h: 0 success, 64 usage error, 70 internal error;
see each command for the others.
"""


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Usage errors exit with EX_USAGE (64), as documented, not 2.
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, "%s: error: %s\n" % (self.prog, message))


_N = TypeVar("_N")


class _TopParser(_ArgumentParser):
    """
    The C{mailclient} parser: an unknown option is reported with the usage
    of the subcommand it was given to, not the top-level usage.
    """

    subcommands: dict[str, argparse.ArgumentParser]

    # argparse's own signatures.
    @overload
    def parse_args(self, args: Iterable[str] | None = None,
                   namespace: None = None) -> argparse.Namespace: ...

    @overload
    def parse_args(self, args: Iterable[str] | None, namespace: _N) -> _N: ...

    @overload
    def parse_args(self, *, namespace: _N) -> _N: ...

    def parse_args(self, args: Iterable[str] | None = None,
                   namespace: object = None) -> object:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(parsed, "command", None) or ""
            action = getattr(parsed, "queue_command", None)
            parser = (self.subcommands.get("%s %s" % (command, action))
                      or self.subcommands.get(command, self))
            parser.error("unrecognized arguments: %s" % (" ".join(extras),))
        return parsed


def _parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _TopParser(
        prog=PROG, description="Send mail with mailclient, or try it.",
        epilog=MAIN_EPILOG, formatter_class=formatter, allow_abbrev=False)
    parser.add_argument("--version", action="version",
                        version="mailclient %s" % (mailclient.__version__,),
                        help="print the version of mailclient and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_ArgumentParser)

    def add(name: str, help: str, description: str, epilog: str) -> argparse.ArgumentParser:
        import textwrap

        return sub.add_parser(name, help=help, description=textwrap.fill(description, 78),
                              epilog=epilog, formatter_class=formatter, allow_abbrev=False)

    send = add("send", "send an RFC 5322 message (sendmail-style)",
               "Send one message (header, empty line, body) from a file or standard "
               "input through one SMTP server.",
               SEND_EXAMPLES + "\n" + exitCodeHelp(SEND_EXIT_CODES))
    send.add_argument("recipients", nargs="*", metavar="RECIPIENT",
                      help="envelope recipients (default: none; see -t)")
    send.add_argument("--from", dest="sender", metavar="ADDRESS",
                      help="envelope sender, where bounces go; '' or '<>' for the null "
                           "sender (default: the Sender or From address of the message)")
    addOptions(send, [
        Flag("-t", "also send to the To, Cc and Bcc addresses of the message, and remove "
             "its Bcc fields (default: off)"),
        Option("-f --file", "the message file (default: -, standard input)", "FILE", "-"),
        Option("--host", "the SMTP server: a host name or an IP address, IPv6 without "
               "brackets (default: localhost)", default="localhost"),
        Option("--port", "the server's port (default: 25, or 465 with --tls)"),
    ])
    mode = send.add_mutually_exclusive_group()
    mode.add_argument("--starttls", dest="tls_mode", action="store_const", const="starttls",
                      help="require STARTTLS; nothing goes in cleartext (default: use "
                           "STARTTLS if offered)")
    mode.add_argument("--tls", dest="tls_mode", action="store_const", const="tls",
                      help="implicit TLS (SMTPS) from the first byte (default: off)")
    mode.add_argument("--no-tls", dest="tls_mode", action="store_const", const="none",
                      help="never use TLS, for test servers and sinks (default: off)")
    send.set_defaults(tls_mode="opportunistic")
    addOptions(send, [
        Option("--cafile", "trust the CA certificates in this PEM file, all of them "
               "(default: the system's trust store)", "FILE"),
        Option("--tls-name", "the name the server's certificate must be valid for "
               "(default: --host)", "NAME"),
        Option("--helo", "the name given in EHLO/HELO (default: this host's name)", "NAME"),
        Option("--timeout", "how long to wait for each reply (default: RFC 5321's limit "
               "for each phase, 2 to 10 minutes)", "SECONDS"),
        Option("--user", "log in (AUTH) with this user name (default: no login)", "NAME"),
        *PASSWORD_OPTIONS,
        Flag("--allow-cleartext-auth", "allow sending the password without TLS to a host "
             "that is not this machine (default: refuse)"),
        Flag("-v --verbose", "print the SMTP conversation on standard error, credentials "
             "redacted (default: off)"),
    ])

    demo = add("demo", "send a sample message to an embedded server and show it",
               "Start the embedded test server on loopback, send a sample message "
               "through STARTTLS and AUTH, and show what the server received.",
               "exit codes:\n  0   the demo worked\n  1   it did not\n"
               "  64  usage error\n  70  internal error (a bug in mailclient)")
    Flag("--quiet", "print only the recipient lines and the summary (default: print "
         "the transcript and the message too)").addTo(demo)

    sink = add("sink", "run a local catch-all SMTP server",
               "Accept every message for every recipient on a local port and print "
               "it or store it in a Maildir, until Ctrl-C or SIGTERM.",
               SINK_EXAMPLES + "\n" + exitCodeHelp(SINK_EXIT_CODES))
    addOptions(sink, [
        Option("--port", "the port to listen on; 0 picks a free one (default: 2525)",
               default="2525"),
        Option("--interface", "the IP address to listen on (default: 127.0.0.1, this "
               "machine only)", "ADDRESS", "127.0.0.1"),
        Option("--maildir", "store messages in this Maildir, created if needed (default: "
               "print them)", "DIR"),
        Option("--auth", "require AUTH PLAIN or LOGIN with these credentials (default: "
               "no login)", "USER:PASSWORD"),
        Flag("--starttls", "offer and require STARTTLS, with a certificate for localhost, "
             "127.0.0.1 and ::1 (default: no TLS)"),
        Option("--write-ca", "with --starttls, write the certificate of the CA that signed "
               "the sink's certificate to FILE, for send --cafile (default: a temporary "
               "file, named on the second line of output)", "FILE"),
    ])

    migrate = add("migrate", "rewrite twisted.mail SMTP client imports to mailclient",
                  "Rewrite the twisted.mail.smtp, .relay and .relaymanager imports of "
                  "Python files, or of every .py file under a directory, to mailclient.",
                  exitCodeHelp(MIGRATE_EXIT_CODES))
    Flag("--write", "rewrite the files in place (default: print a unified diff)").addTo(migrate)
    migrate.add_argument("paths", nargs="+", metavar="PATH",
                         help="Python files or directories (no default)")

    from mailclient._commands.queue import QUEUE_EXAMPLES, configureQueueParser
    from mailclient._commands.relayoptions import RELAY_EPILOG, configureRelayParser

    relay = add("relay", "relay a queue (directory or PostgreSQL) until stopped",
                "Relay the messages of a queue, a directory or a PostgreSQL database, "
                "through a smart host or to each recipient domain's mail exchanges, "
                "until Ctrl-C or SIGTERM.  Each delivery is reported on standard error.",
                RELAY_EPILOG)
    configureRelayParser(relay)
    queue = add("queue", "create, list and change a relay queue",
                "Create, upgrade, list, show, flush, delete and requeue the messages of "
                "a relay queue: a directory, or a PostgreSQL database.  'mailclient "
                "queue ACTION --help' lists the options of ACTION.",
                QUEUE_EXAMPLES + "\n" + exitCodeHelp(QUEUE_EXIT_CODES))
    actions = configureQueueParser(queue, _ArgumentParser)

    parser.subcommands = {"send": send, "demo": demo, "sink": sink, "migrate": migrate,
                          "relay": relay, "queue": queue}
    parser.subcommands.update(actions)
    return parser


def _run(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "send":
        job = prepare(args)
        # Ctrl-C or SIGTERM close the connection as the reactor stops: the
        # interruption is what gets reported, not the lost connection.
        err = _Gate(sys.stderr)
        try:
            return runReactor(
                lambda reactor: _deliver(reactor, job, sys.stdout, cast(TextIO, err)),
                sys.stderr, PROG, interrupted=(EX_TEMPFAIL, _INTERRUPTED),
                onInterrupt=err.close)
        finally:
            job.close()
    if args.command == "demo":
        from mailclient._commands.demo import runDemo

        return runReactor(lambda reactor: runDemo(reactor, sys.stdout, args.quiet),
                          sys.stderr, PROG, interrupted=(EX_FAILED, "interrupted"))
    if args.command == "sink":
        from mailclient._commands.sink import prepareSink

        sink = prepareSink(args, sys.stdout, sys.stderr)
        try:
            return runReactor(sink.start, sys.stderr, PROG)
        finally:
            sink.close()
    if args.command == "relay":
        from mailclient._commands.relay import runRelayCommand

        return runRelayCommand(args, sys.stderr)
    if args.command == "queue":
        from mailclient._commands.queue import runQueueCommand

        return runQueueCommand(args)
    from mailclient._commands.migrate import migratePaths

    return migratePaths(args.paths, args.write, sys.stdout, sys.stderr)


_INTERRUPTED = ("interrupted before the server confirmed delivery; the message may "
                "not have been sent")


class _Gate(io.TextIOBase):
    """
    Standard error until the command is interrupted: then the one line
    that says so is all that is printed.
    """

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner
        self.isOpen = True

    def write(self, text: str) -> int:
        if self.isOpen:
            self.inner.write(text)
        return len(text)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.isOpen = False


def main(argv: Sequence[str] | None = None) -> None:
    """
    Entry point of the C{mailclient} command: exits (L{SystemExit}) with
    the code of the subcommand; never returns.
    """
    raise SystemExit(lastResort(lambda: _run(argv)))
