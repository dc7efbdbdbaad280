"""
MTA-STS (RFC 8461): the C{_mta-sts} TXT record, the policy file, the
matching of mail exchanges against the policy's C{mx} patterns, and what
a policy asks of a delivery.

The relay (C{mailclient._relaying.mtasts}) looks the record up, fetches
the policy over HTTPS, caches it and asks this module what it means; the
result feeds the library's one TLS policy (L{TLSPolicy}), never a second
mechanism.

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import cast
from collections.abc import Iterable, Mapping, Sequence

#: The longest C{max_age} RFC 8461 allows (section 3.2: about a year).
MAX_AGE_LIMIT = 31557600

#: The largest policy file taken (RFC 8461 section 3.3 lets senders limit
#: it; 64 KiB is what common implementations allow).
MAX_POLICY_SIZE = 64 * 1024

#: The path of the policy file on C{mta-sts.<domain>} (RFC 8461 section 3.3).
WELL_KNOWN_PATH = "/.well-known/mta-sts.txt"

_ID = re.compile(r"\A[A-Za-z0-9]{1,32}\Z")
_TXT_FIELD = re.compile(r"\A([A-Za-z0-9_.-]+)=([\x21-\x3a\x3c\x3e-\x7e]+)\Z")
_DIGITS = re.compile(r"\A[0-9]{1,10}\Z")
_KEY = re.compile(r"\A[A-Za-z0-9_]{1,32}\Z")
_LABEL = re.compile(r"\A(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


class PolicyError(ValueError):
    """
    A TXT record or a policy file that does not follow RFC 8461.

    @ivar field: the field at fault (C{"version"}, C{"mode"}, C{"max_age"},
        C{"mx"}, C{"id"}), or L{None} for the text as a whole.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        ValueError.__init__(self, message)
        self.field = field


class STSMode(str, enum.Enum):
    """
    What a policy asks of senders (RFC 8461 section 5).
    """

    #: Deliver only to matching MX hosts over verified TLS; defer otherwise.
    ENFORCE = "enforce"
    #: Deliver as usual, and report (here: record) what would have failed.
    TESTING = "testing"
    #: No policy: a cached one no longer applies.
    NONE = "none"


@dataclass(frozen=True)
class STSRecord:
    """
    The C{_mta-sts.<domain>} TXT record (RFC 8461 section 3.1).

    @ivar id: the policy's identifier: when it changes, the policy is
        fetched again.
    """

    id: str


def parseSTSRecord(texts: Iterable[bytes | str]) -> STSRecord | None:
    """
    The MTA-STS record among the TXT strings of C{_mta-sts.<domain>}: each
    item is one TXT record (its strings already joined).

    Records that do not start with C{v=STSv1} are ignored; none, or more
    than one, is no record (L{None}, RFC 8461 section 3.1).

    @raise PolicyError: if the one record is malformed (no C{id}, an C{id}
        that is not 1 to 32 letters and digits, a field that is not
        C{key=value}).
    """
    found = []
    for text in texts:
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        if text.startswith("v=STSv1;") or text == "v=STSv1":
            found.append(text)
    if len(found) != 1:
        return None
    fields: dict[str, str] = {}
    for part in found[0].split(";")[1:]:
        part = part.strip(" \t")
        if not part:
            continue
        match = _TXT_FIELD.match(part)
        if match is None:
            raise PolicyError("malformed MTA-STS record field: %r" % (part[:40],))
        fields.setdefault(match.group(1), match.group(2))
    policyId = fields.get("id")
    if policyId is None:
        raise PolicyError("MTA-STS record has no id", "id")
    if not _ID.match(policyId):
        raise PolicyError("MTA-STS record id is not 1-32 letters and digits: %r"
                          % (policyId,), "id")
    return STSRecord(policyId)


@dataclass(frozen=True)
class STSPolicy:
    """
    A validated MTA-STS policy (RFC 8461 section 3.2).

    @ivar mode: an L{STSMode}.
    @ivar mx: the MX patterns (C{"mx.example.com"}, C{"*.example.net"}),
        lower case, without trailing dots.
    @ivar maxAge: seconds the policy may be cached.
    @ivar id: the identifier of the TXT record it was fetched for.
    """

    mode: STSMode
    mx: tuple[str, ...]
    maxAge: int
    id: str = ""

    def matches(self, host: str) -> bool:
        """
        Whether the MX host C{host} is one the policy names.
        """
        return any(mxMatches(pattern, host) for pattern in self.mx)

    def describe(self) -> str:
        """
        C{"mta-sts enforce id=20240101"}: for records and logs.
        """
        return "mta-sts %s id=%s" % (self.mode.value, self.id or "?")

    def policyStrings(self) -> list[str]:
        """
        The policy as the lines of its file: RFC 8460's C{policy-string}.
        """
        lines = ["version: STSv1", "mode: %s" % (self.mode.value,)]
        lines += ["mx: %s" % (pattern,) for pattern in self.mx]
        lines.append("max_age: %d" % (self.maxAge,))
        return lines

    def toState(self) -> dict[str, object]:
        """
        The policy as plain data (for the cache on disk).
        """
        return {"mode": self.mode.value, "mx": list(self.mx), "max_age": self.maxAge,
                "id": self.id}

    @classmethod
    def fromState(cls, state: Mapping[str, object]) -> STSPolicy:
        """
        The policy L{toState} gave.

        @raise PolicyError: if C{state} is not one.
        """
        try:
            mode = STSMode(state["mode"])
            # (Not a list: the TypeError below.)
            patterns = tuple(_pattern(str(p)) for p in cast(Iterable[object], state["mx"]))
            maxAge = state["max_age"]
            policyId = str(state.get("id", ""))
        except (KeyError, TypeError, ValueError) as e:
            raise PolicyError("not a cached MTA-STS policy: %s" % (e,)) from None
        if not isinstance(maxAge, int) or not 0 <= maxAge <= MAX_AGE_LIMIT:
            raise PolicyError("not a cached MTA-STS policy: max_age %r" % (maxAge,), "max_age")
        return cls(mode, patterns, maxAge, policyId)


