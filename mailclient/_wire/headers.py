"""
The envelope of a message, read from its header as
C{smtplib.SMTP.send_message} reads it, with every address parsed strictly.

Pure: no Twisted, no I/O.  Used by C{mailclient send -t} and meant for any
sender that takes the envelope from the message itself:

  - the sender is the address in C{Sender}, else in C{From};
  - the recipients are the addresses in every C{To}, C{Bcc} and C{Cc}
    field, each sent to once;
  - when the message has one C{Resent-} block (it was forwarded: RFC 5322
    section 3.6.6), C{Resent-Sender}/C{Resent-From} and
    C{Resent-To}/C{Resent-Cc}/C{Resent-Bcc} are used instead;
  - C{Bcc} and C{Resent-Bcc} are removed from the copy that is sent.

Where smtplib (through C{email.utils.getaddresses}) turns an address it
cannot parse into C{''} or part of its text, and the C{email} package's
header registry skips it with a defect, here every address that cannot be
used is an L{AddressParseError} that names it: nothing is silently dropped
or changed.  Addresses are read with RFC 5322's grammar (display names,
quoted strings, comments, groups, domain literals, UTF-8 as RFC 6532
allows) and each must be a complete C{local@domain} that
L{mailclient._wire.address.checkAddress} accepts.
"""

from __future__ import annotations

import copy
import email.message
import re
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from mailclient._wire.address import checkAddress
from mailclient._wire.errors import InvalidAddressError

__all__ = [
    "HeaderError",
    "AddressParseError",
    "parseAddressList",
    "parseAddress",
    "uniqueAddresses",
    "headerFields",
    "senderFromFields",
    "recipientsFromFields",
    "envelopeFromHeader",
    "envelopeFromMessage",
    "stripBcc",
    "withoutBcc",
]

#: The fields removed from the copy of the message that is sent.
BCC_FIELDS = frozenset(["bcc", "resent-bcc"])


def _show(text: str) -> str:
    """
    Quote C{text} for an error message, escaping control characters (so
    that a CR or LF shows as C{\\r} or C{\\n}) and cutting it short.
    """
    if len(text) > 200:
        return repr(text[:200]) + "..."
    return repr(text)


class HeaderError(ValueError):
    """
    The header of a message does not give a usable envelope: an address
    cannot be parsed, a field that must appear once appears several times,
    or the message has several C{Resent-} blocks.
    """


