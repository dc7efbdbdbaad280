"""
The examples of C{docs/pool.rst} run as printed: each code block marked as
a file is executed (the asyncio one in a process of its own, since it
installs its reactor) against an L{SMTPTestServer} on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Dict, List

from twisted.internet import defer, reactor, utils
from twisted.trial.unittest import TestCase

from mailclient.test.helpers_pool import makePool, startServer
from mailclient.testing import Reply

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE = os.path.join(ROOT, "docs", "pool.rst")

#: A code block marked as a file (the convention of docs/cookbook.rst).
_FILE = re.compile(
    r"^\.\. file: (\S+)\n\n\.\. code-block:: python\n\n((?:(?:    .*)?\n)+)", re.M)

EXAMPLES = {"pool_notify.py", "pool_async.py", "pool_asyncio.py"}


def examples(case: TestCase) -> Dict[str, str]:
    if not os.path.exists(PAGE):
        raise case.skipTest("docs/pool.rst is only in a checkout")
    with open(PAGE, encoding="utf-8") as f:
        text = f.read()
    found = {}
    for match in _FILE.finditer(text):
        code = "\n".join(line[4:] for line in match.group(2).splitlines())
        found[match.group(1)] = code.rstrip("\n") + "\n"
    return found


class PoolExampleTests(TestCase):
    """
    The examples of C{docs/pool.rst}.
    """

    def load(self, name: str) -> Dict[str, Any]:
        code = examples(self)[name]
        printed: List[str] = []
        namespace: Dict[str, Any] = {"__name__": "pool_example",
                                     "print": lambda *a, **kw: printed.append(
                                         " ".join(map(str, a)))}
        exec(compile(code, "docs/pool.rst[%s]" % (name,), "exec"), namespace)
        namespace["printed"] = printed
        return namespace

    def test_everyExampleTested(self) -> None:
        self.assertEqual(set(examples(self)), EXAMPLES)

    @defer.inlineCallbacks
    def test_notifyAll(self) -> Any:
        server = startServer(self, starttls=False)
        namespace = self.load("pool_notify.py")
        pool = makePool(self, server)
        failed = yield namespace["notifyAll"](
            pool, ["alice@example.net", "bob@@example.net", "carol@example.net"])
        self.assertEqual(failed, ["bob@@example.net"])
        self.assertEqual(sorted(m.rcptTo for m in server.messages),
                         [[b"alice@example.net"], [b"carol@example.net"]])
        self.assertEqual({m.mailFrom for m in server.messages}, {b"notify@example.com"})

    @defer.inlineCallbacks
    def test_notifyMain(self) -> Any:
        server = startServer(self, starttls=False)
        namespace = self.load("pool_notify.py")
        yield namespace["main"](reactor, "127.0.0.1", str(server.portNumber))
        self.assertEqual(namespace["printed"], ["failed for: []"])
        self.assertEqual(len(server.messages), 2)
        self.assertEqual(server.sessions[-1].commands[-1], b"QUIT")

    @defer.inlineCallbacks
    def test_async(self) -> Any:
        server = startServer(self, starttls=False)
        namespace = self.load("pool_async.py")
        sent = yield defer.Deferred.fromCoroutine(
            namespace["main"](reactor, "127.0.0.1", str(server.portNumber)))
        self.assertTrue(sent)
        self.assertEqual(server.messages[0].rcptTo, [b"dev@example.net", b"qa@example.net"])
        self.assertTrue(namespace["printed"][0].startswith(
            "sent to ['dev@example.net', 'qa@example.net'] reply:"))

    @defer.inlineCallbacks
    def test_asyncRefused(self) -> Any:
        server = startServer(self, starttls=False)
        server.script("MAIL", Reply(550, b"5.7.1 Not you"))
        namespace = self.load("pool_async.py")
        sent = yield defer.Deferred.fromCoroutine(
            namespace["main"](reactor, "127.0.0.1", str(server.portNumber)))
        self.assertFalse(sent)
        self.assertEqual(namespace["printed"], ["not sent: 550 5.7.1 Not you"])

    @defer.inlineCallbacks
    def test_asyncio(self) -> Any:
        """
        The asyncio example, run as a script with its own reactor.
        """
        server = startServer(self, starttls=False)
        script = self.mktemp() + ".py"
        with open(script, "w", encoding="utf-8") as f:
            f.write(examples(self)["pool_asyncio.py"])
        env = dict(os.environ, PYTHONPATH=ROOT)
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, [script, "127.0.0.1", str(server.portNumber)], env=env)
        self.assertEqual((code, out.decode()), (0, "accepted: 1\n"), err.decode())
        self.assertEqual(server.messages[0].rcptTo, [b"alice@example.net"])


class EventTableTests(TestCase):
    """
    The table of C{docs/pool.rst} documents every field of the delivery
    event, and only those.
    """

    def test_fields(self) -> None:
        from mailclient._protocol.events import deliveryEvent
        from mailclient._wire.delivery import Outcome

        if not os.path.exists(PAGE):
            raise self.skipTest("docs/pool.rst is only in a checkout")
        with open(PAGE, encoding="utf-8") as f:
            text = f.read()
        section = text[text.index("\nThe delivery event\n"):text.index("\nMetrics\n")]
        borders = [m.start() for m in re.finditer(r"^=====", section, re.M)]
        table = section[borders[0]:borders[1]]
        documented = set(re.findall(r"^``(\w+)``", table, re.M))
        fields = set(deliveryEvent(host="h", port=25, outcome=Outcome.DELIVERED))
        self.assertEqual(documented | {"mailclient_event"}, fields)
        self.assertIn("``mailclient_event``", section)
