"""
The inputs of C{mailclient send}, read and checked before the reactor
starts: the message (and, with C{-t}, its header's envelope), the
addresses, the password, the TLS trust, the options; each problem is a
L{CommandError} with its exit code.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import stat
import sys
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, TextIO, TypeAlias, cast

from twisted.internet.interfaces import IOpenSSLClientConnectionCreator

from mailclient._commands.common import (
    EX_CONFIG,
    EX_DATAERR,
    EX_NOINPUT,
    EX_UNAVAILABLE,
    EX_USAGE,
    CommandError,
    Flag,
    Option,
    checkHeloName,
    checkHost,
    checkPort,
    checkSeconds,
    checkUserName,
)
from mailclient._wire.headers import (
    AddressParseError,
    HeaderError,
    headerFields,
    parseAddress,
    recipientsFromFields,
    senderFromFields,
    stripBcc,
    uniqueAddresses,
)
from mailclient._wire.types import RecipientResult, SendResult

if TYPE_CHECKING:
    from twisted.internet._sslverify import IOpenSSLTrustRoot
    from twisted.internet.ssl import Certificate


#: What the server said to one recipient: C{(address, code, reply)}.
_Outcome: TypeAlias = RecipientResult
#: What sendmail's Deferred fires with: C{(numOk, outcomes)}.
_Sent: TypeAlias = SendResult

PASSWORD_ENV = "MAILCLIENT_PASSWORD"

#: Where the password of C{--user} comes from: the options of C{send} and
#: C{relay} (L{_readPassword} reads it).
PASSWORD_OPTIONS = (
    Option("--password-file", "read the password from this file, which only you may "
           "read (default: $%s)" % (PASSWORD_ENV,), "FILE"),
    Option("--password-env", "the environment variable holding the password (default: "
           "%s)" % (PASSWORD_ENV,), "NAME", PASSWORD_ENV),
    Flag("--insecure-password-file",
         "accept a --password-file that others can read (default: refuse it)"),
)

#: The largest header block read for -t and the sender (the rest is body).
MAX_HEADER = 1 << 20


# -- Reading the message ---------------------------------------------------

def _splitHeaders(raw: IO[bytes]) -> tuple[bytes, IO[bytes]]:
    """
    Read the header block of a message (up to and including the empty line)
    and return it with the file positioned at the body.
    """
    header = bytearray()
    while True:
        line = raw.readline()
        header += line
        if not line or line in (b"\n", b"\r\n") or len(header) > MAX_HEADER:
            return bytes(header), raw


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


def _remaining(f: IO[bytes]) -> int | None:
    """
    How many bytes are left to read in C{f}, if it can tell.
    """
    if not _isSeekable(f):
        return None
    try:
        here = f.tell()
        end = f.seek(0, io.SEEK_END)
        f.seek(here)
    except (OSError, ValueError):
        return None
    return end - here


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


def _size(n: int) -> str:
    if n >= 1 << 20:
        return "%d MiB" % (n >> 20,)
    if n >= 1 << 10:
        return "%d KiB" % (n >> 10,)
    return "%d bytes" % (n,)


class _Progress(io.RawIOBase):
    """
    Reports on stderr how much of a large message has been read: every
    L{STEP} bytes, and once more when all of it has been.
    """

    STEP = 8 << 20

    def __init__(self, inner: io.RawIOBase, total: int | None, out: TextIO) -> None:
        self._inner = inner
        self._total = total
        self._out = out
        self._done = 0
        self._next = self.STEP
        self._reported = 0

    def readable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self._done = 0
        self._next = self.STEP
        self._reported = 0
        return self._inner.seek(offset, whence)

    def _report(self) -> None:
        total = " of %s" % (_size(self._total),) if self._total else ""
        self._out.write("sent %s%s\n" % (_size(self._done), total))
        self._out.flush()
        self._reported = self._done

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._done += len(data)
        if self._done >= self._next:
            while self._next <= self._done:
                self._next += self.STEP
            self._report()
        elif not data and size != 0 and self._reported != self._done:
            # The end: the last line says all of it was sent.
            self._report()
        return data


# -- Checking the command line ---------------------------------------------

def _tlsAvailable() -> bool:
    from mailclient._protocol.tls import tlsAvailable

    return tlsAvailable()


def _address(value: str, where: str, allowNull: bool = False) -> str:
    try:
        return parseAddress(value, where, allowNull=allowNull)
    except AddressParseError as e:
        raise CommandError(EX_USAGE, str(e)) from None


def _loadCAFile(path: str) -> IOpenSSLTrustRoot:
    """
    Every certificate in the PEM file C{path}, as a Twisted trust root.
    """
    from twisted.internet.ssl import Certificate, trustRootFromCertificates

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CommandError(EX_NOINPUT, "--cafile %s: cannot read it: %s"
                           % (path, e.strerror or e))
    blocks = re.findall(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
                        data, re.DOTALL)
    if not blocks:
        raise CommandError(EX_CONFIG, "--cafile %s: no certificate in it (a PEM file "
                           "has -----BEGIN CERTIFICATE----- blocks)" % (path,))
    certificates: list[Certificate] = []
    for n, block in enumerate(blocks, 1):
        try:
            certificates.append(Certificate.loadPEM(block))
        except Exception:
            raise CommandError(EX_CONFIG, "--cafile %s: certificate %d of %d is not "
                               "a valid PEM certificate" % (path, n, len(blocks)))
    return trustRootFromCertificates(certificates)


def _tlsContext(host: str, cafile: str | None,
                tlsName: str | None) -> IOpenSSLClientConnectionCreator | None:
    if cafile is None and tlsName is None:
        return None
    from twisted.internet.ssl import optionsForClientTLS

    trustRoot = _loadCAFile(cafile) if cafile is not None else None
    return optionsForClientTLS(tlsName or host, trustRoot=trustRoot)


def _readPasswordFile(path: str, insecure: bool) -> bytes:
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise CommandError(EX_NOINPUT, "--password-file %s: cannot read it: "
                                   "it is a directory" % (path,))
            data = f.read(64 << 10)
    except OSError as e:
        raise CommandError(EX_NOINPUT, "--password-file %s: cannot read it: %s"
                           % (path, e.strerror or e))
    if os.name == "posix" and info.st_mode & 0o044 and not insecure:
        raise CommandError(
            EX_CONFIG, "--password-file %s: readable by others (mode %04o): make it "
            "private (chmod 600 %s), or give --insecure-password-file"
            % (path, stat.S_IMODE(info.st_mode), path))
    password = data.rstrip(b"\r\n")
    if not password:
        raise CommandError(EX_CONFIG, "--password-file %s: it is empty" % (path,))
    if re.search(rb"[\r\n\0]", password):
        raise CommandError(EX_CONFIG, "--password-file %s: it has more than one "
                           "line; it must hold the password alone" % (path,))
    return password


def _readPassword(args: argparse.Namespace) -> bytes | None:
    if args.user is None:
        if args.password_file is not None:
            raise CommandError(EX_USAGE, "--password-file needs --user")
        return None
    if args.password_file is not None:
        return _readPasswordFile(args.password_file, args.insecure_password_file)
    value = os.environ.get(args.password_env)
    if value is None:
        raise CommandError(
            EX_USAGE, "--user given but no password: set $%s or use --password-file"
            % (args.password_env,))
    if not value:
        raise CommandError(EX_USAGE, "--user given but $%s is empty" % (args.password_env,))
    # The variable's own bytes (os.environ decodes them with surrogate
    # escapes).
    return os.fsencode(value)


def _openMessage(path: str, stdin: IO[bytes]) -> IO[bytes]:
    if path == "-":
        import tempfile

        spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)
        try:
            while True:
                chunk = stdin.read(1 << 16)
                if not chunk:
                    break
                spool.write(chunk)
        except OSError as e:
            spool.close()
            raise CommandError(EX_NOINPUT, "cannot read the message from standard "
                               "input: %s" % (e.strerror or e,))
        spool.seek(0)
        return cast(IO[bytes], spool)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise CommandError(EX_NOINPUT, "cannot read the message file %s: %s"
                           % (path, e.strerror or e))
    return f


@dataclass
class Job:
    """
    Everything C{send} needs, checked.
    """

    host: str
    port: int
    sender: str
    recipients: list[str]
    raw: IO[bytes]
    message: io.RawIOBase
    password: bytes | None
    user: str | None
    tlsMode: str
    context: IOpenSSLClientConnectionCreator | None
    timeout: float | None
    helo: str | None
    verbose: bool
    allowCleartextAuth: bool

    def close(self) -> None:
        self.raw.close()


def prepare(args: argparse.Namespace, stdin: IO[bytes] | None = None,
             err: TextIO | None = None) -> Job:
    """
    Check the options of C{send}, read the password and the message's
    header, and work out the envelope.

    @raise CommandError: with the line to print and the exit code.
    """
    host = checkHost(args.host, "--host")
    tlsMode = args.tls_mode
    if args.port is None:
        port = 465 if tlsMode == "tls" else 25
    else:
        port = checkPort(args.port, "--port")
    timeout = None if args.timeout is None else checkSeconds(args.timeout, "--timeout")
    if args.tls_name is not None:
        checkHost(args.tls_name, "--tls-name")
    helo = None if args.helo is None else checkHeloName(args.helo, "--helo")
    if tlsMode == "none":
        for option, value in (("--cafile", args.cafile), ("--tls-name", args.tls_name)):
            if value is not None:
                raise CommandError(EX_USAGE, "%s has no use with --no-tls" % (option,))
    checkUserName(args.user)
    sender = None if args.sender is None else _address(args.sender, "--from", allowNull=True)
    recipients = [_address(r, "recipient") for r in args.recipients]

    needsTLS = tlsMode in ("tls", "starttls") or args.cafile or args.tls_name
    if needsTLS and not _tlsAvailable():
        raise CommandError(
            EX_UNAVAILABLE, "TLS support is not installed: pip install 'mailclient[tls]' "
            "(or --no-tls to send without TLS)")
    context = _tlsContext(host, args.cafile, args.tls_name)
    password = _readPassword(args)

    if stdin is None and args.file == "-":
        if sys.stdin is None:
            raise CommandError(EX_NOINPUT, "cannot read the message from standard input: "
                               "it is closed (give -f FILE)")
        stdin = sys.stdin.buffer
    raw = _openMessage(args.file, cast(IO[bytes], stdin))
    try:
        sender, recipients, message = _readEnvelope(
            args, raw, sender, recipients, err if err is not None else sys.stderr)
    except BaseException:
        raw.close()
        raise
    return Job(host=host, port=port, sender=sender, recipients=recipients, raw=raw,
               message=message, password=password, user=args.user, tlsMode=tlsMode,
               context=context, timeout=timeout, helo=helo, verbose=args.verbose,
               allowCleartextAuth=args.allow_cleartext_auth)


def _readEnvelope(args: argparse.Namespace, raw: IO[bytes], sender: str | None,
                  recipients: list[str], err: TextIO
                  ) -> tuple[str, list[str], io.RawIOBase]:
    """
    The envelope (C{sender} and C{recipients} completed from the message's
    header) and the message to send.
    """
    try:
        header, body = _splitHeaders(raw)
        rest = _remaining(body)
    except OSError as e:
        raise CommandError(EX_NOINPUT, "cannot read the message %s: %s"
                           % (args.file, e.strerror or e))
    if not header:
        raise CommandError(EX_DATAERR, "the message %s is empty"
                           % ("on standard input" if args.file == "-" else args.file,))
    fields = headerFields(header)
    try:
        if sender is None:
            try:
                sender = senderFromFields(fields)
            except HeaderError as e:
                raise CommandError(EX_DATAERR, "message header: %s (give the envelope "
                                   "sender with --from)" % (e,))
        if args.t:
            recipients += recipientsFromFields(fields)
            header = stripBcc(header)
    except HeaderError as e:
        raise CommandError(EX_DATAERR, "message header: %s" % (e,))
    recipients = uniqueAddresses(recipients)
    if not recipients:
        raise CommandError(EX_USAGE, "no recipients: give addresses, or -t to take "
                           "them from the To, Cc and Bcc fields"
                           + (" (the message has none)" if args.t else ""))
    message: io.RawIOBase = _Chain(header, body)
    total = None if rest is None else len(header) + rest
    if total is not None and total > _Progress.STEP:
        message = _Progress(message, total, err)
    return sender, recipients, message
