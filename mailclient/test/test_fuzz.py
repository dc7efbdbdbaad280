"""
A fuzz target for the whole client: random server byte streams, fed to a
client over a fake transport.

Whatever the stream, the client must:

  - never raise out of C{dataReceived}, C{connectionLost} or a timer, and
    never log an error (nothing reaches the reactor);
  - never hang: once the stream is over, moving the clock past every
    timeout closes the connection and leaves no delayed call;
  - report every message attempt exactly once (C{sentMail} or C{sendError},
    or the sender factory's Deferred, once);
  - never report success for a message the stream did not accept: a
    success needs a complete 2xx reply line that arrived after the client
    had written the end of the data (C{CRLF . CRLF}, or C{BDAT ... LAST}).

Streams are made of plausible pieces (replies with interesting codes, EHLO
capability lines, SASL challenges) mixed with garbage, bare line endings and
over-long lines, cut at random points; the connection may also be reset at
a random point.

CI runs a bounded number of examples (C{MAILCLIENT_FUZZ_EXAMPLES}, default
200 per client kind).  For long runs::

    python -m mailclient.test.test_fuzz [EXAMPLES]

runs the same properties with C{EXAMPLES} (default 100000) examples each and
prints a summary.
"""

from __future__ import annotations

import io
import os
import re
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mailclient._protocol.client import SMTPClient
from mailclient._protocol.esmtp import ESMTPClient
from mailclient._wire.sasl import LOGINAuthenticator, PLAINAuthenticator
from mailclient._protocol.sender import ESMTPSenderFactory
from mailclient._wire.state import Phase
from mailclient.smtp import SMTPClientError
from mailclient.test.helpers import Message, Session, recording

EXAMPLES = int(os.environ.get("MAILCLIENT_FUZZ_EXAMPLES", "200"))
TIMEOUT = 10.0
BODY = b"Subject: fuzz\r\n\r\n" + b"".join(
    b"line %d\r\n.dot\n\r.\r\n" % (i,) for i in range(1500)
)

# --- Streams ------------------------------------------------------------------

CODES = [
    220, 221, 235, 250, 251, 252, 334, 354, 421, 450, 451, 452, 454, 500,
    501, 502, 503, 530, 534, 535, 550, 552, 554, 555, 199, 299, 600, 999,
]
CAPABILITIES = [
    b"PIPELINING", b"CHUNKING", b"8BITMIME", b"SMTPUTF8", b"SIZE 100",
    b"SIZE", b"DSN", b"ENHANCEDSTATUSCODES", b"AUTH PLAIN LOGIN",
    b"AUTH=LOGIN", b"STARTTLS", b"BINARYMIME", b"AUTH CRAM-MD5",
]
TEXTS = [b"", b"ok", b"2.0.0 ok", b"4.3.0 later", b"5.1.1 no",
         b"VXNlcm5hbWU6", b"UGFzc3dvcmQ6", b"not base64!", b"\xff\xfe", b"\x00"]
EOLS = [b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b""]

text = st.one_of(st.sampled_from(TEXTS), st.binary(max_size=20))
eol = st.sampled_from(EOLS)


@st.composite
def reply(draw: Any) -> bytes:
    code = draw(st.sampled_from(CODES))
    lines = draw(st.lists(text, min_size=1, max_size=3))
    out = []
    for i, line in enumerate(lines):
        sep = b"-" if i < len(lines) - 1 else draw(st.sampled_from([b" ", b" ", b"-", b""]))
        out.append(b"%03d%s%s" % (code, sep, line) + draw(eol))
    return b"".join(out)


@st.composite
def ehlo(draw: Any) -> bytes:
    caps = draw(st.lists(st.sampled_from(CAPABILITIES), max_size=5))
    lines = [b"mx.example"] + caps
    return b"".join(
        b"250%s%s\r\n" % (b"-" if i < len(lines) - 1 else b" ", line)
        for i, line in enumerate(lines)
    )


