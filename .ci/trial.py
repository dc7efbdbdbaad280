"""
Run Twisted's trial with the warning filters of pytest's configuration.

Usage: python .ci/trial.py [trial arguments...]   (for example: mailclient)

pyproject.toml's [tool.pytest.ini_options] filterwarnings make
DeprecationWarnings raised from mailclient's code errors under pytest; trial
has no such setting, and its -W equivalent (python -W) can only name a
module exactly, not give a pattern.  This installs the same filters (same
syntax: action:message:category:module:lineno, message and module being
regular expressions) and then runs trial, so that both runners hold the code
to the same rule.  A warning that a filter turns into an error fails the test
that caused it.
"""

from __future__ import annotations

import builtins
import os
import re
import sys
import warnings
from typing import List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytestFilters(path: str = os.path.join(ROOT, "pyproject.toml")) -> List[str]:
    """
    The C{filterwarnings} lines of C{[tool.pytest.ini_options]}.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        import tomllib
    except ImportError:  # Python 3.10: the literal strings of the list.
        section = data.decode("utf-8").split("[tool.pytest.ini_options]", 1)[-1]
        body = re.search(r"^filterwarnings\s*=\s*\[(.*?)^\]", section, re.S | re.M)
        return re.findall(r"^\s*'([^']*)',?\s*$", body.group(1), re.M) if body else []
    options = tomllib.loads(data.decode("utf-8")).get("tool", {}).get("pytest", {})
    return list(options.get("ini_options", {}).get("filterwarnings", []))


def install(spec: str) -> None:
    """
    Install one pytest-style filter with L{warnings.filterwarnings}.
    """
    parts = [part.strip() for part in spec.split(":")]
    parts += [""] * (5 - len(parts))
    action, message, categoryName, module, lineno = parts[:5]
    category: type = Warning
    if categoryName:
        found = getattr(builtins, categoryName, None)
        if not (isinstance(found, type) and issubclass(found, Warning)):
            raise SystemExit("unknown warning category in filter %r" % (spec,))
        category = found
    warnings.filterwarnings(action or "default", message, category, module,  # type: ignore[arg-type]
                            int(lineno) if lineno else 0)


def main(argv: List[str]) -> None:
    for spec in pytestFilters():
        install(spec)
    from twisted.scripts.trial import run

    # As "python -m twisted.trial" would: the current directory, not this
    # script's, comes first on the path.
    sys.path[0] = os.getcwd()
    sys.argv = ["trial"] + argv
    run()


if __name__ == "__main__":
    main(sys.argv[1:])
