"""
Tests for C{.ci/docexamples.py}, the CI step that copies the code of
C{docs/testing.rst} and C{docs/cookbook.rst} into a fresh project and runs
it: how it reads the markers, that every marked file is used, and (with this
interpreter, leaving out what needs pytest-twisted if it is missing) that the
copied project passes.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import os
import subprocess
import sys
import textwrap
from types import ModuleType
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, ".ci", "docexamples.py")


def loadScript(testCase: SynchronousTestCase) -> ModuleType:
    if not (os.path.exists(SCRIPT) and os.path.isdir(os.path.join(ROOT, "docs"))):
        testCase.skipTest(".ci/docexamples.py and docs/ are only in a checkout")
    spec = importlib.util.spec_from_file_location("_mailclient_docexamples", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # for its NamedTuple
    spec.loader.exec_module(module)
    return module


PAGE = textwrap.dedent("""\
    Title
    =====

    .. file: test_one.py

    .. code-block:: python

        def test_one():
            assert True

    A fragment:

    .. code-block:: python

        sendmail(host, sender, [recipient], message)

    .. code-block:: text

        not python

    .. file: helper.py

    .. code-block:: python
       :caption: with an option

        VALUE = 1
    """)


class MarkerTests(SynchronousTestCase):
    """
    How code blocks are marked and read.
    """

    def setUp(self) -> None:
        self.script = loadScript(self)

    def test_blocks(self) -> None:
        blocks = self.script.blocks(PAGE, "page.rst")
        self.assertEqual([(b.name, b.language) for b in blocks],
                         [("test_one.py", "python"), (None, "python"), (None, "text"),
                          ("helper.py", "python")])
        self.assertEqual(blocks[0].code, "def test_one():\n    assert True\n")
        self.assertEqual(blocks[3].code, "VALUE = 1\n")
        self.assertEqual(blocks[0].line, 6)

    def test_markerWithoutBlock(self) -> None:
        page = PAGE.replace(".. file: helper.py\n\n", ".. file: helper.py\n\nText.\n\n")
        with self.assertRaises(self.script.MarkupError) as caught:
            self.script.blocks(page, "page.rst")
        self.assertIn("page.rst:21: '.. file: helper.py' is not followed", str(caught.exception))

    def test_markedTwice(self) -> None:
        page = PAGE.replace("helper.py", "test_one.py")
        self.assertRaises(self.script.MarkupError, self.script.blocks, page, "page.rst")

    def test_fragmentsCompiled(self) -> None:
        blocks = self.script.blocks(PAGE + "\n.. code-block:: python\n\n    def (:\n", "p.rst")
        errors = self.script.checkFragments(blocks)
        self.assertEqual(len(errors), 1)
        self.assertTrue(errors[0].startswith("p.rst:28: "), errors)

    def test_imports(self) -> None:
        self.assertEqual(
            self.script.imports("import a.b, c\nfrom d.e import f\nfrom . import g\n"),
            ["a.b", "c", "d.e"])


class DocumentationFilesTests(SynchronousTestCase):
    """
    The marked files of the two pages: all complete, all used.
    """

    def setUp(self) -> None:
        self.script = loadScript(self)
        self.files = self.script.files()

    def test_everyFileUsed(self) -> None:
        """
        A marked file is a test file, or the checks of C{.ci/examples}
        import or run it: none is copied and then ignored.
        """
        checks = ""
        for name in os.listdir(self.script.CHECKS):
            if name.endswith(".py"):
                with open(os.path.join(self.script.CHECKS, name), encoding="utf-8") as f:
                    checks += f.read()
        used = set(self.script.imports(checks))
        for name in self.files:
            if name.startswith("test_"):
                continue
            self.assertTrue(name[:-3] in used or '"%s"' % (name,) in checks, name)

    def test_filesAreComplete(self) -> None:
        """
        Every name a marked file uses is defined in it, imported, or a
        builtin (the cookbook's first example used to call a function of
        another recipe).
        """
        import builtins

        for name, code in self.files.items():
            tree = ast.parse(code)
            defined = set(dir(builtins)) | {"__file__", "__name__"}
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    defined.add(node.name)
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    defined.update((a.asname or a.name).split(".")[0] for a in node.names)
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    defined.add(node.id)
                elif isinstance(node, ast.arg):
                    defined.add(node.arg)
                elif isinstance(node, ast.ExceptHandler) and node.name:
                    defined.add(node.name)
            used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                    and isinstance(n.ctx, ast.Load)}
            self.assertEqual(used - defined, set(), name)

    def test_firstCookbookExample(self) -> None:
        """
        The cookbook's first code block is a complete script.
        """
        blocks = [b for b in self.script.pageBlocks() if b.page == "docs/cookbook.rst"]
        self.assertEqual(blocks[0].name, "send_hello.py")
        self.assertIn('if __name__ == "__main__":', blocks[0].code)

    def test_pages(self) -> None:
        names = set(self.files)
        self.assertTrue({"test_trial_example.py", "test_pytest_example.py",
                         "test_pytest_loopback.py", "send_hello.py",
                         "recipe_sendmail.py", "test_alerts.py"} <= names, names)


class CopiedProjectTests(SynchronousTestCase):
    """
    The copy step itself, with this interpreter.
    """

    def test_run(self) -> None:
        """
        The copied project passes (what needs pytest-twisted is left out
        when it is not installed; CI installs it).
        """
        script = loadScript(self)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        result = subprocess.run(
            [sys.executable, SCRIPT, "--skip-unavailable"], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=300)
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, output)
        self.assertIn("doc examples: OK", output)
        self.assertIn("%d files from docs/testing.rst and docs/cookbook.rst"
                      % (len(script.files()),), output)
        self.assertIn("PASSED", output)  # trial ran

    def test_failureReported(self) -> None:
        """
        A failing test file fails the step.
        """
        script = loadScript(self)
        project = self.mktemp()
        os.makedirs(project)
        with open(os.path.join(project, "test_fails.py"), "w") as f:
            f.write("def test_fails():\n    assert False\n")
        out = io.StringIO()
        self.assertNotEqual(script.run(project, out=out), 0)
        self.assertIn("1 failed", out.getvalue())

    def test_deprecationWarningsAreErrors(self) -> None:
        script = loadScript(self)
        project = self.mktemp()
        os.makedirs(project)
        with open(os.path.join(project, "test_warns.py"), "w") as f:
            f.write("import warnings\n\ndef test_warns():\n"
                    "    warnings.warn('old', DeprecationWarning)\n")
        out: Any = io.StringIO()
        self.assertNotEqual(script.run(project, out=out), 0)
        self.assertIn("DeprecationWarning", out.getvalue())
