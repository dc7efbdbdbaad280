"""
Check that the code users copy from the documentation runs as printed.

Usage (CI runs it with the interpreter of a fresh virtual environment that
has only mailclient, installed from the checkout without extras, pytest and
pytest-twisted):

    python .ci/docexamples.py [--keep DIR] [--skip-unavailable]

How code blocks are marked, in docs/testing.rst and docs/cookbook.rst (the
marker is a reST comment, so readers of the built pages do not see it):

    .. file: test_welcome.py

    .. code-block:: python

        import pytest
        ...

A ``python`` code block right after a ``.. file: NAME`` comment (one blank
line between) is a complete file.  It is written, dedented, as NAME into a
fresh project directory outside the checkout:

- NAME ``test_*.py`` is a test file.  pytest runs every test file; those
  that use ``twisted.trial`` are also run under trial.
- any other NAME is a module or a script (a cookbook recipe, the cookbook's
  first example).  The checks in ``.ci/examples/`` (copied into the same
  directory) import or run each of them against a ``mailclient.testing``
  server on loopback.

Every other ``python`` code block of those pages is a fragment (it refers
to names defined elsewhere): it is only compiled, which catches syntax
errors.

Both runners run with ``-W error::DeprecationWarning``, in the project
directory, with ``PYTHONPATH`` unset, so mailclient is imported from where
pip installed it, not from the checkout.  Exits non-zero if anything fails,
if a file is marked twice, or if a marker is not followed by a code block.
With ``--skip-unavailable``, test files that import a module the
interpreter lacks (pytest_twisted, in mailclient's own suite) are left out
and listed; CI does not pass it.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Dict, List, NamedTuple, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ("testing.rst", "cookbook.rst")
CHECKS = os.path.join(ROOT, ".ci", "examples")
WARNINGS = "error::DeprecationWarning"

_MARKER = re.compile(r"^\.\. file: (?P<name>\S+)[ \t]*\n", re.M)
_BLOCK = re.compile(
    r"^\.\. code-block:: (?P<language>\S+)[ \t]*\n"
    r"(?:[ \t]+:[\w-]+:.*\n)*"  # options
    r"[ \t]*\n"
    r"(?P<body>(?:(?:[ \t]+.*)?\n)+)",
    re.M,
)


class Block(NamedTuple):
    """
    One code block of a page: C{name} is its file name, or L{None} for a
    fragment.
    """

    page: str
    line: int
    language: str
    name: Optional[str]
    code: str


class MarkupError(Exception):
    """
    A page's markers are wrong.
    """


def blocks(text: str, page: str = "<page>") -> List[Block]:
    """
    The code blocks of a page, each with the file name its marker gives.

    @raise MarkupError: for a marker not followed by a code block, or a file
        name marked twice.
    """
    found: List[Block] = []
    for match in _BLOCK.finditer(text):
        body = match.group("body").rstrip("\n")
        code = textwrap.dedent(body) + "\n"
        line = text.count("\n", 0, match.start()) + 1
        before = text[:match.start()]
        marker = re.search(r"^\.\. file: (\S+)[ \t]*\n[ \t]*\n\Z", before, re.M)
        found.append(Block(page, line, match.group("language"),
                           marker.group(1) if marker else None, code))
    marked = [b.name for b in found if b.name]
    for match in _MARKER.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        if not any(b.name == match.group("name") and b.line == line + 2 for b in found):
            raise MarkupError("%s:%d: '.. file: %s' is not followed by a code block"
                              % (page, line, match.group("name")))
    duplicates = sorted({n for n in marked if marked.count(n) > 1})
    if duplicates:
        raise MarkupError("%s: marked more than once: %s" % (page, ", ".join(duplicates)))
    return found


def pageBlocks(root: str = ROOT) -> List[Block]:
    """
    The code blocks of every checked page of the checkout at C{root}.
    """
    found: List[Block] = []
    names: Dict[str, str] = {}
    for page in PAGES:
        with open(os.path.join(root, "docs", page), encoding="utf-8") as f:
            for block in blocks(f.read(), "docs/" + page):
                if block.name:
                    if block.name in names:
                        raise MarkupError("%s is marked in both %s and %s"
                                          % (block.name, names[block.name], block.page))
                    names[block.name] = block.page
                found.append(block)
    return found


def files(root: str = ROOT) -> Dict[str, str]:
    """
    The marked files of the checked pages: file name to content.
    """
    return {b.name: b.code for b in pageBlocks(root) if b.name}


def checkFragments(found: List[Block]) -> List[str]:
    """
    Compile every Python fragment; return the errors.
    """
    errors = []
    for block in found:
        if block.name is None and block.language in ("python", "python3", "py"):
            try:
                compile(block.code, "%s:%d" % (block.page, block.line), "exec")
            except SyntaxError as e:
                errors.append("%s:%d: %s" % (block.page, block.line, e))
    return errors


def imports(code: str) -> List[str]:
    """
    The (absolute, dotted) names of the modules C{code} imports.
    """
    names = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def _source(project: str, name: str) -> str:
    with open(os.path.join(project, name), encoding="utf-8") as f:
        return f.read()


def available(module: str, python: str) -> bool:
    if python == sys.executable:
        return importlib.util.find_spec(module) is not None
    return subprocess.run([python, "-c", "import " + module],
                          capture_output=True).returncode == 0


def write(project: str, root: str = ROOT) -> List[str]:
    """
    Write the marked files and the checks into C{project}; return the
    names written.
    """
    written = []
    for name, code in sorted(files(root).items()):
        with open(os.path.join(project, name), "w", encoding="utf-8") as f:
            f.write(code)
        written.append(name)
    checks = os.path.join(root, ".ci", "examples")
    for name in sorted(os.listdir(checks)):
        if name.endswith(".py"):
            shutil.copy(os.path.join(checks, name), os.path.join(project, name))
            written.append(name)
    return written


def run(project: str, python: str = sys.executable, skipUnavailable: bool = False,
        out=sys.stdout) -> int:
    """
    Run the test files of C{project} under pytest, and those using trial
    under trial too; return the exit status.
    """
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONWARNINGS", "PYTEST_ADDOPTS")}
    tests = sorted(n for n in os.listdir(project) if n.startswith("test_") and n.endswith(".py"))
    skipped = []
    if skipUnavailable:
        for name in list(tests):
            topLevel = {m.split(".")[0] for m in imports(_source(project, name))}
            missing = [m for m in topLevel
                       if not os.path.exists(os.path.join(project, m + ".py"))
                       and not available(m, python)]
            if missing:
                tests.remove(name)
                skipped.append("%s (needs %s)" % (name, ", ".join(sorted(set(missing)))))
    for entry in skipped:
        out.write("skipped: %s\n" % (entry,))
    status = 0
    trialTests = [
        name for name in tests
        if any(m == "twisted.trial" or m.startswith("twisted.trial.")
               for m in imports(_source(project, name)))
    ]
    pytest = [python, "-W", WARNINGS, "-m", "pytest", "-q", "-p", "no:cacheprovider",
              "-W", WARNINGS]
    commands = []
    others = [name for name in tests if name not in trialTests]
    if others:
        commands.append(pytest + others)
    if trialTests:
        # trial's TestCase runs the reactor itself, which pytest-twisted
        # (when installed) already runs: such files go to a pytest without
        # that plugin, as testing.rst says, and to trial.
        commands.append(pytest + ["-p", "no:twisted"] + trialTests)
        commands.append([python, "-W", WARNINGS, "-m", "twisted.trial"]
                        + [name[:-3] for name in trialTests])
    for command in commands:
        out.write("$ %s\n" % (" ".join(command[1:]),))
        out.flush()
        result = subprocess.run(command, cwd=project, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        out.write(result.stdout)
        if result.returncode:
            status = result.returncode
    return status


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", metavar="DIR",
                        help="write the project into DIR (made if need be) and keep it")
    parser.add_argument("--skip-unavailable", action="store_true",
                        help="leave out test files that import a module this Python lacks")
    args = parser.parse_args(argv)
    started = time.monotonic()
    found = pageBlocks()
    errors = checkFragments(found)
    for error in errors:
        print("fragment does not compile:", error)
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        project = args.keep
    else:
        project = tempfile.mkdtemp(prefix="mailclient-docexamples-")
    try:
        written = write(project)
        marked = sum(1 for b in found if b.name)
        print("%d files from %s, %d checks of .ci/examples, %d fragments compiled; in %s"
              % (marked, " and ".join("docs/" + p for p in PAGES), len(written) - marked,
                 len(found) - marked, project))
        status = run(project, skipUnavailable=args.skip_unavailable)
    finally:
        if not args.keep:
            shutil.rmtree(project, ignore_errors=True)
    print("doc examples: %s in %.1f s"
          % ("FAILED" if status or errors else "OK", time.monotonic() - started))
    return 1 if status or errors else 0


if __name__ == "__main__":
    sys.exit(main())
