"""
Small helpers of C{twisted.mail.smtp} that message-building code imports:
C{rfc822date}, C{idGenerator} and C{messageid}.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterable, Callable, Iterator, Sequence

from mailclient._wire.host import getDNSName

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)


def rfc822date(timeinfo: Sequence[int] | None = None, local: int = 1) -> bytes:
    """
    Format an RFC 2822 date, as bytes.

    @param timeinfo: A sequence as returned by C{time.localtime()} or
        C{time.gmtime()}; default now.
    @param local: Whether C{timeinfo} (or now) is local time (default) or UTC.
    """
    if not timeinfo:
        timeinfo = time.localtime() if local else time.gmtime()
    if local:
        offset = -(time.altzone if timeinfo[8] else time.timezone)
    else:
        offset = 0
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return (
        "%s, %02d %s %04d %02d:%02d:%02d %s%02d%02d"
        % (
            _DAYS[timeinfo[6]],
            timeinfo[2],
            _MONTHS[timeinfo[1] - 1],
            timeinfo[0],
            timeinfo[3],
            timeinfo[4],
            timeinfo[5],
            sign,
            hours,
            minutes,
        )
    ).encode("ascii")


def idGenerator() -> Iterator[int]:
    """
    Yield 0, 1, 2, ... for ever.
    """
    i = 0
    while True:
        yield i
        i += 1


_gen = idGenerator()


def messageid(uniq: str | None = None, N: Callable[[], object] = lambda: next(_gen)) -> bytes:
    """
    Return a globally unique string in RFC 2822 Message-ID format,
    C{<datetime.pid.random[.uniq].N@host>}.
    """
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    rand = random.randrange(2**31 - 1)
    extra = "" if uniq is None else "." + uniq
    return (
        "<%s.%d.%d%s.%s@%s>"
        % (stamp, os.getpid(), rand, extra, N(), getDNSName().decode("ascii"))
    ).encode()


def publicPath(module: str, objects: Iterable[object]) -> None:
    """
    Give classes and functions defined in private modules the public
    module that exports them as their C{__module__}: pickles and the API
    documentation then name the public path, which does not move when the
    private modules do.
    """
    for obj in objects:
        if isinstance(obj, type) or callable(obj):
            obj.__module__ = module
