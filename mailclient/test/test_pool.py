"""
Tests for L{mailclient.pool.SMTPPool} over loopback, against
L{mailclient.testing.SMTPTestServer}: reuse, the size cap, connections the
server drops, at most once after the end of data, messages that fail
alone, STARTTLS and AUTH once per connection, pipelined and lock-step
servers, NOOP past the idle threshold, closing, cancellation.

The pool's timers (idle, NOOP threshold, retries, close bound) and the
connections' reply timers run on a L{Clock} the tests advance; the
sockets on the reactor.
"""

from __future__ import annotations

import io
from typing import Any, List

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from mailclient._wire.retry import RetryPolicy
from mailclient._wire.tlspolicy import TLSPolicy
from mailclient.pool import (
    DeliveryResult,
    DeliveryStatusUnknownError,
    SMTPPool,
)
from mailclient.smtp import (
    InvalidAddressError,
    MessageReadError,
    SMTPConnectError,
    SMTPDeliveryError,
)
from mailclient.test.helpers_pool import (
    captureEvents,
    deliveryEvents,
    dropConnections,
    emailMessage,
    makePool,
    rawMessage,
    retryEvents,
    startServer,
    waitUntil,
)
from mailclient.testing import DATA_END, Disconnect, NoReply, Reply

BDAT = ["PIPELINING", "CHUNKING", "8BITMIME", "ENHANCEDSTATUSCODES"]
PIPELINED_DATA = ["PIPELINING", "8BITMIME"]


def verbs(commands: List[bytes]) -> List[bytes]:
    return [c.split(b" ", 1)[0].split(b":", 1)[0].upper() for c in commands]


class ReuseTests(TestCase):
    """
    One connection carries many messages; no command is added between
    them while the connection is fresh.
    """

    @defer.inlineCallbacks
    def test_sequentialSendsShareOneConnection(self) -> Any:
        """
        Messages sent one after the other, each from the previous one's
        callback, go over one connection, with no RSET or NOOP between
        them.
        """
        server = startServer(self, extensions=PIPELINED_DATA)
        pool = makePool(self, server)
        for i in range(5):
            result = yield pool.send(emailMessage(i))
            self.assertIsInstance(result, DeliveryResult)
            self.assertEqual(result.numOk, 1)
        self.assertEqual(len(server.sessions), 1)
        commands = verbs(server.sessions[0].commands)
        self.assertEqual(commands.count(b"MAIL"), 5)
        self.assertNotIn(b"RSET", commands)
        self.assertNotIn(b"NOOP", commands)
        self.assertEqual(pool.connections, 1)
        self.assertEqual(pool.idleConnections, 1)

    @defer.inlineCallbacks
    def test_resultUnpacksAsSendmail(self) -> Any:
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server)
        server.rcptReply("nobody@example.net", 550, b"5.1.1 No such user")
        numOk, addresses = yield pool.send(rawMessage(), "alice@example.com",
                                           ["bob@example.net", "nobody@example.net"])
        self.assertEqual(numOk, 1)
        self.assertEqual([(a, code) for a, code, _ in addresses],
                         [("bob@example.net", 250), ("nobody@example.net", 550)])
        result = yield pool.send(rawMessage(), "alice@example.com", "bob@example.net")
        self.assertEqual(result.code, 250)
        self.assertEqual(result.accepted, ["bob@example.net"])
        self.assertEqual(result.address, "127.0.0.1")
        self.assertFalse(result.tls.encrypted)

    @defer.inlineCallbacks
    def test_refusedRecipientInResult(self) -> Any:
        """
        A recipient the server refuses is in the result, with its enhanced
        status; the message went to the others.
        """
        server = startServer(self, extensions=BDAT)
        server.rcptReply("nobody@example.net", 550, b"5.1.1 No such user")
        pool = makePool(self, server)
        result = yield pool.send(emailMessage(to="bob@example.net, nobody@example.net"))
        [refused] = result.refused
        self.assertEqual((refused.address, refused.code, refused.enhancedStatus),
                         ("nobody@example.net", 550, "5.1.1"))
        self.assertEqual(server.messages[0].rcptTo, [b"bob@example.net"])


    @defer.inlineCallbacks
    def test_nothingKeptOnceDone(self) -> Any:
        """
        A message's Deferred, kept by the caller, does not keep the message
        alive once it is done.
        """
        import gc

        from mailclient._pool.pool import Delivery

        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server)
        ds = [pool.send(emailMessage(i)) for i in range(3)]
        yield defer.gatherResults(ds)
        gc.collect()
        self.assertEqual([o for o in gc.get_objects() if isinstance(o, Delivery)], [])
        self.assertEqual(len(ds), 3)


