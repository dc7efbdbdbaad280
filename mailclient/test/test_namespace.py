"""
No subclass can collide with mailclient's state.

A user's subclass of a Twisted class may use any attribute name that
Twisted's class does not.  So after complete conversations of every kind,
every name on mailclient's clients, senders and relayers (class and
instance) must be one of:

  - a name Twisted's class (or its instances, after the same kind of
    conversation) has;
  - C{_mailclient}, the one attribute holding mailclient's own state;
  - a name-mangled private name (C{_Class__name});
  - one of mailclient's public additions, listed here and in
    C{docs/compatibility.rst} ("Public additions").

And a subclass that sets every attribute name Twisted's own test helpers
use still sends its mail.
"""

from __future__ import annotations

import io
import os
import re
from typing import Any, Dict, Iterable, List, Set, Tuple

from twisted.internet import defer
from twisted.mail import relay as twisted_relay
from twisted.mail import relaymanager as twisted_relaymanager
from twisted.mail import smtp as twisted_smtp
from twisted.trial.unittest import SynchronousTestCase

from mailclient import relay, relaymanager, smtp
from mailclient._relaying.queue import dumpEnvelope
from mailclient.testing import Reply, SMTPTestServer

#: mailclient's public additions, by class (documented in
#: docs/compatibility.rst, "Public additions").
PUBLIC_ADDITIONS: Dict[str, Set[str]] = {
    "SMTPClient": {
        "timeouts", "quoteAddress", "mailFromParameters", "rcptToParameters",
        "resetAfterEveryMessage",
    },
    "ESMTPClient": {
        "pipelining", "chunking", "pipelineMessages", "smtputf8", "mailOptions",
        "allowCleartextAuthentication", "opportunisticTLS", "capabilities", "getMailOptions",
        "tlsRecord",
    },
    "SMTPSenderFactory": {
        "settings", "reactor", "tlsRecord", "cancelRetry", "timeouts", "noisy",
    },
    "ESMTPSenderFactory": {"mailOptions"},
}
#: What each class inherits of the additions.
_INHERITS = {
    "ESMTPClient": ["SMTPClient"],
    "SMTPSender": ["SMTPClient"],
    "ESMTPSender": ["ESMTPClient", "SMTPClient"],
    "SMTPRelayer": ["SMTPClient"],
    "ESMTPRelayer": ["ESMTPClient", "SMTPClient"],
    "SMTPManagedRelayer": ["SMTPClient"],
    "ESMTPManagedRelayer": ["ESMTPClient", "SMTPClient"],
    "ESMTPSenderFactory": ["SMTPSenderFactory"],
}

_MANGLED = re.compile(r"_[A-Za-z]\w*__\w+")

#: Twisted's names that its classes answer through C{__getattr__} (the
#: deprecated C{tlsMode}), so C{dir()} does not show them.
_TWISTED_DYNAMIC = {"tlsMode"}

#: The attribute the test helpers below keep their own state in.
_HELPER = "testState"

BODY = b"Subject: hello\r\n\r\nHello!\r\n"


def additions(className: str) -> Set[str]:
    names = set(PUBLIC_ADDITIONS.get(className, ()))
    for base in _INHERITS.get(className, ()):
        names |= PUBLIC_ADDITIONS.get(base, set())
    return names


def names(obj: Any) -> Set[str]:
    """
    The names of C{obj}'s class and of C{obj} itself, but its dunders and
    the test helper's state.
    """
    found = {n for n in dir(type(obj)) if not (n.startswith("__") and n.endswith("__"))}
    found |= set(getattr(obj, "__dict__", {}))
    found.discard(_HELPER)
    return found


def helper(base: type) -> type:
    """
    A client of C{base} sending the messages in C{self.testState}: only
    Twisted's hook names, and one attribute of its own.
    """

    class Helper(base):  # type: ignore[misc,valid-type]
        def getMailFrom(self) -> Any:
            pending = self.testState["pending"]
            return pending[0][0] if pending else None

        def getMailTo(self) -> Any:
            return self.testState["pending"][0][1]

        def getMailData(self) -> Any:
            return io.BytesIO(self.testState["pending"][0][2])

        def sentMail(self, code: int, resp: bytes, numOk: int, addresses: Any, log: Any) -> None:
            self._done(("sent", code))

        def sendError(self, exc: Exception) -> None:
            self._done(("error", type(exc).__name__))
            base.sendError(self, exc)

        def _done(self, outcome: Any) -> None:
            state = self.testState
            state["outcomes"].append(outcome)
            if state["pending"]:
                state["pending"].pop(0)

    Helper.__name__ = base.__name__
    return Helper


