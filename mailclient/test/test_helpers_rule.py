"""
Test helpers live in L{mailclient.test.helpers} (or a C{helpers_<topic>}
module next to it), never in a test module: no module of
C{mailclient.test} imports a C{test_*} module other than itself.

A test module that imports another one runs (and, under some runners,
collects) that module's tests a second time, and ties the two modules
together: moving or deleting a test then breaks an unrelated one.
"""

from __future__ import annotations

import ast
import glob
import importlib
import inspect
import os
import unittest
from typing import List, Optional, Tuple

from twisted.trial.unittest import SynchronousTestCase

PACKAGE = "mailclient.test"
TEST_DIRECTORY = os.path.dirname(os.path.abspath(__file__))


def _absolute(
    importer: str, isPackage: bool, level: int, module: Optional[str]
) -> str:
    """
    The absolute name of the module named by an import statement of module
    C{importer}: C{module} (possibly L{None}) with C{level} leading dots.
    """
    if level == 0:
        return module or ""
    parts = importer.split(".")
    if not isPackage:
        parts = parts[:-1]
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    if module:
        parts += module.split(".")
    return ".".join(parts)


def isTestModule(name: str) -> bool:
    """
    Whether C{name} is a test module of L{PACKAGE} (or something inside
    one), such as C{mailclient.test.test_esmtp}.
    """
    prefix = PACKAGE + "."
    return name.startswith(prefix) and name[len(prefix) :].startswith("test_")


def importedTestModules(
    source: str, importer: str, isPackage: bool = False
) -> List[Tuple[int, str]]:
    """
    The test modules that the source of module C{importer} imports, other
    than C{importer} itself: C{(line, module name)} for each, from every
    C{import} and C{from ... import} statement anywhere in the source
    (module level, functions, classes, conditionals).
    """
    found: List[Tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        names: List[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(importer, isPackage, node.level, node.module)
            # "from mailclient.test import test_esmtp" imports a module too.
            names = [base] + [base + "." + alias.name for alias in node.names]
        for name in names:
            if not isTestModule(name):
                continue
            target = PACKAGE + "." + name[len(PACKAGE) + 1 :].split(".")[0]
            if target != importer:
                found.append((node.lineno, target))
    return sorted(set(found))


def packageModules() -> List[Tuple[str, str, bool]]:
    """
    C{(path, module name, is a package)} of every module of L{PACKAGE}.
    """
    modules = []
    for path in sorted(glob.glob(os.path.join(TEST_DIRECTORY, "*.py"))):
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem == "__init__":
            modules.append((path, PACKAGE, True))
        else:
            modules.append((path, PACKAGE + "." + stem, False))
    return modules


class HelpersRuleTests(SynchronousTestCase):
    """
    Test modules import helpers from the helpers modules only.
    """

    def test_noTestModuleImportsAnother(self) -> None:
        """
        No module of C{mailclient.test} (test modules, helpers modules and
        the rest) imports a test module other than itself.
        """
        modules = packageModules()
        names = [name for _, name, _ in modules]
        self.assertIn(__name__, names)
        self.assertIn(PACKAGE + ".helpers", names)
        self.assertGreater(len([n for n in names if isTestModule(n)]), 10)
        violations = []
        for path, name, isPackage in modules:
            with open(path, encoding="utf-8") as f:
                source = f.read()
            for line, target in importedTestModules(source, name, isPackage):
                violations.append(
                    "%s:%d imports %s" % (os.path.basename(path), line, target)
                )
        self.assertEqual(
            violations,
            [],
            "test helpers belong in mailclient/test/helpers.py (or a "
            "helpers_<topic>.py module), not in a test module",
        )

    def test_detectsViolations(self) -> None:
        """
        L{importedTestModules} finds imports of another test module in every
        form, at any depth, and nothing else; a module may import itself.
        """
        source = "\n".join(
            [
                "import os",
                "import mailclient.testing",
                "from mailclient.test.helpers import lines",
                "from mailclient.test.test_esmtp import LOOPBACK",
                "",
                "def f():",
                "    import mailclient.test.test_relay as relay",
                "    from mailclient.test import helpers, test_mx",
                "    import mailclient.test.test_example as module",
                "",
                "class C:",
                "    if True:",
                "        from .test_sender import trustCA",
                "        from . import test_interop",
                "        from ..test.test_sasl import X",
                "        from .test_example import Y",
                "        from .helpers_relay import Z",
            ]
        )
        self.assertEqual(
            importedTestModules(source, "mailclient.test.test_example"),
            [
                (4, "mailclient.test.test_esmtp"),
                (7, "mailclient.test.test_relay"),
                (8, "mailclient.test.test_mx"),
                (13, "mailclient.test.test_sender"),
                (14, "mailclient.test.test_interop"),
                (15, "mailclient.test.test_sasl"),
            ],
        )

    def test_selfImportAllowed(self) -> None:
        """
        A test module importing itself (as C{test_soak} does, to find its
        own tests) is not a violation; a helpers module or the package
        importing a test module is.
        """
        source = "def f():\n    import mailclient.test.test_soak as module\n"
        self.assertEqual(importedTestModules(source, "mailclient.test.test_soak"), [])
        self.assertEqual(
            importedTestModules(source, "mailclient.test.helpers"),
            [(2, "mailclient.test.test_soak")],
        )
        self.assertEqual(
            importedTestModules("from . import test_soak\n", PACKAGE, isPackage=True),
            [(1, "mailclient.test.test_soak")],
        )

    def test_helpersHoldNoTests(self) -> None:
        """
        The helpers modules define no test case classes (mixins and fakes
        are fine), so no runner collects tests from them.
        """
        helpers = [name for _, name, _ in packageModules() if name.split(".")[-1].startswith("helpers")]
        self.assertIn(PACKAGE + ".helpers", helpers)
        for name in helpers:
            module = importlib.import_module(name)
            cases = [
                cls.__name__
                for cls in vars(module).values()
                if inspect.isclass(cls)
                and cls.__module__ == name
                and issubclass(cls, unittest.TestCase)
            ]
            self.assertEqual(cases, [], name)
