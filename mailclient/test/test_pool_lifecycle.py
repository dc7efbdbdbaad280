"""
Tests for the life of L{mailclient.pool.SMTPPool}'s connections and
messages over loopback: waiting connections (NOOP past the threshold, the
idle timeout), closing (draining, the bound), and cancellation.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from mailclient._wire.retry import RetryPolicy
from mailclient.pool import DeliveryStatusUnknownError, PoolClosedError
from mailclient.test.helpers_pool import (
    captureEvents,
    deliveryEvents,
    emailMessage,
    makePool,
    rawMessage,
    startServer,
    waitUntil,
)
from mailclient.testing import DATA_END, Delay, NoReply, Reply

BDAT = ["PIPELINING", "CHUNKING", "8BITMIME"]


def pendingCalls(pool: Any) -> Any:
    return [call.func.__name__ for call in pool.testClock.getDelayedCalls()]


def verbs(commands: Any) -> Any:
    return [c.split(b" ", 1)[0].split(b":", 1)[0].upper() for c in commands]


class WaitingConnectionTests(TestCase):
    """
    A connection waits between messages without a command; past
    C{noopAfter} it is checked with NOOP before it is used; past
    C{idleTimeout} it is closed.
    """

    @defer.inlineCallbacks
    def test_noNoopWithinThreshold(self) -> Any:
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server, noopAfter=10, idleTimeout=60)
        yield pool.send(emailMessage(1))
        pool.testClock.advance(9.5)  # type: ignore[attr-defined]
        yield pool.send(emailMessage(2))
        [session] = server.sessions
        self.assertEqual(verbs(session.commands), [b"EHLO", b"MAIL", b"RCPT", b"BDAT",
                                                   b"MAIL", b"RCPT", b"BDAT"])

    @defer.inlineCallbacks
    def test_noopPastThreshold(self) -> Any:
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server, noopAfter=10, idleTimeout=60)
        yield pool.send(emailMessage(1))
        pool.testClock.advance(10)  # type: ignore[attr-defined]
        yield pool.send(emailMessage(2))
        [session] = server.sessions
        self.assertEqual(verbs(session.commands)[3:], [b"BDAT", b"NOOP", b"MAIL", b"RCPT",
                                                       b"BDAT"])

    @defer.inlineCallbacks
    def test_noopRefused(self) -> Any:
        """
        A connection that fails its NOOP is closed; the message goes on a
        new one.
        """
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server, noopAfter=1)
        yield pool.send(emailMessage(1))
        server.script("NOOP", [Reply(421, b"4.4.2 Idle too long")])
        pool.testClock.advance(2)  # type: ignore[attr-defined]
        result = yield pool.send(emailMessage(2))
        self.assertEqual(result.retries, 0)
        self.assertEqual(len(server.sessions), 2)
        self.assertEqual(len(server.messages), 2)

    @defer.inlineCallbacks
    def test_noNoopWhenDisabled(self) -> Any:
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server, noopAfter=None, idleTimeout=None)
        yield pool.send(emailMessage(1))
        pool.testClock.advance(3600)  # type: ignore[attr-defined]
        yield pool.send(emailMessage(2))
        self.assertNotIn(b"NOOP", verbs(server.sessions[0].commands))
        self.assertEqual(len(server.sessions), 1)

    @defer.inlineCallbacks
    def test_idleTimeout(self) -> Any:
        """
        A connection that waited C{idleTimeout} says QUIT and is gone.
        """
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server, idleTimeout=30)
        yield pool.send(emailMessage(1))
        pool.testClock.advance(29)  # type: ignore[attr-defined]
        self.assertEqual(pool.connections, 1)
        pool.testClock.advance(1)  # type: ignore[attr-defined]
        yield waitUntil(lambda: pool.connections == 0)
        self.assertEqual(verbs(server.sessions[0].commands)[-1], b"QUIT")
        yield pool.send(emailMessage(2))
        self.assertEqual(len(server.sessions), 2)

    @defer.inlineCallbacks
    def test_serverTalksWhileWaiting(self) -> Any:
        """
        A reply nobody asked for (a server's "421 closing"): the connection
        is closed, and nothing fails.
        """
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server)
        yield pool.send(emailMessage(1))
        for p in list(server._live):
            p._send(b"421 4.4.2 Idle timeout\r\n")
        yield waitUntil(lambda: pool.connections == 0)
        yield pool.send(emailMessage(2))
        self.assertEqual(len(server.messages), 2)


class CloseTests(TestCase):
    """
    C{close()} drains what was given within its bound, then fails what is
    left; after it, nothing is taken.
    """

    @defer.inlineCallbacks
    def test_drains(self) -> Any:
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server, maxConnections=3)
        ds = [pool.send(emailMessage(i)) for i in range(20)]
        closed = pool.close()
        self.assertTrue(pool.closed)
        results = yield defer.gatherResults(ds)
        self.assertEqual(len(results), 20)
        yield closed
        self.assertEqual(pool.connections, 0)
        self.assertEqual(len(server.messages), 20)
        for session in server.sessions:
            self.assertEqual(verbs(session.commands)[-1], b"QUIT")
        self.assertEqual(pool.testClock.getDelayedCalls(), [])  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_closeIdle(self) -> Any:
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server)
        yield pool.send(emailMessage(1))
        yield pool.close()
        self.assertEqual(verbs(server.sessions[0].commands)[-1], b"QUIT")
        yield waitUntil(lambda: server.sessions[0].closed)

    @defer.inlineCallbacks
    def test_closeWhileConnecting(self) -> Any:
        """
        A connection still being made when the pool closes with nothing to
        send is given up.
        """
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server)
        d = pool.send(emailMessage(1))
        d.cancel()
        yield self.assertFailure(d, defer.CancelledError)
        self.assertEqual(pool.connections, 1)
        yield pool.close()
        self.assertEqual(pool.connections, 0)
        self.assertEqual(server.messages, [])

    @defer.inlineCallbacks
    def test_sendAfterClose(self) -> Any:
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server)
        yield pool.close()
        yield self.assertFailure(pool.send(emailMessage(1)), PoolClosedError)
        self.assertEqual(server.sessions, [])

    @defer.inlineCallbacks
    def test_bound(self) -> Any:
        """
        The server never answers the end of the first message's data: once
        the bound passes, that message's fate is unknown, the one still
        queued fails as not sent, and the connection is dropped.
        """
        server = startServer(self, extensions=BDAT)
        server.script(DATA_END, NoReply())
        pool = makePool(self, server, maxConnections=1, pipelineMessages=False)
        first = pool.send(emailMessage(1))
        second = pool.send(emailMessage(2))
        yield waitUntil(lambda: any(c.startswith(b"BDAT") for s in server.sessions
                                    for c in s.commands))
        closed = pool.close(timeout=5)
        pool.testClock.advance(4)  # type: ignore[attr-defined]
        self.assertFalse(closed.called)
        pool.testClock.advance(1)  # type: ignore[attr-defined]
        yield self.assertFailure(first, DeliveryStatusUnknownError)
        yield self.assertFailure(second, PoolClosedError)
        yield closed
        self.assertEqual(pool.connections, 0)

    @defer.inlineCallbacks
    def test_boundBeforeEndOfData(self) -> Any:
        """
        A message whose MAIL is not answered when the bound passes was not
        sent: it fails with L{PoolClosedError}.
        """
        server = startServer(self, extensions=["PIPELINING"])
        server.script("MAIL", NoReply())
        pool = makePool(self, server)
        d = pool.send(emailMessage(1))
        yield waitUntil(lambda: any(c.startswith(b"MAIL") for s in server.sessions
                                    for c in s.commands))
        closed = pool.close(timeout=0)
        pool.testClock.advance(0)  # type: ignore[attr-defined]
        failure = yield self.assertFailure(d, PoolClosedError)
        self.assertIn(b"before the end", failure.resp)
        yield closed

    @defer.inlineCallbacks
    def test_waitingRetry(self) -> Any:
        """
        A message waiting for its retry when the bound passes fails as not
        sent, and no timer is left.
        """
        server = startServer(self, extensions=BDAT)
        server.script(DATA_END, Reply(451, b"4.3.0 later"))
        pool = makePool(self, server, retry=RetryPolicy(retries=3, immediate=0, delay=60))
        d = pool.send(emailMessage(1))
        yield waitUntil(lambda: pool.waiting == 1 and pool.idleConnections == 1)
        closed = pool.close(timeout=10)
        yield waitUntil(lambda: pool.connections == 0)
        pool.testClock.advance(10)  # type: ignore[attr-defined]
        yield self.assertFailure(d, PoolClosedError)
        yield closed
        self.assertEqual(pool.testClock.getDelayedCalls(), [])  # type: ignore[attr-defined]


class CancelTests(TestCase):
    """
    Cancelling a message's Deferred.
    """

    @defer.inlineCallbacks
    def test_queued(self) -> Any:
        """
        A message not yet started is removed: never sent.
        """
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server, maxConnections=1)
        events = captureEvents(self)
        ds = [pool.send(rawMessage(i), "a@example.com", "b@example.net") for i in range(3)]
        ds[2].cancel()
        yield self.assertFailure(ds[2], defer.CancelledError)
        yield defer.gatherResults(ds[:2])
        self.assertEqual(sorted(m.data for m in server.messages),
                         [rawMessage(0), rawMessage(1)])
        self.assertEqual(pool.waiting, 0)
        self.assertEqual(len(deliveryEvents(events)), 2)

    @defer.inlineCallbacks
    def test_inFlight(self) -> Any:
        """
        A message in flight is left to finish: its Deferred fails with
        L{CancelledError} at once, the server may still get it, and its
        event says it was cancelled.
        """
        server = startServer(self, extensions=BDAT)
        server.script(DATA_END, [Delay(5)])
        pool = makePool(self, server)
        # The server's delay runs on the test's clock (its real reactor is
        # given back before it stops).
        server.reactor = pool.testClock  # type: ignore[attr-defined]
        self.addCleanup(setattr, server, "reactor", reactor)
        events = captureEvents(self)
        d = pool.send(emailMessage(1))
        yield waitUntil(lambda: any(c.startswith(b"BDAT") for s in server.sessions
                                    for c in s.commands))
        d.cancel()
        yield self.assertFailure(d, defer.CancelledError)
        pool.testClock.advance(5)  # type: ignore[attr-defined]
        yield waitUntil(lambda: len(deliveryEvents(events)) == 1)
        [event] = deliveryEvents(events)
        self.assertEqual((event["outcome"], event["cancelled"]), ("delivered", True))
        self.assertEqual(len(server.messages), 1)
        # The connection is reused.
        yield pool.send(emailMessage(2))
        self.assertEqual(len(server.sessions), 1)

    @defer.inlineCallbacks
    def test_waitingRetry(self) -> Any:
        server = startServer(self, extensions=BDAT)
        server.script(DATA_END, [Reply(451, b"4.3.0 later")])
        pool = makePool(self, server, retry=RetryPolicy(retries=3, immediate=0, delay=60))
        d = pool.send(emailMessage(1))
        yield waitUntil(lambda: "_retryDue" in pendingCalls(pool))
        self.assertEqual(pool.waiting, 1)
        d.cancel()
        yield self.assertFailure(d, defer.CancelledError)
        self.assertEqual(pool.waiting, 0)
        self.assertNotIn("_retryDue", pendingCalls(pool))
        self.assertEqual(server.messages, [])
