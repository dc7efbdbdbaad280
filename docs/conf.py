"""
Sphinx configuration for mailclient's documentation.

No extensions: the API page is written by hand, so the build needs neither
the network nor autodoc's handling of Twisted-style epytext docstrings.
"""

import os
import re

_here = os.path.dirname(os.path.abspath(__file__))


def _readVersion() -> str:
    # Read the version without importing mailclient (and so Twisted).
    with open(os.path.join(_here, os.pardir, "mailclient", "__init__.py")) as f:
        match = re.search(r'^__version__ = "([^"]+)"', f.read(), re.MULTILINE)
    return match.group(1) if match else "unknown"


project = "mailclient"
author = "mailclient contributors"
copyright = "mailclient contributors"
release = _readVersion()
version = ".".join(release.split(".")[:2])

extensions: list = []
master_doc = "index"
root_doc = "index"
source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
default_role = "literal"
highlight_language = "python3"
pygments_style = "sphinx"

html_theme = "alabaster"
html_title = "mailclient %s" % (release,)
html_static_path: list = []
