# -*- test-case-name: mailclient.test.test_testing -*-
"""
The server protocol: one C{smtp_VERB} method per command, each handing a
default reply and the command's effect to L{_SMTPServerProtocol._respond}.

The rule that keeps scripting simple: whatever action is chosen for a step,
the command's normal effect (a transaction starting, DATA mode, TLS, ...)
happens only if the reply actually sent is below 400.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from twisted.internet import defer, error
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITLSTransport
from twisted.protocols import basic
from twisted.python.failure import Failure

from mailclient._testing.actions import (
    DATA_END, GREETING, Abort, Action, Delay, Disconnect, EndlessLine, Garbage, NoReply, Trickle,
    Reply, _clock,
)
from mailclient._testing.records import ReceivedMessage, Session, _Chunk
from mailclient._testing.sasl import _SASL, SASLExchange, _unbase64
from mailclient._testing.syntax import (
    _LAST_IN_GROUP, _MAIL_PARAMS, _RCPT_PARAMS, Params, _parseEHLO, _parsePath,
)

if TYPE_CHECKING:
    from mailclient._testing.server import SMTPTestServer

Effect = Callable[[Reply], None]


class _SMTPServerProtocol(basic.LineReceiver):
    """
    One server connection.  Configuration and scripts live on the factory
    (an L{SMTPTestServer}); what happens is recorded in C{self.session}.
    """

    MAX_LENGTH = 1 << 20
    factory: "SMTPTestServer"
    transport: ITLSTransport
    clock: IReactorTime | None = None
    inMemory = False

    def __init__(self) -> None:
        self.session = Session()
        self._offered: dict[str, list[str]] = {}
        self._esmtp = False
        self._message: ReceivedMessage | None = None
        self._bodyBytes = 0
        self._pieces: list[bytes] = []
        self._dataMode = False
        self._sasl: SASLExchange | None = None
        self._chunk: _Chunk | None = None
        self._delayed: IDelayedCall | None = None
        self._dead = False
        self._whenLost: list[defer.Deferred[None]] = []

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

    def _countBody(self, data: bytes) -> bytes | None:
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
        if self._bodyBytes < afterBytes or isinstance(action, Reply):
            # A reply answers each piece that follows (each BDAT chunk gets
            # its reply); anything else happens once per transaction.
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

    def _respond(self, step: str | Sequence[str] | None, default: Reply,
                 effect: Effect | None = None, refused: Effect | None = None,
                 override: Action | None = None) -> None:
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

    def _perform(self, action: Action, default: Reply | None,
                 effect: Effect | None, refused: Effect | None) -> None:
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
        elif isinstance(action, Trickle):
            self._trickle(action, action.then or default, effect, refused)
        elif isinstance(action, Garbage):
            self._send(action.data)
        elif isinstance(action, EndlessLine):
            self._send(action.prefix + b"x" * action.size)
            self._dead = self.paused = True
        else:
            raise TypeError(f"unknown action {action!r}")

    def _trickle(self, action: Trickle, reply: Reply | None,
                 effect: Effect | None, refused: Effect | None) -> None:
        if reply is None:
            return
        data = reply.toBytes()
        self.paused = True

        def drip(sent: int) -> None:
            self._delayed = None
            if self._dead:
                return
            self._send(data[sent:sent + 1])
            if sent + 1 < len(data):
                self._delayed = _clock(self.clock).callLater(action.interval, drip, sent + 1)
                return
            self.paused = False
            if reply.code < 400 and effect is not None:
                effect(reply)
            elif reply.code >= 400 and refused is not None:
                refused(reply)
            if not self._dead:
                self.dataReceived(b"")

        drip(0)

    # Session state.

    def _greeted(self, name: bytes, reply: Reply | None) -> None:
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

    def _saslStep(self, response: bytes | None, step: str | None) -> None:
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