class AddressParseError(HeaderError):
    """
    One or more addresses cannot be used.

    @ivar problems: C{(where, text, reason)} for each address: the field
        or option it came from (C{"To"}, C{"--from"}), its text as written,
        and why it cannot be used.
    """

    def __init__(self, problems: Sequence[tuple[str, str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(
            "%s: %s is not a valid address (%s)" % (where, _show(text), reason)
            for where, text, reason in self.problems))


# -- The address grammar --------------------------------------------------

class _Token(NamedTuple):
    kind: str  # "atom", "quoted", "literal", "special" or "bad"
    text: str
    start: int
    end: int


# atext, the dot of dot-atoms and obs-phrase, and (RFC 6532) any non-ASCII
# character; undecodable bytes (surrogate escapes) are caught later.
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-\u0080-\U0010ffff]+")
_QUOTED = re.compile(r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*"')
_LITERAL = re.compile(r"\[(?:[^\[\]\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*\]")
_SPECIALS = "<>@,;:"
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _badReason(char: str) -> str:
    if char in "\r\n":
        return "it contains a line break"
    if _CONTROL.match(char):
        return "it contains the control character %r" % (char,)
    if char == '"':
        return "a quoted string is not closed"
    if char == "[":
        return "a domain literal is not closed"
    if char == "(":
        return "a comment is not closed"
    return "unexpected %r" % (char,)


def _commentEnd(value: str, start: int) -> int:
    """
    Return the index just after the comment that starts at C{start}, or -1
    if it is not closed (comments nest; a backslash quotes one character).
    """
    depth = 0
    i = start
    while i < len(value):
        c = value[i]
        if c == "\\":
            i += 2
            continue
        if c in "\r\n":
            return -1
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def _tokenize(value: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c in " \t":
            i += 1
            continue
        if c == "(":
            end = _commentEnd(value, i)
            if end < 0:
                tokens.append(_Token("bad", c, i, i + 1))
                i += 1
            else:
                i = end
            continue
        for kind, pattern in (("atom", _ATOM), ("quoted", _QUOTED), ("literal", _LITERAL)):
            m = pattern.match(value, i)
            if m is not None:
                tokens.append(_Token(kind, m.group(), i, m.end()))
                i = m.end()
                break
        else:
            kind = "special" if c in _SPECIALS else "bad"
            tokens.append(_Token(kind, c, i, i + 1))
            i += 1
    return tokens


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _localPart(words: list[_Token]) -> str:
    """
    The local part made of C{words} (atoms and quoted strings): one word,
    or words joined by dots (obs-local-part, as in C{john."q".public}).
    """
    if not words:
        raise _Bad("nothing before the '@'")
    for a, b in zip(words, words[1:]):
        if not (a.text.endswith(".") or b.text.startswith(".")):
            raise _Bad("a space in the local part: quote it, or put the address in <>")
    return "".join(w.text for w in words)


def _checkSpec(local: str, domain: str) -> str:
    """
    The address C{local@domain}, if it may go in an SMTP envelope.
    """
    spec = local + "@" + domain
    if re.search(r"[\ud800-\udfff]", spec):
        raise _Bad("it is not valid UTF-8")
    if not local.startswith('"') and (
            local.startswith(".") or local.endswith(".") or ".." in local):
        raise _Bad("a dot at the start or end of the local part, or two in a row")
    if not domain.startswith("[") and (domain.startswith(".") or ".." in domain):
        raise _Bad("an empty label in the domain")
    try:
        checkAddress(spec, utf8=True)
    except InvalidAddressError:
        raise _Bad("not a valid mailbox") from None
    return spec


class _Parser:
    """
    A recursive-descent parser of an RFC 5322 C{address-list}, keeping the
    addr-spec of every mailbox and recording each one it cannot use.
    """

    def __init__(self, value: str, where: str) -> None:
        self.value = value
        self.where = where
        self.tokens = _tokenize(value)
        self.i = 0
        self.found: list[str] = []
        self.problems: list[tuple[str, str, str]] = []

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def isSpecial(self, token: _Token | None, chars: str) -> bool:
        return token is not None and token.kind == "special" and token.text in chars

    def unexpected(self, token: _Token | None, context: str = "") -> _Bad:
        if token is None:
            return _Bad("it ends too early" + context)
        if token.kind == "bad":
            return _Bad(_badReason(token.text))
        if token.text == "@":
            return _Bad("more than one '@'")
        return _Bad("unexpected %r%s" % (token.text, context))

    def skipTo(self, stops: str) -> int:
        """
        Skip to the next token in C{stops} (not consuming it); return the
        offset where the skipped text ends.
        """
        while True:
            token = self.peek()
            if token is None:
                return len(self.value)
            if self.isSpecial(token, stops):
                return token.start
            self.i += 1

    def record(self, start: int, end: int, reason: str) -> None:
        text = self.value[start:end].strip(" \t") or self.value.strip(" \t")
        self.problems.append((self.where, text, reason))

    def parseList(self) -> None:
        self.elements(self.address, "")

    def elements(self, element: Callable[[], object], close: str) -> None:
        """
        Parse the comma-separated elements of an address list (C{close}
        empty: up to the end) or of a group (up to and past C{close}) with
        C{element}.  A bad element is recorded, and parsing goes on after
        the next separator.
        """
        separators = "," + close
        while True:
            token = self.peek()
            if token is None:
                if close:
                    raise _Bad("the group is not closed with '%s'" % (close,))
                return
            if close and self.isSpecial(token, close):
                self.i += 1
                return
            if self.isSpecial(token, ","):
                # An empty element (obs-addr-list): nothing to lose.
                self.i += 1
                continue
            start = token.start
            try:
                element()
                after = self.peek()
                if after is None:
                    if close:
                        raise _Bad("the group is not closed with '%s'" % (close,))
                elif not self.isSpecial(after, separators):
                    raise self.unexpected(after)
            except _Bad as e:
                self.record(start, self.skipTo(separators), e.reason)

    def phrase(self) -> list[_Token]:
        words: list[_Token] = []
        while True:
            token = self.peek()
            if token is None or token.kind not in ("atom", "quoted"):
                return words
            words.append(token)
            self.i += 1

    def address(self) -> None:
        words = self.phrase()
        token = self.peek()
        if self.isSpecial(token, ":"):
            if not words:
                raise _Bad("a group without a name")
            self.i += 1
            self.group()
            return
        self.found.append(self.mailboxAfter(words))

    def group(self) -> None:
        self.elements(lambda: self.found.append(self.mailboxAfter(self.phrase())), ";")

    def mailboxAfter(self, words: list[_Token]) -> str:
        token = self.peek()
        if self.isSpecial(token, "<"):
            self.i += 1
            return self.angle()
        if self.isSpecial(token, "@"):
            local = _localPart(words)
            self.i += 1
            return _checkSpec(local, self.domain())
        if words and (token is None or self.isSpecial(token, ",;")):
            if len(words) == 1:
                raise _Bad("no domain: write user@domain")
            raise _Bad("a name without an <address>")
        raise self.unexpected(token)

    def angle(self) -> str:
        token = self.peek()
        if self.isSpecial(token, ">"):
            raise _Bad("the empty address <>")
        if self.isSpecial(token, "@"):
            # obs-route (@a,@b:): ignored, as RFC 5321 says.
            while token is not None and not self.isSpecial(token, ":>"):
                self.i += 1
                token = self.peek()
            if not self.isSpecial(token, ":"):
                raise _Bad("a source route without ':'")
            self.i += 1
        words = self.phrase()
        token = self.peek()
        if self.isSpecial(token, ">") and len(words) == 1:
            self.i += 1
            raise _Bad("no domain: write user@domain")
        if not self.isSpecial(token, "@"):
            raise self.unexpected(token, " inside <>")
        local = _localPart(words)
        self.i += 1
        spec = _checkSpec(local, self.domain())
        token = self.peek()
        if token is None:
            raise _Bad("the closing '>' is missing")
        if not self.isSpecial(token, ">"):
            raise self.unexpected(token, " where '>' should close the address")
        self.i += 1
        return spec

    def domain(self) -> str:
        token = self.peek()
        if token is None or token.kind not in ("atom", "literal"):
            raise _Bad("no domain after the '@'")
        self.i += 1
        return token.text


def parseAddressList(value: str, where: str = "address") -> list[str]:
    """
    Return the address (addr-spec) of every mailbox in C{value}, an RFC 5322
    C{address-list} such as the value of a C{To} field, in order.

    Display names, comments and group names are dropped; empty groups
    (C{undisclosed-recipients:;}) and empty list elements give nothing.

    @param where: the field or option C{value} came from, for the error.
    @raise AddressParseError: naming every address that cannot be used.
    """
    parser = _Parser(value, where)
    parser.parseList()
    if parser.problems:
        raise AddressParseError(parser.problems)
    return parser.found


def parseAddress(value: str, where: str = "address", allowNull: bool = False) -> str:
    """
    Return the one address in C{value}: C{user@example.com},
    C{<user@example.com>} or C{Name <user@example.com>}.

    @param allowNull: whether C{""} and C{<>} (the null reverse-path) are
        allowed; they give C{""}.
    @raise AddressParseError: if C{value} is not exactly one valid address.
    """
    if allowNull and value.strip(" \t") in ("", "<>"):
        return ""
    found = parseAddressList(value, where)
    if len(found) != 1:
        raise AddressParseError([(where, value, "no address" if not found else
                                  "%d addresses where one was expected" % (len(found),))])
    return found[0]


def uniqueAddresses(addresses: Iterable[str]) -> list[str]:
    """
    Return C{addresses} without repeats, in order.  Domains are compared
    without regard to case, local parts exactly (RFC 5321 section 2.4).
    """
    seen = set()
    out = []
    for address in addresses:
        local, at, domain = address.rpartition("@")
        key = (local, domain.lower()) if at else (address, "")
        if key not in seen:
            seen.add(key)
            out.append(address)
    return out


# -- Header fields ---------------------------------------------------------

# A field name: printable ASCII but the colon, then (obsolete syntax)
# optional white space before the colon.
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")


def _rawFields(header: bytes) -> list[tuple[str | None, bytes]]:
    """
    Split the header block C{header} into C{(lowercased name, raw bytes)}
    per field, continuation lines and line endings included.  Lines that
    are not fields (an mbox C{From } line) and everything from the first
    empty line on have the name L{None}, so that joining the bytes gives
    C{header} back.  Line endings are LF, CRLF or a bare CR, as the DATA
    encoder reads them.
    """
    out: list[tuple[str | None, bytes]] = []
    lines = header.splitlines(keepends=True)
    for n, line in enumerate(lines):
        if line in (b"\r\n", b"\n", b"\r"):
            out.append((None, b"".join(lines[n:])))
            return out
        if line[:1] in (b" ", b"\t") and out:
            name, raw = out[-1]
            out[-1] = (name, raw + line)
            continue
        m = _FIELD.match(line)
        name = m.group(1).decode("ascii").lower() if m else None
        out.append((name, line))
    return out


def headerFields(header: bytes) -> list[tuple[str, str]]:
    """
    Return the C{(name, value)} of each field of the header block
    C{header} (the message's bytes up to the empty line; more is ignored),
    in order.  Names are lowercased; values are unfolded and decoded as
    UTF-8, undecodable bytes kept as surrogate escapes (which no address may
    contain).
    """
    fields = []
    for name, raw in _rawFields(header):
        if name is None:
            continue
        value = raw.split(b":", 1)[1]
        unfolded = b"".join(line.rstrip(b"\r\n") for line in value.splitlines(keepends=True))
        fields.append((name, unfolded.decode("utf-8", "surrogateescape").strip(" \t")))
    return fields


#: The fields of a Resent- block (RFC 5322 section 3.6.6).
_RESENT = frozenset("resent-" + name for name in
                    ("date", "from", "sender", "to", "cc", "bcc", "message-id"))


def _resentPrefix(fields: Sequence[tuple[str, str]]) -> str:
    """
    C{"resent-"} if the message has one C{Resent-} block, C{""} if it has
    none.

    @raise HeaderError: if it has several.
    """
    names = [name for name, _ in fields if name in _RESENT]
    if not names:
        return ""
    blocks = max(names.count("resent-date"), names.count("resent-from"), 1)
    if blocks > 1:
        raise HeaderError(
            "the message has %d Resent- blocks, so which one gives the envelope "
            "is ambiguous" % (blocks,))
    return "resent-"


def _title(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def _values(fields: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [value for n, value in fields if n == name]


def senderFromFields(fields: Sequence[tuple[str, str]]) -> str:
    """
    The envelope sender given by the header C{fields} (as returned by
    L{headerFields}, names lowercased): the address in C{Sender}, else in
    C{From} (C{Resent-Sender}, C{Resent-From} for a resent message); C{""}
    (the null sender) if there is none.

    @raise HeaderError: if either field appears more than once, C{Sender}
        has more than one address, or C{From} has several and there is no
        C{Sender} to say which one sends.
    @raise AddressParseError: if an address in the field used cannot be
        parsed.
    """
    lowered = [(name.lower(), value) for name, value in fields]
    prefix = _resentPrefix(lowered)
    for name in (prefix + "sender", prefix + "from"):
        values = _values(lowered, name)
        if not values:
            continue
        if len(values) > 1:
            raise HeaderError("the message has %d %s fields" % (len(values), _title(name)))
        found = parseAddressList(values[0], _title(name))
        if not found:
            continue
        if len(found) > 1:
            if name.endswith("sender"):
                raise HeaderError("the %s field has %d addresses; it may have one"
                                  % (_title(name), len(found)))
            raise HeaderError(
                "the %s field has %d addresses and there is no %s field to say "
                "which one sends" % (_title(name), len(found), _title(prefix + "sender")))
        return found[0]
    return ""


def recipientsFromFields(fields: Sequence[tuple[str, str]]) -> list[str]:
    """
    The envelope recipients given by the header C{fields}: every address in
    every C{To}, C{Bcc} and C{Cc} field (C{Resent-To}, C{Resent-Bcc},
    C{Resent-Cc} for a resent message), each once, in that order (smtplib's;
    unlike smtplib, a field that appears twice is read twice, as
    C{sendmail -t} does).

    @raise AddressParseError: naming every address that cannot be parsed.
    @raise HeaderError: if the message has several C{Resent-} blocks.
    """
    lowered = [(name.lower(), value) for name, value in fields]
    prefix = _resentPrefix(lowered)
    found: list[str] = []
    problems: list[tuple[str, str, str]] = []
    # smtplib's order: To, then Bcc, then Cc.
    for name in (prefix + "to", prefix + "bcc", prefix + "cc"):
        for value in _values(lowered, name):
            try:
                found.extend(parseAddressList(value, _title(name)))
            except AddressParseError as e:
                problems.extend(e.problems)
    if problems:
        raise AddressParseError(problems)
    return uniqueAddresses(found)


def envelopeFromHeader(header: bytes) -> tuple[str, list[str]]:
    """
    Return C{(sender, recipients)} for the message whose header block is
    C{header} (see L{senderFromFields} and L{recipientsFromFields}).
    """
    fields = headerFields(header)
    return senderFromFields(fields), recipientsFromFields(fields)


# A line break followed by white space: folding, removed by unfolding (any
# other line break is left for the parser to refuse).
_FOLD = re.compile(r"(?:\r\n|\r|\n)(?=[ \t])")


def _text(value: object) -> str:
    # A stored value: a str (or str subclass: the email package's header
    # objects), or an email.header.Header.
    return value if isinstance(value, str) else str(value)


def envelopeFromMessage(msg: email.message.Message) -> tuple[str, list[str]]:
    """
    Return C{(sender, recipients)} for C{msg}, as C{smtplib}'s
    C{send_message} would, but with every address parsed strictly (see the
    module's documentation).

    @raise AddressParseError: naming every address that cannot be parsed.
    @raise HeaderError: for a header that gives no single envelope.
    """
    fields = [(name.lower(), _FOLD.sub("", _text(value)).strip(" \t"))
              for name, value in msg.raw_items()]
    return senderFromFields(fields), recipientsFromFields(fields)


def stripBcc(header: bytes) -> bytes:
    """
    Return the header block C{header} without its C{Bcc} and C{Resent-Bcc}
    fields (continuation lines included); every other byte is kept.
    """
    return b"".join(raw for name, raw in _rawFields(header) if name not in BCC_FIELDS)


def withoutBcc(msg: email.message.Message) -> bytes:
    """
    Return C{msg} flattened for sending (CRLF line endings, the message's own
    policy otherwise) without its C{Bcc} and C{Resent-Bcc} fields; C{msg}
    itself is not changed.
    """
    sent = copy.copy(msg)
    for name in ("Bcc", "Resent-Bcc"):
        del sent[name]
    return sent.as_bytes(policy=sent.policy.clone(linesep="\r\n"))
