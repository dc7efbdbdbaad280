"""
The smtplib runner: one SMTP object per connection, sendmail() for each
message; a thread pool for separate connections and for the pool.

Messages are passed as str: smtplib sends bytes as they are, so an LF
message must be a str for smtplib to turn its line endings into CRLF.
"""

from __future__ import annotations

import smtplib
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402

Item = Tuple[int, str, List[str], str]


def worker(args: Any, source: Iterator[Item], lock: threading.Lock, errors: List[str]) -> int:
    sent = 0
    with smtplib.SMTP(args.host, args.port, local_hostname=common.IDENTITY) as s:
        while True:
            with lock:
                item = next(source, None)
            if item is None:
                break
            index, sender, rcpts, text = item
            try:
                refused = s.sendmail(sender, rcpts, text)
            except smtplib.SMTPException as e:
                errors.append("message %d: %s" % (index, e))
                continue
            if refused:
                errors.append("message %d: refused %r" % (index, refused))
            else:
                sent += 1
    return sent


def separate(args: Any, item: Item, errors: List[str]) -> int:
    index, sender, rcpts, text = item
    try:
        with smtplib.SMTP(args.host, args.port, local_hostname=common.IDENTITY) as s:
            refused = s.sendmail(sender, rcpts, text)
    except smtplib.SMTPException as e:
        errors.append("message %d: %s" % (index, e))
        return 0
    return 0 if refused else 1


def main() -> None:
    args = common.clientArgs()
    w = args.workload
    items: List[Item] = []
    if w.mode != "large":
        items = [(m.index, m.sender, m.recipients, m.data.decode("ascii")) for m in common.messages(w)]
    info = common.largeMessage(w.size) if w.mode == "large" else None
    errors: List[str] = []
    measure = common.Measure()
    measure.start()
    if w.mode in ("one", "lockstep", "pool"):
        source = iter(items)
        lock = threading.Lock()
        if w.concurrency == 1:
            sent = worker(args, source, lock, errors)
        else:
            with ThreadPoolExecutor(w.concurrency) as ex:
                sent = sum(ex.map(lambda _: worker(args, source, lock, errors), range(w.concurrency)))
    elif w.mode == "separate":
        with ThreadPoolExecutor(w.concurrency) as ex:
            sent = sum(ex.map(lambda item: separate(args, item, errors), items))
    else:
        assert info is not None
        with smtplib.SMTP(args.host, args.port, local_hostname=common.IDENTITY) as s:
            # smtplib takes the whole message as a str (or as bytes already
            # in wire form).
            with open(str(info["path"])) as f:
                text = f.read()
            s.sendmail(common.SENDER, common.recipients(w.recipients), text)
            del text
        sent = 1
    result = measure.stop()
    result.update(library="smtplib", version=sys.version.split()[0], sent=sent,
                  errors=errors[:20], error_count=len(errors))
    common.report(result)


if __name__ == "__main__":
    main()
