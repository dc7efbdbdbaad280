"""
The threads of the PostgreSQL queue's threaded driver: at most C{size}
threads, started as they are needed, run blocking calls and send each
result back to the reactor (C{callFromThread}).

A call costs one queue put, one thread woken and one C{callFromThread}:
about half of what Twisted's C{deferToThreadPool} costs (its context
propagation and its team of workers), which matters when each delivered
message is confirmed by a call.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure

T = TypeVar("T")


class WorkerThreads:
    """
    At most C{size} daemon threads named C{name} running calls, in the
    order they were made.
    """

    def __init__(self, reactor: IReactorFromThreads, size: int, name: str) -> None:
        self.reactor = reactor
        self.size = max(1, size)
        self.name = name
        # Each job gives what delivers its result in the reactor's thread.
        self._jobs: queue.SimpleQueue[Callable[[], Callable[[], object]] | None] = (
            queue.SimpleQueue())
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # Threads waiting for a job, and jobs not yet taken: a thread is
        # started when there are more jobs than threads to take them.
        self._idle = 0
        self._queued = 0

    @property
    def started(self) -> int:
        """
        How many threads are running.
        """
        return len(self._threads)

    def run(self, call: Callable[[], T]) -> defer.Deferred[T]:
        """
        Call C{call()} in a thread.

        @return: A Deferred firing (in the reactor's thread) with its
            result, or failing with its exception.
        """
        d: defer.Deferred[T] = defer.Deferred()

        def job() -> Callable[[], object]:
            try:
                result = call()
            except BaseException:
                failure = Failure()
                return lambda: d.errback(failure)
            return lambda: d.callback(result)

        with self._lock:
            self._queued += 1
            if self._queued > self._idle and len(self._threads) < self.size:
                thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._threads.append(thread)
                thread.start()
            self._jobs.put(job)
        return d

    def _work(self) -> None:
        deliver: Callable[[], object] | None = None
        while True:
            with self._lock:
                self._idle += 1
            if deliver is not None:
                # Counted idle first: a call made as soon as this result
                # is in finds this thread, rather than starting another.
                self.reactor.callFromThread(deliver)
                deliver = None
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
                if job is not None:
                    self._queued -= 1
            if job is None:
                return
            deliver = job()
            del job

    def stop(self) -> None:
        """
        Stop the threads, once they have made the calls already asked
        for; wait for them.  Calls made later start new threads.
        """
        with self._lock:
            threads, self._threads = self._threads, []
            for _ in threads:
                self._jobs.put(None)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join()