class CapTests(TestCase):
    """
    Never more connections than C{maxConnections}, counted at the server.
    """

    @defer.inlineCallbacks
    def test_sizeCap(self) -> Any:
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server, maxConnections=3)
        ds = [pool.send(rawMessage(i), "alice@example.com", "bob%d@example.net" % (i,))
              for i in range(40)]
        self.assertEqual(pool.connections, 3)
        results = yield defer.gatherResults(ds)
        self.assertEqual(len(results), 40)
        self.assertEqual(server.peak, 3)
        self.assertEqual(len(server.sessions), 3)
        self.assertEqual(len(server.messages), 40)
        bodies = sorted(m.data for m in server.messages)
        self.assertEqual(bodies, sorted(rawMessage(i) for i in range(40)))

    @defer.inlineCallbacks
    def test_capOfOne(self) -> Any:
        server = startServer(self, extensions=PIPELINED_DATA)
        pool = makePool(self, server, maxConnections=1)
        yield defer.gatherResults([pool.send(rawMessage(i), "a@example.com", "b@example.net")
                                   for i in range(10)])
        self.assertEqual(server.peak, 1)
        self.assertEqual(len(server.sessions), 1)

    def test_badOptions(self) -> None:
        for bad in (0, -1, 1.5, True):
            self.assertRaises(ValueError, SMTPPool, "127.0.0.1", maxConnections=bad)
        self.assertRaises(ValueError, SMTPPool, "127.0.0.1", idleTimeout=-1)
        self.assertRaises(TypeError, SMTPPool, "127.0.0.1", noSuchOption=1)


class DroppedConnectionTests(TestCase):
    """
    A connection the server closes: reconnect, and send again only when
    the end of the data was never written.
    """

    @defer.inlineCallbacks
    def test_idleDropped(self) -> Any:
        """
        The server closes a waiting connection: the pool forgets it and the
        next message opens a new one.
        """
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server)
        events = captureEvents(self)
        yield pool.send(emailMessage(1))
        dropConnections(server)
        yield waitUntil(lambda: pool.connections == 0)
        result = yield pool.send(emailMessage(2))
        self.assertEqual(result.retries, 0)
        self.assertEqual(len(server.sessions), 2)
        self.assertEqual(len(server.messages), 2)
        self.assertEqual([e["outcome"] for e in deliveryEvents(events)],
                         ["delivered", "delivered"])

    @defer.inlineCallbacks
    def test_droppedBeforeEndOfData(self) -> Any:
        """
        The server closed the connection when the message began (a
        connection reused just as the server gave up on it): the end of
        the data was never written, so the message goes again on a new
        connection, once.
        """
        server = startServer(self, extensions=PIPELINED_DATA)
        pool = makePool(self, server, retry=RetryPolicy(retries=0))
        events = captureEvents(self)
        yield pool.send(emailMessage(1))
        server.script("MAIL", [Disconnect()])
        result = yield pool.send(emailMessage(2))
        self.assertEqual(result.retries, 1)
        self.assertEqual(len(server.sessions), 2)
        self.assertEqual([m.data.count(b"Subject: Message 2") for m in server.messages],
                         [0, 1])
        delivered = deliveryEvents(events)
        self.assertEqual([(e["outcome"], e["retrying"], e["reused"]) for e in delivered],
                         [("delivered", False, False), ("failed", True, True),
                          ("delivered", False, False)])
        [retry] = retryEvents(events)
        self.assertEqual((retry["delay"], retry["delivery"]), (0.0, 2))

    @defer.inlineCallbacks
    def test_droppedAfterEndOfData(self) -> Any:
        """
        The connection is lost after the end of the data was written: the
        outcome is unknown, reported as such, and the message is not sent
        again; the next message goes on a new connection.
        """
        for extensions in (BDAT, PIPELINED_DATA, []):
            server = startServer(self, extensions=extensions)
            pool = makePool(self, server)
            yield pool.send(emailMessage(1))
            server.script(DATA_END, [Disconnect()])
            failure = yield self.assertFailure(pool.send(emailMessage(2)),
                                               DeliveryStatusUnknownError)
            self.assertIsInstance(failure.cause, SMTPConnectError)
            self.assertIs(failure.__cause__, failure.cause)
            self.assertFalse(failure.retry)
            self.assertEqual(len(server.messages), 1)
            self.assertEqual(len(server.sessions), 1)
            yield pool.send(emailMessage(3))
            self.assertEqual(len(server.sessions), 2, extensions)
            self.assertEqual(len(server.messages), 2)

    @defer.inlineCallbacks
    def test_timeoutAfterEndOfData(self) -> Any:
        """
        No final reply in time after the end of the data: unknown too.
        """
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server)
        server.script(DATA_END, NoReply())
        d = pool.send(emailMessage(1))
        yield waitUntil(lambda: any(c.startswith(b"BDAT") for s in server.sessions
                                    for c in s.commands))
        pool.testClock.advance(601)  # type: ignore[attr-defined]
        failure = yield self.assertFailure(d, DeliveryStatusUnknownError)
        self.assertIn(b"Timeout", failure.cause.resp)


