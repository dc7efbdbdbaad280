"""
The pure layer stays pure: nothing in C{mailclient._wire} (nor the other
modules listed in L{PURE}) imports Twisted, at module level or inside a
function, directly or through another mailclient module.
"""

from __future__ import annotations

import ast
import os
import pkgutil
from typing import Dict, List, Set

from twisted.trial.unittest import SynchronousTestCase

import mailclient

PACKAGE = os.path.dirname(os.path.abspath(mailclient.__file__))

#: Pure modules outside the wire layer (they serve only relaying, or are
#: the interfaces every layer shares).
PURE = {"mailclient._relaying.bounce", "mailclient.interfaces"}


def pureModules() -> Set[str]:
    wire = os.path.join(PACKAGE, "_wire")
    names = {"mailclient._wire." + m.name for m in pkgutil.iter_modules([wire])}
    return names | PURE


def sourceOf(module: str) -> str:
    path = os.path.join(PACKAGE, *module.split(".")[1:]) + ".py"
    with open(path, encoding="utf-8") as f:
        return f.read()


def importsOf(module: str) -> List[str]:
    """
    Every module C{module} imports, anywhere in its source.
    """
    found = []
    for node in ast.walk(ast.parse(sourceOf(module))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            if node.module == "mailclient":
                found.extend("mailclient." + alias.name for alias in node.names)
    return found


class PurityTests(SynchronousTestCase):
    def test_wireLayerExists(self) -> None:
        self.assertGreaterEqual(len(pureModules()), 20)

    def test_noTwisted(self) -> None:
        """
        No pure module imports Twisted (C{zope.interface} is not Twisted),
        nor a mailclient module that is not pure itself.
        """
        pure = pureModules()
        problems: Dict[str, List[str]] = {}
        for module in sorted(pure):
            for imported in importsOf(module):
                top = imported.split(".")[0]
                if top == "twisted" or (top == "mailclient" and imported not in pure):
                    problems.setdefault(module, []).append(imported)
        self.assertEqual(problems, {})

    def test_theCheckCanFail(self) -> None:
        """
        The check sees imports inside functions too.
        """
        source = "def f():\n    from twisted.internet import reactor\n"
        found = [n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)]
        self.assertEqual(found, ["twisted.internet"])
