"""
MTA-STS for the relay (RFC 8461): the C{_mta-sts} TXT lookup, the HTTPS
fetch of the policy with a verified certificate, and the cache (in
memory, and on disk next to the queue so a restart keeps it).

L{MTASTS.policyFor} says which policy applies to a recipient domain; what
a policy means (the pure part) is in L{mailclient._wire.mtasts}.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, cast

from twisted.internet import defer
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IPushProducer,
    IReactorTCP,
    IReactorTime,
    IResolver,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mailclient._relaying.mx import TwistedResolver
from mailclient._wire.mtasts import (
    MAX_POLICY_SIZE,
    CachedPolicy,
    PolicyError,
    STSMode,
    STSPolicy,
    STSRecord,
    isPolicyMediaType,
    parsePolicy,
    parseSTSRecord,
    policyURL,
)

if TYPE_CHECKING:
    from twisted.names import dns
    from twisted.web.client import URI
    from twisted.web.iweb import IResponse

_log = Logger()

#: The name of the cache file in the queue's directory.
CACHE_NAME = ".mta-sts-policies.json"

#: RFC 8460 result types of a policy that could not be had.
FETCH_ERROR = "sts-policy-fetch-error"
INVALID = "sts-policy-invalid"
WEBPKI_INVALID = "sts-webpki-invalid"


class PolicyFetchError(Exception):
    """
    The policy file could not be fetched.

    @ivar resultType: the RFC 8460 result type (L{FETCH_ERROR}, or
        L{WEBPKI_INVALID} when the HTTPS certificate did not verify).
    """

    def __init__(self, message: str, resultType: str = FETCH_ERROR) -> None:
        Exception.__init__(self, message)
        self.resultType = resultType


@dataclass(frozen=True)
class STSLookup:
    """
    What L{MTASTS.policyFor} found for a domain.

    @ivar policy: the policy to apply (L{None}: none; a policy in mode
        C{none} applies nothing either).
    @ivar failure: when a policy could not be had: the RFC 8460 result
        type (L{FETCH_ERROR}, L{INVALID}, L{WEBPKI_INVALID}).
    @ivar reason: why, for people.
    @ivar cached: the policy came from the cache.
    """

    policy: STSPolicy | None
    failure: str | None = None
    reason: str | None = None
    cached: bool = False


class STSPolicyCache:
    """
    Policies by domain, kept in memory and, with a C{path}, in a JSON file
    (written atomically, private to its owner) read back on start.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.entries: dict[str, CachedPolicy] = {}
        if path is not None:
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            with open(self.path, "rb") as f:
                state = json.loads(f.read(4 * 1024 * 1024).decode("utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            _log.warn("Ignoring the MTA-STS cache {path}: {error}", path=self.path, error=str(e))
            return
        policies = state.get("policies") if isinstance(state, dict) else None
        if not isinstance(policies, dict):
            return
        for domain, entry in policies.items():
            try:
                self.entries[str(domain)] = CachedPolicy.fromState(entry)
            except PolicyError:
                continue

    def get(self, domain: str) -> CachedPolicy | None:
        return self.entries.get(domain)

    def put(self, domain: str, entry: CachedPolicy) -> None:
        self.entries[domain] = entry
        self._save()

    def remove(self, domain: str) -> None:
        if self.entries.pop(domain, None) is not None:
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        state = {"version": 1,
                 "policies": {d: e.toState() for d, e in sorted(self.entries.items())}}
        temporary = self.path + ".tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                         | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(json.dumps(state, sort_keys=True).encode("utf-8"))
            os.replace(temporary, self.path)
        except OSError as e:
            _log.warn("Cannot write the MTA-STS cache {path}: {error}", path=self.path,
                      error=str(e))


@implementer(IProtocol)
class _LimitedBody(Protocol):
    """
    Reads a response body of at most C{limit} bytes.
    """

    def __init__(self, finished: defer.Deferred[bytes], limit: int) -> None:
        self.finished = finished
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.done = False

    def dataReceived(self, data: bytes) -> None:
        if self.done:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.done = True
            # The transport of a response's body produces it.
            cast(IPushProducer, self.transport).stopProducing()
            self.finished.errback(PolicyFetchError(
                "the policy is larger than %d bytes" % (self.limit,)))
            return
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        if self.done:
            return
        self.done = True
        from twisted.web.client import ResponseDone
        from twisted.web.http import PotentialDataLoss

        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self.chunks))
        else:
            self.finished.errback(PolicyFetchError(
                "the policy's body was cut short: %s" % (reason.getErrorMessage(),)))


