"""
The C{mailclient} command: C{send}, C{demo}, C{sink} and C{migrate}.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import io
import os
import sys
from collections.abc import Generator
from email.headerregistry import BaseHeader
from email.message import EmailMessage
from typing import IO, TYPE_CHECKING, Any, NoReturn, Sequence, TextIO, TypeAlias, cast

from twisted.internet import defer, task
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IReactorTCP

from mailclient._wire.types import RecipientResult, SendResult
from mailclient._wire.errors import SMTPClientError, SMTPDeliveryError
from mailclient._protocol.transcript import redact
from mailclient._protocol.sender import ESMTPSender, ESMTPSenderFactory
from mailclient._protocol.sendmail import sendmail

if TYPE_CHECKING:
    from twisted.internet.ssl import Certificate

#: What the server said to one recipient: C{(address, code, reply)}.
_Outcome: TypeAlias = RecipientResult
#: What sendmail's Deferred fires with: C{(numOk, outcomes)}.
_Sent: TypeAlias = SendResult

EX_OK = 0
EX_FAILED = 1
EX_USAGE = 64
EX_TEMPFAIL = 75

PASSWORD_ENV = "MAILCLIENT_PASSWORD"


def _splitHeaders(raw: IO[bytes]) -> tuple[bytes, IO[bytes]]:
    """
    Read the header block of a message (up to and including the empty line)
    and return it with the file positioned at the body.
    """
    header = bytearray()
    while True:
        line = raw.readline()
        header += line
        if not line or line in (b"\n", b"\r\n") or len(header) > 1 << 20:
            return bytes(header), raw


def _stripBcc(header: bytes) -> bytes:
    out: list[bytes] = []
    skipping = False
    for line in header.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = line[:4].lower() == b"bcc:"
        if not skipping:
            out.append(line)
    return b"".join(out)


def _isSeekable(f: IO[bytes]) -> bool:
    """
    Whether C{f} can be rewound (C{SpooledTemporaryFile} has no
    C{seekable()} before Python 3.11).
    """
    seekable = getattr(f, "seekable", None)
    if seekable is not None:
        return bool(seekable())
    try:
        f.tell()
    except (AttributeError, OSError, ValueError):
        return False
    return True


class _Chain(io.RawIOBase):
    """
    A read-only file made of a bytes prefix followed by another file.
    """

    def __init__(self, prefix: bytes, rest: IO[bytes]) -> None:
        self._prefix = prefix
        self._rest = rest
        self._restStart = rest.tell() if _isSeekable(rest) else 0
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return _isSeekable(self._rest)

    def seek(self, offset: int, whence: int = 0) -> int:
        if offset != 0 or whence != 0:
            raise io.UnsupportedOperation("can only rewind")
        self._rest.seek(self._restStart)
        self._pos = 0
        return 0

    def read(self, size: int = -1) -> bytes:
        if self._pos < len(self._prefix):
            end = len(self._prefix) if size < 0 else self._pos + size
            data = self._prefix[self._pos:end]
            self._pos += len(data)
            return data
        return self._rest.read(size)


class _Progress(io.RawIOBase):
    """
    Reports on stderr how much of a large message has been read.
    """

    STEP = 8 << 20

    def __init__(self, inner: io.RawIOBase, total: int | None, out: TextIO) -> None:
        self._inner = inner
        self._total = total
        self._out = out
        self._done = 0
        self._next = self.STEP

    def readable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self._done = 0
        self._next = self.STEP
        return self._inner.seek(offset, whence)

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._done += len(data)
        if self._done >= self._next:
            self._next += self.STEP
            total = " of %d MiB" % (self._total >> 20) if self._total else ""
            self._out.write("sent %d MiB%s\n" % (self._done >> 20, total))
        return data


def _verboseFactory(out: TextIO) -> type[ESMTPSenderFactory]:
    class VerboseSender(ESMTPSender):
        _logsize = 0

        def sendLine(self, line: bytes) -> None:
            # The end-of-data line may start with the CRLF that ends the body.
            shown = redact(line, self._mailclient.inSASL).replace(b"\r\n", b"")
            out.write("C: %s\n" % shown.decode("utf-8", "replace"))
            ESMTPSender.sendLine(self, line)

        def lineReceived(self, line: bytes) -> Any:
            out.write("S: %s\n" % line.decode("utf-8", "replace"))
            return ESMTPSender.lineReceived(self, line)

    class VerboseFactory(ESMTPSenderFactory):
        protocol = VerboseSender

    return VerboseFactory


class _UsageError(Exception):
    """
    The command line cannot be acted on; the message says why.
    """


def _readPassword(args: argparse.Namespace) -> bytes | None:
    if args.user is None:
        return None
    if args.password_file:
        try:
            with open(args.password_file, "rb") as f:
                return f.read().rstrip(b"\r\n")
        except OSError as e:
            raise _UsageError(
                "cannot read --password-file %s: %s" % (args.password_file, e.strerror))
    value = os.environ.get(args.password_env)
    if value is None:
        raise _UsageError(
            "--user given but no password: set $%s or use --password-file"
            % (args.password_env,))
    return value.encode("utf-8")


def _unique(addresses: Sequence[str]) -> list[str]:
    # sendmail -t sends once to an address named in several fields; the
    # domain is compared without case, the local part exactly.
    seen = set()
    out = []
    for address in addresses:
        local, at, domain = address.rpartition("@")
        key = (local, domain.lower()) if at else (address, "")
        if key not in seen:
            seen.add(key)
            out.append(address)
    return out


def _trustRoot(cafile: str | None) -> Certificate | None:
    if cafile is None:
        return None
    from twisted.internet.ssl import Certificate, optionsForClientTLS  # noqa: F401

    with open(cafile, "rb") as f:
        return Certificate.loadPEM(f.read())


def _contextFor(
    host: str, cafile: str | None, tlsName: str | None
) -> IOpenSSLClientConnectionCreator | None:
    if cafile is None and tlsName is None:
        return None
    from twisted.internet.ssl import optionsForClientTLS

    return optionsForClientTLS(tlsName or host, trustRoot=_trustRoot(cafile))


def _parseHeader(header: bytes) -> EmailMessage:
    # The RFC 5322 parser of email.policy.default (which, unlike
    # email.utils.parseaddr since Python 3.13, keeps domain literals).
    return email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(header)


def _addresses(value: BaseHeader) -> list[str]:
    return [a.addr_spec for a in getattr(value, "addresses", ()) if a.addr_spec not in ("", "<>")]


def _recipientsFromHeaders(header: bytes) -> list[str]:
    parsed = _parseHeader(header)
    recipients: list[str] = []
    for name in ("to", "cc", "bcc"):
        for value in parsed.get_all(name, []):
            recipients.extend(_addresses(value))
    return recipients


def _senderFromHeaders(header: bytes) -> str | None:
    value = _parseHeader(header).get("from")
    if value is None:
        return None
    found = _addresses(value)
    return found[0] if found else None


def _openMessage(path: str) -> IO[bytes]:
    if path == "-":
        import tempfile

        spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)
        while True:
            chunk = sys.stdin.buffer.read(1 << 16)
            if not chunk:
                break
            spool.write(chunk)
        spool.seek(0)
        return spool
    return open(path, "rb")


@defer.inlineCallbacks
def _send(
    reactor: IReactorTCP, args: argparse.Namespace, out: TextIO, err: TextIO
) -> Generator[defer.Deferred[int], int, int]:
    try:
        password = _readPassword(args)
        raw = _openMessage(args.file)
    except _UsageError as e:
        err.write("mailclient: %s\n" % (e,))
        return EX_USAGE
    except OSError as e:
        err.write("mailclient: cannot read %s: %s\n" % (args.file, e.strerror))
        return EX_USAGE
    try:
        return (yield _sendOpened(reactor, args, raw, password, out, err))
    finally:
        raw.close()


@defer.inlineCallbacks
def _sendOpened(
    reactor: IReactorTCP, args: argparse.Namespace, raw: IO[bytes],
    password: bytes | None, out: TextIO, err: TextIO,
) -> Generator[defer.Deferred[_Sent], _Sent, int]:
    header, body = _splitHeaders(raw)
    recipients = list(args.recipients)
    if args.t:
        recipients += _recipientsFromHeaders(header)
        header = _stripBcc(header)
    recipients = _unique(recipients)
    if not recipients:
        err.write("mailclient: no recipients (give addresses or -t)\n")
        return EX_USAGE
    sender = args.sender or _senderFromHeaders(header) or ""
    message: io.RawIOBase = _Chain(header, body)
    try:
        size: int | None = os.fstat(raw.fileno()).st_size
    except Exception:
        size = None
    if size is not None and size > _Progress.STEP:
        message = _Progress(message, size, err)
    tls = args.tls_mode
    try:
        result = yield sendmail(
            args.host,
            sender,
            recipients,
            message,
            senderDomainName=args.helo,
            port=args.port or (465 if tls == "tls" else 25),
            reactor=reactor,
            username=args.user,
            password=password,
            requireTransportSecurity=tls in ("starttls", "tls"),
            requireAuthentication=args.user is not None,
            **({} if args.timeout is None else {"timeout": args.timeout}),
            implicitTLS=tls == "tls",
            contextFactory=_contextFor(args.host, args.cafile, args.tls_name),
            allowCleartextAuthentication=args.allow_cleartext_auth,
            retries=0,
            tls=tls != "none",
            _factoryClass=_verboseFactory(err) if args.verbose else ESMTPSenderFactory,
        )
    except SMTPDeliveryError as e:
        # SMTPDeliveryError types addresses as object: sendmail's errors
        # carry its per-recipient list there, or None.
        addresses = list(cast("list[_Outcome] | None", e.addresses) or [])
        if not addresses:
            # Refused before any RCPT (at MAIL, say): every recipient failed.
            addresses = [(r, e.code, e.resp) for r in recipients]
        _report(out, addresses, e)
        return EX_TEMPFAIL if 400 <= e.code < 500 else EX_FAILED
    except SMTPClientError as e:
        out.write("FAILED %s\n" % (str(e).splitlines()[0] if str(e) else repr(e),))
        return EX_TEMPFAIL if e.retry or 400 <= e.code < 500 else EX_FAILED
    numOk, addresses = result
    _report(out, addresses, None)
    return EX_OK if numOk == len(addresses) else EX_FAILED


def _report(
    out: TextIO, addresses: Sequence[_Outcome], exc: SMTPClientError | None
) -> None:
    for addr, code, resp in addresses:
        if isinstance(addr, bytes):
            addr = addr.decode("utf-8", "replace")
        status = "OK" if 200 <= code < 300 and exc is None else "FAILED"
        if exc is not None and 200 <= code < 300:
            status = "FAILED"
            code, resp = exc.code, exc.resp
        out.write(
            "%s %s %03d %s\n"
            % (status, addr, code, resp.decode("utf-8", "replace").replace("\n", " "))
        )


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # Usage errors exit with EX_USAGE (64), as documented, not 2.
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, "%s: error: %s\n" % (self.prog, message))


def _parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="mailclient", description="Send mail with mailclient, or try it."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    send = sub.add_parser("send", help="send an RFC 5322 message (sendmail-style)")
    send.add_argument("recipients", nargs="*", help="envelope recipients")
    send.add_argument("--from", dest="sender", help="envelope sender (default: From:)")
    send.add_argument("-t", action="store_true", help="read recipients from To/Cc/Bcc and remove Bcc")
    send.add_argument("-f", "--file", default="-", help="message file (default: stdin)")
    send.add_argument("--host", default="localhost")
    send.add_argument("--port", type=int, default=None, help="default 25, or 465 with --tls")
    mode = send.add_mutually_exclusive_group()
    mode.add_argument("--starttls", dest="tls_mode", action="store_const", const="starttls", help="require STARTTLS")
    mode.add_argument("--tls", dest="tls_mode", action="store_const", const="tls", help="implicit TLS (SMTPS)")
    mode.add_argument("--no-tls", dest="tls_mode", action="store_const", const="none", help="never use TLS")
    send.set_defaults(tls_mode="opportunistic")
    send.add_argument("--cafile", help="PEM file of CA certificates to trust instead of the system's")
    send.add_argument("--tls-name", help="host name the certificate must match (default: --host)")
    send.add_argument("--user", help="user name for AUTH")
    send.add_argument("--password-env", default=PASSWORD_ENV, help="environment variable holding the password (default $%s)" % PASSWORD_ENV)
    send.add_argument("--password-file", help="file holding the password")
    send.add_argument("--allow-cleartext-auth", action="store_true", help="allow AUTH without TLS to a remote host")
    send.add_argument("--helo", help="name to give in EHLO/HELO")
    send.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for each reply (default: RFC 5321's limit for each phase)",
    )
    send.add_argument("-v", "--verbose", action="store_true", help="print the (redacted) transcript on stderr")

    demo = sub.add_parser("demo", help="send a sample message to an embedded server and show it")
    demo.add_argument("--quiet", action="store_true", help="print only the summary")

    sink = sub.add_parser("sink", help="run a local catch-all SMTP server")
    sink.add_argument("--port", type=int, default=2525)
    sink.add_argument("--interface", default="127.0.0.1")
    sink.add_argument("--maildir", help="store messages in this Maildir instead of printing them")

    migrate = sub.add_parser("migrate", help="rewrite twisted.mail SMTP client imports to mailclient")
    migrate.add_argument("--write", action="store_true", help="rewrite the files (default: print a diff; exit 1 if changes are needed)")
    migrate.add_argument("paths", nargs="+", metavar="PATH", help="Python files or directories")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """
    Entry point of the C{mailclient} command.
    """
    args = _parser().parse_args(argv)
    if args.command == "send":
        task.react(lambda reactor: _exitWith(_send(reactor, args, sys.stdout, sys.stderr)))
    elif args.command == "demo":
        from mailclient._commands.demo import runDemo

        task.react(lambda reactor: _exitWith(runDemo(reactor, sys.stdout, args.quiet)))
    elif args.command == "sink":
        from mailclient._commands.demo import runSink

        task.react(lambda reactor: runSink(reactor, args, sys.stdout))
    elif args.command == "migrate":
        from mailclient._commands.migrate import migratePaths

        raise SystemExit(migratePaths(args.paths, args.write, sys.stdout, sys.stderr))


def _exitWith(d: defer.Deferred[int]) -> defer.Deferred[None]:
    def check(code: int) -> None:
        if code:
            raise SystemExit(code)

    return d.addCallback(check)
