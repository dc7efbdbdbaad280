"""
C{mailclient migrate}: rewrite imports of C{twisted.mail}'s SMTP client to
mailclient.

L{migrateSource} is a pure function from Python source to Python source.  It
finds the imports and uses with the C{ast} module and replaces only their
text spans, so comments, blank lines, quoting and formatting elsewhere are
kept byte for byte.  It rewrites:

  - C{from twisted.mail.smtp import X, Y as Z} (and C{.relay},
    C{.relaymanager}; C{twisted.mail.interfaces} for
    C{IClientAuthentication});
  - C{from twisted.mail import smtp} (and C{relay}, C{relaymanager});
  - C{import twisted.mail.smtp [as name]} and the uses
    C{twisted.mail.smtp.X} that go with it.

Names mailclient does not provide (the SMTP server: C{ESMTP},
C{SMTPFactory}, C{IMessageDelivery}, C{twisted.mail.relay.DomainQueuer},
...) are left importing from Twisted, and a warning names them: a mixed
C{from} import is split in two, and a module imported whole whose server-side
names are used is not rewritten.  This module imports nothing from Twisted
or mailclient, so it runs without them.
"""

from __future__ import annotations

import ast
import difflib
import io
import os
import re
import sys
import tokenize
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence, TextIO

__all__ = ["Migration", "migrateSource", "migratePaths", "PROVIDED", "MODULES"]

# The public names of mailclient.smtp, mailclient.relay and
# mailclient.relaymanager (their __all__; a test keeps these in step), and
# the interface mailclient.interfaces shares with twisted.mail.interfaces.
_SMTP: frozenset[str] = frozenset("""
    AUTHDeclinedError AUTHRequiredError Address AddressError
    AuthenticationError CannotSendError ClientSettings CramMD5ClientAuthenticator DNSNAME
    EHLORequiredError ESMTPClient ESMTPClientError ESMTPSender
    ESMTPSenderFactory IClientAuthentication InvalidAddressError
    LOGINAuthenticator LOGINCredentials MailOptions MessageReadError
    OAUTHBEARERAuthenticator PLAINAuthenticator RetryPolicy SMTPAddressError SMTPBadRcpt
    SMTPBadSender SMTPClient SMTPClientError SMTPConnectError
    SMTPDeliveryError SMTPError SMTPProtocolError SMTPSender
    SMTPSenderFactory SMTPServerError SMTPTimeoutError SUCCESS SenderMixin
    TLSError TLSLevel TLSPolicy TLSRecord TLSRequiredError Timeouts XOAUTH2Authenticator connectSender idGenerator
    messageid quoteaddr rfc822date sendmail xtextStreamReader
    xtextStreamWriter xtext_codec xtext_decode xtext_encode
""".split())
_RELAY: frozenset[str] = frozenset("RelayerMixin SMTPRelayer ESMTPRelayer".split())
_RELAYMANAGER: frozenset[str] = frozenset("""
    CanonicalNameChainTooLong CanonicalNameLoop ESMTPManagedRelayer
    ESMTPManagedRelayerFactory MXCalculator ManagedRelayerMixin Queue
    RelayStateHelper SMTPManagedRelayer SMTPManagedRelayerFactory
    SmartHostESMTPRelayingManager SmartHostSMTPRelayingManager
    UndeliverableDomain DeliveryOutcome DeliveryReport TLSPolicyMap
""".split())

#: Twisted module -> (mailclient module, the names mailclient provides).
MODULES: dict[str, tuple[str, frozenset[str]]] = {
    "twisted.mail.smtp": ("mailclient.smtp", _SMTP),
    "twisted.mail.relay": ("mailclient.relay", _RELAY),
    "twisted.mail.relaymanager": ("mailclient.relaymanager", _RELAYMANAGER),
    "twisted.mail.interfaces": ("mailclient.interfaces", frozenset(["IClientAuthentication"])),
}

#: Twisted module -> the names of it that mailclient provides.
PROVIDED: dict[str, frozenset[str]] = {name: names for name, (_, names) in MODULES.items()}

_PACKAGE = "twisted.mail"


