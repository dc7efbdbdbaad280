# -*- test-case-name: mailclient.test.test_testing -*-
"""
The implementation of L{mailclient.testing}: a real, scriptable SMTP server.

Reading order: the L{Action} values a test scripts with, the records the
server keeps (L{ReceivedMessage}, L{Session}), the SASL exchanges, the
protocol (one C{smtp_VERB} method per command, each handing a default reply
and the command's effect to L{_SMTPServerProtocol._respond}), the in-memory
transport, and last the L{SMTPTestServer} factory users configure.

The rule that keeps scripting simple: whatever action is chosen for a step,
the command's normal effect (a transaction starting, DATA mode, TLS, ...)
happens only if the reply actually sent is below 400.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
import itertools
import os
import re
import time
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    Generator,
    Iterable,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Set,
    Tuple,
    Type,
    Union,
)

from twisted.internet import defer, error, protocol
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorTCP,
    IReactorTime,
    ISSLTransport,
)
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols import basic, policies
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import directlyProvides

from mailclient._testing.certs import localCertificates

_IOSIM_TAKES_CLOCK = "clock" in inspect.signature(iosim.connect).parameters

#: The step that scripts the server's greeting (the first reply).
GREETING = "GREETING"
#: The step that scripts the reply to the end of a message: the C{.} line
#: after DATA, or C{BDAT ... LAST} when no C{BDAT} script applies.
DATA_END = "DATA-END"

Text = Union[bytes, str]


def _b(text: Text) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else text


# --- Actions: what the server does at a step --------------------------------


class Action:
    """
    Base class of everything the server can be scripted to do at a step.
    """


@dataclass(frozen=True)
class Reply(Action):
    """
    Send an SMTP reply.

    @ivar code: the three-digit reply code.  A 421 reply closes the
        connection after it is sent, as RFC 5321 requires.
    @ivar text: the text; a sequence of lines (or text with line breaks) makes
        a multi-line reply.  Empty text sends the bare code.
    """

    code: int
    text: Union[Text, Sequence[Text]] = b""

    def lines(self) -> List[bytes]:
        """
        Return the text lines of this reply, without codes or line endings.
        """
        if isinstance(self.text, (bytes, str)):
            return _b(self.text).splitlines() or [b""]
        return [_b(line) for line in self.text] or [b""]

    def toBytes(self) -> bytes:
        """
        Return the reply as it goes on the wire.
        """
        lines = self.lines()
        out = []
        for i, line in enumerate(lines):
            sep = b"-" if i < len(lines) - 1 else b" "
            out.append(b"%d%s%s\r\n" % (self.code, sep if line else sep.strip(), line))
        return b"".join(out)


@dataclass(frozen=True)
class Disconnect(Action):
    """
    Close the connection cleanly (FIN) instead of replying.
    """


@dataclass(frozen=True)
class Abort(Action):
    """
    Reset the connection (RST on TCP) instead of replying; bytes not yet sent
    are thrown away.
    """


@dataclass(frozen=True)
class NoReply(Action):
    """
    Hang: send nothing, now or ever, and process nothing more on this
    connection.  Use it to test the client's timeouts.
    """


@dataclass(frozen=True)
class Garbage(Action):
    """
    Send C{data} verbatim instead of a reply (include C{\\r\\n} yourself if
    you want a line), then carry on as if the command had failed.
    """

    data: bytes


@dataclass(frozen=True)
class EndlessLine(Action):
    """
    Start a reply line and never end it: send C{prefix} and C{size} more
    bytes with no line ending, then hang.
    """

    size: int = 100_000
    prefix: bytes = b"250 "


@dataclass(frozen=True)
class Delay(Action):
    """
    Wait C{seconds} (on the server's clock) and then do C{then}, or the
    default reply if C{then} is L{None}.  Commands received meanwhile wait
    their turn; the wait is cancelled if the connection is lost.
    """

    seconds: float
    then: Optional[Action] = None


#: What L{SMTPTestServer.script} accepts for one step: an L{Action}, a reply
#: code, or L{None} for the default behaviour.
ActionLike = Union[Action, int, None]


def _clock(clock: Optional[IReactorTime]) -> IReactorTime:
    """
    C{clock}, or the global reactor (imported only now: importing
    mailclient.testing must not install a reactor).
    """
    if clock is None:
        from twisted.internet import reactor as clock  # type: ignore[no-redef]
    return clock  # type: ignore[return-value]


def _toAction(value: ActionLike, text: Text = b"") -> Optional[Action]:
    if value is None or isinstance(value, Action):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Reply(value, text)
    raise TypeError(f"not an action or a reply code: {value!r}")


# --- Records -----------------------------------------------------------------

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
    mailParams: Dict[bytes, Optional[bytes]] = field(default_factory=dict)
    rcptTo: List[bytes] = field(default_factory=list)
    rcptParams: List[Dict[bytes, Optional[bytes]]] = field(default_factory=list)
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

    commands: List[bytes] = field(default_factory=list)
    replies: List[bytes] = field(default_factory=list)
    tls: bool = False
    authenticated: Optional[bytes] = None
    helo: Optional[bytes] = None
    messages: List[ReceivedMessage] = field(default_factory=list)
    refused: List[ReceivedMessage] = field(default_factory=list)
    plaintextAfterSTARTTLS: bytes = b""
    pipeliningViolations: List[bytes] = field(default_factory=list)
    closed: bool = False
    _log: List[Tuple[str, bytes]] = field(default_factory=list, repr=False)

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


# --- SASL (server side): generators yield challenges, return the user -------

SASLExchange = Generator[bytes, bytes, Optional[bytes]]
Passwords = Mapping[bytes, bytes]


def _valid(passwords: Passwords, user: bytes, password: bytes) -> bool:
    expected = passwords.get(user)
    return expected is not None and hmac.compare_digest(expected, password)


def _saslPLAIN(passwords: Passwords, initial: Optional[bytes], hostname: bytes) -> SASLExchange:
    response = initial if initial is not None else (yield b"")
    parts = response.split(b"\0")
    if len(parts) != 3 or parts[0] not in (b"", parts[1]):
        return None
    return parts[1] if _valid(passwords, parts[1], parts[2]) else None


def _saslLOGIN(passwords: Passwords, initial: Optional[bytes], hostname: bytes) -> SASLExchange:
    user = initial if initial is not None else (yield b"Username:")
    password = yield b"Password:"
    return user if _valid(passwords, user, password) else None


def _saslCRAMMD5(passwords: Passwords, initial: Optional[bytes], hostname: bytes) -> SASLExchange:
    if initial is not None:
        return None
    challenge = b"<%d.%d@%s>" % (os.getpid(), time.time_ns(), hostname)
    user, _, digest = (yield challenge).rpartition(b" ")
    password = passwords.get(user)
    if password is None:
        return None
    expected = hmac.new(password, challenge, hashlib.md5).hexdigest().encode()
    return user if hmac.compare_digest(expected, digest.lower()) else None


def _saslXOAUTH2(passwords: Passwords, initial: Optional[bytes], hostname: bytes) -> SASLExchange:
    response = initial if initial is not None else (yield b"")
    fields = dict(f.split(b"=", 1) for f in response.split(b"\x01") if b"=" in f)
    user, auth = fields.get(b"user"), fields.get(b"auth", b"")
    if user is not None and auth[:7].lower() == b"bearer ":
        if _valid(passwords, user, auth[7:]):
            return user
    # Failure: a JSON error as a challenge, which the client answers with an
    # empty line before the final 535.
    yield b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}'
    return None


_SASL: Dict[str, Callable[[Passwords, Optional[bytes], bytes], SASLExchange]] = {
    "PLAIN": _saslPLAIN,
    "LOGIN": _saslLOGIN,
    "CRAM-MD5": _saslCRAMMD5,
    "XOAUTH2": _saslXOAUTH2,
}


# --- Command syntax ----------------------------------------------------------

Params = Dict[bytes, Optional[bytes]]

# Which advertised extension makes each MAIL/RCPT parameter legal.
_MAIL_PARAMS = {b"SIZE": "SIZE", b"BODY": "8BITMIME", b"SMTPUTF8": "SMTPUTF8",
                b"RET": "DSN", b"ENVID": "DSN", b"AUTH": "AUTH"}
_RCPT_PARAMS = {b"NOTIFY": "DSN", b"ORCPT": "DSN"}
# RFC 2920 section 3.1 (plus AUTH, RFC 4954, and STARTTLS, RFC 3207).
_LAST_IN_GROUP = {"EHLO", "HELO", "DATA", "VRFY", "EXPN", "TURN", "QUIT",
                  "NOOP", "AUTH", "STARTTLS"}


def _parsePath(arg: bytes, prefix: bytes) -> Optional[Tuple[bytes, Params]]:
    """
    Parse C{FROM:<addr> params} or C{TO:<addr> params}; L{None} if malformed.
    """
    if arg[: len(prefix)].upper() != prefix:
        return None
    rest = arg[len(prefix):].lstrip(b" ")
    end = rest.find(b">")
    if not rest.startswith(b"<") or end < 0:
        return None
    params: Params = {}
    for word in rest[end + 1:].split():
        key, eq, value = word.partition(b"=")
        params[key.upper()] = value if eq else None
    return rest[1:end], params


# --- The protocol ------------------------------------------------------------

Effect = Callable[[Reply], None]


@dataclass
class _Chunk:
    remaining: int
    last: bool
    pieces: List[bytes] = field(default_factory=list)


class _SMTPServerProtocol(basic.LineReceiver):
    """
    One server connection.  Configuration and scripts live on the factory
    (an L{SMTPTestServer}); what happens is recorded in C{self.session}.
    """

    MAX_LENGTH = 1 << 20
    factory: "SMTPTestServer"
    transport: Any
    clock: Optional[IReactorTime] = None
    inMemory = False

    def __init__(self) -> None:
        self.session = Session()
        self._offered: Dict[str, List[str]] = {}
        self._esmtp = False
        self._message: Optional[ReceivedMessage] = None
        self._bodyBytes = 0
        self._pieces: List[bytes] = []
        self._dataMode = False
        self._sasl: Optional[SASLExchange] = None
        self._chunk: Optional[_Chunk] = None
        self._delayed: Optional[IDelayedCall] = None
        self._dead = False
        self._whenLost: List[defer.Deferred[None]] = []

    # Connection events.

    def connectionMade(self) -> None:
        self.factory.sessions.append(self.session)
        self.factory._live.add(self)
        self._offered = self.factory._offered(tls=False)
        self._respond(GREETING, Reply(220, self.factory.hostname.encode("idna")
                                      + b" ESMTP mailclient.testing"))

    def connectionLost(self, reason: Failure = Failure(error.ConnectionDone())) -> None:
        self._dead = True
        self.session.closed = True
        if self._delayed is not None and self._delayed.active():
            self._delayed.cancel()
        self._delayed = None
        self.factory._live.discard(self)
        waiters, self._whenLost = self._whenLost, []
        for d in waiters:
            d.callback(None)

    def _close(self, abort: bool) -> None:
        self._dead = True
        self.paused = True
        if self._delayed is not None and self._delayed.active():
            self._delayed.cancel()
        self._delayed = None
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    # Input.

    def lineReceived(self, line: bytes) -> None:
        if self._dead:
            return
        if self._dataMode:
            return self._bodyLine(line)
        self._record("C", line)
        self.session.commands.append(line)
        if self._sasl is not None:
            return self._saslResponse(line)
        word, _, arg = line.partition(b" ")
        verb = word.upper().decode("ascii", "replace")
        if self._buffer and (verb in _LAST_IN_GROUP or "PIPELINING" not in self._offered):
            self.session.pipeliningViolations.append(line)
        handler = getattr(self, "smtp_" + verb, None) if verb.isalpha() else None
        if handler is None:
            step = None if verb in (GREETING, DATA_END) else verb
            self._respond(step, self._r(500, "5.5.2", "Command not recognized"))
        else:
            handler(arg.strip())

    def rawDataReceived(self, data: bytes) -> None:
        chunk = self._chunk
        if self._dead or chunk is None:
            return
        take = self._countBody(data[: chunk.remaining])
        if take is None:
            return
        rest = data[len(take):]
        chunk.pieces.append(take)
        chunk.remaining -= len(take)
        if chunk.remaining == 0:
            self.line_mode = 1
            self._chunkDone()
            if rest:
                self.setLineMode(rest)

    def _countBody(self, data: bytes) -> Optional[bytes]:
        """
        Count message bytes for L{SMTPTestServer.interruptBody}; return what
        may be kept, or L{None} once the interruption has happened.
        """
        fault = self.factory._interrupt
        if fault is None or self._message is None:
            return data
        afterBytes, action = fault
        if self._bodyBytes + len(data) < afterBytes:
            self._bodyBytes += len(data)
            return data
        self._bodyBytes = afterBytes
        self._perform(action, None, None, None)
        return None

    # Output.

    def _record(self, who: str, data: bytes) -> None:
        self.session._log.append((who, data))

    def _send(self, data: bytes) -> None:
        self._record("S", data)
        self.session.replies.append(data)
        self.transport.write(data)

    def _r(self, code: int, enhanced: str, text: str) -> Reply:
        """
        A default reply, with its enhanced status code if one was advertised.
        """
        if self._esmtp and "ENHANCEDSTATUSCODES" in self._offered:
            text = f"{enhanced} {text}"
        return Reply(code, text)

    def _respond(self, step: Union[str, Sequence[str], None], default: Reply,
                 effect: Optional[Effect] = None, refused: Optional[Effect] = None,
                 override: Optional[Action] = None) -> None:
        """
        Do what is scripted for C{step} (the first scripted of several), or
        C{override}, or send C{default}.
        """
        action = override
        steps = [step] if isinstance(step, str) else list(step or ())
        for s in steps:
            if action is None:
                action = self.factory._nextAction(s)
        self._perform(action or default, default, effect, refused)

    def _perform(self, action: Action, default: Optional[Reply],
                 effect: Optional[Effect], refused: Optional[Effect]) -> None:
        if self._dead:
            return
        if isinstance(action, Delay):
            self.paused = True

            def later() -> None:
                self._delayed = None
                self.paused = False
                then = action.then or default
                if then is not None:
                    self._perform(then, default, effect, refused)
                if not self.paused and not self._dead:
                    self.dataReceived(b"")

            self._delayed = _clock(self.clock).callLater(action.seconds, later)
        elif isinstance(action, Reply):
            self._send(action.toBytes())
            if action.code < 400 and effect is not None:
                effect(action)
            elif action.code >= 400 and refused is not None:
                refused(action)
            if action.code == 421:
                self._close(abort=False)
        elif isinstance(action, Disconnect):
            self._close(abort=False)
        elif isinstance(action, Abort):
            self._close(abort=True)
        elif isinstance(action, NoReply):
            self._dead = self.paused = True
        elif isinstance(action, Garbage):
            self._send(action.data)
        elif isinstance(action, EndlessLine):
            self._send(action.prefix + b"x" * action.size)
            self._dead = self.paused = True
        else:
            raise TypeError(f"unknown action {action!r}")

    # Session state.

    def _greeted(self, name: bytes, reply: Optional[Reply]) -> None:
        self.session.helo = name
        self._esmtp = reply is not None
        if reply is not None:
            self._offered = _parseEHLO(reply.lines()[1:])
        self._message = None

    def _startTransaction(self, mailFrom: bytes, params: Params) -> None:
        self._message = ReceivedMessage(mailFrom=mailFrom, mailParams=params)
        self._bodyBytes = 0
        self._pieces = []

    def _badParams(self, params: Params, allowed: Mapping[bytes, str]) -> bool:
        for key, value in params.items():
            ext = allowed.get(key)
            if key == b"BODY" and value and value.upper() == b"BINARYMIME":
                ext = "BINARYMIME"
            if not self._esmtp or ext is None or ext not in self._offered:
                return True
        return False

    # Commands.  Each computes the default reply and the effect, and responds.

    def smtp_HELO(self, arg: bytes) -> None:
        if not arg:
            return self._respond("HELO", self._r(501, "5.5.4", "Syntax: HELO hostname"))
        self._respond("HELO", Reply(250, self.factory.hostname),
                      lambda reply: self._greeted(arg, None))

    def smtp_EHLO(self, arg: bytes) -> None:
        if not self.factory.esmtp:
            return self._respond("EHLO", self._r(502, "5.5.1", "EHLO not supported"))
        if not arg:
            return self._respond("EHLO", self._r(501, "5.5.4", "Syntax: EHLO hostname"))
        lines = [self.factory.hostname] + self.factory._ehloLines(self.session.tls)
        self._respond("EHLO", Reply(250, lines), lambda reply: self._greeted(arg, reply))

    def smtp_MAIL(self, arg: bytes) -> None:
        parsed = _parsePath(arg, b"FROM:")
        effect = None
        if self.session.helo is None:
            reply = self._r(503, "5.5.1", "Send HELO or EHLO first")
        elif self._message is not None:
            reply = self._r(503, "5.5.1", "Nested MAIL command")
        elif parsed is None:
            reply = self._r(501, "5.5.4", "Syntax: MAIL FROM:<address>")
        else:
            address, params = parsed
            size = params.get(b"SIZE")
            factory = self.factory
            effect = lambda reply: self._startTransaction(address, params)  # noqa
            if self._badParams(params, _MAIL_PARAMS):
                reply = self._r(555, "5.5.4", "Unsupported MAIL parameter")
            elif size is not None and not size.isdigit():
                reply = self._r(501, "5.5.4", "Bad SIZE value")
            elif factory.requireTLS and not self.session.tls:
                reply = self._r(530, "5.7.0", "Must issue a STARTTLS command first")
            elif factory.requireAuth and self.session.authenticated is None:
                reply = self._r(530, "5.7.0", "Authentication required")
            elif factory.maxSize is not None and size and int(size) > factory.maxSize:
                reply = self._r(552, "5.3.4", "Message size exceeds fixed limit")
            else:
                reply = self._r(250, "2.1.0", "Sender OK")
        self._respond("MAIL", reply, effect)

    def smtp_RCPT(self, arg: bytes) -> None:
        parsed = _parsePath(arg, b"TO:")
        message = self._message
        effect, override = None, None
        if message is None:
            reply = self._r(503, "5.5.1", "Need MAIL command")
        elif parsed is None or not parsed[0]:
            reply = self._r(501, "5.5.4", "Syntax: RCPT TO:<address>")
        else:
            address, params = parsed
            override = self.factory._rcptReplies.get(address.lower())

            def effect(reply: Reply) -> None:
                message.rcptTo.append(address)
                message.rcptParams.append(params)

            if self._badParams(params, _RCPT_PARAMS):
                reply = self._r(555, "5.5.4", "Unsupported RCPT parameter")
            else:
                reply = self._r(250, "2.1.5", "Recipient OK")
        self._respond("RCPT", reply, effect, override=override)

    def smtp_DATA(self, arg: bytes) -> None:
        message = self._message
        effect = None
        if arg:
            reply = self._r(501, "5.5.4", "Syntax: DATA")
        elif message is None:
            reply = self._r(503, "5.5.1", "Need MAIL command")
        elif message.via == "BDAT":
            reply = self._r(503, "5.5.1", "DATA after BDAT")
        else:
            effect = lambda reply: self._enterData()  # noqa
            if not message.rcptTo:
                reply = self._r(554, "5.5.1", "No valid recipients")
            elif (message.mailParams.get(b"BODY") or b"").upper() == b"BINARYMIME":
                reply = self._r(503, "5.5.1", "BODY=BINARYMIME requires BDAT")
            else:
                reply = Reply(354, "End data with <CR><LF>.<CR><LF>")
        self._respond("DATA", reply, effect)

    def _enterData(self) -> None:
        assert self._message is not None
        self._message.via = "DATA"
        self._dataMode = True

    def _bodyLine(self, line: bytes) -> None:
        if line == b".":
            self._dataMode = False
            self._endOfMessage()
            return
        if self._countBody(line + b"\r\n") is None:
            return
        self._pieces.append(line[1:] if line.startswith(b".") else line)
        self._pieces.append(b"\r\n")

    def _endOfMessage(self, steps: Sequence[str] = (DATA_END,)) -> None:
        message, self._message = self._message, None
        assert message is not None
        message.data = b"".join(self._pieces)
        self._pieces = []
        if message.via == "DATA":
            self._record("C", b"[%d bytes of message data]" % (len(message.data),))
        maxSize = self.factory.maxSize
        if maxSize is not None and len(message.data) > maxSize:
            reply = self._r(552, "5.3.4", "Message size exceeds fixed limit")
        else:
            reply = self._r(250, "2.0.0", "Message accepted")
        self._respond(steps, reply,
                      lambda reply: self.session.messages.append(message),
                      lambda reply: self.session.refused.append(message))

    def smtp_BDAT(self, arg: bytes) -> None:
        words = arg.upper().split()
        if (not 1 <= len(words) <= 2 or not words[0].isdigit()
                or words[1:] not in ([], [b"LAST"])):
            return self._respond("BDAT", self._r(501, "5.5.4", "Syntax: BDAT size [LAST]"))
        self._chunk = _Chunk(int(words[0]), len(words) == 2)
        if self._chunk.remaining:
            self.setRawMode()
        else:
            self._chunkDone()

    def _chunkDone(self) -> None:
        chunk, self._chunk = self._chunk, None
        assert chunk is not None
        data = b"".join(chunk.pieces)
        self._record("C", b"[%d bytes of BDAT data]" % (len(data),))
        message = self._message
        if "CHUNKING" not in self._offered:
            reply = self._r(502, "5.5.1", "CHUNKING not advertised")
        elif message is None:
            reply = self._r(503, "5.5.1", "Need MAIL command")
        elif not message.rcptTo:
            reply = self._r(554, "5.5.1", "No valid recipients")
        else:
            message.via = "BDAT"
            self._pieces.append(data)
            if chunk.last:
                return self._endOfMessage(steps=("BDAT", DATA_END))

            def failed(reply: Reply) -> None:
                self._message = None

            reply = self._r(250, "2.0.0", "%d octets received" % (len(data),))
            return self._respond("BDAT", reply, refused=failed)
        self._respond("BDAT", reply)

    def smtp_RSET(self, arg: bytes) -> None:
        self._respond("RSET", self._r(250, "2.0.0", "OK"),
                      lambda reply: setattr(self, "_message", None))

    def smtp_NOOP(self, arg: bytes) -> None:
        self._respond("NOOP", self._r(250, "2.0.0", "OK"))

    def smtp_VRFY(self, arg: bytes) -> None:
        self._respond("VRFY", self._r(252, "2.5.2", "Cannot VRFY user; try RCPT"))

    def smtp_QUIT(self, arg: bytes) -> None:
        self._respond("QUIT", self._r(221, "2.0.0", "Bye"),
                      lambda reply: self._close(abort=False))

    def smtp_STARTTLS(self, arg: bytes) -> None:
        effect = None
        if arg:
            reply = self._r(501, "5.5.4", "Syntax: STARTTLS")
        elif self.session.tls:
            reply = self._r(503, "5.5.1", "TLS already active")
        elif "STARTTLS" not in self._offered:
            reply = self._r(502, "5.5.1", "STARTTLS not available")
        else:
            reply = self._r(220, "2.0.0", "Ready to start TLS")
            effect = lambda reply: self._startTLS()  # noqa
        self._respond("STARTTLS", reply, effect)

    def _startTLS(self) -> None:
        # Anything already buffered came in plaintext after STARTTLS: a
        # vulnerable server would treat it as sent over TLS (CVE-2011-0411).
        self.session.plaintextAfterSTARTTLS += self.clearLineBuffer()
        if self.factory.starttlsInjection:
            self._send(self.factory.starttlsInjection)
        self.transport.startTLS(self.factory.tlsOptions)
        self.session.tls = True
        self.session.helo = self.session.authenticated = None
        self._esmtp, self._message = False, None
        self._offered = self.factory._offered(tls=True)

    def smtp_AUTH(self, arg: bytes) -> None:
        words = arg.split()
        mechanisms = self._offered.get("AUTH", [])
        mechanism = words[0].upper().decode("ascii", "replace") if words else ""
        initial = None
        if not mechanisms:
            reply = self._r(502, "5.5.1", "AUTH not available")
        elif not self._esmtp:
            reply = self._r(503, "5.5.1", "Send EHLO first")
        elif self.session.authenticated is not None:
            reply = self._r(503, "5.5.1", "Already authenticated")
        elif self._message is not None:
            reply = self._r(503, "5.5.1", "AUTH not allowed during a mail transaction")
        elif self.factory.requireTLS and not self.session.tls:
            reply = self._r(530, "5.7.0", "Must issue a STARTTLS command first")
        elif not 1 <= len(words) <= 2:
            reply = self._r(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
        elif mechanism not in mechanisms or mechanism not in _SASL:
            reply = self._r(504, "5.5.4", "Unrecognized authentication type")
        else:
            if len(words) == 2:
                initial = _unbase64(words[1])
                if initial is None:
                    return self._respond("AUTH", self._r(501, "5.5.2", "Cannot decode response"))
            self._sasl = _SASL[mechanism](self.factory._passwords, initial,
                                          self.factory.hostname.encode("idna"))
            return self._saslStep(None, "AUTH")
        self._respond("AUTH", reply)

    def _saslResponse(self, line: bytes) -> None:
        if line == b"*":
            self._sasl = None
            return self._respond(None, self._r(501, "5.0.0", "Authentication cancelled"))
        response = _unbase64(line)
        if response is None:
            self._sasl = None
            return self._respond(None, self._r(501, "5.5.2", "Cannot decode response"))
        self._saslStep(response, None)

    def _saslStep(self, response: Optional[bytes], step: Optional[str]) -> None:
        exchange = self._sasl
        assert exchange is not None
        self._sasl = None
        try:
            challenge = next(exchange) if response is None else exchange.send(response)
        except StopIteration as done:
            user = done.value
            if user is None:
                return self._respond(step, self._r(535, "5.7.8", "Authentication credentials invalid"))
            self._respond(step, self._r(235, "2.7.0", "Authentication successful"),
                          lambda reply: setattr(self.session, "authenticated", user))
            return

        def challenged(reply: Reply) -> None:
            if reply.code == 334:
                self._sasl = exchange

        self._respond(step, Reply(334, base64.b64encode(challenge)), challenged)


def _unbase64(data: bytes) -> Optional[bytes]:
    if data == b"=":
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def _parseEHLO(lines: Iterable[bytes]) -> Dict[str, List[str]]:
    offered: Dict[str, List[str]] = {}
    for line in lines:
        words = line.decode("ascii", "replace").split()
        if words:
            offered[words[0].upper()] = [w.upper() for w in words[1:]]
    return offered


# --- In memory ---------------------------------------------------------------


class _RawSide:
    """
    The transport a TLS layer writes its records to: the in-memory transport
    underneath, bypassing its own TLS routing.
    """

    def __init__(self, transport: "_MemoryTransport") -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        iosim.FakeTransport.write(self._transport, data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        iosim.FakeTransport.loseConnection(self._transport)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _MemoryTransport(iosim.FakeTransport):
    """
    iosim's transport with a real TLS layer for C{startTLS} (iosim's own only
    pretends), a real reset for C{abortConnection}, and a hook for the client
    factory's C{clientConnectionLost}.
    """

    def __init__(self, proto: IProtocol, isServer: bool, host: IPv4Address,
                 peer: IPv4Address) -> None:
        super().__init__(proto, isServer, host, peer)
        self._tlsLayer: Any = None
        self.other: Optional[_MemoryTransport] = None
        self.onLost: Optional[Callable[[Failure], None]] = None

    def startTLS(self, contextFactory: Any, beNormal: bool = True) -> None:
        from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

        isClient = (not self.isServer) if beNormal else self.isServer
        factory = TLSMemoryBIOFactory(contextFactory, isClient, None)  # type: ignore[arg-type]
        # Not factory.protocol: newer Twisted's buffers small writes until a
        # turn of the global reactor, which never comes in memory.
        self._tlsLayer = TLSMemoryBIOProtocol(factory, self.protocol, False)
        self.protocol = self._tlsLayer
        directlyProvides(self, ISSLTransport)
        self._tlsLayer.makeConnection(_RawSide(self))

    def write(self, data: bytes) -> None:
        if self._tlsLayer is not None:
            if not self.disconnecting:
                self._tlsLayer.write(data)
        else:
            super().write(data)

    def loseConnection(self) -> None:
        if self._tlsLayer is not None and not self.disconnecting:
            self._tlsLayer.loseConnection()
        else:
            super().loseConnection()

    def abortConnection(self) -> None:
        self.stream = []
        self.disconnecting = True
        self.disconnectReason = error.ConnectionAborted()  # type: ignore[assignment]
        if self.other is not None:
            self.other.disconnectReason = error.ConnectionLost(  # type: ignore[assignment]
                "Connection reset by peer")

    def getPeerCertificate(self) -> Any:
        return self._tlsLayer.getPeerCertificate()

    def getHandle(self) -> Any:
        return self._tlsLayer.getHandle()

    def reportDisconnect(self) -> None:
        reason = Failure(self.disconnectReason)
        self.protocol.connectionLost(reason)
        if self.onLost is not None:
            self.onLost(reason)


class _MemoryConnector:
    """
    The L{IConnector} a client factory sees in memory.  C{connect()} (a retry)
    is carried out by the next L{MemoryConnection.pump}.
    """

    def __init__(self, destination: IPv4Address) -> None:
        self.destination = destination
        self.state = "connecting"
        self.retry = False
        self.stopped = False
        self.current: Optional[_MemoryTransport] = None

    def connect(self) -> None:
        if not self.stopped:
            self.state, self.retry = "connecting", True

    def disconnect(self) -> None:
        self.stopConnecting()
        if self.current is not None:
            self.current.loseConnection()

    def stopConnecting(self) -> None:
        self.retry = False
        self.stopped = True

    def getDestination(self) -> IPv4Address:
        return self.destination


_clientPorts = itertools.count(40000)


class MemoryConnection:
    """
    A client connected to an L{SMTPTestServer} in memory.  Nothing moves until
    L{pump} or L{advance} is called.

    @ivar server: the L{SMTPTestServer}.
    @ivar client: the client protocol (the latest, if its factory retried).
    @ivar session: the server's L{Session} for the latest connection.
    @ivar clock: the clock both sides' delayed calls run on.
    @ivar clientTransport: the client's transport (an iosim
        C{FakeTransport}); C{serverTransport} is the server's.
    """

    def __init__(self, server: "SMTPTestServer", client: Union[IProtocol, IProtocolFactory],
                 clock: MemoryReactorClock,
                 destination: IPv4Address = IPv4Address("TCP", "127.0.0.1", 25),
                 announce: bool = True) -> None:
        self.server = server
        self.clock = clock
        self.client: Any = None
        self._factory: Any = client if IProtocolFactory.providedBy(client) else None
        self._connector = _MemoryConnector(destination)
        if self._factory is not None:
            self._factory.doStart()
        self._connect(None if self._factory is not None else client, announce)

    def _connect(self, client: Any, announce: bool = True) -> None:
        factory, connector = self._factory, self._connector
        serverAddress = connector.destination
        clientAddress = IPv4Address("TCP", "127.0.0.1", next(_clientPorts))
        if client is None:
            if announce and isinstance(factory, protocol.ClientFactory):
                factory.startedConnecting(connector)  # type: ignore[arg-type]
            client = factory.buildProtocol(serverAddress)
        if isinstance(client, policies.TimeoutMixin):
            # Its timeouts would otherwise go to the global reactor.
            client.callLater = self.clock.callLater  # type: ignore[method-assign,assignment]
        serverProto = self.server.buildProtocol(clientAddress)
        serverProto.clock = self.clock
        serverProto.inMemory = True
        self.serverTransport = _MemoryTransport(serverProto, True, serverAddress, clientAddress)
        self.clientTransport = _MemoryTransport(client, False, clientAddress, serverAddress)
        self.serverTransport.other, self.clientTransport.other = (
            self.clientTransport, self.serverTransport)
        if factory is not None:
            connector.state, connector.current = "connected", self.clientTransport
            self.clientTransport.onLost = self._clientLost
        self.client = client
        self._serverProtocol = serverProto
        # Twisted before 23.x: iosim.connect takes no clock.
        clockArg = {"clock": self.clock} if _IOSIM_TAKES_CLOCK else {}
        self._pump = iosim.connect(serverProto, self.serverTransport, client,
                                   self.clientTransport, greet=False, **clockArg)
        self.session = serverProto.session

    def _clientLost(self, reason: Failure) -> None:
        factory, connector = self._factory, self._connector
        connector.state, connector.current = "disconnected", None
        if isinstance(factory, protocol.ClientFactory):
            factory.clientConnectionLost(connector, reason)  # type: ignore[arg-type]
        if connector.state == "disconnected" and factory is not None:
            factory.doStop()

    def pump(self) -> bool:
        """
        Move bytes both ways (and run calls due now) until nothing moves,
        reconnecting if the client factory asked to retry.  Return whether
        anything moved.
        """
        moved = False
        while True:
            moved = self._pump.flush() or moved
            if not self._connector.retry:
                return moved
            self._connector.retry = False
            self._connect(None)
            moved = True

    def advance(self, seconds: float) -> bool:
        """
        Move the clock on by C{seconds} (running what falls due) and pump.
        """
        self.clock.advance(seconds)
        return self.pump()

    @property
    def connected(self) -> bool:
        """
        Whether either side still has the connection open.
        """
        return not (self.clientTransport.disconnected and self.serverTransport.disconnected)

    def abort(self) -> None:
        """
        Reset the connection from the server's side, stop retries and pump
        until both sides have seen it go.
        """
        self._connector.stopConnecting()
        self._serverProtocol._close(abort=True)
        self.pump()


# --- The server --------------------------------------------------------------


class SMTPTestServer(protocol.ServerFactory):
    """
    A scriptable SMTP server that records everything, for test suites.

    Use it on loopback with L{listenTCP} (and L{stopListening} in cleanup), or
    without sockets with L{connectInMemory}.  Configure it with the
    constructor, script faults with L{script}, L{rcptReply} and
    L{interruptBody}, and inspect L{sessions} and L{messages}.

    @ivar sessions: one L{Session} per connection, in order.
    @ivar hostname: the name in the greeting and the EHLO reply.
    @ivar extensions: the EHLO keyword lines advertised (STARTTLS is left out
        once TLS is on).
    @ivar esmtp: if false, EHLO gets 502 and clients must fall back to HELO.
    @ivar requireAuth: refuse MAIL with 530 until AUTH succeeded.
    @ivar requireTLS: refuse MAIL and AUTH with 530 until STARTTLS.
    @ivar maxSize: refuse messages larger than this many bytes with 552 (at
        MAIL, given a SIZE parameter, and at the end of the data).
    @ivar starttlsInjection: bytes sent in plaintext right after the 220 reply
        to STARTTLS, as a man in the middle would inject them.
    """

    protocol = _SMTPServerProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        hostname: str = "localhost",
        extensions: Optional[Iterable[str]] = None,
        esmtp: bool = True,
        credentials: Optional[Mapping[Text, Text]] = None,
        requireAuth: bool = False,
        requireTLS: bool = False,
        tlsCertificate: Any = None,
        maxSize: Optional[int] = None,
        starttlsInjection: bytes = b"",
        reactor: Optional[IReactorTime] = None,
    ) -> None:
        """
        @param extensions: the EHLO lines to advertise, such as
            C{["PIPELINING", "STARTTLS", "AUTH PLAIN LOGIN", "SIZE 1000",
            "8BITMIME", "SMTPUTF8", "DSN", "CHUNKING", "ENHANCEDSTATUSCODES",
            "BINARYMIME"]} or any other line.  L{None} advertises
            PIPELINING, 8BITMIME, STARTTLS, then C{AUTH PLAIN LOGIN CRAM-MD5
            XOAUTH2} if C{credentials} are given and C{SIZE maxSize} if
            C{maxSize} is.  AUTH and MAIL/RCPT parameters are accepted only if
            advertised.
        @param credentials: user name to password (for XOAUTH2, the token).
        @param tlsCertificate: what STARTTLS presents: L{None} for a
            certificate for C{localhost} signed by L{caCertificatePEM}, an
            L{twisted.internet.ssl.PrivateCertificate}, or server TLS options
            (for example L{twisted.internet.ssl.CertificateOptions}).
        @param reactor: the clock for L{Delay}s on loopback connections
            (default: the one given to L{listenTCP}, else the global reactor).
        """
        self.hostname = hostname
        if extensions is None:
            extensions = ["PIPELINING", "8BITMIME", "STARTTLS"]
            if credentials:
                extensions.append("AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2")
            if maxSize is not None:
                extensions.append(f"SIZE {maxSize}")
        self.extensions: List[str] = list(extensions)
        self.esmtp = esmtp
        self._passwords = {_b(k): _b(v) for k, v in (credentials or {}).items()}
        self.requireAuth = requireAuth
        self.requireTLS = requireTLS
        self._tlsCertificate = tlsCertificate
        self.maxSize = maxSize
        self.starttlsInjection = starttlsInjection
        self.reactor = reactor
        self.sessions: List[Session] = []
        self._scripts: Dict[str, Union[Action, List[Optional[Action]]]] = {}
        self._rcptReplies: Dict[bytes, Action] = {}
        self._interrupt: Optional[Tuple[int, Action]] = None
        self._port: Optional[IListeningPort] = None
        self._live: Set[_SMTPServerProtocol] = set()

    # Scripting.

    def script(self, step: str, action: Union[ActionLike, Sequence[ActionLike]],
               text: Text = b"") -> None:
        """
        Script what the server does at C{step}: a command verb (C{"MAIL"},
        C{"RCPT"}, C{"EHLO"}, C{"STARTTLS"}, C{"AUTH"} for the reply to the
        AUTH line, C{"BDAT"}, even an unknown C{"XFOO"}), L{GREETING} or
        L{DATA_END}.

        C{action} is an L{Action}, or a reply code with C{text}; it applies
        to every such step from now on.  A list scripts successive steps, on
        any connection (so retries can be scripted): C{None} in it means the
        default, and once it runs out the default applies.  C{None} alone
        removes the script.

        For example C{server.script("MAIL", 451, b"4.3.0 try later")} or
        C{server.script("RCPT", [None, Reply(452, b"4.5.3 too many")])}.
        """
        step = step.upper()
        if action is None:
            self._scripts.pop(step, None)
        elif isinstance(action, (list, tuple)):
            self._scripts[step] = [_toAction(a) for a in action]
        else:
            self._scripts[step] = _toAction(action, text)  # type: ignore[arg-type,assignment]

    def rcptReply(self, address: Text, action: Union[Action, int], text: Text = b"") -> None:
        """
        Script the reply to C{RCPT TO:<address>} (compared without case),
        ahead of any C{"RCPT"} script.
        """
        self._rcptReplies[_b(address).lower()] = _toAction(action, text)  # type: ignore[assignment]

    def interruptBody(self, afterBytes: int, action: Action = Disconnect()) -> None:
        """
        Do C{action} (L{Disconnect}, L{Abort} or L{NoReply}) once C{afterBytes}
        bytes of message content (DATA lines or BDAT chunks) have arrived, in
        every transaction from now on.
        """
        self._interrupt = (afterBytes, action)

    def _nextAction(self, step: str) -> Optional[Action]:
        entry = self._scripts.get(step)
        if isinstance(entry, list):
            return entry.pop(0) if entry else None
        return entry

    def _ehloLines(self, tls: bool) -> List[str]:
        return [line for line in self.extensions
                if not (tls and line.split()[:1] == ["STARTTLS"])]

    def _offered(self, tls: bool) -> Dict[str, List[str]]:
        return _parseEHLO(line.encode("utf-8") for line in self._ehloLines(tls))

    # TLS.

    @property
    def tlsOptions(self) -> Any:
        """
        The server TLS options STARTTLS uses.
        """
        cert = self._tlsCertificate
        if cert is None:
            return localCertificates().serverOptions()
        if hasattr(cert, "options") and hasattr(cert, "privateKey"):
            return cert.options()
        return cert

    @property
    def caCertificatePEM(self) -> bytes:
        """
        The PEM certificate of the CA that signed the default server
        certificate; trust it in the client under test.
        """
        return localCertificates().caCertificatePEM

    def clientTLSOptions(self, hostname: str = "localhost") -> Any:
        """
        Client TLS options that trust only L{caCertificatePEM} and check the
        server is C{hostname}: the same as
        C{optionsForClientTLS(hostname, trustRoot=Certificate.loadPEM(pem))}.
        """
        return localCertificates().clientOptions(hostname)

    # Records.

    @property
    def messages(self) -> List[ReceivedMessage]:
        """
        The messages accepted on all connections, in order.
        """
        return [m for s in self.sessions for m in s.messages]

    def transcript(self) -> str:
        """
        The transcripts of all sessions, each under a C{--- session N ---}
        header.
        """
        return "\n".join(f"--- session {i} ---\n{s.transcript()}"
                         for i, s in enumerate(self.sessions, 1))

    # Running.

    def buildProtocol(self, addr: Any) -> _SMTPServerProtocol:  # type: ignore[override]
        """
        Make the protocol for one connection.
        """
        p = self.protocol()
        p.factory = self
        p.clock = self.reactor
        return p

    def listenTCP(self, reactor: Optional[IReactorTCP] = None,
                  interface: str = "127.0.0.1", port: int = 0) -> IListeningPort:
        """
        Listen on C{interface}:C{port} (by default a free loopback port) and
        return the L{IListeningPort}; see L{portNumber}.
        """
        if self._port is not None:
            raise RuntimeError("already listening")
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        if self.reactor is None:
            self.reactor = reactor  # type: ignore[assignment]
        self._port = reactor.listenTCP(port, self, interface=interface)  # type: ignore[union-attr]
        return self._port

    @property
    def listening(self) -> bool:
        """
        Whether L{listenTCP} was called and L{stopListening} not yet.
        """
        return self._port is not None

    @property
    def portNumber(self) -> int:
        """
        The TCP port L{listenTCP} is listening on.
        """
        if self._port is None:
            raise RuntimeError("not listening")
        return int(self._port.getHost().port)  # type: ignore[attr-defined]

    def stopListening(self) -> "defer.Deferred[None]":
        """
        Stop listening, reset every open loopback connection and cancel
        pending delayed replies.  The L{defer.Deferred} fires once all are
        gone and the reactor has turned once more (so the peers have seen the
        connections close): a test that waits for it leaves a clean reactor.
        """
        waits: List[defer.Deferred[Any]] = []
        if self._port is not None:
            waits.append(defer.maybeDeferred(self._port.stopListening))
            self._port = None
        for p in list(self._live):
            if p.inMemory:
                continue
            d: defer.Deferred[None] = defer.Deferred()
            p._whenLost.append(d)
            waits.append(d)
            p._close(abort=True)
        def settle(_: object) -> "defer.Deferred[None]":
            d: defer.Deferred[None] = defer.Deferred()
            _clock(self.reactor).callLater(0, d.callback, None)
            return d

        return defer.gatherResults(waits).addCallback(settle)

    def connectInMemory(self, client: Union[IProtocol, IProtocolFactory],
                        clock: Optional[MemoryReactorClock] = None) -> MemoryConnection:
        """
        Connect C{client} to this server in memory and return the
        L{MemoryConnection}, already pumped once (so the greeting and
        whatever follows from it have been exchanged).

        @param client: a client protocol, or a factory to build it.  A
            factory's C{startedConnecting}, C{clientConnectionLost} (with a
            connector whose C{connect()} retries) and C{doStart}/C{doStop}
            are called as a reactor would.  A client using
            L{policies.TimeoutMixin} gets its C{callLater} pointed at the
            clock, so its timeouts run on L{MemoryConnection.advance}.
        @param clock: the clock for both sides; a new one by default.
        """
        connection = MemoryConnection(self, client, clock or MemoryReactorClock())
        connection.pump()
        return connection

    def connectPending(self, reactor: MemoryReactorClock) -> MemoryConnection:
        """
        Take the oldest C{connectTCP} call made on C{reactor} (a
        L{MemoryReactorClock} given to the code under test) and connect it to
        this server in memory, on that reactor's clock, as
        L{connectInMemory} does.  Whatever host and port the code asked for
        reach this server.

        @raise IndexError: if no connection attempt is pending.
        """
        host, port, factory = reactor.tcpClients.pop(0)[:3]
        reactor.connectors.pop(0)
        connection = MemoryConnection(self, factory, reactor,
                                      IPv4Address("TCP", host, port), announce=False)
        connection.pump()
        return connection


# --- Assertions for trial ----------------------------------------------------


class _TestCase(Protocol):
    """
    What L{SMTPTestCaseMixin} needs from the test case it is mixed into.
    """

    @property
    def failureException(self) -> Type[BaseException]:
        ...

    def addCleanup(self, __function: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        ...


class SMTPTestCaseMixin:
    """
    Helpers for a L{twisted.trial.unittest.TestCase} (or any
    L{unittest.TestCase}) that tests code which sends mail.
    """

    def startSMTPServer(self: _TestCase, reactor: Optional[IReactorTCP] = None,
                        **config: Any) -> SMTPTestServer:
        """
        Start an L{SMTPTestServer} configured with C{config} on a free
        loopback port (see L{SMTPTestServer.portNumber}), stopped again when
        the test ends.
        """
        server = SMTPTestServer(**config)
        server.listenTCP(reactor)
        self.addCleanup(server.stopListening)
        return server

    def assertDelivered(self: _TestCase, server: Union[SMTPTestServer, Session],
                        to: Union[Text, Sequence[Text], None] = None,
                        from_: Optional[Text] = None,
                        containing: Optional[Text] = None) -> ReceivedMessage:
        """
        Assert that some accepted message has all of C{to} among its
        recipients, the sender C{from_} and C{containing} in its data; return
        the first such message.  Addresses are compared exactly.
        """
        wanted = [] if to is None else [to] if isinstance(to, (bytes, str)) else list(to)
        for message in server.messages:
            if ((from_ is None or message.mailFrom == _b(from_))
                    and all(_b(r) in message.rcptTo for r in wanted)
                    and (containing is None or _b(containing) in message.data)):
                return message
        got = "\n".join(f"  from {m.mailFrom!r} to {m.rcptTo!r}, {len(m.data)} bytes"
                        for m in server.messages) or "  (none)"
        raise self.failureException(
            f"no message delivered from {from_!r} to {to!r} containing "
            f"{containing!r}; delivered:\n{got}\n{server.transcript()}")

    def assertNothingDelivered(self: _TestCase, server: Union[SMTPTestServer, Session]) -> None:
        """
        Assert that no message was accepted.
        """
        if server.messages:
            raise self.failureException(
                f"{len(server.messages)} message(s) delivered:\n{server.transcript()}")
