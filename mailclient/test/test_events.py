"""
Tests for the structured delivery events (L{mailclient._protocol.events}),
the outcome of an attempt and the result objects
(L{mailclient._wire.delivery}), and the optional metrics
(L{mailclient._protocol.metrics}).
"""

from __future__ import annotations

import base64
import sys
from typing import Any, Dict, List

from twisted.internet import defer
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mailclient._protocol.events import (
    DELIVERY_EVENT,
    RETRY_EVENT,
    deliveryEvent,
    emitDelivery,
    emitRetry,
    errorText,
    retryEvent,
)
from mailclient._protocol.metrics import deliveryMetrics
from mailclient._wire.delivery import (
    DeliveryResult,
    DeliveryStatusUnknownError,
    Outcome,
    PoolClosedError,
    RecipientStatus,
    outcomeOf,
    recipientStatuses,
)
from mailclient._wire.errors import (
    CannotSendError,
    InvalidAddressError,
    SMTPConnectError,
    SMTPDeliveryError,
)
from mailclient._wire.tlspolicy import TLSLevel, TLSRecord
from mailclient.test.helpers_pool import (
    captureEvents,
    deliveryEvents,
    emailMessage,
    makePool,
    startServer,
)
from mailclient.testing import DATA_END, Disconnect, Reply

#: Every field of a delivery event, as docs/pool.rst lists them.
DELIVERY_FIELDS = {
    "mailclient_event", "host", "port", "address", "tls", "tlsSummary", "sender",
    "recipients", "accepted", "code", "status", "reply", "outcome", "attempt", "retries",
    "retrying", "latency", "queued", "size", "delivery", "connection", "reused",
    "cancelled", "error", "errorText", "summary",
}
RETRY_FIELDS = {"mailclient_event", "host", "port", "retry", "retries", "delay", "reason",
                "target", "delivery", "connection"}


class DeliveryEventTests(SynchronousTestCase):
    """
    L{deliveryEvent} makes every field, always.
    """

    def test_delivered(self) -> None:
        tls = TLSRecord(TLSLevel.VERIFY, "TLSv1.3", "TLS_AES_256_GCM_SHA384", True, "mx")
        event = deliveryEvent(
            host="mx.example.com", port=25, outcome=Outcome.DELIVERED,
            sender="alice@example.com",
            results=[("bob@example.net", 250, b"2.1.5 OK"),
                     (b"carol@example.net", 550, b"5.1.1 No such user")],
            code=250, reply=b"2.0.0 Ok: queued as 4F2", address="192.0.2.1", tls=tls,
            latency=0.25, queued=1.5, retries=1, size=1234, delivery=7, connection=2,
            reused=True)
        self.assertEqual(set(event), DELIVERY_FIELDS)
        self.assertEqual(event["mailclient_event"], DELIVERY_EVENT)
        self.assertEqual(event["recipients"], [
            {"address": "bob@example.net", "code": 250, "status": "2.1.5",
             "reply": "2.1.5 OK"},
            {"address": "carol@example.net", "code": 550, "status": "5.1.1",
             "reply": "5.1.1 No such user"},
        ])
        self.assertEqual((event["code"], event["status"], event["reply"]),
                         (250, "2.0.0", "2.0.0 Ok: queued as 4F2"))
        self.assertEqual((event["attempt"], event["retries"], event["accepted"]), (2, 1, 1))
        self.assertIs(event["tls"], tls)
        self.assertIn("TLSv1.3", str(event["tlsSummary"]))
        self.assertEqual(event["outcome"], "delivered")
        self.assertIsNone(event["error"])

    def test_failed(self) -> None:
        error = SMTPConnectError(-1, b"Connection lost", b">>> AUTH PLAIN <redacted>\n")
        event = deliveryEvent(host="mx", port=587, outcome=Outcome.FAILED, error=error)
        self.assertEqual(set(event), DELIVERY_FIELDS)
        self.assertEqual((event["error"], event["errorText"]),
                         ("SMTPConnectError", "Connection lost"))
        self.assertIsNone(event["code"])
        self.assertEqual(event["summary"], "Connection lost")
        self.assertEqual(event["recipients"], [])

    def test_errorTextWithoutTranscript(self) -> None:
        """
        The event says what went wrong, never the transcript C{str()} of an
        error appends.
        """
        error = SMTPDeliveryError(554, b"5.7.1 Spam", b">>> MAIL FROM:<a@b>\n<<< 554")
        self.assertEqual(errorText(error), "554 5.7.1 Spam")
        self.assertIn(">>> MAIL", str(error))
        self.assertEqual(errorText(ValueError("bad")), "bad")
        self.assertEqual(errorText(defer.CancelledError()), "CancelledError")

    def test_emit(self) -> None:
        events: List[Dict[str, Any]] = []
        log = Logger(observer=events.append)
        emitDelivery(log, host="mx", port=25, outcome=Outcome.DELIVERED, code=250,
                     reply=b"OK")
        emitDelivery(log, host="mx", port=25, outcome=Outcome.UNKNOWN,
                     error=DeliveryStatusUnknownError(b"no final reply"))
        self.assertEqual([e["log_level"] for e in events], [LogLevel.info, LogLevel.warn])
        self.assertEqual(formatEvent(events[0]),
                         "SMTP delivery to mx:25: delivered (attempt 1, 250 OK)")
        self.assertIn("unknown (attempt 1, no final reply)", formatEvent(events[1]))

    def test_retry(self) -> None:
        events: List[Dict[str, Any]] = []
        log = Logger(observer=events.append)
        emitRetry(log, host="mx", port=25, retry=2, retries=5, delay=4, reason="lost",
                  delivery=3)
        emitRetry(log, host="mx", port=25, retry=1, retries=None, delay=0.5,
                  reason="refused", connection=1)
        self.assertEqual(set(events[0]) - set(retryEvent(
            host="", port=0, retry=0, retries=0, delay=0, reason="")), {
            "log_logger", "log_level", "log_namespace", "log_source", "log_format",
            "log_time"})
        self.assertEqual(set(retryEvent(host="", port=0, retry=0, retries=0, delay=0,
                                        reason="")), RETRY_FIELDS)
        self.assertEqual(events[0]["mailclient_event"], RETRY_EVENT)
        self.assertEqual(formatEvent(events[0]),
                         "SMTP delivery 3 to mx:25 failed (lost); retry 2 of 5 in 4s")
        self.assertEqual(formatEvent(events[1]),
                         "SMTP connection to mx:25 failed (refused); retry 1 of unlimited "
                         "in 0.5s")