@dataclass
class Migration:
    """
    The result of L{migrateSource}.

    @ivar source: The rewritten source (the original if nothing changed).
    @ivar warnings: C{(line, message)} for each thing that was left alone
        and may need a person's attention.
    @ivar changed: Whether C{source} differs from the original.
    @ivar unresolved: The warnings (also in C{warnings}) about what is left
        for a person to change: a star import, a module kept on Twisted
        although client names are used through it, a name the rewrite left
        unbound, a string that names a client object by its Twisted path,
        a file that mentions C{twisted.mail} and cannot be parsed.  The
        source is not fully migrated while any remain.
    """

    source: str
    warnings: list[tuple[int, str]] = field(default_factory=list)
    changed: bool = False
    unresolved: list[tuple[int, str]] = field(default_factory=list)


class _Lines:
    """
    Convert C{ast} positions (line, UTF-8 byte column) to string offsets.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.starts = [0]
        for m in re.finditer(r"\r\n|\r|\n", source):
            self.starts.append(m.end())

    def offset(self, lineno: int, col: int) -> int:
        start = self.starts[lineno - 1]
        end = self.starts[lineno] if lineno < len(self.starts) else len(self.source)
        line = self.source[start:end]
        return start + len(line.encode("utf-8")[:col].decode("utf-8", "replace"))

    def span(self, node: ast.stmt | ast.expr) -> tuple[int, int]:
        end_lineno = getattr(node, "end_lineno", None)
        end_col = getattr(node, "end_col_offset", None)
        assert end_lineno is not None and end_col is not None
        return (self.offset(node.lineno, node.col_offset),
                self.offset(end_lineno, end_col))

    def lineStart(self, offset: int) -> int:
        return max(s for s in self.starts if s <= offset)


def _dotted(node: ast.AST) -> str | None:
    """
    Return C{a.b.c} for the expression C{a.b.c}, or L{None}.
    """
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _aliasText(name: str, asname: str | None) -> str:
    return name if asname is None else "%s as %s" % (name, asname)


def _comments(text: str, node: ast.ImportFrom) -> tuple[list[str], dict[int, str]]:
    """
    Return the comments in the text of the import statement C{node}: those
    on the line of one of its names (by C{id} of the alias), and the others.
    """
    loose: list[str] = []
    attached: dict[int, str] = {}
    aliases = list(node.names)
    aliasLine: dict[int, int] = {}
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return loose, attached
    seenImport = False
    expectName = True
    for tok in tokens:
        if tok.type == tokenize.NAME and tok.string == "import" and not seenImport:
            seenImport = True
            continue
        if not seenImport:
            continue
        if tok.type == tokenize.NAME and expectName and aliases:
            aliasLine[tok.start[0]] = id(aliases.pop(0))
            expectName = False
        elif tok.type == tokenize.OP and tok.string == ",":
            expectName = True
    for tok in tokens:
        if tok.type == tokenize.COMMENT:
            owner = aliasLine.get(tok.start[0])
            if owner is not None and owner not in attached:
                attached[owner] = tok.string
            else:
                loose.append(tok.string)
    return loose, attached


def _fromModuleSpan(text: str) -> tuple[int, int] | None:
    """
    In the text of a C{from M import ...} statement, return the span of
    C{M}.
    """
    gap = r"(?:\s|\\\r?\n)"
    m = re.match(r"from%s+(\w+(?:%s*\.%s*\w+)*)" % (gap, gap, gap), text)
    if m is None:
        return None
    return m.start(1), m.end(1)


class _Rewriter:
    def __init__(self, source: str, tree: ast.Module) -> None:
        self.source = source
        self.tree = tree
        self.lines = _Lines(source)
        self.edits: list[tuple[int, int, str]] = []
        self.warnings: list[tuple[int, str]] = []
        self.unresolved: list[tuple[int, str]] = []
        # name bound to a whole Twisted module -> Twisted module name
        self.boundModules: dict[str, str] = {}
        # bound name -> [(attribute, Attribute node)]
        self.uses: dict[str, list[tuple[str, ast.Attribute]]] = {}
        # Twisted module -> [(attribute, node of the module expression)]
        self.dottedUses: dict[str, list[tuple[str, ast.expr]]] = {}
        self.bareDottedUses: dict[str, list[ast.expr]] = {}
        self.parents: dict[int, ast.AST] = {}

    def warn(self, node: ast.AST, message: str) -> None:
        self.warnings.append((getattr(node, "lineno", 0), message))

    def needsHand(self, node: ast.AST, message: str) -> None:
        """
        Warn about something left for a person to change.
        """
        self.warn(node, message)
        self.unresolved.append((getattr(node, "lineno", 0), message))

    def edit(self, start: int, end: int, text: str) -> None:
        self.edits.append((start, end, text))

    # -- analysis --------------------------------------------------------

    def collect(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                if node.module == _PACKAGE:
                    for alias in node.names:
                        module = _PACKAGE + "." + alias.name
                        if module in MODULES:
                            self.boundModules[alias.asname or alias.name] = module
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES and alias.asname:
                        self.boundModules[alias.asname] = alias.name
        parents = self.parents
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                parents[id(child)] = node
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id in self.boundModules:
                    self.uses.setdefault(node.value.id, []).append((node.attr, node))
            if isinstance(node, (ast.Attribute, ast.Name)):
                dotted = _dotted(node)
                if dotted in MODULES:
                    parent = parents.get(id(node))
                    if isinstance(parent, ast.Attribute) and parent.value is node:
                        self.dottedUses.setdefault(dotted, []).append((parent.attr, node))
                    else:
                        self.bareDottedUses.setdefault(dotted, []).append(node)

    def unsupported(self, module: str, names: Iterable[str]) -> list[str]:
        provided = PROVIDED[module]
        return sorted({n for n in names if n not in provided})

    # -- rewriting -------------------------------------------------------

    def run(self) -> None:
        self.collect()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                if node.module in MODULES:
                    self.fromModule(node)
                elif node.module == _PACKAGE:
                    self.fromPackage(node)
            elif isinstance(node, ast.Import):
                self.importStatement(node)
        self.strings()

    def replaceFromModule(self, node: ast.ImportFrom, new: str) -> None:
        start, end = self.lines.span(node)
        span = _fromModuleSpan(self.source[start:end])
        if span is None:
            return
        self.edit(start + span[0], start + span[1], new)

    def splitStatement(self, node: ast.ImportFrom, statements: list[tuple[str, list[ast.alias]]]) -> None:
        """
        Replace the C{from} import C{node} with one C{from} import per
        C{(module, aliases)}, keeping its layout style and its comments.
        """
        start, end = self.lines.span(node)
        original = self.source[start:end]
        lineStart = self.lines.lineStart(start)
        indent = self.source[lineStart:start]
        atLineStart = not indent.strip()
        multiline = "\n" in original or "\r" in original
        newline = "\r\n" if "\r\n" in self.source else "\n"
        comments, attached = _comments(original, node)
        texts = []
        for module, aliases in statements:
            if multiline:
                body = "".join(
                    "%s    %s,%s%s" % (indent, _aliasText(a.name, a.asname),
                                      "  " + attached[id(a)] if id(a) in attached else "",
                                      newline)
                    for a in aliases)
                texts.append("from %s import (%s%s%s)" % (module, newline, body, indent))
            else:
                names = [_aliasText(a.name, a.asname) for a in aliases]
                texts.append("from %s import %s" % (module, ", ".join(names)))
            for a in aliases:
                attached.pop(id(a), None)
        comments += list(attached.values())
        if atLineStart:
            text = (newline + indent).join(comments + texts)
        else:
            text = "; ".join(texts)
            if comments:
                self.warn(node, "comments inside this import were dropped when it was split")
        self.edit(start, end, text)

    def fromModule(self, node: ast.ImportFrom) -> None:
        module = node.module
        assert module is not None
        target, provided = MODULES[module]
        if any(a.name == "*" for a in node.names):
            self.needsHand(node, "'from %s import *' left alone: import the names you "
                                 "use from %s (server-side names stay in %s)"
                           % (module, target, module))
            return
        ours = [a for a in node.names if a.name in provided]
        theirs = [a for a in node.names if a.name not in provided]
        for alias in theirs:
            self.warn(node, "%s.%s is not provided by mailclient (server side?); "
                            "left importing from Twisted" % (module, alias.name))
        if not ours:
            return
        if not theirs:
            self.replaceFromModule(node, target)
        else:
            self.splitStatement(node, [(target, ours), (module, theirs)])

    def fromPackage(self, node: ast.ImportFrom) -> None:
        ours, theirs = [], []
        for alias in node.names:
            module = _PACKAGE + "." + alias.name
            if module not in MODULES:
                theirs.append(alias)
                continue
            bound = alias.asname or alias.name
            used = [name for name, _ in self.uses.get(bound, [])]
            missing = self.unsupported(module, used)
            if missing:
                message = ("'%s' left importing from Twisted: it is used for %s, "
                           "which mailclient does not provide" % (alias.name, ", ".join(missing)))
                if set(used) - set(missing):
                    # Client names still come from Twisted through it.
                    self.needsHand(node, message + "; import the client names from "
                                                   "mailclient separately")
                else:
                    self.warn(node, message)
                theirs.append(alias)
            else:
                ours.append(alias)
        if not ours:
            return
        if not theirs:
            self.replaceFromModule(node, "mailclient")
        else:
            self.splitStatement(node, [("mailclient", ours), (_PACKAGE, theirs)])

    def importStatement(self, node: ast.Import) -> None:
        aliases: list[str] = []
        changed = False
        for alias in node.names:
            if alias.name not in MODULES:
                aliases.append(_aliasText(alias.name, alias.asname))
                continue
            target = MODULES[alias.name][0]
            if alias.asname:
                used = [name for name, _ in self.uses.get(alias.asname, [])]
                missing = self.unsupported(alias.name, used)
                if missing:
                    message = ("'import %s as %s' left alone: it is used for %s, which "
                               "mailclient does not provide"
                               % (alias.name, alias.asname, ", ".join(missing)))
                    if set(used) - set(missing):
                        self.needsHand(node, message + "; import the client names from "
                                                       "mailclient separately")
                    else:
                        self.warn(node, message)
                    aliases.append(_aliasText(alias.name, alias.asname))
                else:
                    aliases.append(_aliasText(target, alias.asname))
                    changed = True
                continue
            uses = self.dottedUses.pop(alias.name, [])
            bare = self.bareDottedUses.pop(alias.name, [])
            missing = self.unsupported(alias.name, [name for name, _ in uses])
            ours = [(name, n) for name, n in uses if name in PROVIDED[alias.name]]
            for _, moduleNode in ours:
                start, end = self.lines.span(moduleNode)
                self.edit(start, end, target)
            if missing:
                # Keep Twisted's module for the server-side names.
                self.warn(node, "'import %s' kept for %s, which mailclient does not "
                                "provide" % (alias.name, ", ".join(missing)))
                aliases.append(alias.name)
                if ours:
                    aliases.append(target)
                    changed = True
            else:
                for moduleNode in bare:
                    start, end = self.lines.span(moduleNode)
                    self.edit(start, end, target)
                aliases.append(target)
                self.checkTwistedName(node)
                changed = True
        if changed:
            start, end = self.lines.span(node)
            self.edit(start, end, "import " + ", ".join(aliases))

    def checkTwistedName(self, node: ast.Import) -> None:
        """
        C{import twisted.mail.smtp} also bound the name C{twisted}; warn if
        the file uses it otherwise and nothing else binds it.
        """
        for other in ast.walk(self.tree):
            if isinstance(other, ast.Import) and other is not node:
                for alias in other.names:
                    if alias.asname is None and alias.name.split(".")[0] == "twisted" \
                            and alias.name not in MODULES:
                        return
        for other in ast.walk(self.tree):
            if not (isinstance(other, ast.Name) and other.id == "twisted"):
                continue
            top: ast.AST = other
            while True:
                parent = self.parents.get(id(top))
                if isinstance(parent, ast.Attribute) and parent.value is top:
                    top = parent
                else:
                    break
            dotted = _dotted(top) or "twisted"
            if not any(dotted == m or dotted.startswith(m + ".") for m in MODULES):
                self.needsHand(node, "the name 'twisted' was bound by this import and "
                                     "is still used (%s): add 'import twisted'" % (dotted,))
                return

    def strings(self) -> None:
        """
        Warn about string literals naming the Twisted modules (for example
        C{mock.patch} targets), which are not rewritten.
        """
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for module in MODULES:
                    if module in node.value:
                        message = "string mentions %s; not rewritten" % (module,)
                        name = node.value.strip()[len(module) + 1:]
                        if node.value.strip().startswith(module + ".") and \
                                name.split(".")[0] in PROVIDED[module]:
                            # A dotted path to a client object (a mock.patch
                            # target): it would still point at Twisted.
                            self.needsHand(node, message)
                        else:
                            self.warn(node, message)
                        break

    def result(self) -> str:
        edits = sorted(set(self.edits))
        out = []
        pos = 0
        for start, end, text in edits:
            if start < pos:
                continue  # overlapping edit: the first one wins
            out.append(self.source[pos:start])
            out.append(text)
            pos = end
        out.append(self.source[pos:])
        return "".join(out)


def migrateSource(source: str) -> Migration:
    """
    Rewrite the imports of C{twisted.mail.smtp}, C{twisted.mail.relay} and
    C{twisted.mail.relaymanager} in the Python C{source} to mailclient's.

    @param source: Python source text.
    @return: The rewritten source and the warnings.  Source that does not
        parse is returned unchanged, with a warning.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        warning = (e.lineno or 0, "cannot parse: %s" % (e.msg,))
        # Not migrated if it may hold twisted.mail imports.
        mentions = re.search(r"twisted[\s\\]*\.[\s\\]*mail|from\s+twisted\s+import[^\n]*\bmail\b",
                             source)
        return Migration(source, [warning], False, [warning] if mentions else [])
    rewriter = _Rewriter(source, tree)
    rewriter.run()
    new = rewriter.result()
    warnings = sorted(set(rewriter.warnings))
    return Migration(new, warnings, new != source, sorted(set(rewriter.unresolved)))


