"""
When a delivery that failed for now is tried again.

One definition for the sender factories (and so C{sendmail}), the relay
manager and the command line: L{RetryPolicy}.

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """
    How often, and after how long, a delivery is tried again.

    The first L{immediate} retries go at once, as Twisted's sender factories
    retry; the ones after wait L{delay}, then L{factor} times longer each
    time, at most L{maxDelay}.  A failure whose answer is definite and
    immediate (the connection was refused, the name does not exist) is
    retried at once every time: waiting would only delay the error (a
    refused port fails in milliseconds, as in Twisted).

    @ivar retries: how many retries at most (L{None}: no count, only the
        deadline).  Twisted's C{retries} argument.
    @ivar immediate: how many of the first retries go at once.
    @ivar delay: the wait before the first delayed retry, in seconds.
    @ivar factor: what each further wait is multiplied by.
    @ivar maxDelay: the longest wait.
    @ivar deadline: no retry starts this many seconds after the first
        attempt began (L{None}: no limit).
    """

    retries: int | None = 5
    immediate: int = 1
    delay: float = 1.0
    factor: float = 2.0
    maxDelay: float = 60.0
    deadline: float | None = 300.0

    def __post_init__(self) -> None:
        if self.retries is not None and (
            not isinstance(self.retries, int) or isinstance(self.retries, bool)
        ):
            raise TypeError("retries must be an int or None, not %r" % (self.retries,))
        if self.retries is not None and self.retries < 0:
            raise ValueError("retries must not be negative, not %r" % (self.retries,))
        for name in ("delay", "maxDelay"):
            if getattr(self, name) < 0:
                raise ValueError("%s must not be negative" % (name,))
        if self.factor < 1:
            raise ValueError("factor must be at least 1, not %r" % (self.factor,))
        if self.deadline is not None and self.deadline < 0:
            raise ValueError("deadline must not be negative, not %r" % (self.deadline,))

    def backoff(self, failures: int) -> float:
        """
        The wait after C{failures} delayed failures in a row: L{delay} for
        the first, times L{factor} for each one after, at most L{maxDelay}.
        """
        exponent = max(0, failures - 1)
        try:
            wait = self.delay * float(self.factor) ** exponent
        except OverflowError:
            wait = self.maxDelay
        return float(min(wait, self.maxDelay))

    def nextDelay(self, retry: int, elapsed: float, refused: bool = False) -> float | None:
        """
        How long to wait before retry number C{retry} (1 for the first),
        or L{None} when no retry is left.

        @param elapsed: seconds since the first attempt began.
        @param refused: the failure was a definite, immediate refusal (see
            the class docstring).
        """
        if self.retries is not None and retry > self.retries:
            return None
        if refused or retry <= self.immediate:
            wait = 0.0
        else:
            wait = self.backoff(retry - self.immediate)
        if self.deadline is not None and elapsed + wait > self.deadline:
            return None
        return wait
