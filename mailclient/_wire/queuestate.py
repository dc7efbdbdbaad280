"""
What a relay queue remembers about each message besides the message: its
durable retry schedule (L{RetryState}), the names of the notifications made
from it (a bounce, a delay warning), and the destination its connections
count against.

One definition for both queues: the directory queue keeps a L{RetryState} in
a C{<name>-R} side file (L{encodeRetryState}), the PostgreSQL queue in the
message's row.

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, replace
from typing import Callable

from mailclient._wire.address import extractAddress
from mailclient._wire.errors import InvalidAddressError
from mailclient._wire.retry import RetryPolicy
from mailclient._wire.text import envelopeText

#: The suffix of the side file holding a queued message's L{RetryState} in
#: the directory queue.  Twisted's queue only looks at C{-D} files, so it
#: ignores these.
RETRY_SUFFIX = "-R"

#: The suffix of the side file holding a queued message's options (such as
#: REQUIRETLS: L{mailclient._relaying.msgoptions}); ignored by Twisted too.
OPTIONS_SUFFIX = "-O"

#: The largest retry file read: it holds a few numbers and one reason.
MAX_RETRY_FILE = 16 * 1024

#: The longest reason kept with a message.
MAX_REASON = 1000

#: The back-off of a relaying manager with its default settings: 30 s after
#: the first failure, doubling, at most an hour.
DEFAULT_RETRY_POLICY = RetryPolicy(
    retries=None, immediate=0, delay=30, factor=2, maxDelay=3600, deadline=None)

RetryDelay = Callable[[int], float]

#: A message name safe as a file name in any queue directory, and as a row
#: id: letters, digits, dot, underscore and hyphen, not starting with a dot.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}\Z")

BOUNCE_SUFFIX = ".bounce"
WARNING_SUFFIX = ".delay"


def defaultRetryDelay(failures: int) -> float:
    """
    The wait after C{failures} failures in a row with the default policy.
    """
    return DEFAULT_RETRY_POLICY.backoff(failures)


def _reason(reason: object) -> str:
    text = reason if isinstance(reason, str) else str(reason)
    text = " ".join(text.split())
    return text[:MAX_REASON]


@dataclass(frozen=True)
class RetryState:
    """
    The durable retry schedule of one queued message.

    @ivar failures: How many attempts in a row failed for now.
    @ivar nextAttempt: When it may be tried again (seconds since the epoch,
        on the clock of whoever decides: the relaying manager's for the
        directory queue, the database's for the PostgreSQL queue); L{None}:
        at once.
    @ivar lastFailure: When it last failed for now, if it did.
    @ivar lastReason: Why, for people.
    @ivar warned: Whether a delay warning (RFC 3464 C{Action: delayed})
        was queued for it.
    """

    failures: int = 0
    nextAttempt: float | None = None
    lastFailure: float | None = None
    lastReason: str = ""
    warned: bool = False

    def isDue(self, now: float) -> bool:
        """
        Whether the message may be tried at C{now}.
        """
        return self.nextAttempt is None or self.nextAttempt <= now

    def failed(self, when: float, reason: object, retryDelay: RetryDelay) -> "RetryState":
        """
        The schedule after one more failure at C{when}: the next attempt
        C{retryDelay(failures)} seconds later.
        """
        failures = self.failures + 1
        delay = float(retryDelay(failures))
        if math.isnan(delay) or delay < 0:
            raise ValueError("retryDelay(%d) gave %r, not a delay" % (failures, delay))
        return replace(self, failures=failures, nextAttempt=when + delay,
                       lastFailure=when, lastReason=_reason(reason))

    def asWarned(self) -> "RetryState":
        """
        The same schedule, with the delay warning sent.
        """
        return replace(self, warned=True)


def encodeRetryState(state: RetryState) -> bytes:
    """
    The content of a C{-R} file: one JSON object.
    """
    fields = {
        "failures": state.failures,
        "nextAttempt": state.nextAttempt,
        "lastFailure": state.lastFailure,
        "lastReason": state.lastReason,
        "warned": state.warned,
    }
    return json.dumps(fields, sort_keys=True, ensure_ascii=True).encode("ascii") + b"\n"


def _time(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("retry file: %s is not a time" % (name,))
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("retry file: %s is not a finite time" % (name,))
    return value


def decodeRetryState(data: bytes) -> RetryState:
    """
    Read a C{-R} file written by L{encodeRetryState}.

    @raise ValueError: if it is not one (unknown fields are ignored, so a
        later version may add some).
    """
    if len(data) > MAX_RETRY_FILE:
        raise ValueError("retry file is too large")
    try:
        fields = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("retry file is not JSON") from None
    if not isinstance(fields, dict):
        raise ValueError("retry file is not a JSON object")
    failures = fields.get("failures", 0)
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
        raise ValueError("retry file: failures is not a count")
    reason = fields.get("lastReason", "")
    if not isinstance(reason, str):
        raise ValueError("retry file: lastReason is not text")
    warned = fields.get("warned", False)
    if not isinstance(warned, bool):
        raise ValueError("retry file: warned is not true or false")
    return RetryState(
        failures=failures,
        nextAttempt=_time(fields.get("nextAttempt"), "nextAttempt"),
        lastFailure=_time(fields.get("lastFailure"), "lastFailure"),
        lastReason=_reason(reason),
        warned=warned,
    )


def delayWarningDue(
    state: RetryState | None, queuedAt: float | None, now: float, after: float | None
) -> bool:
    """
    Whether a message queued at C{queuedAt} that is still being retried
    should now get its one delay warning: it failed for now at least once,
    has not been warned, and has waited C{after} seconds (L{None}: never
    warn).
    """
    if after is None or state is None or queuedAt is None:
        return False
    return state.failures > 0 and not state.warned and now - queuedAt >= after


def isSafeName(name: str) -> bool:
    """
    Whether C{name} can name a queued message: a plain file name (see
    L{_SAFE_NAME}), never a path.
    """
    return isinstance(name, str) and _SAFE_NAME.match(name) is not None


def newMessageName() -> str:
    """
    A fresh, unique message name (a random UUID in hexadecimal).
    """
    return uuid.uuid4().hex


def bounceName(name: str) -> str:
    """
    The name of the bounce of message C{name}: the same whoever makes it,
    so that making it twice makes one.
    """
    return name + BOUNCE_SUFFIX


def warningName(name: str) -> str:
    """
    The name of the delay warning of message C{name} (see L{bounceName}).
    """
    return name + WARNING_SUFFIX


def originalOf(name: str) -> str | None:
    """
    The message a bounce or warning name was made from, if it is one.
    """
    for suffix in (BOUNCE_SUFFIX, WARNING_SUFFIX):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def recipientDomainOf(recipient: str | bytes) -> str | None:
    """
    The lower-cased domain of an envelope recipient, or L{None} if it has
    none (the same as the managed relayers' C{recipientDomain}).
    """
    try:
        address = extractAddress(envelopeText(recipient))
    except InvalidAddressError:
        return None
    local, at, domain = address.rpartition("@")
    if not (at and local and domain):
        return None
    return domain.lower()


def smartHostDestination(host: str, port: int) -> str:
    """
    The destination key of a smart host, as a TLS policy map names it:
    C{"[smtp.example.com]:587"}.
    """
    return "[%s]:%d" % (host.lower().rstrip("."), port)