piece = st.one_of(
    reply(), reply(), reply(), ehlo(),
    st.sampled_from([b"250 ok\r\n", b"354 go\r\n", b"220 hi\r\n", b"235 ok\r\n"]),
    st.binary(max_size=30),
    st.sampled_from([b"\r\n", b"\n", b"\r", b"250", b"250-", b" ", b"\x00"]),
    st.builds(lambda n: b"250 " + b"x" * n, st.sampled_from([100, 20_000, 70_000])),
)


@st.composite
def streams(draw: Any) -> Dict[str, Any]:
    """
    A server stream: its chunks, where (if anywhere) the connection is reset
    and how far the clock moves between chunks.
    """
    data = b"".join(draw(st.lists(piece, max_size=25)))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=8))))
    chunks = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
    chunks = [c for c in chunks if c]
    reset = draw(st.one_of(st.none(), st.integers(0, len(chunks))))
    waits = draw(st.lists(st.sampled_from([0.0, 0.0, 1.0, TIMEOUT / 2]),
                          min_size=len(chunks), max_size=len(chunks)))
    return {"chunks": chunks, "reset": reset, "waits": waits}


CONVERSATION_CAPS = [b"PIPELINING", b"CHUNKING", b"8BITMIME", b"AUTH PLAIN LOGIN",
                     b"ENHANCEDSTATUSCODES", b"DSN", b"SMTPUTF8"]
_LOGIN = [b"334 VXNlcm5hbWU6\r\n", b"334 UGFzc3dvcmQ6\r\n", b"235 2.7.0 ok\r\n"]


def canonical(kind: str, caps: Sequence[bytes]) -> List[bytes]:
    """
    The replies of a conversation in which every message is accepted, for
    a client of C{kind} talking to a server offering C{caps}.
    """
    ok, go = b"250 2.0.0 ok\r\n", b"354 go ahead\r\n"
    if kind == "smtp":
        caps = []
    lines = [b"mx.example"] + list(caps)
    out = [b"220 mx.example ESMTP\r\n", b"".join(
        b"250%s%s\r\n" % (b"-" if i < len(lines) - 1 else b" ", line)
        for i, line in enumerate(lines))]
    if kind != "smtp" and b"AUTH PLAIN LOGIN" in caps:
        out += _LOGIN
    pipelined = kind != "smtp" and b"PIPELINING" in caps
    chunked = pipelined and b"CHUNKING" in caps
    for i, rcpts in enumerate([2] if kind == "sender" else [2, 1]):
        if kind == "overlap" and chunked and i:
            out += [ok]  # the RSET ahead of a message started early
        out += [ok] * (1 + rcpts)
        if chunked:
            out += [ok]
        elif pipelined:
            out += [go, ok]
        else:
            out += [go, ok, ok]
    return out + [b"221 bye\r\n"]


@st.composite
def conversations(draw: Any, kind: str) -> Dict[str, Any]:
    """
    A mostly well-formed conversation, mutated: replies replaced, dropped,
    repeated, or with pieces inserted; one chunk per reply, with some cut
    or merged.
    """
    caps = draw(st.lists(st.sampled_from(CONVERSATION_CAPS), unique=True, max_size=5))
    chunks: List[bytes] = []
    for item in canonical(kind, caps):
        action = draw(st.sampled_from(["keep"] * 14 + ["replace", "drop", "repeat", "insert",
                                                        "cut", "merge"]))
        if action == "replace":
            item = draw(piece)
        elif action == "drop":
            continue
        elif action == "repeat":
            chunks.append(item)
        elif action == "insert":
            chunks.append(draw(piece))
        elif action == "cut" and len(item) > 1:
            at = draw(st.integers(1, len(item) - 1))
            chunks.append(item[:at])
            item = item[at:]
        elif action == "merge" and chunks:
            item = chunks.pop() + item
        if item:
            chunks.append(item)
    reset = draw(st.one_of(st.none(), st.none(), st.integers(0, len(chunks))))
    waits = draw(st.lists(st.sampled_from([0.0, 0.0, 0.0, 1.0, TIMEOUT / 2]),
                          min_size=len(chunks), max_size=len(chunks)))
    return {"chunks": chunks, "reset": reset, "waits": waits}