def converse(server: SMTPTestServer, client: Any, messages: List[Tuple[str, List[str], bytes]]) -> Any:
    client.testState = {"pending": list(messages), "outcomes": []}
    connection = server.connectInMemory(client)
    for _ in range(50):
        if not connection.pump():
            break
    return client


def messages(count: int = 2) -> List[Tuple[str, List[str], bytes]]:
    return [("alice@example.com", ["bob%d@example.org" % i, "carol@example.org"], BODY)
            for i in range(count)]


def clientConversations(library: Any) -> Iterable[Tuple[str, Any]]:
    """
    Run every kind of conversation with C{library}'s (Twisted's or
    mailclient's) clients; yield each client afterwards.
    """
    ours = library is smtp
    # Plain SMTP, one recipient refused.
    server = SMTPTestServer(esmtp=False)
    server.rcptReply("carol@example.org", 550, b"5.1.1 no")
    yield "SMTPClient", converse(server, helper(library.SMTPClient)(b"client.example"), messages())
    # ESMTP with STARTTLS and AUTH.
    server = SMTPTestServer(credentials={"alice": "secret"},
                            extensions=["STARTTLS", "AUTH PLAIN LOGIN"])
    client = helper(library.ESMTPClient)(b"secret", server.clientTLSOptions(), b"client.example")
    client.registerAuthenticator(library.PLAINAuthenticator(b"alice"))
    client.requireTransportSecurity = client.requireAuthentication = True
    yield "ESMTPClient", converse(server, client, messages())
    # A failure: MAIL refused, then the connection dropped in the body.
    server = SMTPTestServer(extensions=[])
    server.script("MAIL", [Reply(451, b"4.3.0 later"), None])
    server.interruptBody(10)
    yield "ESMTPClient", converse(server, helper(library.ESMTPClient)(None, None, b"c"), messages())
    if not ours:
        return
    # Pipelined DATA; BDAT; and pipelineMessages.
    for extensions, early in [(["PIPELINING"], False), (["PIPELINING", "CHUNKING"], False),
                              (["PIPELINING", "CHUNKING"], True)]:
        server = SMTPTestServer(extensions=extensions)
        client = helper(library.ESMTPClient)(None, None, b"client.example")
        client.pipelineMessages = early
        yield "ESMTPClient", converse(server, client, messages(3))