class OutcomeTests(SynchronousTestCase):
    """
    L{outcomeOf} names how an attempt ended.
    """

    def test_outcomes(self) -> None:
        ok = ("a@example.net", 250, b"OK")
        refused = ("b@example.net", 550, b"5.1.1 no")
        later = ("b@example.net", 450, b"4.2.0 later")
        self.assertIs(outcomeOf(250, [ok]), Outcome.DELIVERED)
        self.assertIs(outcomeOf(250, [ok, refused]), Outcome.PARTIAL)
        self.assertIs(outcomeOf(554, [ok], SMTPDeliveryError(554, b"no")), Outcome.REFUSED)
        self.assertIs(outcomeOf(451, [ok], SMTPDeliveryError(451, b"later")),
                      Outcome.TEMPORARY)
        self.assertIs(outcomeOf(450, [later], SMTPDeliveryError(450, b"No recipients")),
                      Outcome.TEMPORARY)
        # One recipient refused for good: no retry makes it better.
        self.assertIs(outcomeOf(451, [refused], SMTPDeliveryError(451, b"later")),
                      Outcome.REFUSED)
        self.assertIs(outcomeOf(None, (), InvalidAddressError("bad")), Outcome.INVALID)
        self.assertIs(outcomeOf(None, (), CannotSendError("too big")), Outcome.INVALID)
        self.assertIs(outcomeOf(None, (), SMTPConnectError(-1, b"lost")), Outcome.FAILED)
        self.assertIs(outcomeOf(None, (), DeliveryStatusUnknownError(b"?")), Outcome.UNKNOWN)
        self.assertIs(outcomeOf(-1, [ok], SMTPDeliveryError(-1, b"early 250")),
                      Outcome.FAILED)


class ResultTests(SynchronousTestCase):
    """
    L{DeliveryResult} and L{RecipientStatus}.
    """

    def test_result(self) -> None:
        recipients = recipientStatuses([("a@example.net", 250, b"2.1.5 OK"),
                                        (b"b@example.net", 550, b"5.1.1 No")])
        result = DeliveryResult(250, b"2.0.0 queued", recipients)
        numOk, addresses = result
        self.assertEqual(numOk, 1)
        self.assertEqual(addresses, [("a@example.net", 250, b"2.1.5 OK"),
                                     ("b@example.net", 550, b"5.1.1 No")])
        self.assertEqual(result.accepted, ["a@example.net"])
        self.assertEqual(result.refused, [RecipientStatus("b@example.net", 550, b"5.1.1 No",
                                                          "5.1.1")])
        self.assertTrue(recipients[0].accepted)
        self.assertEqual(recipients[0].enhancedStatus, "2.1.5")

    def test_errors(self) -> None:
        cause = SMTPConnectError(-1, b"lost")
        unknown = DeliveryStatusUnknownError(b"no final reply", b"log", cause=cause)
        self.assertIs(unknown.cause, cause)
        self.assertIs(unknown.__cause__, cause)
        self.assertEqual((unknown.code, unknown.retry, unknown.isFatal), (-1, False, True))
        closed = PoolClosedError()
        self.assertIn(b"closed", closed.resp)
        self.assertFalse(closed.retry)