def steadyStream(chunks: List[bytes]) -> Dict[str, Any]:
    """
    A stream of these chunks, with no reset and no time passing.
    """
    return {"chunks": chunks, "reset": None, "waits": [0.0] * len(chunks)}


def anyStream(kind: str) -> Any:
    return st.one_of(streams(), conversations(kind), conversations(kind))


# --- The oracle -----------------------------------------------------------------

_END_DATA = re.compile(rb"(?:^|\r\n)\.\r\n|BDAT \d+ LAST\r\n")
_ACCEPT = re.compile(rb"(?:^|\n)2\d\d(?: [^\r\n]*)?\r?\n")


def acceptedSince(exchange: Sequence[Tuple[str, bytes]]) -> bool:
    """
    Whether a complete 2xx reply line arrived after the client wrote the
    end of the data of the current message.
    """
    client = b""
    endAt: Optional[int] = None
    for i, (who, data) in enumerate(exchange):
        if who == "C":
            client += data
            if _END_DATA.search(client):
                endAt = i
                client = b""
    if endAt is None:
        return False
    after = b"".join(d for who, d in exchange[endAt + 1:] if who == "S")
    return bool(_ACCEPT.search(after))


class _Errors:
    def __init__(self) -> None:
        self.events: List[Dict[str, Any]] = []

    def __call__(self, event: Dict[str, Any]) -> None:
        if event.get("log_failure") is not None or event.get("isError"):
            self.events.append(event)

    def __enter__(self) -> "_Errors":
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *args: Any) -> None:
        globalLogPublisher.removeObserver(self)


# --- Clients ----------------------------------------------------------------------


class _Connector:
    def connect(self) -> None:  # pragma: no cover - retries=0
        raise AssertionError("no retry expected")

    def getDestination(self) -> Any:
        return None


class _Overlapping(ESMTPClient):
    pipelineMessages = True


def makeClient(kind: str, clock: Clock) -> Tuple[Any, Any]:
    """
    Return C{(client, extra)}: a client of this kind and what the checker
    needs (the sender factory and its results).
    """
    if kind == "smtp":
        client = recording(SMTPClient)(b"client.example")
    elif kind in ("esmtp", "overlap"):
        base = _Overlapping if kind == "overlap" else ESMTPClient
        client = recording(base)(b"secret", None, b"client.example")
        client.registerAuthenticator(LOGINAuthenticator(b"user"))
        client.registerAuthenticator(PLAINAuthenticator(b"user"))
        client.allowCleartextAuthentication = True
    else:
        results: List[Any] = []
        d: defer.Deferred = defer.Deferred()
        factory = ESMTPSenderFactory(
            b"user", b"secret", "from@example.com", ["a@example.com", "b@example.com"],
            io.BytesIO(BODY), d, retries=0, timeout=TIMEOUT,
            requireAuthentication=False, requireTransportSecurity=False,
            allowCleartextAuthentication=True, heloFallback=True,
        )
        factory.reactor = clock
        client = factory.buildProtocol(None)
        return client, (factory, results)
    client.timeout = TIMEOUT
    client.queue(
        Message(b"one@example.com", [b"a@example.com", b"b@example.com"], BODY),
        Message(b"two@example.com", [b"c@example.com"], b"short\n.\n"),
    )
    return client, None