class NamespaceTests(SynchronousTestCase):
    """
    mailclient's classes and instances use only Twisted's names, the
    namespace attribute, mangled names and the documented additions.
    """

    def twistedNames(self, className: str, twistedClass: type, instances: Iterable[Any]) -> Set[str]:
        found = {n for n in dir(twistedClass) if not (n.startswith("__") and n.endswith("__"))}
        found |= _TWISTED_DYNAMIC
        for instance in instances:
            found |= names(instance)
        if issubclass(twistedClass, twisted_smtp.SMTPClient):
            # What Twisted's client instances hold after conversations.
            for _, client in clientConversations(twisted_smtp):
                found |= names(client)
        return found

    def assertOnlyAllowedNames(self, className: str, ours: Iterable[Any], twisted: Set[str]) -> None:
        allowed = twisted | {"_mailclient"} | additions(className)
        extra: Set[str] = set()
        for instance in ours:
            extra |= {n for n in names(instance) if n not in allowed and not _MANGLED.fullmatch(n)}
        self.assertEqual(extra, set(), className)

    def test_clients(self) -> None:
        twisted: Dict[str, List[Any]] = {}
        for className, client in clientConversations(twisted_smtp):
            twisted.setdefault(className, []).append(client)
        ours: Dict[str, List[Any]] = {}
        for className, client in clientConversations(smtp):
            ours.setdefault(className, []).append(client)
            # The conversations really happened.
            self.assertTrue(client.testState["outcomes"], className)
        self.assertIn(("sent", 250), [o for c in ours["ESMTPClient"] for o in c.testState["outcomes"]])
        for className, clients in ours.items():
            allowedTwisted = self.twistedNames(
                className, getattr(twisted_smtp, className), twisted.get(className, []))
            self.assertOnlyAllowedNames(className, clients, allowedTwisted)

    def senderFactories(self, library: Any) -> Iterable[Tuple[str, Any, Any]]:
        server = SMTPTestServer(credentials={"alice": "secret"},
                                extensions=["STARTTLS", "AUTH PLAIN LOGIN"])
        d: defer.Deferred[Any] = defer.Deferred()
        factory = library.ESMTPSenderFactory(
            b"alice", b"secret", "alice@example.com", ["bob@example.org"],
            io.BytesIO(BODY), d, contextFactory=server.clientTLSOptions(), retries=0,
        )
        connection = server.connectInMemory(factory)
        for _ in range(50):
            if not connection.pump():
                break
        protocol = server.sessions[-1]
        yield "ESMTPSenderFactory", factory, d
        d2: defer.Deferred[Any] = defer.Deferred()
        plain = library.SMTPSenderFactory(
            "alice@example.com", ["bob@example.org"], io.BytesIO(BODY), d2, retries=1)
        server = SMTPTestServer(esmtp=False)
        server.script("MAIL", [Reply(451, b"later"), None])
        connection = server.connectInMemory(plain)
        for _ in range(50):
            if not connection.pump():
                break
        yield "SMTPSenderFactory", plain, d2
        del protocol

    def test_senders(self) -> None:
        """
        The sender factories and the sender protocols they build.
        """
        built: Dict[str, List[Any]] = {"ours": [], "twisted": []}
        for library, key in [(twisted_smtp, "twisted"), (smtp, "ours")]:
            factories = {}
            for className, factory, d in self.senderFactories(library):
                factories[className] = factory
                if key == "ours":
                    self.assertEqual(self.successResultOf(d)[0], 1, className)
                else:
                    d.addErrback(lambda f: None)
            built[key].append(factories)
        for className in ("ESMTPSenderFactory", "SMTPSenderFactory"):
            twistedFactory = built["twisted"][0][className]
            ourFactory = built["ours"][0][className]
            allowed = self.twistedNames(className, getattr(twisted_smtp, className), [twistedFactory])
            self.assertOnlyAllowedNames(className, [ourFactory], allowed)
        for className, args in [("SMTPSender", (b"client.example",)),
                                ("ESMTPSender", (b"alice", b"secret", None, b"client.example"))]:
            theirs = getattr(twisted_smtp, className)(*args)
            ours = getattr(smtp, className)(*args)
            allowed = self.twistedNames(className, getattr(twisted_smtp, className), [theirs])
            self.assertOnlyAllowedNames(className, [ours], allowed)

    def test_relayers(self) -> None:
        """
        The relayers, after relaying two queued messages (one accepted, one
        refused).
        """
        directory = self.mktemp()
        os.mkdir(directory)
        paths = []
        for i in range(2):
            path = os.path.join(directory, "m%d" % (i,))
            with open(path + "-H", "wb") as f:
                f.write(dumpEnvelope("alice@example.com", "bob%d@example.org" % (i,)))
            with open(path + "-D", "wb") as f:
                f.write(BODY)
            paths.append(path)
        server = SMTPTestServer(esmtp=False)
        server.rcptReply("bob1@example.org", 550, b"5.1.1 no")
        relayer = relay.SMTPRelayer(paths, b"client.example")
        connection = server.connectInMemory(relayer)
        for _ in range(50):
            if not connection.pump():
                break
        self.assertEqual(len(server.messages), 1)
        theirs = twisted_relay.SMTPRelayer([], b"client.example")
        self.assertOnlyAllowedNames(
            "SMTPRelayer", [relayer],
            self.twistedNames("SMTPRelayer", twisted_relay.SMTPRelayer, [theirs]))

        class Manager:
            def __init__(self) -> None:
                self.calls: List[Any] = []

            def notifySuccess(self, factory: Any, message: str) -> None:
                self.calls.append(("success", message))

            def notifyFailure(self, factory: Any, message: str) -> None:
                self.calls.append(("failure", message))

            def notifyDone(self, factory: Any) -> None:
                self.calls.append(("done",))

            def notifyNoConnection(self, factory: Any) -> None:
                self.calls.append(("no connection",))

        for className in ("SMTPManagedRelayer", "ESMTPManagedRelayer"):
            manager = Manager()
            args: Tuple[Any, ...] = (b"client.example",) if className.startswith("SMTP") else (
                None, None, b"client.example")
            ours = getattr(relaymanager, className)([], manager, *args)
            theirs = getattr(twisted_relaymanager, className)([], manager, *args)
            self.assertOnlyAllowedNames(
                className, [ours],
                self.twistedNames(className, getattr(twisted_relaymanager, className), [theirs]))