class HTTPSPolicyFetcher:
    """
    Fetches C{https://mta-sts.<domain>/.well-known/mta-sts.txt} with
    Twisted's HTTP client (C{twisted.web.client.Agent}): the certificate
    must verify for C{mta-sts.<domain>} (RFC 8461 section 3.3), redirects
    are not followed, the answer must be C{200} and C{text/plain}, and at
    most 64 KiB are read.

    @ivar port: the HTTPS port (443; tests use another).
    @ivar caCertificates: PEM certificates to trust instead of the system
        trust store (tests use their own CA).
    @ivar connectHost: gives the address to connect to for a host name
        (default: the host name itself, resolved by the reactor); tests
        send C{mta-sts.<domain>} to 127.0.0.1.
    @ivar timeout: seconds the fetch may take.
    """

    def __init__(
        self, reactor: IReactorTCP | None = None, *, port: int | None = None,
        caCertificates: tuple[bytes, ...] = (), connectHost: Callable[[str], str] | None = None,
        timeout: float = 60,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        self.reactor = reactor
        self.port = port
        self.caCertificates = tuple(caCertificates)
        self.connectHost = connectHost
        self.timeout = timeout

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        """
        The endpoint of a policy URL (C{IAgentEndpointFactory}): TLS,
        verified for the URL's host name.
        """
        from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

        from mailclient._protocol.tls import RecordingTLS, verifyingContext

        host = uri.host.decode("ascii")
        creator: IOpenSSLClientConnectionCreator | None
        if self.caCertificates:
            creator = RecordingTLS(host, caCertificates=self.caCertificates, enforce=True)
        else:
            creator = verifyingContext(host)
            if creator is None:
                raise PolicyFetchError("TLS support is not installed")
        address = self.connectHost(host) if self.connectHost is not None else host
        return wrapClientTLS(creator, HostnameEndpoint(self.reactor, address, uri.port))

    def __call__(self, domain: str) -> defer.Deferred[bytes]:
        """
        The policy file of C{domain}.

        @raise PolicyFetchError: (in the Deferred) when it cannot be had.
        """
        from twisted.web.client import Agent
        from twisted.web.http_headers import Headers

        agent = Agent.usingEndpointFactory(self.reactor, self)
        url = policyURL(domain, self.port).encode("ascii")
        d = agent.request(b"GET", url, Headers({b"User-Agent": [b"mailclient MTA-STS"]}))
        d.addCallback(self._response)
        # A reactor is a clock too (IReactorTime).
        d.addTimeout(self.timeout, cast(IReactorTime, self.reactor))
        d.addErrback(self._failed)
        return d

    def _response(self, response: IResponse) -> defer.Deferred[bytes]:
        finished: defer.Deferred[bytes] = defer.Deferred()
        response.deliverBody(_LimitedBody(finished, MAX_POLICY_SIZE))

        def check(body: bytes) -> bytes:
            if response.code != 200:
                raise PolicyFetchError("HTTP status %d" % (response.code,))
            types = response.headers.getRawHeaders(b"content-type") or [b""]
            if not isPolicyMediaType(types[0].decode("latin-1")):
                raise PolicyFetchError("media type is not text/plain: %r"
                                       % (types[0][:60],))
            return body

        return finished.addCallback(check)

    def _failed(self, failure: Failure) -> Failure:
        if failure.check(PolicyFetchError):
            return failure
        text = _describe(failure)
        kind = WEBPKI_INVALID if "certificate" in text or "TLS" in text else FETCH_ERROR
        raise PolicyFetchError(text, kind)


def _describe(failure: Failure) -> str:
    """
    A short text for a failed fetch (Twisted's web client wraps the causes
    in lists of failures).
    """
    from mailclient._protocol.tls import describeTLSFailure

    reasons = getattr(failure.value, "reasons", None)
    if reasons:
        return "; ".join(_describe(r) for r in reasons)
    tls = describeTLSFailure(failure)
    if tls is not None:
        return tls.decode("utf-8", "replace")
    return failure.getErrorMessage() or type(failure.value).__name__


class MTASTS:
    """
    The MTA-STS policies of recipient domains (RFC 8461 section 5).

    For a domain, L{policyFor}:

      1. drops a cached policy whose C{max_age} has passed;
      2. looks up the C{_mta-sts.<domain>} TXT record;
      3. with a record whose C{id} differs from the cached policy's (or no
         cached policy), fetches the policy (L{fetchPolicy}), validates it
         strictly and caches it (a policy in mode C{none} replaces a cached
         one and applies nothing);
      4. otherwise uses the cached policy, if any.

    A policy that cannot be fetched or is invalid never blocks delivery:
    the cached policy still applies if there is one, else none does.

    @ivar resolver: the L{IResolver} the TXT record is looked up with.
    @ivar fetchPolicy: a callable C{(domain) -> Deferred[bytes]} giving
        the policy file (default: an L{HTTPSPolicyFetcher}).
    @ivar cache: the L{STSPolicyCache}.
    @ivar clock: the L{IReactorTime} the cache's ages are measured with.
    """

    def __init__(
        self, resolver: IResolver | None = None, *,
        fetchPolicy: Callable[[str], defer.Deferred[bytes]] | None = None,
        cachePath: str | None = None, clock: IReactorTime | None = None,
        reactor: IReactorTCP | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        if resolver is None:
            from twisted.names.client import createResolver

            resolver = createResolver()
        self.resolver = resolver
        self.fetchPolicy = fetchPolicy or HTTPSPolicyFetcher(reactor)
        self.cache = STSPolicyCache(cachePath)
        # A reactor is a clock too (IReactorTime).
        self.clock = clock if clock is not None else cast(IReactorTime, reactor)
        self._pending: dict[str, defer.Deferred[STSLookup]] = {}

    def policyFor(self, domain: str) -> defer.Deferred[STSLookup]:
        """
        The policy to apply to mail for C{domain} (never fails).
        """
        domain = domain.strip().lower().rstrip(".")
        pending = self._pending.get(domain)
        if pending is None:
            pending = self._pending[domain] = defer.ensureDeferred(self._policyFor(domain))
            pending.addBoth(self._settled, domain)
        result: defer.Deferred[STSLookup] = defer.Deferred()

        def share(value: STSLookup | Failure) -> STSLookup | Failure:
            result.callback(value)
            return value

        pending.addBoth(share)
        return result

    def _settled(self, value: STSLookup | Failure, domain: str) -> STSLookup:
        self._pending.pop(domain, None)
        if isinstance(value, Failure):
            _log.failure("MTA-STS lookup for {domain} failed", value, domain=domain)
            return STSLookup(None, FETCH_ERROR, value.getErrorMessage())
        return value

    async def _policyFor(self, domain: str) -> STSLookup:
        now = self.clock.seconds()
        cached = self.cache.get(domain)
        if cached is not None and cached.expired(now):
            self.cache.remove(domain)
            cached = None
        try:
            record = await self._record(domain)
        except PolicyError as e:
            return self._fallback(cached, INVALID, "MTA-STS record: %s" % (e,))
        except Exception as e:
            # No answer for now: the cached policy, if any, still applies.
            return self._fallback(cached, None, "MTA-STS record lookup failed: %s" % (e,))
        if record is None:
            return self._fallback(cached, None, None)
        if cached is not None and cached.policy.id == record.id:
            return STSLookup(cached.policy, cached=True)
        try:
            body = await self.fetchPolicy(domain)
            policy = parsePolicy(body, record.id)
        except PolicyError as e:
            return self._fallback(cached, INVALID, "invalid MTA-STS policy: %s" % (e,))
        except PolicyFetchError as e:
            return self._fallback(cached, e.resultType, "MTA-STS policy fetch failed: %s" % (e,))
        except Exception as e:
            return self._fallback(cached, FETCH_ERROR, "MTA-STS policy fetch failed: %s" % (e,))
        self.cache.put(domain, CachedPolicy(policy, self.clock.seconds()))
        return STSLookup(policy)

    def _fallback(self, cached: CachedPolicy | None, failure: str | None,
                  reason: str | None) -> STSLookup:
        if reason is not None:
            _log.info("{reason}{cached}", reason=reason,
                      cached="; using the cached policy" if cached is not None else "")
        return STSLookup(cached.policy if cached is not None else None, failure, reason,
                         cached=cached is not None)

    async def _record(self, domain: str) -> STSRecord | None:
        """
        The domain's MTA-STS record, or L{None}.

        @raise PolicyError: if it is malformed.
        """
        from twisted.names import dns, error

        name = "_mta-sts." + domain
        try:
            answers, _, _ = await cast(TwistedResolver, self.resolver).lookupText(name)
        except error.DNSNameError:
            return None
        texts = []
        for answer in answers:
            if answer.type == dns.TXT and str(answer.name).lower().rstrip(".") == name:
                texts.append(b"".join(cast("dns.Record_TXT", answer.payload).data))
        return parseSTSRecord(texts)


def isEnforced(lookup: STSLookup | None) -> bool:
    """
    Whether a lookup found a policy in mode C{enforce}.
    """
    return lookup is not None and lookup.policy is not None and \
        lookup.policy.mode is STSMode.ENFORCE