def _pythonFiles(paths: Sequence[str]) -> Iterator[str]:
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs
                                 if not d.startswith(".") and d not in ("__pycache__", "node_modules"))
                for name in sorted(files):
                    if name.endswith(".py"):
                        yield os.path.join(root, name)
        else:
            yield path


def _readSource(path: str) -> tuple[str, str]:
    with open(path, "rb") as f:
        raw = f.read()
    encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    return raw.decode(encoding), encoding


def _diff(old: str, new: str, path: str) -> Iterator[str]:
    def lines(text: str) -> list[str]:
        result = text.splitlines(keepends=True)
        if result and not result[-1].endswith(("\n", "\r")):
            result[-1] += "\n\\ No newline at end of file\n"
        return result

    name = path.replace(os.sep, "/").lstrip("/")
    return difflib.unified_diff(lines(old), lines(new), "a/" + name, "b/" + name)


def migratePaths(paths: Sequence[str], write: bool = False,
                 out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """
    Rewrite the Python files in C{paths} (directories are searched for
    C{*.py} files): print a unified diff of the changes, or, if C{write},
    make them.

    Warnings go to C{err} as C{path:line: warning: ...}; what must be
    changed by hand (L{Migration.unresolved}) as C{path:line: not migrated:
    ...}, followed by a count.

    @return: The exit code: 0 when nothing is left to migrate (or it was
        written), 1 when changes are needed and C{write} is false or when
        something that must be changed by hand remains (with or without
        C{write}), 2 when a path cannot be read or written.
    """
    needed = False
    failed = False
    unresolved = 0
    for path in _pythonFiles(paths):
        try:
            source, encoding = _readSource(path)
        except (OSError, SyntaxError, UnicodeDecodeError) as e:
            err.write("%s: cannot read: %s\n" % (path, getattr(e, "strerror", None) or e))
            failed = True
            continue
        migration = migrateSource(source)
        byHand = set(migration.unresolved)
        for line, message in migration.warnings:
            kind = "not migrated" if (line, message) in byHand else "warning"
            err.write("%s:%d: %s: %s\n" % (path, line, kind, message))
        unresolved += len(byHand)
        if not migration.changed:
            continue
        needed = True
        if write:
            try:
                with open(path, "w", encoding=encoding, newline="") as f:
                    f.write(migration.source)
            except OSError as e:
                err.write("%s: cannot write: %s\n" % (path, e.strerror or e))
                failed = True
                continue
            err.write("rewrote %s\n" % (path,))
        else:
            out.writelines(_diff(source, migration.source, path))
    if failed:
        return 2
    if unresolved:
        err.write("mailclient migrate: %d place%s must be changed by hand (the 'not "
                  "migrated' lines above)\n" % (unresolved, "" if unresolved == 1 else "s"))
        return 1
    return 1 if needed and not write else 0