class TwistedHelperNamesTests(SynchronousTestCase):
    """
    A subclass may set any attribute Twisted's own test helpers set (and
    other names Twisted leaves free) and still send its mail.
    """

    #: Every attribute name Twisted's test helpers for the client set on
    #: their subclasses (test_smtp's MyClient, NoticeTLSClient, and the
    #: names sendError/sentMail helpers use), and a few more a user might.
    HELPER_NAMES = [
        "_sender", "_recipient", "_data", "_error", "tls", "done", "result",
        "_fail", "_reportError", "_state", "_transaction", "_pipeline", "_parked",
        "_chunkSender", "_encoder", "_options", "_reported", "_quitting", "_inSASL",
        "_replies", "_failureReason", "_pending", "_messages", "_timer", "_early",
        "_abortTransfer", "_transferFailed", "_internalError", "_messageFile",
        "_recipientList", "_setNoDelay", "_rsetFailed", "_invalidAddress",
        "_reportOutcome", "_maybeStartNext", "_startChunks", "_pipelinedReply",
        "_bdatReply", "_hasCredentials", "_mayAuthenticate", "_useExtensions",
    ]

    def subclass(self, base: type) -> type:
        helperNames = self.HELPER_NAMES

        class Colliding(base):  # type: ignore[misc,valid-type]
            def __init__(self, *args: Any) -> None:
                base.__init__(self, *args)
                for name in helperNames:
                    setattr(self, name, "user's %s" % (name,))
                self._sender = "alice@example.com"
                self._recipient = ["bob@example.org"]
                self._data = io.BytesIO(BODY)
                self.outcomes: List[Any] = []

            def getMailFrom(self) -> Any:
                sender, self._sender = self._sender, None
                return sender

            def getMailTo(self) -> Any:
                return self._recipient

            def getMailData(self) -> Any:
                return self._data

            def sentMail(self, code: int, resp: bytes, numOk: int, addresses: Any, log: Any) -> None:
                self.outcomes.append(code)

            def sendError(self, exc: Exception) -> None:
                self._error = exc
                self.outcomes.append(exc)
                base.sendError(self, exc)

        return Colliding

    def test_everyKindOfConversation(self) -> None:
        cases = [
            (smtp.SMTPClient, (b"client.example",), SMTPTestServer(esmtp=False)),
            (smtp.ESMTPClient, (None, None, b"client.example"), SMTPTestServer(extensions=[])),
            (smtp.ESMTPClient, (None, None, b"client.example"),
             SMTPTestServer(extensions=["PIPELINING"])),
            (smtp.ESMTPClient, (None, None, b"client.example"),
             SMTPTestServer(extensions=["PIPELINING", "CHUNKING"])),
        ]
        for base, args, server in cases:
            client = self.subclass(base)(*args)
            connection = server.connectInMemory(client)
            for _ in range(50):
                if not connection.pump():
                    break
            self.assertEqual(client.outcomes, [250], (base.__name__, server.extensions))
            self.assertEqual([m.data for m in server.messages], [BODY])
            for name in self.HELPER_NAMES:
                if name not in ("_sender", "_recipient", "_data", "_error"):
                    self.assertEqual(getattr(client, name), "user's %s" % (name,), name)

    def test_tlsAndAuth(self) -> None:
        server = SMTPTestServer(credentials={"alice": "secret"},
                                extensions=["STARTTLS", "AUTH PLAIN LOGIN"])
        client = self.subclass(smtp.ESMTPClient)(b"secret", server.clientTLSOptions(), b"c.example")
        client.registerAuthenticator(smtp.PLAINAuthenticator(b"alice"))
        client.requireAuthentication = client.requireTransportSecurity = True
        connection = server.connectInMemory(client)
        for _ in range(50):
            if not connection.pump():
                break
        self.assertEqual(client.outcomes, [250])
        self.assertTrue(server.sessions[0].tls)