class AloneTests(TestCase):
    """
    A message that cannot be sent fails alone: the others go, over the
    same connection.
    """

    @defer.inlineCallbacks
    def _badAddressAtTheTenth(self, extensions: List[str]) -> Any:
        server = startServer(self, extensions=extensions)
        pool = makePool(self, server, maxConnections=1)
        ds = []
        for i in range(100):
            to = "jörg@example.net" if i == 9 else "user%d@example.net" % (i,)
            ds.append(pool.send(emailMessage(i, to=to)))
        results = yield defer.DeferredList(ds, consumeErrors=True)
        failed = [i for i, (ok, _) in enumerate(results) if not ok]
        self.assertEqual(failed, [9])
        results[9][1].trap(InvalidAddressError)
        self.assertEqual(len(server.messages), 99)
        self.assertEqual(len(server.sessions), 1)

    def test_badAddressPipelined(self) -> Any:
        """
        (Issue 19: with one connection for 100 messages, one bad address
        at the tenth used to end it, and 89 were never sent.)  A non-ASCII
        address to a server without SMTPUTF8 fails its message; RSET, and
        the 90 after it go on.
        """
        return self._badAddressAtTheTenth(BDAT)

    def test_badAddressPipelinedData(self) -> Any:
        return self._badAddressAtTheTenth(PIPELINED_DATA)

    def test_badAddressLockStep(self) -> Any:
        return self._badAddressAtTheTenth([])

    @defer.inlineCallbacks
    def test_invalidBeforeAnyConnection(self) -> Any:
        """
        An address that is not one (two in one string, CR LF) fails at
        once, before any connection; an address in the header that cannot
        be parsed too.
        """
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server)
        for recipients in (["a@example.net, b@example.net"], ["a@example.net\r\nRSET"], []):
            d = pool.send(rawMessage(), "alice@example.com", recipients)
            yield self.assertFailure(d, InvalidAddressError)
        d = pool.send(emailMessage(to="bob@@example.net"))
        yield self.assertFailure(d, InvalidAddressError)
        self.assertEqual(pool.connections, 0)
        self.assertEqual(server.sessions, [])

    @defer.inlineCallbacks
    def test_unreadableBody(self) -> Any:
        """
        A file that cannot be read fails its message alone, before any
        connection; a text file is sent as UTF-8.
        """
        class Broken:
            def read(self, size: int = -1) -> bytes:
                raise OSError("disk on fire")

        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server, maxConnections=1)
        ds = [pool.send(rawMessage(1), "a@example.com", "b@example.net"),
              pool.send(Broken(), "a@example.com", "b@example.net"),
              pool.send(io.StringIO("Subject: é\n\nbody\n"), "a@example.com",
                        "b@example.net")]
        results = yield defer.DeferredList(ds, consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [True, False, True])
        results[1][1].trap(MessageReadError)
        self.assertIn("disk on fire", results[1][1].getErrorMessage())
        self.assertEqual(len(server.messages), 2)
        self.assertIn("Subject: é".encode("utf-8"), server.messages[1].data)
        self.assertEqual(len(server.sessions), 1)

    @defer.inlineCallbacks
    def test_refusedMessage(self) -> Any:
        """
        A message the server refuses for good fails alone: RSET, and the
        next one goes on the same connection.
        """
        server = startServer(self, extensions=BDAT)
        server.script(DATA_END, [Reply(554, b"5.7.1 Rejected as spam")])
        pool = makePool(self, server, maxConnections=1)
        d1 = pool.send(rawMessage(1), "a@example.com", "b@example.net")
        d2 = pool.send(rawMessage(2), "a@example.com", "b@example.net")
        failure = yield self.assertFailure(d1, SMTPDeliveryError)
        self.assertEqual(failure.code, 554)
        self.assertEqual(failure.enhancedStatus, (5, 7, 1))
        yield d2
        self.assertEqual(len(server.sessions), 1)
        self.assertEqual(len(server.messages), 1)

    def test_envelopeNeeded(self) -> None:
        """
        Bytes, text and files carry no envelope: it must be given.
        """
        pool = SMTPPool("127.0.0.1", 1, reactor=reactor, tls=False, metrics=False)
        self.assertRaises(TypeError, pool.send, b"data")
        self.assertRaises(TypeError, pool.send, b"data", "a@example.com")
        self.assertRaises(TypeError, pool.send, object(), "a@example.com", "b@example.net")
        self.assertRaises(TypeError, pool.send, b"data", "a@example.com", 7)
        self.assertEqual(pool.connections, 0)


