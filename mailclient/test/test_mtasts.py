"""
MTA-STS (RFC 8461): the record and policy parsers (every field), MX
patterns, and the relay with a policy served over HTTPS by a loopback
server whose certificate comes from a CA made at test time.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mailclient._relaying.attempt import DeliveryOutcome
from mailclient._relaying.mtasts import CACHE_NAME, MTASTS, STSPolicyCache
from mailclient._wire.mtasts import (
    MAX_AGE_LIMIT,
    CachedPolicy,
    PolicyError,
    STSMode,
    STSPolicy,
    mxMatches,
    parsePolicy,
    parseSTSRecord,
    policyURL,
)
from mailclient._wire.tlspolicy import SourceKind, TLSLevel
from mailclient.test.helpers_relaytls import (
    DOMAIN,
    ENFORCE,
    NONE,
    OTHER_MX,
    TESTING,
    STSMixin,
)


class RecordTests(SynchronousTestCase):
    """
    The C{_mta-sts} TXT record.
    """

    def test_record(self) -> None:
        """
        The id of the one C{v=STSv1} record; other TXT records are ignored.
        """
        self.assertEqual(parseSTSRecord([b"v=spf1 -all", b"v=STSv1; id=20240101T00;"]).id,
                         "20240101T00")

    def test_extensionFields(self) -> None:
        """
        Unknown fields are ignored.
        """
        self.assertEqual(parseSTSRecord(["v=STSv1; ext=1; id=abc"]).id, "abc")

    def test_noRecord(self) -> None:
        """
        No C{v=STSv1} record, or more than one, is no record.
        """
        self.assertIsNone(parseSTSRecord([b"v=spf1 -all"]))
        self.assertIsNone(parseSTSRecord([b"v=STSv1; id=a", b"v=STSv1; id=b"]))

    def test_noId(self) -> None:
        """
        A record without an id is malformed.
        """
        e = self.assertRaises(PolicyError, parseSTSRecord, [b"v=STSv1;"])
        self.assertEqual(e.field, "id")

    def test_badId(self) -> None:
        """
        An id of other than 1 to 32 letters and digits is malformed.
        """
        for bad in (b"v=STSv1; id=a-b", b"v=STSv1; id=" + b"a" * 33):
            e = self.assertRaises(PolicyError, parseSTSRecord, [bad])
            self.assertEqual(e.field, "id")

    def test_badField(self) -> None:
        """
        A field that is not C{key=value} is malformed.
        """
        self.assertRaises(PolicyError, parseSTSRecord, [b"v=STSv1; id=1; junk"])


class PolicyParserTests(SynchronousTestCase):
    """
    The policy file, validated strictly: one test per field.
    """

    def test_valid(self) -> None:
        """
        A policy with CRLF lines, blanks around values and an extension.
        """
        policy = parsePolicy(b"version: STSv1\r\nmode: enforce\r\nmx:  MX1.Example.ORG. \r\n"
                             b"mx: *.example.net\r\nmax_age: 604800\r\next_x: y\r\n", "id1")
        self.assertEqual(policy, STSPolicy(STSMode.ENFORCE, ("mx1.example.org", "*.example.net"),
                                           604800, "id1"))

    def assertField(self, text: bytes, field: str) -> None:
        e = self.assertRaises(PolicyError, parsePolicy, text)
        self.assertEqual(e.field, field, str(e))

    def test_versionMissing(self) -> None:
        """
        No version: invalid.
        """
        self.assertField(b"mode: enforce\nmx: a.example\nmax_age: 1\n", "version")

    def test_versionWrong(self) -> None:
        """
        A version other than STSv1: invalid.
        """
        self.assertField(b"version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", "version")

    def test_versionTwice(self) -> None:
        """
        Two versions: invalid.
        """
        self.assertField(b"version: STSv1\nversion: STSv1\nmode: enforce\nmx: a.example\n"
                         b"max_age: 1\n", "version")

    def test_modeMissing(self) -> None:
        """
        No mode: invalid.
        """
        self.assertField(b"version: STSv1\nmx: a.example\nmax_age: 1\n", "mode")

    def test_modeUnknown(self) -> None:
        """
        A mode other than enforce, testing or none: invalid (case counts).
        """
        self.assertField(b"version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n", "mode")
        self.assertField(b"version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", "mode")

    def test_maxAgeMissing(self) -> None:
        """
        No max_age: invalid.
        """
        self.assertField(b"version: STSv1\nmode: enforce\nmx: a.example\n", "max_age")

    def test_maxAgeNotDigits(self) -> None:
        """
        A max_age that is not digits: invalid.
        """
        for bad in (b"-1", b"1d", b"1.5", b"0x10"):
            self.assertField(b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: "
                             + bad + b"\n", "max_age")

    def test_maxAgeBounds(self) -> None:
        """
        max_age may be 0 to 31557600 (RFC 8461 section 3.2), no more.
        """
        base = b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: %d\n"
        self.assertEqual(parsePolicy(base % (MAX_AGE_LIMIT,)).maxAge, MAX_AGE_LIMIT)
        self.assertEqual(parsePolicy(base % (0,)).maxAge, 0)
        self.assertField(base % (MAX_AGE_LIMIT + 1,), "max_age")

    def test_mxMissing(self) -> None:
        """
        No mx: invalid in modes enforce and testing, allowed in mode none.
        """
        self.assertField(b"version: STSv1\nmode: enforce\nmax_age: 1\n", "mx")
        self.assertField(b"version: STSv1\nmode: testing\nmax_age: 1\n", "mx")
        self.assertEqual(parsePolicy(NONE).mode, STSMode.NONE)

    def test_mxMalformed(self) -> None:
        """
        An mx that is not a host name, or a wildcard anywhere but first, or
        a wildcard over a top-level domain: invalid.
        """
        for bad in (b"mx_1.example", b"a..example", b"*", b"*.com", b"a.*.example",
                    b"-a.example", b"a b.example"):
            self.assertField(b"version: STSv1\nmode: enforce\nmx: " + bad + b"\nmax_age: 1\n",
                             "mx")

    def test_notKeyValue(self) -> None:
        """
        A line that is not C{key: value}: invalid.
        """
        e = self.assertRaises(PolicyError, parsePolicy, b"version: STSv1\nmode enforce\n")
        self.assertIsNone(e.field)

    def test_tooLarge(self) -> None:
        """
        A policy over 64 KiB: invalid.
        """
        self.assertRaises(PolicyError, parsePolicy, ENFORCE + b"x: y\n" * 20000)

    def test_notUTF8(self) -> None:
        """
        A policy that is not UTF-8 text: invalid.
        """
        self.assertRaises(PolicyError, parsePolicy, b"version: STSv1\nmode: \xff\n")


class MatchTests(SynchronousTestCase):
    """
    MX patterns (RFC 8461 section 4.1).
    """

    def test_exact(self) -> None:
        self.assertTrue(mxMatches("mx.example.org", "MX.example.org."))
        self.assertFalse(mxMatches("mx.example.org", "mx2.example.org"))

    def test_wildcardOneLabel(self) -> None:
        """
        A wildcard stands for exactly one left-most label.
        """
        self.assertTrue(mxMatches("*.example.org", "mx.example.org"))
        self.assertFalse(mxMatches("*.example.org", "a.mx.example.org"))
        self.assertFalse(mxMatches("*.example.org", "example.org"))

    def test_url(self) -> None:
        self.assertEqual(policyURL("Example.ORG."),
                         "https://mta-sts.example.org/.well-known/mta-sts.txt")
        self.assertEqual(policyURL("example.org", 8443),
                         "https://mta-sts.example.org:8443/.well-known/mta-sts.txt")

    def test_cacheState(self) -> None:
        """
        A cached policy goes to plain data and back, and expires after
        max_age.
        """
        cached = CachedPolicy(parsePolicy(ENFORCE, "a1"), 1000.0)
        self.assertEqual(CachedPolicy.fromState(json.loads(json.dumps(cached.toState()))), cached)
        self.assertFalse(cached.expired(1000.0 + 86399))
        self.assertTrue(cached.expired(1000.0 + 86400))


class STSRelayTests(STSMixin, TestCase):
    """
    The relay applying MTA-STS policies.
    """

    def setUp(self) -> None:
        self.setUpSTS()

    @defer.inlineCallbacks
    def test_enforceMatchingMX(self) -> Any:
        """
        Enforce, the MX matches the policy and its certificate verifies:
        delivered; the record names the policy (mode and id) as its source.
        """
        server, port = self.smtp("good")
        yield self.relay(self.stsManager(port))
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)
        tls = report.tls
        assert tls is not None
        self.assertEqual((tls.level, tls.verified, tls.source.kind, tls.source.mode,
                          tls.source.policyId), (TLSLevel.VERIFY, True, SourceKind.MTA_STS,
                                                 "enforce", "1"))
        self.assertIn("policy mta-sts enforce id=1", tls.describe())
        self.assertEqual(self.policy.requests, [b"/.well-known/mta-sts.txt"])
        self.assertEqual(len(server.messages), 1)

    @defer.inlineCallbacks
    def test_enforceNonMatchingMX(self) -> Any:
        """
        Enforce, and no MX matches the policy: nothing is sent, the message
        is deferred.
        """
        self.policy.body = OTHER_MX
        server, port = self.smtp("good")
        manager = self.stsManager(port)
        name = yield self.relay(manager)
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DEFERRED)
        self.assertIn("matches its MTA-STS policy", report.reason)
        self.assertEqual(server.sessions, [])
        self.assertEqual(self.waiting(), [name])
        self.assertIn(name, manager.retries)

    @defer.inlineCallbacks
    def test_enforceTLSFailure(self) -> Any:
        """
        Enforce, and the MX's certificate does not verify: deferred, never
        sent with a weaker TLS.
        """
        server, port = self.smtp("wrongName")
        name = yield self.relay(self.stsManager(port))
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DEFERRED)
        assert report.tls is not None
        self.assertEqual((report.tls.verified, report.tls.source.kind),
                         (False, SourceKind.MTA_STS))
        self.assertEqual(server.messages, [])
        self.assertEqual(self.waiting(), [name])

    @defer.inlineCallbacks
    def test_enforceNoSTARTTLS(self) -> Any:
        """
        Enforce, and the MX does not offer STARTTLS: deferred, never sent in
        clear.
        """
        server, port = self.smtp("good", starttls=False)
        yield self.relay(self.stsManager(port))
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DEFERRED)
        self.assertEqual(server.messages, [])

    @defer.inlineCallbacks
    def test_testingMode(self) -> Any:
        """
        Testing: a certificate that does not verify is delivered to and the
        failure recorded (record and TLS-RPT counters).
        """
        self.policy.body = TESTING
        server, port = self.smtp("wrongName")
        manager = self.stsManager(port)
        yield self.relay(manager)
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)
        tls = report.tls
        assert tls is not None
        self.assertEqual((tls.encrypted, tls.verified, tls.source.mode), (True, False, "testing"))
        self.assertEqual(len(server.messages), 1)
        day = manager.tlsReport.domains
        [domain] = day(*_days())
        result = manager.tlsReport.report(domain, *_days(), organizationName="o",
                                          contactInfo="c")
        [policy] = result["policies"]
        self.assertEqual(policy["policy"]["policy-type"], "sts")
        self.assertEqual(policy["summary"]["total-failure-session-count"], 1)
        self.assertEqual(policy["failure-details"][0]["result-type"],
                         "certificate-host-mismatch")

    @defer.inlineCallbacks
    def test_fetchFailureWithoutCache(self) -> Any:
        """
        No policy can be fetched and none is cached: delivered under the
        default policy (never blocked), the failure counted.
        """
        self.policy.code = 404
        server, port = self.smtp("wrongName")
        manager = self.stsManager(port)
        yield self.relay(manager)
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)
        assert report.tls is not None
        self.assertEqual(report.tls.source.kind, SourceKind.DEFAULT)
        result = manager.tlsReport.report(DOMAIN, *_days(), organizationName="o",
                                          contactInfo="c")
        details = [d["result-type"] for p in result["policies"]
                   for d in p.get("failure-details", [])]
        self.assertIn("sts-policy-fetch-error", details)

    @defer.inlineCallbacks
    def test_fetchFailureWithCachedEnforce(self) -> Any:
        """
        The policy changed (new id) but cannot be fetched: the cached
        enforce policy, still valid, applies: a certificate that does not
        verify defers the message.
        """
        sts = self.sts()
        server, port = self.smtp("good")
        yield self.relay(self.stsManager(port, sts))
        self.policy.code = 500
        self.setRecord("2")
        bad, badPort = self.smtp("wrongName")
        yield self.relay(self.stsManager(badPort, sts))
        self.assertEqual([r.outcome for r in self.reports],
                         [DeliveryOutcome.DELIVERED, DeliveryOutcome.DEFERRED])
        assert self.reports[1].tls is not None
        self.assertEqual(self.reports[1].tls.source.policyId, "1")
        self.assertEqual(len(self.policy.requests), 2)
        self.assertEqual(bad.messages, [])

    @defer.inlineCallbacks
    def test_idChange(self) -> Any:
        """
        The same id: the cached policy, not fetched again; a new id: fetched
        again, and the new policy applies.
        """
        sts = self.sts()
        server, port = self.smtp("good")
        manager = self.stsManager(port, sts)
        yield self.relay(manager)
        yield self.relay(manager)
        self.assertEqual(len(self.policy.requests), 1)
        self.policy.body = TESTING
        self.setRecord("2")
        yield self.relay(manager)
        self.assertEqual(len(self.policy.requests), 2)
        sources = [(r.tls.source.mode, r.tls.source.policyId) for r in self.reports
                   if r.tls is not None]
        self.assertEqual(sources, [("enforce", "1"), ("enforce", "1"), ("testing", "2")])

    @defer.inlineCallbacks
    def test_maxAgeExpiry(self) -> Any:
        """
        A cached policy applies (even with no record left) until max_age has
        passed; then it is dropped.
        """
        self.policy.body = ENFORCE.replace(b"86400", b"100")
        sts = self.sts()
        server, port = self.smtp("good")
        manager = self.stsManager(port, sts)
        yield self.relay(manager)
        self.setRecord(None)
        self.clock.advance(99)
        yield self.relay(manager)
        self.clock.advance(1)
        yield self.relay(manager)
        kinds = [r.tls.source.kind for r in self.reports if r.tls is not None]
        self.assertEqual(kinds, [SourceKind.MTA_STS, SourceKind.MTA_STS, SourceKind.DEFAULT])
        self.assertIsNone(sts.cache.get(DOMAIN))

    @defer.inlineCallbacks
    def test_malformedPolicyIgnored(self) -> Any:
        """
        A malformed policy is no policy (and is counted as invalid).
        """
        self.policy.body = b"version: STSv1\nmode: enforce\nmax_age: 86400\n"
        server, port = self.smtp("wrongName")
        manager = self.stsManager(port)
        yield self.relay(manager)
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)
        result = manager.tlsReport.report(DOMAIN, *_days(), organizationName="o",
                                          contactInfo="c")
        details = [d["result-type"] for p in result["policies"]
                   for d in p.get("failure-details", [])]
        self.assertIn("sts-policy-invalid", details)

    @defer.inlineCallbacks
    def test_wrongMediaType(self) -> Any:
        """
        A policy not served as text/plain is not taken.
        """
        self.policy.contentType = b"text/html"
        server, port = self.smtp("wrongName")
        yield self.relay(self.stsManager(port))
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)
        assert report.tls is not None
        self.assertEqual(report.tls.source.kind, SourceKind.DEFAULT)

    @defer.inlineCallbacks
    def test_noneRemovesCachedPolicy(self) -> Any:
        """
        A policy in mode none (new id) replaces the cached enforce policy:
        nothing is enforced any more.
        """
        sts = self.sts()
        server, port = self.smtp("good")
        yield self.relay(self.stsManager(port, sts))
        self.policy.body = NONE
        self.setRecord("2")
        bad, badPort = self.smtp("wrongName")
        yield self.relay(self.stsManager(badPort, sts))
        self.assertEqual([r.outcome for r in self.reports],
                         [DeliveryOutcome.DELIVERED, DeliveryOutcome.DELIVERED])
        assert self.reports[1].tls is not None
        self.assertEqual(self.reports[1].tls.source.kind, SourceKind.DEFAULT)
        cached = sts.cache.get(DOMAIN)
        assert cached is not None
        self.assertEqual(cached.policy.mode, STSMode.NONE)

    @defer.inlineCallbacks
    def test_restartKeepsCachedPolicy(self) -> Any:
        """
        The policy is cached on disk next to the queue: a new relay (a
        restart) uses it without fetching it again, even when it can no
        longer be fetched.
        """
        server, port = self.smtp("good")
        yield self.relay(self.stsManager(port))
        path = os.path.join(self.directory, CACHE_NAME)
        self.assertTrue(os.path.exists(path))
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.policy.code = 500
        restarted = self.sts()
        bad, badPort = self.smtp("wrongName")
        yield self.relay(self.stsManager(badPort, restarted))
        self.assertEqual(len(self.policy.requests), 1)
        self.assertEqual(self.reports[1].outcome, DeliveryOutcome.DEFERRED)
        assert self.reports[1].tls is not None
        self.assertEqual(self.reports[1].tls.source.policyId, "1")

    @defer.inlineCallbacks
    def test_httpsCertificateVerified(self) -> Any:
        """
        A policy server whose certificate does not verify gives no policy
        (RFC 8460: sts-webpki-invalid).
        """
        self.setUpSTS(kind="selfSigned")
        self.policy.body = ENFORCE
        lookup = yield self.sts().policyFor(DOMAIN)
        self.assertIsNone(lookup.policy)
        self.assertEqual(lookup.failure, "sts-webpki-invalid")
        self.assertEqual(self.policy.requests, [])

    def test_defaultCacheNextToQueue(self) -> None:
        """
        C{mtaSTS=True} makes the policies of a relay cached in its queue's
        directory.
        """
        manager = self.manager(25, mtaSTS=True)
        self.assertIsInstance(manager.mtaSTS, MTASTS)
        self.assertEqual(manager.mtaSTS.cache.path, os.path.join(self.directory, CACHE_NAME))


class CacheTests(SynchronousTestCase):
    def test_unreadableCacheIgnored(self) -> None:
        """
        A cache file that is not JSON is ignored.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("{not json")
        self.assertEqual(STSPolicyCache(path).entries, {})


def _days() -> tuple[Any, Any]:
    import datetime

    day = datetime.date(1970, 1, 1)
    return day, day + datetime.timedelta(days=30)