def checkStream(case: Any, kind: str, stream: Dict[str, Any]) -> None:
    """
    Feed C{stream} to a client of C{kind} and check every property.
    """
    clock = Clock()
    client, extra = makeClient(kind, clock)
    successes: List[bool] = []
    with _Errors() as errors:
        session = Session(client, clock=clock)
        if extra is not None:
            factory, results = extra

            def checked(result: Any) -> Any:
                if not isinstance(result, Failure):
                    successes.append(acceptedSince(session.exchange))
                return result

            factory.result.addBoth(checked)
            factory.result.addBoth(results.append)
        else:
            original = client.sentMail

            def sentMail(code: int, resp: bytes, numOk: int, addresses: Any, log: Any) -> None:
                if 200 <= code < 300:
                    successes.append(acceptedSince(session.exchange))
                original(code, resp, numOk, addresses, log)

            client.sentMail = sentMail

        for i, (chunk, wait) in enumerate(zip(stream["chunks"], stream["waits"])):
            if session.lost:
                break
            if stream["reset"] == i:
                session.loseConnection(Failure(ConnectionLost("reset")))
                break
            session.receive(chunk)
            session.pump()
            session.settle()
            if wait and not session.lost:
                clock.advance(wait)
                session.pump()
                session.settle()
        # The server says nothing more: time must end the conversation.
        for _ in range(20):
            if session.lost:
                break
            clock.advance(TIMEOUT + 1)
            session.pump()
            session.settle()
        if not session.lost and session.closed:
            session.loseConnection()
        case.assertTrue(session.lost, "the client never closed the connection")
        if extra is not None:
            factory.clientConnectionLost(_Connector(), session.lostReason)
        case.assertEqual(clock.getDelayedCalls(), [])

    case.assertEqual(errors.events, [])
    # Success only for what the stream accepted.
    case.assertNotIn(False, successes, session.exchange)

    if extra is not None:
        factory, results = extra
        case.assertEqual(len(results), 1)
        if isinstance(results[0], Failure):
            case.assertIsInstance(results[0].value, SMTPClientError)
        else:
            case.assertEqual(successes, [True])
        return

    if kind == "overlap":
        # The next message may start before the previous outcome: outcomes
        # never outnumber the messages started (plus one error before the
        # first), and in the end every started message has exactly one.
        begun = outcomes = outside = 0
        for call in client.calls:
            if call[0] == "getMailFrom":
                begun = min(begun + 1, 2)
            elif call[0] in ("sentMail", "sendError"):
                if call[0] == "sendError":
                    case.assertIsInstance(call[1], SMTPClientError)
                if begun == 0:
                    outside += 1
                else:
                    outcomes += 1
                case.assertLessEqual(outcomes, begun, client.calls)
        case.assertLessEqual(outside, 1, client.calls)
        case.assertEqual(outcomes, begun, client.calls)
        return

    # Exactly one outcome per message attempt; at most one error before
    # the first message, none between messages.
    started = 0
    open_ = False
    outside = 0
    for call in client.calls:
        name = call[0]
        if name == "getMailFrom":
            case.assertFalse(open_, client.calls)
            if started < 2:
                started += 1
                open_ = True
        elif name in ("sentMail", "sendError"):
            if name == "sendError":
                case.assertIsInstance(call[1], SMTPClientError)
            if open_:
                open_ = False
            else:
                case.assertEqual(started, 0, client.calls)
                outside += 1
    case.assertFalse(open_, client.calls)
    case.assertLessEqual(outside, 1, client.calls)


# --- Tests ----------------------------------------------------------------------

_settings = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class FuzzTests(SynchronousTestCase):
    """
    The properties, for a bare SMTPClient, an ESMTPClient with AUTH (also
    with pipelineMessages), and the ESMTPSenderFactory's protocol.
    """

    @_settings
    @given(anyStream("smtp"))
    def test_smtpClient(self, stream: Dict[str, Any]) -> None:
        checkStream(self, "smtp", stream)

    @_settings
    @given(anyStream("esmtp"))
    def test_esmtpClient(self, stream: Dict[str, Any]) -> None:
        checkStream(self, "esmtp", stream)

    @_settings
    @given(anyStream("sender"))
    def test_sender(self, stream: Dict[str, Any]) -> None:
        checkStream(self, "sender", stream)

    @_settings
    @given(anyStream("overlap"))
    def test_overlappingClient(self, stream: Dict[str, Any]) -> None:
        """
        An ESMTPClient with pipelineMessages.
        """
        checkStream(self, "overlap", stream)


