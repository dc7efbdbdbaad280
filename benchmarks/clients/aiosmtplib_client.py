"""
The aiosmtplib runner: one SMTP object per connection, sendmail() for each
message; asyncio.gather with a semaphore for separate connections.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, Iterator, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosmtplib  # noqa: E402

import common  # noqa: E402


def connection(args: Any) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname=args.host, port=args.port, start_tls=False, local_hostname=common.IDENTITY
    )


async def worker(args: Any, source: Iterator[common.Message], errors: List[str]) -> int:
    """
    Send messages from C{source} over one connection until it is empty.
    """
    sent = 0
    smtp = connection(args)
    await smtp.connect()
    for m in source:
        try:
            refused, _ = await smtp.sendmail(m.sender, m.recipients, m.data)
        except aiosmtplib.SMTPException as e:
            errors.append("message %d: %s" % (m.index, e))
            continue
        if refused:
            errors.append("message %d: refused %r" % (m.index, refused))
        else:
            sent += 1
    await smtp.quit()
    return sent


async def separate(args: Any, m: common.Message, sem: asyncio.Semaphore, errors: List[str]) -> int:
    async with sem:
        try:
            refused, _ = await aiosmtplib.send(
                m.data, sender=m.sender, recipients=m.recipients, hostname=args.host,
                port=args.port, start_tls=False, local_hostname=common.IDENTITY,
            )
        except aiosmtplib.SMTPException as e:
            errors.append("message %d: %s" % (m.index, e))
            return 0
        return 0 if refused else 1


async def large(args: Any, path: str, nrcpt: int, errors: List[str]) -> int:
    smtp = connection(args)
    await smtp.connect()
    # aiosmtplib takes the whole message as bytes.
    with open(path, "rb") as f:
        data = f.read()
    try:
        await smtp.sendmail(common.SENDER, common.recipients(nrcpt), data)
    except aiosmtplib.SMTPException as e:
        errors.append(str(e))
        return 0
    del data
    await smtp.quit()
    return 1


async def main() -> None:
    args = common.clientArgs()
    w = args.workload
    msgs = common.messages(w) if w.mode != "large" else []
    info = common.largeMessage(w.size) if w.mode == "large" else None
    errors: List[str] = []
    measure = common.Measure()
    measure.start()
    if w.mode in ("one", "lockstep", "pool"):
        source = iter(msgs)
        sent = sum(await asyncio.gather(*(worker(args, source, errors) for _ in range(w.concurrency))))
    elif w.mode == "separate":
        sem = asyncio.Semaphore(w.concurrency)
        sent = sum(await asyncio.gather(*(separate(args, m, sem, errors) for m in msgs)))
    else:
        assert info is not None
        sent = await large(args, str(info["path"]), w.recipients, errors)
    result = measure.stop()
    result.update(library="aiosmtplib", version=aiosmtplib.__version__, sent=sent,
                  errors=errors[:20], error_count=len(errors))
    common.report(result)


if __name__ == "__main__":
    asyncio.run(main())
