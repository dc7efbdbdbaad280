"""
Tests that keep the documentation true:

  - the table of names in C{docs/migrating.rst} against the public names of
    C{twisted.mail.smtp}, C{.relay} and C{.relaymanager} and of mailclient's
    modules (introspected);
  - C{docs/api.rst} documents every public name;
  - the epytext-to-reST hook of C{docs/conf.py} turns every public
    docstring into clean reST;
  - the recipes of C{docs/cookbook.rst} run, against a loopback
    L{mailclient.testing.SMTPTestServer};
  - the state diagram of C{docs/internals.rst} names every state handler of
    the client classes.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import io
import os
import re
from types import ModuleType
from typing import Any, Dict, List, Optional, Set, Tuple

import unittest as pyunit

from twisted.internet import defer, reactor
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import reporter
from twisted.trial.unittest import SynchronousTestCase, TestCase

import mailclient.interfaces
import mailclient.relay
import mailclient.relaymanager
import mailclient.smtp
import mailclient.testing
from mailclient._commands.migrate import PROVIDED
from mailclient.smtp import (
    AUTHDeclinedError,
    AUTHRequiredError,
    CannotSendError,
    SMTPTimeoutError,
    TLSRequiredError,
    XOAUTH2Authenticator,
    sendmail,
)
from mailclient.testing import Disconnect, NoReply, SMTPTestCaseMixin, SMTPTestServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(ROOT, "docs")

MODULES = ("smtp", "relay", "relaymanager")


def readDoc(testCase: SynchronousTestCase, name: str) -> str:
    path = os.path.join(DOCS, name)
    if not os.path.exists(path):
        testCase.skipTest("docs/%s is not available (installed without the docs)" % (name,))
    with open(path, encoding="utf-8") as f:
        return f.read()


def twistedModule(name: str) -> Optional[ModuleType]:
    try:
        return importlib.import_module("twisted.mail." + name)
    except ImportError:
        return None


def twistedPublicNames(module: ModuleType) -> Set[str]:
    """
    The public names of a Twisted module: its C{__all__}, plus every class,
    function and variable its own source defines at top level (including
    inside top-level C{if} and C{try} blocks, where C{DNSNAME} is), but not
    the names it imports.
    """
    names = set(getattr(module, "__all__", ()))
    source = inspect.getsource(module)
    pending: List[ast.stmt] = list(ast.parse(source).body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        names.add(sub.id)
        elif isinstance(node, ast.If):
            pending.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            pending.extend(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                pending.extend(handler.body)
    return {n for n in names if not n.startswith("_")}


_ROW = re.compile(
    r"^   \* - (?:``twisted\.mail\.(?P<tmod>\w+)\.(?P<tname>\w+)``|(?P<tnone>—))\n"
    r"     - (?:``mailclient\.(?P<mmod>\w+)\.(?P<mname>\w+)``|(?P<mnone>—))\n"
    r"     - (?P<note>\S.*)$",
    re.M,
)


class MigrationTableTests(SynchronousTestCase):
    """
    The table of every public name in C{docs/migrating.rst} matches the
    packages.
    """

    def rows(self) -> List[Tuple[str, Optional[str], Optional[str], str]]:
        """
        Return C{(module, twistedName, mailclientName, note)} for each row;
        a name is L{None} for a dash.
        """
        text = readDoc(self, "migrating.rst")
        rows = []
        for m in _ROW.finditer(text):
            module = m.group("tmod") or m.group("mmod")
            if m.group("tmod") and m.group("mmod"):
                self.assertEqual(m.group("tmod"), m.group("mmod"), m.group(0))
            rows.append((module, m.group("tname"), m.group("mname"), m.group("note")))
        self.assertGreater(len(rows), 70)
        return rows

    def test_everyTwistedNameListed(self) -> None:
        """
        Every public name of C{twisted.mail.smtp}, C{.relay} and
        C{.relaymanager} (found by introspection) has a row, and every
        Twisted name in the table exists.
        """
        rows = self.rows()
        checked = 0
        for module in MODULES:
            twisted = twistedModule(module)
            if twisted is None:
                continue
            listed = {t for mod, t, _, _ in rows if mod == module and t}
            self.assertEqual(twistedPublicNames(twisted) - listed, set(),
                             "twisted.mail.%s names missing from migrating.rst" % (module,))
            for name in listed:
                self.assertTrue(hasattr(twisted, name), "twisted.mail.%s.%s" % (module, name))
            checked += 1
        if not checked:
            self.skipTest("twisted.mail is not installed")

    def test_everyMailclientNameListed(self) -> None:
        """
        The mailclient column lists exactly the public names (C{__all__}) of
        C{mailclient.smtp}, C{.relay} and C{.relaymanager}.
        """
        rows = self.rows()
        for module in MODULES:
            ours = importlib.import_module("mailclient." + module)
            listed = [m for mod, _, m, _ in rows if mod == module and m]
            self.assertEqual(len(listed), len(set(listed)), "duplicate rows")
            # DNSNAME is provided (lazily) but, as in Twisted, not in __all__.
            lazy = {"DNSNAME"} if module == "smtp" else set()
            self.assertEqual(set(listed), set(ours.__all__) | lazy, "mailclient.%s" % (module,))
            self.assertEqual(set(listed), PROVIDED["twisted.mail." + module],
                             "the table and mailclient migrate disagree")

    def test_rowsConsistent(self) -> None:
        """
        A name present on both sides keeps its name; a name only Twisted has
        is server-side and mailclient lacks it; a name only mailclient has
        is marked new and Twisted lacks it.
        """
        for module, twistedName, ourName, note in self.rows():
            ours = importlib.import_module("mailclient." + module)
            twisted = twistedModule(module)
            self.assertTrue(twistedName or ourName)
            if twistedName and ourName:
                self.assertEqual(twistedName, ourName)
                self.assertFalse(note.startswith("*new*"), note)
            elif twistedName:
                self.assertNotIn(twistedName, ours.__all__)
                self.assertFalse(hasattr(ours, twistedName), twistedName)
                self.assertTrue(note.startswith("not provided: server side"), note)
            else:
                assert ourName is not None
                self.assertTrue(note.startswith("*new*"), note)
                if twisted is not None:
                    self.assertFalse(hasattr(twisted, ourName), ourName)


class APIReferenceTests(SynchronousTestCase):
    """
    C{docs/api.rst} documents every public name of the documented modules.
    """

    def documentedObjects(self, text: str) -> List[Any]:
        found = []
        current = None
        for m in re.finditer(r"^\.\. (\w+(?:::)?)\s*(?:::)?\s*([\w.]+)", text, re.M):
            directive, target = m.group(1).rstrip(":"), m.group(2)
            if directive == "currentmodule":
                current = target
                continue
            if directive in ("automodule", "module"):
                continue
            if not directive.startswith("auto") and directive not in ("data", "class", "function"):
                continue
            path = target if target.startswith("mailclient.") else "%s.%s" % (current, target)
            modname, _, name = path.rpartition(".")
            module = importlib.import_module(modname)
            if name == "DNSNAME":
                found.append("DNSNAME")
            else:
                found.append(getattr(module, name))
        return found

    def test_everyNameDocumented(self) -> None:
        text = readDoc(self, "api.rst")
        documented = self.documentedObjects(text)
        automodules = {
            m.group(1) for m in re.finditer(
                r"^\.\. automodule:: (\S+)\n(?!   :no-members:)", text, re.M)
        }
        for module in (mailclient.smtp, mailclient.relay, mailclient.relaymanager,
                       mailclient.testing, mailclient.interfaces):
            self.assertIn(".. automodule:: %s\n" % (module.__name__,), text)
            for name in module.__all__:
                if name == "DNSNAME":
                    self.assertIn("DNSNAME", documented)
                    continue
                obj = getattr(module, name)
                if any(obj is d for d in documented):
                    continue
                ownDoc = (inspect.isclass(obj) and vars(obj).get("__doc__")) or (
                    inspect.isfunction(obj) and obj.__doc__)
                self.assertTrue(
                    module.__name__ in automodules and ownDoc,
                    "%s.%s is not in docs/api.rst" % (module.__name__, name))


def loadConf(testCase: SynchronousTestCase) -> Any:
    """
    Import C{docs/conf.py} (it needs docutils, which comes with Sphinx).
    """
    try:
        import docutils  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        testCase.skipTest("docutils (Sphinx) is not installed")
    path = os.path.join(DOCS, "conf.py")
    if not os.path.exists(path):
        testCase.skipTest("docs/conf.py is not available")
    spec = importlib.util.spec_from_file_location("_mailclient_docs_conf", path)
    assert spec is not None and spec.loader is not None
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


class EpytextTests(SynchronousTestCase):
    """
    The C{autodoc-process-docstring} hook of C{docs/conf.py}.
    """

    def setUp(self) -> None:
        self.conf = loadConf(self)

    def convert(self, text: str) -> str:
        lines = inspect.cleandoc(text).splitlines()
        return "\n".join(self.conf.epytextToRest(lines))

    def test_fields(self) -> None:
        self.assertEqual(self.convert("""
            Send it.
            @param host: The host,
                on two lines.
            @type host: L{str}
            @ivar log: The log.
            @return: A L{Deferred}.
            @rtype: L{Deferred}
            @raise ValueError: If bad.
            @note: Careful.
            """), "\n".join([
            "Send it.",
            "",
            ":param host: The host,",
            "    on two lines.",
            ":type host: :py:obj:`str`",
            ":ivar log: The log.",
            ":returns: A :py:obj:`Deferred`.",
            ":rtype: :py:obj:`Deferred`",
            ":raises ValueError: If bad.",
            ":Note: Careful.",
        ]))

    def test_inlineMarkup(self) -> None:
        self.assertEqual(
            self.convert("Use C{x = {1: 2}}, L{SMTPClient.sendError}, "
                         "L{the client<SMTPClient>}, I{emphasis}, B{bold}, "
                         "U{https://example.com}, E{lb}."),
            "Use ``x = {1: 2}``, :py:obj:`SMTPClient.sendError`, "
            ":py:obj:`the client <SMTPClient>`, *emphasis*, **bold**, "
            "`https://example.com <https://example.com>`__, {.")

    def test_markupNextToWords(self) -> None:
        """
        reST needs whitespace or punctuation around inline markup; epytext
        does not.
        """
        self.assertEqual(self.convert("the L{Address}es and C{b}-C{c}"),
                         "the :py:obj:`Address`\\ es and ``b``-``c``")

    def test_escaping(self) -> None:
        self.assertEqual(self.convert("*args, __init__, `x`, a|b, C:\\path"),
                         "\\*args, \\_\\_init\\_\\_, \\`x\\`, a\\|b, C:\\\\path")

    def test_literalBlocks(self) -> None:
        source = """
            Example::

                f(*args)  # C{not markup}

            An indented example:

                x = C{y}

            >>> a_b*c
            """
        self.assertEqual(self.convert(source), "\n".join([
            "Example::",
            "",
            "    f(*args)  # C{not markup}",
            "",
            "An indented example:",
            "",
            "::",
            "",
            "    x = C{y}",
            "",
            ">>> a_b*c",
        ]))

    def test_lists(self) -> None:
        self.assertEqual(self.convert("""
            Outcomes:

              - accepted;
              - refused (C{5xx}).
            """), "\n".join(["Outcomes:", "", "  - accepted;", "  - refused (``5xx``)."]))

    def test_publicDocstringsAreCleanReST(self) -> None:
        """
        Every public docstring of the documented modules, converted, parses
        as reST without a warning (the Sphinx build runs with C{-W}).
        """
        from docutils.frontend import get_default_settings  # type: ignore[import-untyped]
        from docutils.parsers.rst import Parser, roles  # type: ignore[import-untyped]
        from docutils.utils import new_document  # type: ignore[import-untyped]

        for role in ("py:obj", "py:class", "py:meth", "py:func", "py:data"):
            roles.register_local_role(role, roles.GenericRole(role, _literal()))
        parser = Parser()
        settings = get_default_settings(Parser)
        settings.report_level = 2
        settings.halt_level = 5
        checked = 0
        for qualname, doc in publicDocstrings():
            converted = self.convert(doc)
            warnings = io.StringIO()
            settings.warning_stream = warnings
            parser.parse(converted, new_document(qualname, settings))
            self.assertEqual(warnings.getvalue(), "",
                             "%s:\n%s" % (qualname, converted))
            checked += 1
        self.assertGreater(checked, 200)


def _literal() -> Any:
    from docutils import nodes  # type: ignore[import-untyped]

    return nodes.literal


def publicDocstrings() -> List[Tuple[str, str]]:
    """
    The docstrings autodoc shows: each public name of the documented
    modules, and the public members classes define themselves.
    """
    seen: Set[int] = set()
    found = []
    for module in (mailclient.smtp, mailclient.relay, mailclient.relaymanager,
                   mailclient.testing, mailclient.interfaces):
        if module.__doc__:
            found.append((module.__name__, module.__doc__))
        for name in module.__all__:
            if name == "DNSNAME":
                continue
            obj = getattr(module, name)
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            doc = obj.__doc__ if (inspect.isclass(obj) or inspect.isfunction(obj)) else None
            if inspect.isclass(obj) and "__doc__" not in vars(obj):
                doc = None
            if doc:
                found.append(("%s.%s" % (module.__name__, name), doc))
            if inspect.isclass(obj) and not hasattr(obj, "names"):
                for attr, value in vars(obj).items():
                    if attr.startswith("_") and attr != "__init__":
                        continue
                    if isinstance(value, (staticmethod, classmethod)):
                        value = value.__func__
                    memberDoc = getattr(value, "__doc__", None)
                    if memberDoc and (inspect.isfunction(value) or isinstance(value, property)):
                        found.append(("%s.%s.%s" % (module.__name__, name, attr), memberDoc))
    return found


# ---------------------------------------------------------------------------
# The cookbook
# ---------------------------------------------------------------------------

#: A code block marked as a file (see .ci/docexamples.py).
_FILE = re.compile(
    r"^\.\. file: (\S+)\n\n\.\. code-block:: python\n\n((?:(?:    .*)?\n)+)", re.M)

#: Every file of docs/cookbook.rst, by the name the tests below use.
RECIPES = {
    "send-hello": "send_hello.py",
    "sendmail": "recipe_sendmail.py",
    "submission": "recipe_submission.py",
    "implicit-tls": "recipe_implicit_tls.py",
    "oauth2": "recipe_oauth2.py",
    "large-file": "recipe_large_file.py",
    "batch": "recipe_batch.py",
    "overlapping-batch": "recipe_overlapping_batch.py",
    "dsn": "recipe_dsn.py",
    "timeouts": "recipe_timeouts.py",
    "relay-queue": "recipe_relay_queue.py",
    "testing": "test_alerts.py",
}

MESSAGE = b"From: app@example.com\r\nSubject: test\r\n\r\nHello from the cookbook.\r\n"


def cookbookRecipes(testCase: SynchronousTestCase) -> Dict[str, str]:
    """
    The files of C{docs/cookbook.rst}: file name to code.
    """
    text = readDoc(testCase, "cookbook.rst")
    found = {}
    for match in _FILE.finditer(text):
        code = "\n".join(line[4:] for line in match.group(2).splitlines())
        testCase.assertNotIn(match.group(1), found, "duplicate file name")
        found[match.group(1)] = code.rstrip("\n") + "\n"
    return found


class CookbookTests(SMTPTestCaseMixin, TestCase):
    """
    Every recipe of C{docs/cookbook.rst} runs as printed: its code block is
    executed, and its function is called against an L{SMTPTestServer} on
    127.0.0.1, whose host, port and CA are passed in.
    """

    def recipe(self, name: str) -> Dict[str, Any]:
        recipes = cookbookRecipes(self)
        fileName = RECIPES[name]
        self.assertIn(fileName, recipes)
        namespace: Dict[str, Any] = {"__name__": "cookbook_" + fileName[:-3]}
        exec(compile(recipes[fileName], "docs/cookbook.rst[%s]" % (fileName,), "exec"),
             namespace)
        return namespace

    def test_everyRecipeTested(self) -> None:
        self.assertEqual(set(cookbookRecipes(self)), set(RECIPES.values()))

    def sendHello(self, host: str, port: int) -> Tuple[Any, List[str]]:
        """
        Run the first example's C{main} against C{host} and C{port}; return
        its Deferred and what it printed.
        """
        namespace = self.recipe("send-hello")
        printed: List[str] = []
        namespace["print"] = lambda *args, **kw: printed.append(" ".join(map(str, args)))
        return namespace["main"](reactor, host, str(port)), printed

    @defer.inlineCallbacks
    def test_sendHello(self) -> Any:
        """
        The first example is complete: it sends over TLS verified against
        the system's trust roots (here the test CA) for the host it names.
        """
        from mailclient.test.helpers import trustCA

        server = self.startSMTPServer()
        trustCA(self, server.caCertificatePEM)
        d, printed = self.sendHello("localhost", server.portNumber)
        yield d
        self.assertEqual(printed[0].split()[:2], ["alice@example.net", "250"])
        self.assertTrue(server.sessions[0].tls)
        self.assertDelivered(server, to="alice@example.net", containing=b"Hello from mailclient.")

    @defer.inlineCallbacks
    def test_sendHelloUnverified(self) -> Any:
        """
        A certificate the system does not trust: nothing is sent, the
        example says why and exits with 1.
        """
        server = self.startSMTPServer()
        d, printed = self.sendHello("localhost", server.portNumber)
        failure = yield self.assertFailure(d, SystemExit)
        self.assertEqual(failure.code, 1)
        self.assertTrue(printed[0].startswith("not sent:"), printed)
        self.assertNothingDelivered(server)

    @defer.inlineCallbacks
    def test_sendHelloUnreachable(self) -> Any:
        """
        An unreachable host fails the example at once: no retries, which
        would take 31 seconds.
        """
        server = self.startSMTPServer()
        port = server.portNumber
        yield server.stopListening()
        started = reactor.seconds()
        d, printed = self.sendHello("127.0.0.1", port)
        yield self.assertFailure(d, SystemExit)
        self.assertLess(reactor.seconds() - started, 5)
        self.assertIn("not sent:", printed[0])

    @defer.inlineCallbacks
    def test_sendmail(self) -> Any:
        server = self.startSMTPServer()
        sendWelcome = self.recipe("sendmail")["sendWelcome"]
        numOk, addresses = yield sendWelcome(
            "alice@example.net", "127.0.0.1", server.portNumber, server.clientTLSOptions())
        self.assertEqual(numOk, 1)
        self.assertEqual([(a, code) for a, code, _ in addresses], [(b"alice@example.net", 250)])
        message = self.assertDelivered(server, to="alice@example.net", from_="app@example.com",
                                       containing=b"Hello, and welcome!")
        self.assertIn(b"Subject: Welcome aboard =?utf-8?b?4pyT?=\r\n", message.data)
        self.assertTrue(server.sessions[0].tls)

    @defer.inlineCallbacks
    def test_sendmailNeverInClear(self) -> Any:
        """
        The recipe requires TLS: a server that does not offer STARTTLS gets
        nothing.
        """
        server = self.startSMTPServer(starttls=False)
        sendWelcome = self.recipe("sendmail")["sendWelcome"]
        d = sendWelcome("alice@example.net", "127.0.0.1", server.portNumber,
                        server.clientTLSOptions())
        yield self.assertFailure(d, TLSRequiredError)
        self.assertNothingDelivered(server)

    @defer.inlineCallbacks
    def test_submission(self) -> Any:
        """
        The server refuses MAIL before STARTTLS and AUTH, so delivery shows
        the recipe did both.
        """
        server = self.startSMTPServer(credentials={"alice@example.com": "app password"},
                                      requireTLS=True, requireAuth=True)
        submit = self.recipe("submission")["submit"]
        numOk, _ = yield submit(reactor, "alice@example.com", "app password",
                                "alice@example.com", ["bob@example.net"], MESSAGE,
                                host="127.0.0.1", port=server.portNumber,
                                contextFactory=server.clientTLSOptions())
        self.assertEqual(numOk, 1)
        self.assertDelivered(server, to="bob@example.net", containing=b"Hello from the cookbook.")
        self.assertTrue(server.sessions[0].tls)
        self.assertEqual(server.sessions[0].authenticated, b"alice@example.com")

    @defer.inlineCallbacks
    def test_submissionWrongPassword(self) -> Any:
        server = self.startSMTPServer(credentials={"alice@example.com": "app password"},
                                      requireTLS=True, requireAuth=True)
        submit = self.recipe("submission")["submit"]
        d = submit(reactor, "alice@example.com", "wrong", "alice@example.com",
                   ["bob@example.net"], MESSAGE, host="127.0.0.1", port=server.portNumber,
                   contextFactory=server.clientTLSOptions())
        failure = yield self.assertFailure(d, AUTHDeclinedError)
        self.assertNotIn(b"wrong", failure.log or b"")
        self.assertNothingDelivered(server)

    @defer.inlineCallbacks
    def test_implicitTLS(self) -> Any:
        """
        The listener speaks only TLS, so a delivery shows the recipe used
        implicit TLS; it did not use STARTTLS on top.
        """
        server = SMTPTestServer(credentials={"alice@example.com": "secret"})
        server.reactor = reactor
        port = reactor.listenSSL(0, server, server.tlsOptions, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(server.stopListening)
        sendOverTLS = self.recipe("implicit-tls")["sendOverTLS"]
        numOk, _ = yield sendOverTLS("alice@example.com", "secret", "alice@example.com",
                                     ["bob@example.net"], MESSAGE, host="127.0.0.1",
                                     port=port.getHost().port,
                                     contextFactory=server.clientTLSOptions())
        self.assertEqual(numOk, 1)
        self.assertDelivered(server, to="bob@example.net", containing=b"Hello from the cookbook.")
        self.assertNotIn(b"STARTTLS", server.sessions[0].commands)
        self.assertEqual(server.sessions[0].authenticated, b"alice@example.com")

    @defer.inlineCallbacks
    def test_oauth2(self) -> Any:
        server = self.startSMTPServer(credentials={"alice@gmail.com": "ya29.access-token"})
        sendWithOAuth2 = self.recipe("oauth2")["sendWithOAuth2"]
        numOk, _ = yield sendWithOAuth2("alice@gmail.com", "ya29.access-token",
                                        ["bob@example.net"], MESSAGE, host="127.0.0.1",
                                        port=server.portNumber,
                                        contextFactory=server.clientTLSOptions())
        self.assertEqual(numOk, 1)
        session = server.sessions[0]
        self.assertEqual(session.authenticated, b"alice@gmail.com")
        self.assertTrue(any(c.startswith(b"AUTH XOAUTH2 ") for c in session.commands))
        self.assertTrue(session.tls)
        self.assertDelivered(server, to="bob@example.net", from_="alice@gmail.com")

    @defer.inlineCallbacks
    def test_oauth2Refused(self) -> Any:
        server = self.startSMTPServer(credentials={"alice@gmail.com": "ya29.access-token"})
        sendWithOAuth2 = self.recipe("oauth2")["sendWithOAuth2"]
        d = sendWithOAuth2("alice@gmail.com", "expired-token", ["bob@example.net"], MESSAGE,
                           host="127.0.0.1", port=server.portNumber,
                           contextFactory=server.clientTLSOptions())
        yield self.assertFailure(d, AUTHDeclinedError)
        self.assertNothingDelivered(server)

    @defer.inlineCallbacks
    def test_oauth2TokenCallable(self) -> Any:
        """
        What the recipe says of C{token=}: a callable is asked for a token
        each time, with or without a password.
        """
        server = self.startSMTPServer(credentials={"alice@gmail.com": "ya29.fresh"})
        calls: List[int] = []

        def getToken() -> str:
            calls.append(1)
            return "ya29.fresh"

        numOk, _ = yield sendmail("127.0.0.1", "alice@gmail.com", ["bob@example.net"], MESSAGE,
                                  port=server.portNumber, username="alice@gmail.com",
                                  password="unused",
                                  authenticators=[XOAUTH2Authenticator("alice@gmail.com",
                                                                       token=getToken)],
                                  requireAuthentication=True,
                                  contextFactory=server.clientTLSOptions())
        self.assertEqual((numOk, calls), (1, [1]))
        numOk, _ = yield sendmail("127.0.0.1", "alice@gmail.com", ["bob@example.net"], MESSAGE,
                                  port=server.portNumber, username="alice@gmail.com",
                                  authenticators=[XOAUTH2Authenticator("alice@gmail.com",
                                                                       token=getToken)],
                                  requireAuthentication=True, retries=0,
                                  contextFactory=server.clientTLSOptions())
        self.assertEqual((numOk, calls), (1, [1, 1]))
        d = sendmail("127.0.0.1", "alice@gmail.com", ["bob@example.net"], MESSAGE,
                     port=server.portNumber, username="alice@gmail.com",
                     authenticators=[XOAUTH2Authenticator("alice@gmail.com")],
                     requireAuthentication=True, retries=0,
                     contextFactory=server.clientTLSOptions())
        yield self.assertFailure(d, AUTHRequiredError)

    @defer.inlineCallbacks
    def test_largeFile(self) -> Any:
        """
        A multi-megabyte file, with lines that need dot-stuffing, arrives
        exactly; the recipe closes it.
        """
        server = self.startSMTPServer()
        path = self.mktemp()
        line = b"." + b"x" * 70 + b"\r\n"
        body = b"Subject: big\r\n\r\n" + line * (3 * 1024 * 1024 // len(line))
        with open(path, "wb") as f:
            f.write(body)
        opened: List[Any] = []
        namespace = self.recipe("large-file")
        namespace["open"] = lambda *a: opened.append(open(*a)) or opened[-1]
        numOk, _ = yield namespace["sendFile"](path, "app@example.com", ["bob@example.net"],
                                               host="127.0.0.1", port=server.portNumber,
                                               contextFactory=server.clientTLSOptions())
        self.assertEqual(numOk, 1)
        [message] = server.messages
        self.assertEqual(len(message.data), len(body))
        self.assertEqual(message.data, body)
        self.assertTrue(opened[0].closed)

    @defer.inlineCallbacks
    def test_batch(self) -> Any:
        """
        Three messages go over one connection (pipelined, after STARTTLS);
        a refused one is reported and does not stop the others.
        """
        server = self.startSMTPServer()
        server.rcptReply("nobody@example.net", 550, b"5.1.1 no such user")
        sendBatch = self.recipe("batch")["sendBatch"]
        messages = [
            ("app@example.com", ["a@example.net"], b"Subject: 1\r\n\r\none\r\n"),
            ("app@example.com", ["nobody@example.net"], b"Subject: 2\r\n\r\ntwo\r\n"),
            ("app@example.com", ["b@example.net", "c@example.net"], b"Subject: 3\r\n\r\nthree\r\n"),
        ]
        results = yield sendBatch(reactor, messages, host="127.0.0.1", port=server.portNumber,
                                  contextFactory=server.clientTLSOptions())
        self.assertEqual([(to, code) for to, code, _ in results],
                         [(["a@example.net"], 250), (["nobody@example.net"], 550),
                          (["b@example.net", "c@example.net"], 250)])
        self.assertEqual(len(server.sessions), 1)
        session = server.sessions[0]
        self.assertTrue(session.tls)
        self.assertEqual([m.rcptTo for m in session.messages],
                         [[b"a@example.net"], [b"b@example.net", b"c@example.net"]])
        self.assertEqual(session.pipeliningViolations, [])
        self.assertEqual(session.commands[-1], b"QUIT")

    @defer.inlineCallbacks
    def test_batchError(self) -> Any:
        """
        A message that cannot be completed goes to C{sendError}, which the
        recipe records; the session ends there.
        """
        server = self.startSMTPServer()
        server.script("MAIL", [None, Disconnect()])
        sendBatch = self.recipe("batch")["sendBatch"]
        messages = [("app@example.com", [to], b"Subject: x\r\n\r\nx\r\n")
                    for to in ("a@example.net", "b@example.net", "c@example.net")]
        results = yield sendBatch(reactor, messages, host="127.0.0.1", port=server.portNumber,
                                  contextFactory=server.clientTLSOptions())
        self.assertEqual([(to, code) for to, code, _ in results],
                         [(["a@example.net"], 250), (["b@example.net"], -1)])
        self.assertEqual([m.rcptTo for m in server.messages], [[b"a@example.net"]])

    @defer.inlineCallbacks
    def test_batchVerifies(self) -> Any:
        """
        Without a context of its own the recipe verifies the certificate
        against the system's trust roots: the test server's is not trusted,
        so nothing is sent; nor is anything to a server without STARTTLS.
        """
        sendBatch = self.recipe("batch")["sendBatch"]
        messages = [("app@example.com", ["a@example.net"], b"Subject: x\r\n\r\nx\r\n")]
        for server in (self.startSMTPServer(), self.startSMTPServer(starttls=False)):
            results = yield sendBatch(reactor, list(messages), host="127.0.0.1",
                                      port=server.portNumber)
            self.assertEqual(len(results), 1)
            self.assertNothingDelivered(server)
            self.assertNotIn(b"AUTH", b"".join(server.sessions[0].commands))

    @defer.inlineCallbacks
    def test_overlappingBatchVerifies(self) -> Any:
        send = self.recipe("overlapping-batch")["sendOverlappingBatch"]
        server = self.startSMTPServer(
            extensions=["PIPELINING", "CHUNKING", "8BITMIME", "STARTTLS"])
        messages = [("app@example.com", ["a@example.net"], b"Subject: x\r\n\r\nx\r\n")]
        yield send(reactor, messages, host="127.0.0.1", port=server.portNumber)
        self.assertNothingDelivered(server)

    @defer.inlineCallbacks
    def test_overlappingBatch(self) -> Any:
        """
        With CHUNKING, each message after the first goes out behind an RSET
        before the previous one's replies; outcomes still match messages,
        a refused one included.
        """
        server = self.startSMTPServer(
            extensions=["PIPELINING", "CHUNKING", "8BITMIME", "STARTTLS"])
        server.rcptReply("nobody@example.net", 550, b"5.1.1 no such user")
        send = self.recipe("overlapping-batch")["sendOverlappingBatch"]
        messages = [
            ("app@example.com", [to], b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))
            for i, to in enumerate(["a@example.net", "b@example.net", "nobody@example.net",
                                    "c@example.net", "d@example.net"])
        ]
        results = yield send(reactor, messages, host="127.0.0.1", port=server.portNumber,
                             contextFactory=server.clientTLSOptions())
        self.assertEqual([(to, code) for to, code, _ in results],
                         [(m[1], 550 if m[1] == ["nobody@example.net"] else 250)
                          for m in messages])
        [session] = server.sessions
        self.assertTrue(session.tls)
        self.assertEqual([m.data for m in session.messages],
                         [m[2] for m in messages if m[1] != ["nobody@example.net"]])
        # Overlapped: an RSET ahead of every message after the first.
        self.assertEqual(session.commands.count(b"RSET"), len(messages) - 1)
        self.assertEqual(session.pipeliningViolations, [])

    @defer.inlineCallbacks
    def test_overlappingBatchLost(self) -> Any:
        """
        A connection lost with messages in flight: each started message is
        recorded once, the rest stay unsent.
        """
        server = self.startSMTPServer(
            extensions=["PIPELINING", "CHUNKING", "8BITMIME", "STARTTLS"])
        server.script("MAIL", [None, None, Disconnect()])
        send = self.recipe("overlapping-batch")["sendOverlappingBatch"]
        messages = [("app@example.com", [to], b"Subject: x\r\n\r\nx\r\n")
                    for to in ("a@example.net", "b@example.net", "c@example.net",
                               "d@example.net", "e@example.net")]
        results = yield send(reactor, messages, host="127.0.0.1", port=server.portNumber,
                             contextFactory=server.clientTLSOptions())
        recorded = [to[0] for to, code, _ in results]
        self.assertEqual(recorded, sorted(set(recorded)))
        delivered = [to[0] for to, code, _ in results if code == 250]
        self.assertEqual([m.rcptTo[0].decode() for m in server.messages], delivered)
        self.assertIn(-1, [code for _, code, _ in results])

    @defer.inlineCallbacks
    def test_dsn(self) -> Any:
        server = self.startSMTPServer(extensions=["PIPELINING", "8BITMIME", "DSN", "STARTTLS"])
        sendWithReceipt = self.recipe("dsn")["sendWithReceipt"]
        numOk, _ = yield sendWithReceipt(42, "bob@example.net", MESSAGE, host="127.0.0.1",
                                         port=server.portNumber,
                                         contextFactory=server.clientTLSOptions())
        self.assertEqual(numOk, 1)
        [message] = server.messages
        self.assertEqual(message.mailParams[b"RET"], b"HDRS")
        self.assertEqual(message.mailParams[b"ENVID"], b"order-42")
        self.assertEqual(message.rcptParams[0][b"NOTIFY"], b"SUCCESS,FAILURE,DELAY")
        self.assertEqual(message.rcptParams[0][b"ORCPT"], b"rfc822;bob@example.net")

    @defer.inlineCallbacks
    def test_dsnRequired(self) -> Any:
        """
        C{requireDSN}: a server without DSN does not get the message.
        """
        server = self.startSMTPServer(extensions=["PIPELINING", "8BITMIME", "STARTTLS"])
        sendWithReceipt = self.recipe("dsn")["sendWithReceipt"]
        d = sendWithReceipt(42, "bob@example.net", MESSAGE, host="127.0.0.1",
                            port=server.portNumber, contextFactory=server.clientTLSOptions())
        yield self.assertFailure(d, CannotSendError)
        self.assertNothingDelivered(server)

    @defer.inlineCallbacks
    def test_timeouts(self) -> Any:
        server = self.startSMTPServer()
        send = self.recipe("timeouts")["sendBeforeTheUserGivesUp"]
        numOk, _ = yield send("bob@example.net", MESSAGE, host="127.0.0.1",
                              port=server.portNumber, contextFactory=server.clientTLSOptions())
        self.assertEqual(numOk, 1)
        self.assertDelivered(server, to="bob@example.net")

    def test_timeoutsExpire(self) -> None:
        """
        In memory: a server that never answers MAIL fails the recipe's
        Deferred with L{SMTPTimeoutError} after 30 seconds of its clock.
        """
        namespace = self.recipe("timeouts")
        server = SMTPTestServer()
        server.script("MAIL", NoReply())
        clock = MemoryReactorClock()
        results: List[Any] = []
        namespace["sendBeforeTheUserGivesUp"](
            "bob@example.net", MESSAGE, contextFactory=server.clientTLSOptions(),
            reactor=clock).addBoth(results.append)
        connection = server.connectPending(clock)
        self.assertTrue(server.sessions[0].tls)
        connection.advance(29)
        self.assertEqual(results, [])
        connection.advance(1)
        self.assertEqual(len(results), 1)
        results[0].trap(SMTPTimeoutError)
        self.assertEqual(namespace["INTERACTIVE"].mail, 30)

    @defer.inlineCallbacks
    def test_relayQueue(self) -> Any:
        server = self.startSMTPServer()
        directory = self.mktemp()
        os.makedirs(directory)
        relayQueue = self.recipe("relay-queue")["relayQueue"]
        d = relayQueue(directory, host="127.0.0.1", port=server.portNumber,
                       contextFactory=server.clientTLSOptions(), reactor=reactor)
        self.assertIsNotNone(d)
        yield d
        self.assertDelivered(server, to="alice@example.net", from_="app@example.com",
                             containing=b"Sent later.")
        self.assertTrue(server.sessions[0].tls)
        self.assertEqual(server.sessions[0].helo, b"app.example.com")
        # No message is left: only the relaying lock the manager held.
        self.assertEqual(os.listdir(directory), [".relaying.lock"])

    @defer.inlineCallbacks
    def test_relayQueueVerifies(self) -> Any:
        """
        Without a context of its own the recipe verifies the smart host's
        certificate: one the system does not trust gets nothing, and the
        message stays in the queue for the next attempt.
        """
        server = self.startSMTPServer()
        directory = self.mktemp()
        os.makedirs(directory)
        relayQueue = self.recipe("relay-queue")["relayQueue"]
        yield relayQueue(directory, host="127.0.0.1", port=server.portNumber,
                         reactor=reactor)
        self.assertNothingDelivered(server)
        self.assertTrue(server.sessions[0].tls)
        queued = mailclient.relaymanager.Queue(directory)
        queued.readDirectory()
        self.assertEqual(len(queued.getWaiting()), 1)

    @defer.inlineCallbacks
    def test_relayQueueWithoutSTARTTLS(self) -> Any:
        """
        What the recipe says: a smart host that offers no STARTTLS still
        gets the message, in clear.
        """
        server = self.startSMTPServer(starttls=False)
        directory = self.mktemp()
        os.makedirs(directory)
        relayQueue = self.recipe("relay-queue")["relayQueue"]
        yield relayQueue(directory, host="127.0.0.1", port=server.portNumber,
                         reactor=reactor)
        self.assertDelivered(server, to="alice@example.net")
        self.assertFalse(server.sessions[0].tls)

    def test_testing(self) -> None:
        """
        The example test case passes; and it fails if the code under test
        sends the alert elsewhere, so its assertions are real.
        """
        namespace = self.recipe("testing")
        suite = pyunit.TestLoader().loadTestsFromTestCase(namespace["AlertTests"])
        result = reporter.TestResult()
        suite.run(result)
        self.assertEqual((result.testsRun, result.errors, result.failures), (2, [], []))

        original = namespace["alertAdmin"]
        namespace["alertAdmin"] = lambda reactor, text: original(reactor, b"something else")
        result = reporter.TestResult()
        namespace["AlertTests"]("test_sent").run(result)
        self.assertEqual(len(result.failures), 1)


# ---------------------------------------------------------------------------
# The upgrading page
# ---------------------------------------------------------------------------


class UpgradingTests(SynchronousTestCase):
    """
    C{docs/upgrading.rst} states the defaults that differ from Twisted's and
    the switches that restore its behaviour: the defaults are those of the
    code, and each switch is accepted and delivers.
    """

    def test_inToctree(self) -> None:
        self.assertIn("\n   upgrading\n", readDoc(self, "index.rst"))
        text = readDoc(self, "upgrading.rst")
        for switch in ("opportunisticTLS = False", "tls=False", "allowCleartextAuthentication=True",
                       "timeout=None", "minimumRate=None", "resetAfterEveryMessage = True",
                       "retry=RetryPolicy(retries=5, immediate=5, deadline=None)",
                       "maxQueueLifetime = None", "noisy = True", "pipelining=False",
                       "chunking=False", "allowEightBitWithout8BITMIME=True",
                       "TLSPolicy(TLSLevel.NONE)", ".relaying.lock", "starttls=True"):
            self.assertIn(switch, " ".join(text.split()), switch)

    def test_defaults(self) -> None:
        """
        The numbers the page gives.
        """
        from mailclient.relaymanager import ESMTPManagedRelayer, SmartHostESMTPRelayingManager
        from mailclient.smtp import ESMTPClient, ESMTPSenderFactory, RetryPolicy, Timeouts

        self.assertTrue(ESMTPClient.opportunisticTLS)
        self.assertFalse(ESMTPClient.allowCleartextAuthentication)
        self.assertFalse(ESMTPClient.resetAfterEveryMessage)
        self.assertTrue(ESMTPClient.pipelining and ESMTPClient.chunking)
        self.assertFalse(ESMTPSenderFactory.noisy)
        self.assertEqual(ESMTPManagedRelayer.timeout, 600)
        limits = Timeouts()
        self.assertEqual((limits.greeting, limits.mail, limits.rcpt, limits.dataInit,
                          limits.dataBlock, limits.dataTermination),
                         (300, 300, 300, 120, 180, 600))
        self.assertEqual((limits.minimumRate, limits.rateGrace), (1024, 60))
        retry = RetryPolicy()
        self.assertEqual((retry.retries, retry.immediate, retry.delay, retry.factor,
                          retry.maxDelay, retry.deadline), (5, 1, 1, 2, 60, 300))
        manager = SmartHostESMTPRelayingManager
        self.assertEqual((manager.backoffDelay, manager.backoffFactor, manager.maxBackoffDelay,
                          manager.maxQueueLifetime, manager.maxAddresses),
                         (30, 2, 3600, 5 * 24 * 60 * 60, 5))

    def test_switchesAccepted(self) -> None:
        """
        Each option the page gives is accepted by C{sendmail}, and the mail
        still goes.
        """
        from mailclient.smtp import MailOptions, RetryPolicy, Timeouts, TLSLevel, TLSPolicy

        allOptions: List[Dict[str, Any]] = [
            {"tls": False},
            {"tlsPolicy": TLSPolicy(TLSLevel.NONE)},
            {"tlsPolicy": TLSPolicy(TLSLevel.ENCRYPT)},
            {"allowCleartextAuthentication": True},
            {"timeout": None},
            {"timeouts": Timeouts(minimumRate=None)},
            {"retry": RetryPolicy(retries=5, immediate=5, deadline=None)},
            {"retries": 0},
            {"pipelining": False, "chunking": False},
            {"mailOptions": MailOptions(allowEightBitWithout8BITMIME=True)},
        ]
        for options in allOptions:
            tlsOptions = "tls" in options or "tlsPolicy" in options
            # A server offering STARTTLS for the TLS switches (its test
            # certificate would not verify for sendmail otherwise).
            server = SMTPTestServer(extensions=["PIPELINING", "CHUNKING"], starttls=tlsOptions)
            clock = MemoryReactorClock()
            results: List[Any] = []
            sendmail("mail.example.com", "a@example.com", ["b@example.com"], MESSAGE,
                     reactor=clock, **options).addBoth(results.append)
            server.connectPending(clock)
            self.assertEqual(len(results), 1, options)
            self.assertEqual(results[0][0], 1, (options, results[0]))
            tls = server.sessions[0].tls
            self.assertEqual(tls, "tlsPolicy" in options and options["tlsPolicy"].level
                             is TLSLevel.ENCRYPT, options)

    def test_twistedOrderOfRetries(self) -> None:
        """
        C{RetryPolicy(retries=5, immediate=5, deadline=None)} retries at
        once every time, as Twisted does.
        """
        from mailclient.smtp import RetryPolicy

        policy = RetryPolicy(retries=5, immediate=5, deadline=None)
        self.assertEqual([policy.nextDelay(n, elapsed=1000) for n in range(1, 7)],
                         [0, 0, 0, 0, 0, None])


# ---------------------------------------------------------------------------
# The internals page
# ---------------------------------------------------------------------------

_HANDLER = re.compile(
    r"\b((?:smtpState|esmtpState)_[A-Za-z]+|esmtp[A-Z][A-Za-z]+|smtp(?:Connection|Transfer)Failed"
    r"|tryTLS|authenticate|_pipelinedReply|_bdatReply|_disconnectFromServer)\b")


class InternalsTests(SynchronousTestCase):
    """
    C{docs/internals.rst} keeps up with the code: its diagrams name every
    state handler, and only existing ones; its module map names every
    module.
    """

    def diagrams(self) -> str:
        text = readDoc(self, "internals.rst")
        blocks = re.findall(r"^\.\. code-block:: text\n\n((?:(?:    .*)?\n)+)", text, re.M)
        self.assertEqual(len(blocks), 2)
        return "".join(blocks)

    def test_everyStateHandlerDrawn(self) -> None:
        from mailclient.smtp import ESMTPClient, SMTPClient

        import mailclient._protocol.esmtp
        import mailclient._protocol.pipeline

        diagrams = self.diagrams()
        # The handlers: methods of the classes, and mailclient's own steps,
        # which are functions of the modules (out of subclasses' way).
        places = (SMTPClient, ESMTPClient, mailclient._protocol.esmtp,
                  mailclient._protocol.pipeline)
        handlers = {name for place in places for name in vars(place)
                    if _HANDLER.fullmatch(name) and callable(getattr(place, name))}
        self.assertGreater(len(handlers), 25)
        self.assertEqual({h for h in handlers if not re.search(r"\b%s\b" % h, diagrams)}, set())
        drawn = set(_HANDLER.findall(diagrams))
        self.assertEqual(
            {h for h in drawn if not any(hasattr(p, h) for p in places)}, set())

    def test_hooksExist(self) -> None:
        from mailclient.smtp import ESMTPClient

        text = readDoc(self, "internals.rst")
        table = text[text.index("\nHooks\n"):text.index("\nModule map\n")]
        hooks = re.findall(r"^``(\w+)", table, re.M)
        self.assertGreater(len(hooks), 10)
        for hook in hooks:
            self.assertTrue(hasattr(ESMTPClient, hook), hook)

    def test_moduleMap(self) -> None:
        import pkgutil

        text = readDoc(self, "internals.rst")
        table = text[text.index("\nModule map\n"):]
        named = set(re.findall(r"^``mailclient\.([\w.]+)``", table, re.M))
        package = os.path.dirname(os.path.abspath(mailclient.smtp.__file__))
        modules = {
            m.name[len("mailclient."):]
            for m in pkgutil.walk_packages([package], prefix="mailclient.")
            if not m.ispkg and m.name.split(".")[1] != "test"
        }
        self.assertEqual(modules - named, set(), "modules missing from the module map")
        self.assertEqual(named - modules, set(), "the module map names modules that do not exist")
