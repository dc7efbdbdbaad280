"""
TLS-RPT counters (RFC 8460): result types from TLS records, the counts,
the aggregate report's JSON structure for a date range, and what the
relay counts.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mailclient._relaying.dane import TLSAAnswer
from mailclient._relaying.tlsrpt import TLSReportCounters, resultTypeOf
from mailclient._wire.dane import TLSARecord
from mailclient._wire.tlspolicy import PolicySource, SourceKind, TLSLevel, TLSPolicy, TLSRecord
from mailclient.test.helpers_relaytls import (
    CERTS,
    MX,
    TESTING,
    FakeTLSA,
    RelayMixin as _RelayMixin,
    STSMixin as _STSMixin,
    tlsa,
)
from mailclient.testing import SMTPTestServer

DAY = datetime.date(2026, 3, 1)
STS = PolicySource(SourceKind.MTA_STS, "enforce", "1")


class ResultTypeTests(SynchronousTestCase):
    """
    L{resultTypeOf}: the RFC 8460 result type of a session.
    """

    def test_success(self) -> None:
        self.assertIsNone(resultTypeOf(TLSRecord(TLSLevel.VERIFY, "TLSv1.3", "X", True)))

    def test_opportunisticUnverifiedIsNoFailure(self) -> None:
        """
        At the default level C{may}, an unverified certificate is no
        failure.
        """
        self.assertIsNone(resultTypeOf(TLSRecord(TLSLevel.MAY, "TLSv1.3", "X", False,
                                                 reason="self-signed certificate")))

    def test_kinds(self) -> None:
        cases = {
            "certificate has expired (depth 0)": "certificate-expired",
            "certificate is not valid for mx.example.org": "certificate-host-mismatch",
            "self-signed certificate (depth 0)": "certificate-not-trusted",
            "DANE: no TLSA record matches": "tlsa-invalid",
            "something else": "validation-failure",
        }
        for reason, expected in cases.items():
            record = TLSRecord(TLSLevel.VERIFY, verified=False, reason=reason, source=STS)
            self.assertEqual(resultTypeOf(record), expected, reason)

    def test_noSTARTTLS(self) -> None:
        record = TLSRecord(TLSLevel.VERIFY, reason="Server does not support secure "
                           "communication via TLS / SSL", source=STS)
        self.assertEqual(resultTypeOf(record), "starttls-not-supported")


class ReportTests(SynchronousTestCase):
    """
    L{TLSReportCounters.report}.
    """

    def test_report(self) -> None:
        """
        Sessions per policy, with failure details, for the date range, in
        RFC 8460's structure (JSON serializable).
        """
        counters = TLSReportCounters()
        strings = ["version: STSv1", "mode: enforce", "mx: *.example.org", "max_age: 86400"]
        for _ in range(3):
            counters.record(DAY, "example.org", "sts", strings, ["*.example.org"])
        counters.record(DAY, "example.org", "sts", strings, ["*.example.org"],
                        "certificate-expired", "mx.example.org", "192.0.2.1")
        counters.record(DAY + datetime.timedelta(days=5), "example.org", "sts", strings,
                        ["*.example.org"], "certificate-expired", "mx.example.org", "192.0.2.1")
        counters.record(DAY, "other.example", "no-policy-found")
        report = counters.report("Example.ORG.", DAY, DAY, organizationName="Relay Inc.",
                                 contactInfo="tls-rpt@relay.example", reportId="r1")
        self.assertEqual(json.loads(json.dumps(report)), {
            "organization-name": "Relay Inc.",
            "date-range": {"start-datetime": "2026-03-01T00:00:00Z",
                           "end-datetime": "2026-03-01T23:59:59Z"},
            "contact-info": "tls-rpt@relay.example",
            "report-id": "r1",
            "policies": [{
                "policy": {"policy-type": "sts", "policy-domain": "example.org",
                           "policy-string": strings, "mx-host": ["*.example.org"]},
                "summary": {"total-successful-session-count": 3,
                            "total-failure-session-count": 1},
                "failure-details": [{"result-type": "certificate-expired",
                                     "failed-session-count": 1,
                                     "receiving-mx-hostname": "mx.example.org",
                                     "receiving-ip": "192.0.2.1"}],
            }],
        })
        wider = counters.report("example.org", DAY, DAY + datetime.timedelta(days=7),
                                organizationName="o", contactInfo="c")
        self.assertEqual(wider["policies"][0]["summary"]["total-failure-session-count"], 2)
        self.assertEqual(counters.domains(DAY, DAY), ["example.org", "other.example"])

    def test_unknownResultType(self) -> None:
        self.assertRaises(ValueError, TLSReportCounters().record, DAY, "example.org", "sts",
                          (), (), "made-up")

    def test_session(self) -> None:
        """
        A session under a DANE policy counts under policy type tlsa, with
        its records as the policy string.
        """
        counters = TLSReportCounters()
        record = TLSARecord(3, 1, 1, b"\x01" * 32)
        policy = TLSPolicy("verify", hostname="mx.example.org", tlsa=(record,),
                           source=PolicySource(SourceKind.DANE))
        counters.recordSession(DAY, "example.org", policy,
                               TLSRecord(TLSLevel.VERIFY, "TLSv1.3", "X", True,
                                         source=policy.source))
        [entry] = counters.report("example.org", DAY, DAY, organizationName="o",
                                  contactInfo="c")["policies"]
        self.assertEqual(entry["policy"]["policy-type"], "tlsa")
        self.assertEqual(entry["policy"]["policy-string"], [str(record)])
        self.assertEqual(entry["summary"]["total-successful-session-count"], 1)


class RelayCountTests(_RelayMixin, TestCase):
    """
    What the relay counts: one session per connection to a mail exchange.
    """

    def setUp(self) -> None:
        self.setUpRelay()

    @defer.inlineCallbacks
    def test_daneSessions(self) -> Any:
        """
        A DANE failure is counted as tlsa-invalid, a later success as a
        success; two messages over one connection are one session.
        """
        record = tlsa(3, 1, 1, CERTS.selfSigned.certificatePEM)
        bad = SMTPTestServer(hostname=MX, tlsCertificate=CERTS.good.serverOptions())
        manager = self.manager(self.listen(bad),
                               daneResolver=FakeTLSA({MX: TLSAAnswer((record,), True)}))
        yield self.relay(manager)
        good = SMTPTestServer(hostname=MX, tlsCertificate=CERTS.selfSigned.serverOptions())
        manager.PORT = self.listen(good)
        # The deferred messages are due again (their schedule is the
        # queue's).
        self.clock.advance(manager.maxBackoffDelay)
        self.queue.enqueue("alice@example.com", "carol@example.org", b"x\n")
        yield self.relay(manager)
        self.assertEqual(len(good.messages), 3)
        report = manager.tlsReport.report("example.org", DAY.replace(year=1970, month=1),
                                          DAY.replace(year=1970, month=2),
                                          organizationName="o", contactInfo="c")
        [policy] = report["policies"]
        self.assertEqual(policy["policy"]["policy-type"], "tlsa")
        self.assertEqual(policy["summary"], {"total-successful-session-count": 1,
                                             "total-failure-session-count": 1})
        self.assertEqual(policy["failure-details"][0]["result-type"], "tlsa-invalid")


class STSCountTests(_STSMixin, TestCase):
    def setUp(self) -> None:
        self.setUpSTS()

    @defer.inlineCallbacks
    def test_stsPolicyString(self) -> Any:
        """
        Sessions under an MTA-STS policy count under policy type sts, with
        the policy's lines and mx patterns.
        """
        self.policy.body = TESTING
        server, port = self.smtp("good")
        manager = self.stsManager(port)
        yield self.relay(manager)
        [policy] = manager.tlsReport.report(
            "example.org", DAY.replace(year=1970, month=1), DAY.replace(year=1970, month=2),
            organizationName="o", contactInfo="c")["policies"]
        self.assertEqual(policy["policy"]["mx-host"], ["mx.example.org"])
        self.assertIn("mode: testing", policy["policy"]["policy-string"])
        self.assertEqual(policy["summary"]["total-successful-session-count"], 1)