SECRETS = ["s3cret-Pa55word", "alice-the-user", "TOP SECRET BODY 31337",
           "Confidential subject 4242", "hidden-bcc@example.org"]


class NoContentTests(TestCase):
    """
    No event holds message content (header or body) or a credential.
    """

    def assertClean(self, events: List[Dict[str, Any]]) -> None:
        secret = "s3cret-Pa55word"
        plain = base64.b64encode(b"\0alice-the-user\0" + secret.encode()).decode()
        forbidden = SECRETS + [plain, base64.b64encode(secret.encode()).decode()]
        for event in events:
            text = repr(event) + (formatEvent(event) or "")
            for word in forbidden:
                self.assertNotIn(word, text, event)

    @defer.inlineCallbacks
    def test_noContentNoCredentials(self) -> Any:
        server = startServer(self, extensions=["PIPELINING", "CHUNKING", "8BITMIME",
                                               "AUTH PLAIN LOGIN"],
                             credentials={"alice-the-user": "s3cret-Pa55word"},
                             requireAuth=True)
        pool = makePool(self, server, maxConnections=1, username="alice-the-user",
                        password="s3cret-Pa55word")
        events = captureEvents(self)
        message = emailMessage(1, body="TOP SECRET BODY 31337\n",
                               Bcc="hidden-bcc@example.org")
        message.replace_header("Subject", "Confidential subject 4242")
        result = yield pool.send(message, recipients=["bob@example.net"])
        self.assertEqual(result.numOk, 1)
        server.script(DATA_END, [Reply(554, b"5.7.1 Refused"), Disconnect()])
        yield self.assertFailure(pool.send(message, recipients=["bob@example.net"]),
                                 SMTPDeliveryError)
        yield self.assertFailure(pool.send(message, recipients=["bob@example.net"]),
                                 DeliveryStatusUnknownError)
        delivered = deliveryEvents(events)
        self.assertEqual([e["outcome"] for e in delivered], ["delivered", "refused", "unknown"])
        self.assertEqual(server.sessions[0].authenticated, b"alice-the-user")
        self.assertIn(b"TOP SECRET BODY 31337", server.messages[0].data)
        self.assertClean(events)

    def test_theCheckCanFail(self) -> None:
        event = deliveryEvent(host="mx", port=25, outcome=Outcome.REFUSED,
                              error=SMTPDeliveryError(554, b"TOP SECRET BODY 31337"))
        self.assertRaises(self.failureException, self.assertClean, [event])


class MetricsTests(TestCase):
    """
    With C{prometheus_client}, deliveries are counted and timed per
    destination and outcome.
    """

    def setUp(self) -> None:
        try:
            import prometheus_client
        except ImportError:
            raise self.skipTest("prometheus_client is not installed")
        self.registry = prometheus_client.CollectorRegistry()

    def sample(self, name: str, destination: str, outcome: str) -> Any:
        return self.registry.get_sample_value(
            name, {"destination": destination, "outcome": outcome})

    @defer.inlineCallbacks
    def test_counted(self) -> Any:
        server = startServer(self, extensions=["PIPELINING", "CHUNKING", "8BITMIME"])
        server.script(DATA_END, [None, Reply(554, b"5.7.1 no")])
        pool = makePool(self, server, maxConnections=1, metrics=self.registry)
        destination = "127.0.0.1:%d" % (server.portNumber,)
        results = yield defer.DeferredList(
            [pool.send(emailMessage(i)) for i in range(3)], consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [True, False, True])
        self.assertEqual(self.sample("mailclient_deliveries_total", destination, "delivered"),
                         2.0)
        self.assertEqual(self.sample("mailclient_deliveries_total", destination, "refused"),
                         1.0)
        self.assertEqual(self.sample("mailclient_delivery_seconds_count", destination,
                                     "delivered"), 2.0)
        self.assertIs(deliveryMetrics(self.registry), deliveryMetrics(self.registry))

    def test_notInstalled(self) -> None:
        saved = sys.modules["prometheus_client"]
        sys.modules["prometheus_client"] = None  # type: ignore[assignment]
        self.addCleanup(sys.modules.__setitem__, "prometheus_client", saved)
        self.assertIsNone(deliveryMetrics(self.registry))