def parsePolicy(text: bytes | str, policyId: str = "") -> STSPolicy:
    """
    Validate a policy file strictly and return its policy.

      - lines end in LF or CRLF, each C{key: value} (blanks around the
        value allowed);
      - C{version: STSv1}, C{mode} (C{enforce}, C{testing}, C{none}) and
        C{max_age} (digits, at most 31557600) each exactly once;
      - one C{mx} at least (unless the mode is C{none}), each a host name
        or C{*.} and a domain;
      - other keys (extensions) are ignored, but must be well formed.

    @param policyId: the id of the TXT record it was fetched for.
    @raise PolicyError: naming the field at fault.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_POLICY_SIZE:
            raise PolicyError("MTA-STS policy is larger than %d bytes" % (MAX_POLICY_SIZE,))
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError("MTA-STS policy is not UTF-8 text") from None
    fields: dict[str, list[str]] = {}
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), 1):
        if not line.strip(" \t"):
            continue
        key, colon, value = line.partition(":")
        if not colon or not _KEY.match(key):
            raise PolicyError("MTA-STS policy line %d is not 'key: value': %r"
                              % (number, line[:60]))
        value = value.strip(" \t")
        if not value or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise PolicyError("MTA-STS policy line %d has no usable value" % (number,), key)
        fields.setdefault(key, []).append(value)

    def single(key: str) -> str:
        values = fields.get(key, [])
        if not values:
            raise PolicyError("MTA-STS policy has no %s" % (key,), key)
        if len(values) > 1:
            raise PolicyError("MTA-STS policy has %d %s fields" % (len(values), key), key)
        return values[0]

    if single("version") != "STSv1":
        raise PolicyError("MTA-STS policy version is not STSv1: %r"
                          % (fields["version"][0][:20],), "version")
    modeText = single("mode")
    try:
        mode = STSMode(modeText)
    except ValueError:
        raise PolicyError("MTA-STS policy mode is not enforce, testing or none: %r"
                          % (modeText[:20],), "mode") from None
    age = single("max_age")
    if not _DIGITS.match(age) or int(age) > MAX_AGE_LIMIT:
        raise PolicyError("MTA-STS policy max_age is not a number of seconds up to %d: %r"
                          % (MAX_AGE_LIMIT, age[:20]), "max_age")
    patterns = tuple(_pattern(value) for value in fields.get("mx", []))
    if not patterns and mode is not STSMode.NONE:
        raise PolicyError("MTA-STS policy names no mx", "mx")
    return STSPolicy(mode, patterns, int(age), policyId)


def _pattern(value: str) -> str:
    """
    An C{mx} value checked and normalized.

    @raise PolicyError: if it is not a host name, or C{*.} and a domain.
    """
    name = value.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
        if len(labels) < 2:
            raise PolicyError("MTA-STS mx wildcard names no domain: %r" % (value[:80],), "mx")
    if not labels or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise PolicyError("MTA-STS mx is not a host name: %r" % (value[:80],), "mx")
    return name


def mxMatches(pattern: str, host: str) -> bool:
    """
    Whether the MX host C{host} matches the policy's C{pattern} (RFC 8461
    section 4.1): equal without case and trailing dot, or, for
    C{*.example.com}, one label (exactly one) before C{example.com}.
    """
    host = host.strip().lower().rstrip(".")
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return host == pattern


def partitionExchanges(policy: STSPolicy | None, hosts: Sequence[str]) -> tuple[list[str], list[str]]:
    """
    The MX hosts a policy allows and those it does not, in order: an
    C{enforce} policy allows only matching hosts; any other mode (or no
    policy) allows every host, the non-matching ones being reported.
    """
    if policy is None or policy.mode is STSMode.NONE:
        return list(hosts), []
    matching = [h for h in hosts if policy.matches(h)]
    others = [h for h in hosts if not policy.matches(h)]
    return matching, others


@dataclass(frozen=True)
class CachedPolicy:
    """
    A policy in the cache, with the time it was fetched (seconds since the
    epoch).
    """

    policy: STSPolicy
    fetched: float

    def expired(self, now: float) -> bool:
        """
        Whether C{max_age} has passed.
        """
        return now >= self.fetched + self.policy.maxAge

    def toState(self) -> dict[str, object]:
        state = self.policy.toState()
        state["fetched"] = self.fetched
        return state

    @classmethod
    def fromState(cls, state: Mapping[str, object]) -> CachedPolicy:
        fetched = state.get("fetched") if isinstance(state, dict) else None
        if not isinstance(fetched, (int, float)):
            raise PolicyError("not a cached MTA-STS policy: no fetch time")
        return cls(STSPolicy.fromState(state), float(fetched))


def policyURL(domain: str, port: int | None = None) -> str:
    """
    Where the policy of C{domain} is (RFC 8461 section 3.3), with another
    C{port} for tests.
    """
    host = "mta-sts." + domain.strip().lower().rstrip(".")
    where = host if port is None or port == 443 else "%s:%d" % (host, port)
    return "https://%s%s" % (where, WELL_KNOWN_PATH)


def isPolicyMediaType(contentType: str | None) -> bool:
    """
    Whether a C{Content-Type} is C{text/plain} (RFC 8461 section 3.3),
    parameters allowed.
    """
    if contentType is None:
        return False
    return contentType.split(";", 1)[0].strip().lower() == "text/plain"