class OracleTests(SynchronousTestCase):
    """
    The oracle itself, and streams that reach success (so the fuzzer's
    success check is not vacuous).
    """

    def test_acceptedSince(self) -> None:
        self.assertFalse(acceptedSince([("C", b"DATA\r\n"), ("S", b"250 ok\r\n")]))
        self.assertFalse(acceptedSince([("C", b"x\r\n.\r\n"), ("S", b"250 ok")]))
        self.assertTrue(acceptedSince([("C", b"x\r\n.\r\n"), ("S", b"250 ok\r\n")]))
        self.assertTrue(acceptedSince([("C", b"BDAT 3 LAST\r\nabc"), ("S", b"2"), ("S", b"50 ok\r\n")]))

    def test_successfulStreams(self) -> None:
        conversation = [b"220 hi\r\n", b"250 hi\r\n", b"250 ok\r\n", b"250 ok\r\n",
                        b"250 ok\r\n", b"354 go\r\n", b"250 done\r\n", b"250 ok\r\n",
                        b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n", b"250 done\r\n",
                        b"221 bye\r\n"]
        for kind in ("smtp", "esmtp", "sender", "overlap"):
            checkStream(self, kind, steadyStream(conversation))

    def test_lineBreakInsideFinalReply(self) -> None:
        """
        A stream the fuzzer found: C{220 \\r} then C{250 ...} after the
        data is one line with a bare CR, not an acceptance; every client
        must fail the message rather than report it delivered.
        """
        chunks = [b"220 mx.example ESMTP\r\n", b"250-mx.example\r\n250 PIPELINING\r\n",
                  b"250 2.0.0 ok\r\n", b"250 2.0.0 ok\r\n", b"250 2.0.0 ok\r\n",
                  b"354 go ahead\r\n", b"220 \r", b"250 2.0.0 ok\r\n",
                  b"250 2.0.0 ok\r\n", b"250 2.0.0 ok\r\n", b"354 go ahead\r\n",
                  b"250 2.0.0 ok\r\n", b"221 bye\r\n"]
        for kind in ("smtp", "esmtp", "overlap"):
            checkStream(self, kind, steadyStream(chunks))

    def test_successCheckDetectsLies(self) -> None:
        """
        The check fails for a client that reports success without an
        accepted end of data.
        """
        class Liar(recording(SMTPClient)):  # type: ignore[misc]
            def smtpState_data(self, code: int, resp: bytes) -> None:
                self.sentMail(250, b"lie", 1, [], self.log)
                self._mailclient.transaction.phase = Phase.REPORTED
                self.transport.loseConnection()

        import mailclient.test.test_fuzz as module

        original = module.recording
        module.recording = lambda base: Liar  # type: ignore[assignment]
        try:
            stream = steadyStream([b"220 hi\r\n250 hi\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"])
            self.assertRaises(self.failureException, checkStream, self, "smtp", stream)
        finally:
            module.recording = original


def main(argv: Sequence[str]) -> int:
    """
    Run the fuzz properties for a long time: C{EXAMPLES} examples each.
    """
    examples = int(argv[1]) if len(argv) > 1 else 100_000
    case = SynchronousTestCase()
    for kind in ("smtp", "esmtp", "sender", "overlap"):
        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(anyStream(kind))
        def run(stream: Dict[str, Any]) -> None:
            checkStream(case, kind, stream)

        print(f"{kind}: {examples} examples...", flush=True)
        run()
        print(f"{kind}: ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
