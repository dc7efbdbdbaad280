"""
Tests for how mailclient is packaged: what importing it pulls in and does,
the typing marker, and the documented public surface of C{mailclient.smtp}.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import subprocess
import sys
import textwrap
from typing import Any, Dict, List

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.interface import InterfaceClass

import mailclient

# The public modules a user may import; those not written yet are skipped.
PUBLIC_MODULES = [
    "mailclient",
    "mailclient.smtp",
    "mailclient.interfaces",
    "mailclient.relay",
    "mailclient.relaymanager",
    "mailclient.testing",
]


def _existingPublicModules() -> List[str]:
    return [name for name in PUBLIC_MODULES if importlib.util.find_spec(name)]


def _runPython(source: str) -> "subprocess.CompletedProcess[str]":
    """
    Run C{source} in a fresh interpreter that imports this same mailclient.
    """
    env: Dict[str, str] = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(mailclient.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        [root] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


class ImportTests(SynchronousTestCase):
    """
    Importing mailclient's public modules is cheap and self-contained.
    """

    def assertRanCleanly(self, result: "subprocess.CompletedProcess[str]") -> None:
        self.assertEqual(
            result.returncode,
            0,
            "subprocess failed:\nstdout:\n%s\nstderr:\n%s"
            % (result.stdout, result.stderr),
        )

    def test_noTwistedMail(self) -> None:
        """
        Importing the public modules in a fresh interpreter leaves no
        C{twisted.mail} module in C{sys.modules}.
        """
        result = _runPython(
            """
            import importlib, sys
            for name in %r:
                importlib.import_module(name)
            loaded = sorted(
                m for m in sys.modules
                if m == "twisted.mail" or m.startswith("twisted.mail.")
            )
            print(",".join(loaded))
            """
            % (_existingPublicModules(),)
        )
        self.assertRanCleanly(result)
        self.assertEqual(result.stdout.strip(), "")

    def test_noDNSLookupAtImport(self) -> None:
        """
        Importing the public modules does not look up the host's name:
        C{socket.getfqdn} (which Twisted calls at import time to compute
        C{DNSNAME}) is never called.
        """
        result = _runPython(
            """
            import importlib, socket

            def refuse(*args, **kwargs):
                raise AssertionError("name lookup at import time")

            socket.getfqdn = refuse
            socket.gethostbyaddr = refuse
            for name in %r:
                importlib.import_module(name)
            print("imported")
            """
            % (_existingPublicModules(),)
        )
        self.assertRanCleanly(result)
        self.assertEqual(result.stdout.strip(), "imported")


class DistributionTests(SynchronousTestCase):
    """
    The package carries what type checkers and packagers need.
    """

    def test_pyTyped(self) -> None:
        """
        C{mailclient/py.typed} is present next to the package's modules.
        """
        path = os.path.join(os.path.dirname(mailclient.__file__), "py.typed")
        self.assertTrue(os.path.isfile(path), path)

    def test_version(self) -> None:
        """
        C{mailclient.__version__} is a dotted version string.
        """
        version = mailclient.__version__
        self.assertIsInstance(version, str)
        parts = version.split(".")
        self.assertGreaterEqual(len(parts), 2)
        self.assertTrue(parts[0].isdigit(), version)


class PublicSurfaceTests(SynchronousTestCase):
    """
    Every name C{mailclient.smtp} exports exists and is documented.
    """

    def setUp(self) -> None:
        self.smtp = importlib.import_module("mailclient.smtp")
        names = getattr(self.smtp, "__all__", None)
        self.assertIsInstance(names, list)
        self.assertTrue(names)
        self.names: List[str] = list(names or [])

    def _eager(self) -> Dict[str, Any]:
        """
        The exported names bound in the module itself, without triggering
        the module's lazy C{__getattr__} (which may look up C{DNSNAME}).
        """
        namespace = vars(self.smtp)
        return {name: namespace[name] for name in self.names if name in namespace}

    def test_allNamesExist(self) -> None:
        """
        Every name in C{mailclient.smtp.__all__} is an attribute of the
        module, and none is listed twice.  Lazily computed names are
        resolved in a fresh interpreter with the host name faked, so this
        process's cached values and the network are left alone.
        """
        self.assertEqual(len(self.names), len(set(self.names)))
        lazy = [name for name in self.names if name not in self._eager()]
        if not lazy:
            return
        result = _runPython(
            """
            import socket
            socket.getfqdn = lambda name="": "mailclient.test.invalid"
            socket.gethostname = lambda: "mailclient.test.invalid"
            import mailclient.smtp
            missing = [n for n in %r if not hasattr(mailclient.smtp, n)]
            print(",".join(missing))
            """
            % (lazy,)
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), "")

    def test_publicNamesDocumented(self) -> None:
        """
        Every class, function and interface in C{mailclient.smtp.__all__}
        has a docstring of its own.
        """
        undocumented = []
        for name, obj in sorted(self._eager().items()):
            if isinstance(obj, InterfaceClass):
                doc = obj.__doc__
            elif inspect.isclass(obj):
                doc = obj.__dict__.get("__doc__")
            elif inspect.isroutine(obj):
                doc = getattr(obj, "__doc__", None)
            else:
                continue
            if not (doc and doc.strip()):
                undocumented.append(name)
        self.assertEqual(undocumented, [])

    def test_packageReexportsAreSmtpObjects(self) -> None:
        """
        Names that C{mailclient} re-exports from C{mailclient.smtp} are the
        very same objects.
        """
        for name in getattr(mailclient, "__all__", []):
            if name.startswith("__") or name not in self._eager():
                continue
            self.assertIs(getattr(mailclient, name), getattr(self.smtp, name), name)


class PackageAsModuleTests(SynchronousTestCase):
    """
    C{import mailclient as smtp} works wherever C{from twisted.mail import
    smtp} did for client code.
    """

    def test_sameNames(self) -> None:
        import mailclient.smtp

        self.assertEqual(mailclient.__all__, list(mailclient.smtp.__all__) + ["__version__"])
        for name in mailclient.smtp.__all__:
            self.assertIs(getattr(mailclient, name), getattr(mailclient.smtp, name), name)

    def test_twistedClientNames(self) -> None:
        """
        Every client-side name of Twisted's module is on the package,
        C{SUCCESS} among them (a subclass's C{sentMail} uses it).
        """
        from twisted.mail import smtp as twisted_smtp

        from mailclient.test._twistedsuite import CLIENT_NAMES

        for name in CLIENT_NAMES["twisted.mail.smtp"]:
            self.assertTrue(hasattr(twisted_smtp, name), name)
            self.assertTrue(hasattr(mailclient, name), name)
        self.assertIn(250, mailclient.SUCCESS)
        self.assertEqual(mailclient.DNSNAME, mailclient.smtp.DNSNAME)


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _checkoutFile(testCase: SynchronousTestCase, name: str) -> str:
    path = os.path.join(ROOT, name)
    if not os.path.exists(path):
        testCase.skipTest("%s is only in a checkout" % (name,))
    with open(path, encoding="utf-8") as f:
        return f.read()


class ReadmeTests(SynchronousTestCase):
    """
    The README starts with its title, then the two commands: install and
    run the demo, install and run the test suite.
    """

    def test_titleThenTwoCommands(self) -> None:
        lines = _checkoutFile(self, "README.rst").splitlines()
        self.assertEqual(lines[:3], ["mailclient", "==========", ""])
        self.assertEqual(lines[3:5], [".. code-block:: sh", ""])
        commands = []
        for line in lines[5:]:
            if not line.strip():
                break
            commands.append(line.strip())
        self.assertEqual(len(commands), 2, commands)
        demo, tests = commands
        # The demo needs no extra: TLS is a dependency.
        self.assertEqual(demo, "python3 -m venv .venv && .venv/bin/pip install -q . "
                               "&& .venv/bin/mailclient demo")
        self.assertEqual(tests, "python3 -m venv .venv && .venv/bin/pip install -q '.[test]' "
                                "&& .venv/bin/python -m pytest mailclient")


class DependencyTests(SynchronousTestCase):
    """
    What C{setup.cfg} installs.
    """

    def setUp(self) -> None:
        import configparser

        self.config = configparser.ConfigParser()
        self.config.read_string(_checkoutFile(self, "setup.cfg"))

    def requirements(self, section: str, key: str) -> List[str]:
        return [line.split("#")[0].strip() for line in self.config[section][key].splitlines()
                if line.split("#")[0].strip()]

    def test_tlsIsADependency(self) -> None:
        """
        TLS support (Twisted's C{tls} extra) comes without an extra; the
        C{tls} extra stays, so that C{mailclient[tls]} still installs.
        """
        self.assertIn("twisted[tls]>=23.10", self.requirements("options", "install_requires"))
        self.assertIn("tls", self.config["options.extras_require"])

    def test_docsTheme(self) -> None:
        for extra in ("docs", "dev"):
            requirements = self.requirements("options.extras_require", extra)
            for name in ("sphinx", "furo", "sphinx-copybutton", "towncrier"):
                self.assertIn(name, requirements, extra)

    def test_tlsImportable(self) -> None:
        """
        What the dependency brings is importable where mailclient is.
        """
        for module in ("OpenSSL.SSL", "cryptography.x509", "service_identity", "idna"):
            importlib.import_module(module)


class WarningFilterTests(SynchronousTestCase):
    """
    The C{filterwarnings} of C{pyproject.toml}: DeprecationWarnings from
    mailclient's code are errors, whether the warning names its module or
    (re-emitted by trial after a test) its file; other packages' are not.
    """

    def filters(self) -> List[str]:
        text = _checkoutFile(self, "pyproject.toml")
        try:
            import tomllib
        except ImportError:
            self.skipTest("tomllib needs Python 3.11")
        return list(tomllib.loads(text)["tool"]["pytest"]["ini_options"]["filterwarnings"])

    def test_moduleFilter(self) -> None:
        import re

        [moduleFilter] = [f for f in self.filters() if f.startswith("error::DeprecationWarning:")]
        pattern = re.compile(moduleFilter.split(":", 3)[3])
        for module in ("mailclient", "mailclient._testing.certs", "mailclient.test.test_esmtp",
                       "/work/main/mailclient/_protocol/esmtp",
                       "/venv/lib/python3.11/site-packages/mailclient/_testing/certs",
                       "C:\\venv\\Lib\\site-packages\\mailclient\\smtp"):
            self.assertTrue(pattern.match(module), module)
        for module in ("OpenSSL.SSL", "twisted.mail.test.test_smtp", "mailclientx",
                       "/src/mailclient/.venv/lib/python3.11/site-packages/OpenSSL/SSL",
                       "/venv/lib/python3.11/site-packages/twisted/internet/_sslverify"):
            self.assertFalse(pattern.match(module), module)

    def test_pyOpenSSLObjects(self) -> None:
        self.assertIn("error:Passing pyOpenSSL:DeprecationWarning", self.filters())

    def test_trialUsesTheSameFilters(self) -> None:
        """
        C{.ci/trial.py} reads the same list.
        """
        path = os.path.join(ROOT, ".ci", "trial.py")
        if not os.path.exists(path):
            self.skipTest(".ci/trial.py is only in a checkout")
        spec = importlib.util.spec_from_file_location("_mailclient_ci_trial", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.assertEqual(module.pytestFilters(), self.filters())
