"""
TLS-RPT counters (RFC 8460): each relay session to a recipient domain's
mail exchanges, counted per day, recipient (policy) domain, policy (type,
policy string, MX host) and result, so that the aggregate report of RFC
8460 section 4 can be made for any date range (L{TLSReportCounters.report}).

Sending reports (the C{_smtp._tls} record's C{rua}) is left to the
operator: the report is plain JSON data.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict
from collections.abc import Sequence

from mailclient._wire.tlspolicy import SourceKind, TLSPolicy, TLSRecord

if TYPE_CHECKING:
    from typing_extensions import NotRequired

#: The JSON of an aggregate report (RFC 8460 section 4.4).
ReportPolicy = TypedDict("ReportPolicy", {
    "policy-type": str, "policy-domain": str,
    "policy-string": "NotRequired[list[str]]", "mx-host": "NotRequired[list[str]]",
})
ReportFailure = TypedDict("ReportFailure", {
    "result-type": str, "failed-session-count": int,
    "receiving-mx-hostname": "NotRequired[str]", "receiving-ip": "NotRequired[str]",
    "failure-reason-code": "NotRequired[str]",
})
ReportSummary = TypedDict("ReportSummary", {
    "total-successful-session-count": int, "total-failure-session-count": int,
})
ReportItem = TypedDict("ReportItem", {
    "policy": ReportPolicy, "summary": ReportSummary,
    "failure-details": "NotRequired[list[ReportFailure]]",
})
ReportDateRange = TypedDict("ReportDateRange", {"start-datetime": str, "end-datetime": str})
TLSReport = TypedDict("TLSReport", {
    "organization-name": str, "date-range": ReportDateRange, "contact-info": str,
    "report-id": str, "policies": list[ReportItem],
})

#: RFC 8460 policy types.
STS = "sts"
TLSA = "tlsa"
NO_POLICY = "no-policy-found"

#: RFC 8460 result types (section 4.3).
RESULT_TYPES = (
    "starttls-not-supported", "certificate-host-mismatch", "certificate-expired",
    "certificate-not-trusted", "validation-failure", "tlsa-invalid", "dnssec-invalid",
    "dane-required", "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid",
)


def resultTypeOf(record: TLSRecord | None) -> str | None:
    """
    The RFC 8460 result type of a session's TLS record, or L{None} when
    the TLS asked for was had (verified, or not required to be).
    """
    if record is None:
        return None
    reason = (record.reason or "").lower()
    if record.encrypted and record.verified is not False:
        return None
    if not record.encrypted and not reason:
        # In clear, as the level allowed.
        return None
    if record.source.kind is SourceKind.DEFAULT and record.encrypted and \
            not record.level.required and not record.source.requireTLS:
        # Opportunistic TLS: an unverified certificate is no failure.
        return None
    if "dane" in reason or "tlsa" in reason:
        return "tlsa-invalid"
    if "secure communication" in reason or "starttls" in reason or "tls is required" in reason:
        return "starttls-not-supported"
    if "expired" in reason:
        return "certificate-expired"
    if "not valid for" in reason or "host name" in reason:
        return "certificate-host-mismatch"
    if "self-signed" in reason or "issuer" in reason or "untrusted" in reason \
            or "verify" in reason:
        return "certificate-not-trusted"
    return "validation-failure"


@dataclass
class _Counts:
    successes: int = 0
    failures: dict[tuple[str, str | None, str | None, str | None], int] = field(
        default_factory=dict)


def policyOf(policy: TLSPolicy | None, stsStrings: Sequence[str] = (),
             stsPatterns: Sequence[str] = ()) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """
    The RFC 8460 policy (type, policy strings, mx-host entries) a session
    ran under.
    """
    if policy is not None and policy.source.kind is SourceKind.DANE:
        return TLSA, tuple(str(r) for r in policy.tlsa), (policy.hostname or "",)
    if policy is not None and policy.source.kind is SourceKind.MTA_STS:
        return STS, tuple(stsStrings), tuple(stsPatterns)
    return NO_POLICY, (), ()


class TLSReportCounters:
    """
    Session counts for TLS-RPT aggregate reports.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[datetime.date, str, str, tuple[str, ...], tuple[str, ...]],
                           _Counts] = {}

    def record(
        self, day: datetime.date, policyDomain: str, policyType: str,
        policyStrings: Sequence[str] = (), mxHosts: Sequence[str] = (),
        resultType: str | None = None, receivingMX: str | None = None,
        receivingIP: str | None = None, detail: str | None = None,
    ) -> None:
        """
        Count one session (C{resultType} L{None}: a success), or one
        failure to have a policy at all.
        """
        key = (day, policyDomain.lower().rstrip("."), policyType, tuple(policyStrings),
               tuple(mxHosts))
        counts = self._counts.setdefault(key, _Counts())
        if resultType is None:
            counts.successes += 1
            return
        if resultType not in RESULT_TYPES:
            raise ValueError("not an RFC 8460 result type: %r" % (resultType,))
        failure = (resultType, receivingMX, receivingIP, (detail or "")[:200] or None)
        counts.failures[failure] = counts.failures.get(failure, 0) + 1

    def recordSession(self, day: datetime.date, domain: str, policy: TLSPolicy | None,
                      record: TLSRecord | None, address: str | None = None,
                      stsStrings: Sequence[str] = (), stsPatterns: Sequence[str] = ()) -> None:
        """
        Count one relay session from its policy and TLS record.
        """
        policyType, strings, hosts = policyOf(policy, stsStrings, stsPatterns)
        result = resultTypeOf(record)
        mx = policy.hostname if policy is not None else None
        self.record(day, domain, policyType, strings, hosts, result, mx, address,
                    record.reason if record is not None and result is not None else None)

    def domains(self, start: datetime.date, end: datetime.date) -> list[str]:
        """
        The policy domains with counts from C{start} to C{end} (included).
        """
        return sorted({key[1] for key in self._counts if start <= key[0] <= end})

    def report(
        self, policyDomain: str, start: datetime.date, end: datetime.date, *,
        organizationName: str, contactInfo: str, reportId: str | None = None,
    ) -> TLSReport:
        """
        The RFC 8460 aggregate report (section 4.4) of C{policyDomain} for
        the days C{start} to C{end} (included), as JSON data.
        """
        domain = policyDomain.lower().rstrip(".")
        merged: dict[tuple[str, tuple[str, ...], tuple[str, ...]], _Counts] = {}
        for (day, keyDomain, policyType, strings, hosts), counts in sorted(
                self._counts.items(), key=lambda item: repr(item[0])):
            if keyDomain != domain or not start <= day <= end:
                continue
            total = merged.setdefault((policyType, strings, hosts), _Counts())
            total.successes += counts.successes
            for failure, n in counts.failures.items():
                total.failures[failure] = total.failures.get(failure, 0) + n
        policies = []
        for (policyType, strings, hosts), counts in merged.items():
            policy: ReportPolicy = {"policy-type": policyType, "policy-domain": domain}
            if strings:
                policy["policy-string"] = list(strings)
            if hosts:
                policy["mx-host"] = list(hosts)
            details = []
            for (resultType, mx, ip, detail), n in sorted(
                    counts.failures.items(), key=lambda item: repr(item[0])):
                entry: ReportFailure = {"result-type": resultType, "failed-session-count": n}
                if mx:
                    entry["receiving-mx-hostname"] = mx
                if ip:
                    entry["receiving-ip"] = ip
                if detail:
                    entry["failure-reason-code"] = detail
                details.append(entry)
            item: ReportItem = {
                "policy": policy,
                "summary": {"total-successful-session-count": counts.successes,
                            "total-failure-session-count": sum(counts.failures.values())},
            }
            if details:
                item["failure-details"] = details
            policies.append(item)
        return {
            "organization-name": organizationName,
            "date-range": {
                "start-datetime": start.isoformat() + "T00:00:00Z",
                "end-datetime": end.isoformat() + "T23:59:59Z",
            },
            "contact-info": contactInfo,
            "report-id": reportId or "%s_%s_%s" % (start.isoformat(), end.isoformat(), domain),
            "policies": policies,
        }
