"""
The TLS policy of each relay hop from every source the manager has: its
policy map and default level (L{SmartHostSMTPRelayingManager.tlsPolicyFor}),
DANE (validated TLSA records of the MX host), MTA-STS (the recipient
domain's policy), and the message's REQUIRETLS.  Each source only feeds
the library's one L{TLSPolicy}; where it came from is the policy's
L{PolicySource}, kept in the delivery's L{TLSRecord}.

Precedence, for mail to a domain's mail exchanges:

  1. an entry of the policy map for the domain (the operator's word);
  2. DANE, when the MX host has DNSSEC-validated TLSA records;
  3. MTA-STS, when the domain has a policy in mode C{enforce} or
     C{testing};
  4. the default level (or the relayers' own TLS context).

REQUIRETLS then raises whatever applies to C{verify}.  Smart hosts get
the policy map or the default only (and REQUIRETLS).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, TypedDict
from collections.abc import Sequence

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailclient._relaying.bounce import DeliveryFailure
from mailclient._relaying.dane import TLSAAnswer, TLSALookupError
from mailclient._relaying.mtasts import MTASTS, STSLookup
from mailclient._wire.exchanges import RefusedExchange
from mailclient._wire.mtasts import STSMode, STSPolicy
from mailclient._wire.options import ENCRYPTION_NEEDED
from mailclient._wire.tlspolicy import (
    PolicySource,
    SourceKind,
    TLSLevel,
    TLSPolicy,
    replacePolicy,
    requireVerified,
)

if TYPE_CHECKING:
    from mailclient._relaying.managed import SMTPManagedRelayerFactory
    from mailclient._relaying.manager import SmartHostSMTPRelayingManager

_log = Logger()

#: The status of a REQUIRETLS message deferred for want of verified TLS.
REQUIRETLS_DEFERRED = "4" + ENCRYPTION_NEEDED[1:]


class NoMatchingExchange(Exception):
    """
    The domain's MTA-STS policy (mode C{enforce}) names none of its mail
    exchanges: the mail waits (RFC 8461 section 5.1).
    """


class DANELookupFailed(RefusedExchange):
    """
    The TLSA records of an MX host could not be looked up: the host is not
    used for now (RFC 7672 section 2.2).
    """


def defaultMTASTS(manager: SmartHostSMTPRelayingManager) -> MTASTS:
    """
    The L{MTASTS} of a relay: TXT records looked up with its MX
    calculator's resolver, policies fetched over HTTPS with the system
    trust store, and cached in its queue's directory.
    """
    import os

    from mailclient._relaying.mtasts import CACHE_NAME

    directory = os.fsdecode(manager.queue.directory)
    return MTASTS(getattr(manager.mxcalc, "resolver", None), reactor=manager.reactor,
                  clock=manager.clock, cachePath=os.path.join(directory, CACHE_NAME))


def today(manager: SmartHostSMTPRelayingManager) -> datetime.date:
    """
    The day (UTC) on the manager's clock.
    """
    return datetime.datetime.fromtimestamp(manager._clock().seconds(),
                                           datetime.timezone.utc).date()


def _eligible(manager: SmartHostSMTPRelayingManager, domain: str | None) -> bool:
    return manager.smartHost is None and domain is not None and not domain.startswith("[")


def applySTS(
    exchanges: list[tuple[str, int]], manager: SmartHostSMTPRelayingManager, domain: str | None,
    factory: SMTPManagedRelayerFactory,
) -> list[tuple[str, int]] | defer.Deferred[list[tuple[str, int]]]:
    """
    Look up the MTA-STS policy of C{domain} (when the manager has
    L{MTASTS}) and keep it on C{factory}; in mode C{enforce}, keep only
    the exchanges it names.

    @raise NoMatchingExchange: (in the Deferred) if it names none of them.
    """
    sts = getattr(manager, "mtaSTS", None)
    if sts is None or not _eligible(manager, domain):
        return exchanges
    assert domain is not None

    def apply(lookup: STSLookup) -> list[tuple[str, int]]:
        factory.stsPolicy = None
        policy = lookup.policy
        if lookup.failure is not None:
            manager.tlsReport.record(
                today(manager), domain, "sts",
                policy.policyStrings() if policy is not None else (),
                policy.mx if policy is not None else (), lookup.failure,
                detail=lookup.reason)
        if policy is None or policy.mode is STSMode.NONE:
            return exchanges
        factory.stsPolicy = policy
        if policy.mode is not STSMode.ENFORCE:
            return exchanges
        allowed = [e for e in exchanges if policy.matches(e[0])]
        if not allowed:
            manager.tlsReport.record(
                today(manager), domain, "sts", policy.policyStrings(), policy.mx,
                "validation-failure",
                detail="no MX host matches the policy: %s" % (", ".join(e[0] for e in exchanges),))
            raise NoMatchingExchange(
                "no mail exchange of %s (%s) matches its MTA-STS policy (%s: mx %s)" % (
                    domain, ", ".join(e[0] for e in exchanges), policy.describe(),
                    ", ".join(policy.mx)))
        return allowed

    return sts.policyFor(domain).addCallback(apply)


def hopPolicy(manager: SmartHostSMTPRelayingManager, nextHop: str | None, host: str, port: int,
              factory: SMTPManagedRelayerFactory) -> defer.Deferred[TLSPolicy]:
    """
    The TLS policy of the connection to C{host}:C{port} for mail to
    C{nextHop} (see the module's precedence).

    @raise DANELookupFailed: (in the Deferred) if the host's TLSA records
        could not be looked up.
    """
    base = manager.tlsPolicyFor(nextHop, host, port, factory)
    requireTLS = bool(getattr(factory, "requireTLS", False))
    resolver = getattr(manager, "daneResolver", None)
    if (not _eligible(manager, nextHop) or base.source.kind is SourceKind.POLICY_MAP
            or base.context is not None):
        return defer.succeed(_required(manager, base) if requireTLS else base)
    if resolver is None:
        d: defer.Deferred[TLSAAnswer | None] = defer.succeed(None)
    else:
        d = defer.maybeDeferred(resolver.lookupTLSA, host, 25)

    def failed(failure: Failure) -> TLSPolicy:
        failure.trap(TLSALookupError, Exception)
        reason = "TLSA lookup for %s failed: %s" % (host, failure.getErrorMessage())
        factory.connectionError = reason
        manager.tlsReport.record(today(manager), nextHop or "", "tlsa", (), (host,),
                                 "dnssec-invalid", host, detail=reason)
        raise DANELookupFailed(reason)

    def choose(answer: TLSAAnswer | None) -> TLSPolicy:
        policy = _sourced(manager, base, answer, getattr(factory, "stsPolicy", None), host)
        return _required(manager, policy) if requireTLS else policy

    return d.addCallbacks(choose, failed)


class _Anchors(TypedDict):
    caFile: str | None
    caCertificates: tuple[bytes, ...]


def _anchors(manager: SmartHostSMTPRelayingManager) -> _Anchors:
    return {"caFile": manager.tlsCAFile, "caCertificates": tuple(manager.tlsCACertificates)}


def _sourced(manager: SmartHostSMTPRelayingManager, base: TLSPolicy, answer: TLSAAnswer | None,
             sts: STSPolicy | None, host: str) -> TLSPolicy:
    if answer is not None and answer.present:
        records = answer.usable
        if records:
            return TLSPolicy(TLSLevel.VERIFY, hostname=host, tlsa=records, source=PolicySource(
                SourceKind.DANE, detail="TLSA " + "; ".join(str(r) for r in records)))
        # Only unusable records: mandatory TLS, unauthenticated (RFC 7672
        # section 2.2).
        return TLSPolicy(TLSLevel.ENCRYPT, hostname=host, source=PolicySource(
            SourceKind.DANE, detail="no usable TLSA record: TLS without authentication"))
    if sts is not None and sts.mode is not STSMode.NONE:
        source = PolicySource(SourceKind.MTA_STS, sts.mode.value, sts.id or None,
                              None if sts.matches(host) else
                              "MX host %s does not match the policy" % (host,))
        if sts.mode is STSMode.ENFORCE:
            return TLSPolicy(TLSLevel.VERIFY, hostname=host, source=source, **_anchors(manager))
        # Testing: delivered as it comes, the check recorded.
        return TLSPolicy(TLSLevel.MAY, hostname=host, source=source, **_anchors(manager))
    return base


def _required(manager: SmartHostSMTPRelayingManager, policy: TLSPolicy) -> TLSPolicy:
    """
    C{policy} for a REQUIRETLS message, with the manager's trust anchors
    when it needs a trust store and names none.
    """
    policy = requireVerified(policy)
    if not policy.tlsa and policy.context is None and not policy.hasTrustAnchors:
        anchors = _anchors(manager)
        if anchors["caFile"] is not None or anchors["caCertificates"]:
            policy = replacePolicy(policy, **anchors)
    return policy


def countSession(
    manager: SmartHostSMTPRelayingManager, factory: SMTPManagedRelayerFactory
) -> None:
    """
    Count the session C{factory}'s relayer just had (its TLS record is
    known) for TLS-RPT: sessions to mail exchanges only.
    """
    domain: str | None = getattr(factory, "nextHop", None)
    if domain is None or not _eligible(manager, domain):
        return
    sts = getattr(factory, "stsPolicy", None)
    manager.tlsReport.recordSession(
        today(manager), domain, getattr(factory, "tlsPolicy", None),
        getattr(factory, "tlsRecord", None), getattr(factory, "peerAddress", None),
        sts.policyStrings() if sts is not None else (), sts.mx if sts is not None else ())


def requireTLSFailure(failure: DeliveryFailure | None) -> DeliveryFailure | None:
    """
    A REQUIRETLS message deferred: when it did not get verified TLS, its
    status says encryption is needed (RFC 8689 section 5).
    """
    if failure is None:
        return failure
    tls = getattr(failure, "tls", None)
    if tls is None or not (tls.encrypted and tls.verified is not False):
        failure.status = REQUIRETLS_DEFERRED
        prefix = "REQUIRETLS: no verified TLS"
        if not failure.reason.startswith(prefix):
            failure.reason = "%s (%s)" % (prefix, failure.reason) if failure.reason else prefix
    return failure


def describeSources(policies: Sequence[TLSPolicy]) -> str:
    """
    The sources of some policies, for logs.
    """
    return ", ".join(p.source.describe() for p in policies)