class HeaderEnvelopeTests(TestCase):
    """
    The envelope of an L{EmailMessage} comes from its header; Bcc is not
    sent.
    """

    @defer.inlineCallbacks
    def test_fromHeader(self) -> Any:
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server)
        message = emailMessage(to="Bob <bob@example.net>", Cc="carol@example.net",
                               Bcc="Dave <dave@example.org>", Sender="bounces@example.com")
        result = yield pool.send(message)
        self.assertEqual(result.accepted,
                         ["bob@example.net", "dave@example.org", "carol@example.net"])
        [received] = server.messages
        self.assertEqual(received.mailFrom, b"bounces@example.com")
        self.assertNotIn(b"dave", received.data)
        self.assertNotIn(b"Bcc", received.data)
        self.assertIn("Bcc", message)

    @defer.inlineCallbacks
    def test_givenEnvelopeWins(self) -> Any:
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server)
        result = yield pool.send(emailMessage(to="bob@example.net", Bcc="dave@example.org"),
                                 recipients=["eve@example.net"])
        self.assertEqual(result.accepted, ["eve@example.net"])
        self.assertEqual(server.messages[0].mailFrom, b"alice@example.com")
        self.assertNotIn(b"dave", server.messages[0].data)


class SessionSetupTests(TestCase):
    """
    STARTTLS and AUTH once per connection; pipelined and lock-step servers.
    """

    @defer.inlineCallbacks
    def test_starttlsAndAuthOncePerConnection(self) -> Any:
        server = startServer(self, credentials={"alice": "app password"}, requireTLS=True,
                             requireAuth=True, starttls=True)
        policy = TLSPolicy("verify", hostname="localhost",
                           caCertificates=(server.caCertificatePEM,))
        pool = makePool(self, server, maxConnections=2, tls=True, tlsPolicy=policy,
                        username="alice", password="app password")
        results = yield defer.gatherResults(
            [pool.send(emailMessage(i)) for i in range(12)])
        self.assertEqual(len(server.messages), 12)
        self.assertEqual(len(server.sessions), 2)
        for session in server.sessions:
            commands = verbs(session.commands)
            self.assertEqual(commands.count(b"STARTTLS"), 1)
            self.assertEqual(commands.count(b"AUTH"), 1)
            self.assertEqual(commands.count(b"EHLO"), 2)
            self.assertTrue(session.tls)
            self.assertEqual(session.authenticated, b"alice")
        for result in results:
            self.assertTrue(result.tls.encrypted)
            self.assertTrue(result.tls.verified)

    @defer.inlineCallbacks
    def test_authDeclined(self) -> Any:
        """
        Credentials the server declines fail the waiting messages with the
        server's answer (retrying would be declined again).
        """
        from mailclient.smtp import AUTHDeclinedError

        server = startServer(self, credentials={"alice": "app password"}, requireAuth=True,
                             starttls=False)
        pool = makePool(self, server, username="alice", password="wrong", maxConnections=1)
        events = captureEvents(self)
        ds = [pool.send(emailMessage(i)) for i in range(3)]
        for d in ds:
            failure = yield self.assertFailure(d, AUTHDeclinedError)
            self.assertNotIn(b"wrong", failure.log or b"")
        self.assertEqual(len(server.sessions), 1)
        self.assertEqual([e["outcome"] for e in deliveryEvents(events)], ["failed"] * 3)
        self.assertEqual(retryEvents(events), [])

    @defer.inlineCallbacks
    def test_certificateNotVerified(self) -> Any:
        """
        The default policy verifies the certificate for the host named: one
        the client does not trust fails the waiting messages, and is not
        tried again (it would not verify the next time either).
        """
        from mailclient.smtp import TLSError

        server = startServer(self, starttls=True)
        pool = SMTPPool("localhost", server.portNumber, reactor=reactor, metrics=False,
                        maxConnections=1)
        self.addCleanup(pool.close)
        events = captureEvents(self)
        failure = yield self.assertFailure(pool.send(emailMessage(1)), TLSError)
        self.assertIn(b"verif", failure.resp.lower())
        self.assertEqual(retryEvents(events), [])
        self.assertEqual(server.messages, [])
        self.assertEqual(pool.connections, 0)

    @defer.inlineCallbacks
    def test_implicitTLS(self) -> Any:
        """
        A policy with implicit TLS speaks TLS from the first byte.
        """
        server = startServer(self, credentials={"alice": "pw"}, starttls=False)
        port = reactor.listenSSL(0, server, server.tlsOptions,  # type: ignore[attr-defined]
                                 interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        policy = TLSPolicy("verify", implicit=True, hostname="localhost",
                           caCertificates=(server.caCertificatePEM,))
        pool = SMTPPool("127.0.0.1", port.getHost().port, reactor=reactor, metrics=False,
                        tlsPolicy=policy, username="alice", password="pw")
        self.addCleanup(pool.close)
        result = yield pool.send(emailMessage(1))
        self.assertTrue(result.tls.encrypted)
        self.assertTrue(result.tls.verified)
        self.assertNotIn(b"STARTTLS", verbs(server.sessions[-1].commands))
        self.assertEqual(server.sessions[-1].authenticated, b"alice")

    @defer.inlineCallbacks
    def test_lockStepServer(self) -> Any:
        """
        A server that offers no extension gets one command at a time.
        """
        server = startServer(self, extensions=[])
        pool = makePool(self, server, maxConnections=2)
        yield defer.gatherResults([pool.send(emailMessage(i)) for i in range(8)])
        self.assertEqual(len(server.messages), 8)
        self.assertEqual(len(server.sessions), 2)
        for session in server.sessions:
            self.assertEqual(session.pipeliningViolations, [])
            self.assertNotIn(b"RSET", verbs(session.commands))

    @defer.inlineCallbacks
    def test_heloServer(self) -> Any:
        server = startServer(self, esmtp=False)
        pool = makePool(self, server, maxConnections=1)
        yield defer.gatherResults([pool.send(emailMessage(i)) for i in range(3)])
        self.assertEqual(verbs(server.sessions[0].commands)[:2], [b"EHLO", b"HELO"])
        self.assertEqual(len(server.messages), 3)

    @defer.inlineCallbacks
    def test_pipelinedMessages(self) -> Any:
        """
        With PIPELINING and CHUNKING, the next message starts before the
        previous one's reply (its group opens with RSET, as
        C{pipelineMessages} sends it): the server sees no lock-step.
        """
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server, maxConnections=1)
        yield defer.gatherResults([pool.send(emailMessage(i)) for i in range(6)])
        [session] = server.sessions
        self.assertEqual(verbs(session.commands).count(b"BDAT"), 6)
        self.assertEqual(session.pipeliningViolations, [])
        self.assertEqual([m.via for m in server.messages], ["BDAT"] * 6)

    @defer.inlineCallbacks
    def test_withoutPipelineMessages(self) -> Any:
        server = startServer(self, extensions=BDAT)
        pool = makePool(self, server, maxConnections=1, pipelineMessages=False)
        yield defer.gatherResults([pool.send(emailMessage(i)) for i in range(4)])
        self.assertNotIn(b"RSET", verbs(server.sessions[0].commands))
        self.assertEqual(len(server.messages), 4)


class RetryTests(TestCase):
    """
    Retries follow the settings' L{RetryPolicy}, each logged as it is
    scheduled.
    """

    @defer.inlineCallbacks
    def test_temporaryRefusal(self) -> Any:
        server = startServer(self, extensions=BDAT)
        server.script(DATA_END, [Reply(451, b"4.3.0 Try again later")])
        pool = makePool(self, server, retry=RetryPolicy(retries=2, immediate=0, delay=5))
        events = captureEvents(self)
        d = pool.send(emailMessage(1))
        yield waitUntil(lambda: len(retryEvents(events)) == 1)
        self.assertEqual(retryEvents(events)[0]["delay"], 5.0)
        self.assertEqual(pool.waiting, 1)
        pool.testClock.advance(5)  # type: ignore[attr-defined]
        result = yield d
        self.assertEqual(result.retries, 1)
        self.assertEqual([(e["outcome"], e["retrying"], e["retries"])
                          for e in deliveryEvents(events)],
                         [("temporary", True, 0), ("delivered", False, 1)])
        self.assertEqual(len(server.messages), 1)

    @defer.inlineCallbacks
    def test_temporaryRefusalNoRetries(self) -> Any:
        server = startServer(self, extensions=BDAT)
        server.script(DATA_END, [Reply(451, b"4.3.0 Try again later")])
        pool = makePool(self, server, retry=RetryPolicy(retries=0))
        failure = yield self.assertFailure(pool.send(emailMessage(1)), SMTPDeliveryError)
        self.assertTrue(failure.isTemporary)

    @defer.inlineCallbacks
    def test_connectionRefused(self) -> Any:
        """
        A port nobody listens on: the connection is tried again (at once:
        a refusal is definite) as the policy allows, then the waiting
        messages fail.
        """
        server = startServer(self)
        port = server.portNumber
        yield server.stopListening()
        pool = SMTPPool("127.0.0.1", port, reactor=reactor, tls=False, metrics=False,
                        retry=RetryPolicy(retries=2))
        self.addCleanup(pool.close)
        events = captureEvents(self)
        ds = [pool.send(rawMessage(i), "a@example.com", "b@example.net") for i in range(3)]
        for d in ds:
            failure = yield self.assertFailure(d, SMTPConnectError)
            self.assertIn("refused", str(failure).lower())
        self.assertEqual([(e["retry"], e["delay"]) for e in retryEvents(events)],
                         [(1, 0.0), (2, 0.0)])
        self.assertEqual(pool.connections, 0)
        # The pool is still usable: the next message tries again.
        d = pool.send(rawMessage(9), "a@example.com", "b@example.net")
        yield self.assertFailure(d, SMTPConnectError)

    @defer.inlineCallbacks
    def test_greetingRefusedThenAccepted(self) -> Any:
        server = startServer(self, extensions=BDAT)
        server.script("GREETING", [Reply(421, b"4.3.2 Busy")])
        pool = makePool(self, server)
        result = yield pool.send(emailMessage(1))
        self.assertEqual(result.numOk, 1)
        self.assertEqual(len(server.sessions), 2)
