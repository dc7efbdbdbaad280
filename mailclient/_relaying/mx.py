"""
Finding the mail exchanges of a domain (RFC 5321 section 5.1, RFC 7505).

L{MXCalculator} keeps Twisted's interface (C{getMX}, C{markBad},
C{markGood}, C{badMXs}, C{timeOutBadMX}, C{fallbackToDomain}) and adds
L{MXCalculator.getExchanges}, which returns every exchange in the order to
try them, so a relay can fail over.  Reading the DNS answer is done by pure
functions (L{classifyAnswers}, L{orderExchanges}); the calculator only does
the lookups.

Where this differs from Twisted: C{docs/compatibility.rst}, "Relaying".
"""

from __future__ import annotations

import random as _random
from collections.abc import Generator
from itertools import groupby
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Literal,
    Mapping,
    NoReturn,
    Protocol,
    Sequence,
    TypeAlias,
    cast,
)

from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import IReactorTime, IResolver
from twisted.logger import Logger
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from twisted.names import dns

_log = Logger()

Name: TypeAlias = "str | bytes | dns.Name"

#: A DNS response as Twisted's resolvers give it: the answer, authority and
#: additional sections.
_Response: TypeAlias = tuple[
    list["dns.RRHeader"], list["dns.RRHeader"], list["dns.RRHeader"]
]

#: What L{classifyAnswers} found: the MX records, an alias still to look up
#: (its target and record), or neither.
_Classified: TypeAlias = (
    tuple[Literal["mx"], list["dns.Record_MX"]]
    | tuple[Literal["cname"], tuple[str, "dns.Record_CNAME"]]
    | tuple[Literal["none"], None]
)

#: The timeouts of a lookup (L{None}: the resolver's), and what it gives.
_Timeout: TypeAlias = "Sequence[int] | None"
_Lookup: TypeAlias = "defer.Deferred[_Response]"


class TwistedResolver(Protocol):
    """
    The lookups of an L{IResolver} as they are called here and as Twisted's
    resolvers (L{twisted.names.common.ResolverBase}) define them: the
    timeout is optional and each section of the response is a list.
    (L{IResolver} declares the timeout required and each section one
    record.)
    """

    def lookupMailExchange(self, name: str, timeout: _Timeout = None) -> _Lookup: ...
    def lookupAddress(self, name: str, timeout: _Timeout = None) -> _Lookup: ...
    def lookupIPV6Address(self, name: str, timeout: _Timeout = None) -> _Lookup: ...
    def lookupText(self, name: str, timeout: _Timeout = None) -> _Lookup: ...


class CanonicalNameLoop(Exception):
    """
    When looking up a mail exchange host, the canonical name (CNAME) records
    found form a cycle; resolution was abandoned.
    """


class CanonicalNameChainTooLong(Exception):
    """
    When looking up a mail exchange host, more canonical name (CNAME)
    records pointing to other canonical names were found than allowed;
    resolution was abandoned.
    """


class UndeliverableDomain(DNSLookupError):
    """
    Mail cannot be delivered to a domain: it publishes a null MX (RFC 7505),
    or it has neither a usable MX nor an address.  Messages for it are
    returned to their senders rather than retried.  (mailclient addition;
    a L{DNSLookupError}, so code that expects Twisted's errors still works.)

    @ivar domain: The domain.
    @ivar status: The RFC 3463 status to report (C{"5.1.10"} for a null MX,
        C{"5.1.2"} for a domain that does not exist, C{"5.4.4"} when no
        host can be found).
    """

    def __init__(self, domain: str, status: str, reason: str) -> None:
        DNSLookupError.__init__(self, reason)
        self.domain = domain
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


def normalName(name: Name) -> str:
    """
    Return a DNS name as text in a form fit for comparison: lower case,
    without a trailing dot.
    """
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    return str(name).rstrip(".").lower()


def classifyAnswers(
    answers: Sequence[dns.RRHeader], domain: Name, seen: set[str] | None = None
) -> _Classified:
    """
    Read the answer section of an MX query for C{domain}.

    CNAME records within the answer are followed.

    @param seen: The names already met on the way to C{domain} (aliases
        found by earlier lookups); updated with the names met here.

    @param answers: L{twisted.names.dns.RRHeader}s.
    @return: C{("mx", records)} with the MX payloads found for the name
        C{domain} stands for; C{("cname", (name, record))} when the answer
        ends at an alias whose target must be looked up; or C{("none",
        None)} when there is neither.
    @raise CanonicalNameLoop: if the aliases in the answer form a cycle.
    """
    from twisted.names import dns

    # The payloads, of every record type; told apart by their TYPE, which
    # mypy cannot narrow on.
    byName: dict[str, list[Any]] = {}
    for answer in answers:
        byName.setdefault(normalName(answer.name), []).append(answer.payload)

    name = normalName(domain)
    if seen is None:
        seen = set()
    seen.add(name)
    while True:
        records = byName.get(name, [])
        exchanges = [r for r in records if r.TYPE == dns.MX]
        if exchanges:
            return "mx", exchanges
        aliases = [r for r in records if r.TYPE == dns.CNAME]
        if not aliases:
            return "none", None
        target = normalName(aliases[0].name)
        if target in seen:
            raise CanonicalNameLoop(aliases[0])
        seen.add(target)
        if target not in byName:
            return "cname", (target, aliases[0])
        name = target


def addressFromAnswers(
    answers: Sequence[dns.RRHeader], name: str, kind: Literal["A", "AAAA"] = "A"
) -> tuple[str | None, str | None]:
    """
    Read the answer section of an A (C{kind="A"}) or AAAA (C{kind="AAAA"})
    query for C{name}, following the CNAME records within it.

    @return: C{(address, None)} when an address was found (the first);
        C{(None, alias)} when the answer ends at an alias that must be
        looked up; C{(None, None)} when there is neither.
    """
    found, alias = addressesFromAnswers(answers, name, kind)
    return (found[0] if found else None), alias


def addressesFromAnswers(
    answers: Sequence[dns.RRHeader], name: str, kind: Literal["A", "AAAA"] = "A"
) -> tuple[list[str], str | None]:
    """
    Read the answer section of an A or AAAA query for C{name}, following
    the CNAME records within it.  (mailclient addition)

    @return: C{(addresses, None)} with every address found, in the order of
        the answer (without duplicates); C{([], alias)} when the answer ends
        at an alias that must be looked up; C{([], None)} when there is
        neither.
    """
    from twisted.names import dns

    wanted = dns.A if kind == "A" else dns.AAAA
    # Payloads of every record type (see classifyAnswers).
    byName: dict[str, list[Any]] = {}
    for answer in answers:
        byName.setdefault(normalName(answer.name), []).append(answer.payload)
    name = normalName(name)
    seen = {name}
    while True:
        records = byName.get(name, [])
        found = [record.dottedQuad() if kind == "A" else _ipv6(record)
                 for record in records if record.TYPE == wanted]
        if found:
            return list(dict.fromkeys(found)), None
        aliases = [r for r in records if r.TYPE == dns.CNAME]
        if not aliases:
            return [], None
        name = normalName(aliases[0].name)
        if name in seen:
            return [], None
        seen.add(name)
        if name not in byName:
            return [], name


def _ipv6(record: dns.Record_AAAA) -> str:
    import socket

    return socket.inet_ntop(socket.AF_INET6, record.address)


def isNullMX(record: dns.Record_MX) -> bool:
    """
    Whether an MX record is a null MX (RFC 7505): its exchange is the root.
    """
    return normalName(record.name) == ""


def orderExchanges(
    records: Sequence[dns.Record_MX],
    badMXs: Mapping[str, float],
    now: float,
    shuffle: Callable[[list[dns.Record_MX]], None] | None = None,
) -> list[dns.Record_MX]:
    """
    Return MX records in the order to try them: working exchanges by
    preference, then those marked bad (until a time later than C{now}) by
    preference.  Null MX records are left out.

    @param shuffle: Called with each list of records of equal preference,
        to reorder it in place (RFC 5321 section 5.1 says such exchanges
        must be tried in random order); L{MXCalculator} passes
        C{random.shuffle}.  By default the order of the answer is kept.
    """
    ordered: list[dns.Record_MX] = []
    usable = sorted((r for r in records if not isNullMX(r)), key=lambda r: r.preference)
    for _, group in groupby(usable, key=lambda r: r.preference):
        same = list(group)
        if shuffle is not None and len(same) > 1:
            shuffle(same)
        ordered.extend(same)
    good = [r for r in ordered if badMXs.get(normalName(r.name), now) <= now]
    bad = [r for r in ordered if badMXs.get(normalName(r.name), now) > now]
    return good + bad


class MXCalculator:
    """
    Looks up mail exchange hosts and tracks whether they are working.

    @ivar clock: The L{IReactorTime} provider used for bad-host timeouts.
    @ivar resolver: The L{IResolver} provider used for lookups.
    @ivar badMXs: Non-functioning exchange host names, mapped to the time at
        which they may be tried first again.
    @ivar timeOutBadMX: Seconds for which an exchange marked bad is tried
        only after all the others.
    @ivar fallbackToDomain: Whether to use the domain's own address when it
        has no MX records (RFC 5321 section 5.1).
    @ivar random: The C{random.Random} that shuffles exchanges of equal
        preference, so that the load is spread over them (RFC 5321 section
        5.1).  (mailclient addition)
    """

    timeOutBadMX: float = 60 * 60
    fallbackToDomain: bool = True
    random: _random.Random = _random.Random()

    def __init__(
        self, resolver: IResolver | None = None, clock: IReactorTime | None = None
    ) -> None:
        """
        @param resolver: An L{IResolver} provider; by default one made by
            L{twisted.names.client.createResolver}.
        @param clock: An L{IReactorTime} provider; by default the reactor.
        """
        self.badMXs: dict[str, float] = {}
        if resolver is None:
            from twisted.names.client import createResolver

            resolver = createResolver()
        self.resolver: IResolver = resolver
        if clock is None:
            from twisted.internet import reactor as globalReactor

            clock = globalReactor
        self.clock: IReactorTime = clock

    def markBad(self, mx: Name) -> None:
        """
        Record that the exchange host C{mx} is not working: it is tried last
        for L{timeOutBadMX} seconds.
        """
        self.badMXs[normalName(mx)] = self.clock.seconds() + self.timeOutBadMX

    def markGood(self, mx: Name) -> None:
        """
        Record that the exchange host C{mx} is working.
        """
        self.badMXs.pop(normalName(mx), None)

    def getMX(
        self, domain: Name, maximumCanonicalChainLength: int = 3
    ) -> defer.Deferred[dns.Record_MX]:
        """
        Find the best exchange host for C{domain}: the most preferred one
        not marked bad, or, if all are bad, the most preferred one (among
        equally preferred ones, one chosen at random).

        @param maximumCanonicalChainLength: How many CNAME lookups to make
            at most.
        @return: A Deferred firing with a L{twisted.names.dns.Record_MX}.
            When the domain has no MX and L{fallbackToDomain} is set, the
            record names the domain's address.
        """
        d = self.getExchanges(domain, maximumCanonicalChainLength)
        return d.addCallback(lambda exchanges: exchanges[0])

    def getExchanges(
        self, domain: Name, maximumCanonicalChainLength: int = 3
    ) -> defer.Deferred[list[dns.Record_MX]]:
        """
        Find every exchange host for C{domain}, in the order to try them
        (see L{orderExchanges}).  (mailclient addition)

        @return: A Deferred firing with a non-empty list of
            L{twisted.names.dns.Record_MX}, or failing with
            L{UndeliverableDomain} (null MX, no such domain, no host),
            L{CanonicalNameLoop}, L{CanonicalNameChainTooLong}, or the
            resolver's error (a temporary failure).
        """
        return self._getExchanges(normalName(domain), maximumCanonicalChainLength, set())

    def _getExchanges(
        self, name: str, cnamesLeft: int, seen: set[str]
    ) -> defer.Deferred[list[dns.Record_MX]]:
        from twisted.names import error

        d = cast(TwistedResolver, self.resolver).lookupMailExchange(name)

        def noSuchDomain(failure: Failure) -> defer.Deferred[list[dns.Record_MX]]:
            failure.trap(error.DNSNameError)
            return self._implicitMX(name, exists=False)

        return d.addCallbacks(
            self._fromAnswers,
            noSuchDomain,
            callbackArgs=(name, cnamesLeft, seen),
        )

    def _fromAnswers(
        self,
        result: _Response,
        domain: str,
        cnamesLeft: int,
        seen: set[str],
    ) -> list[dns.Record_MX] | defer.Deferred[list[dns.Record_MX]]:
        # Indexed, not unpacked, so that the kind narrows the value.
        classified = classifyAnswers(result[0], domain, seen)
        if classified[0] == "mx":
            if all(isNullMX(r) for r in classified[1]):
                raise UndeliverableDomain(
                    domain, "5.1.10", "Domain %s does not accept mail (null MX)" % (domain,)
                )
            return orderExchanges(
                classified[1], self.badMXs, self.clock.seconds(), self.random.shuffle
            )
        if classified[0] == "cname":
            target, record = classified[1]
            if cnamesLeft <= 0:
                raise CanonicalNameChainTooLong(record)
            return self._getExchanges(target, cnamesLeft - 1, seen)
        return self._implicitMX(domain, exists=True)

    def _implicitMX(self, domain: str, exists: bool) -> defer.Deferred[list[dns.Record_MX]]:
        """
        Use the domain's own address, as RFC 5321 says when it has no MX.
        """
        from twisted.names import dns, error

        if not self.fallbackToDomain:
            raise UndeliverableDomain(domain, "5.4.4", "No MX found for %r" % (domain,))
        _log.info(
            "MX lookup failed; attempting to use hostname ({domain}) directly",
            domain=domain,
        )
        d = self.resolveHost(domain)

        def noAddress(failure: Failure) -> NoReturn:
            failure.trap(error.DNSNameError, DNSLookupError)
            if exists:
                raise UndeliverableDomain(
                    domain, "5.4.4", "Domain %s has no MX and no address" % (domain,)
                )
            raise UndeliverableDomain(
                domain, "5.1.2", "Domain %s does not exist" % (domain,)
            )

        return d.addCallbacks(lambda address: [dns.Record_MX(0, address)], noAddress)

    def resolveHost(self, name: Name, effort: int = 5) -> "defer.Deferred[str]":
        """
        Find an address of the host C{name}: its first A record, else its
        first AAAA record.  (mailclient addition)

        Unlike C{getHostByName} of L{twisted.names}, this asks for A and
        AAAA records, not C{ANY} (which many resolvers no longer answer,
        RFC 8482).  A resolver without C{lookupAddress} is asked
        C{getHostByName}.

        @return: A Deferred firing with the address as text, or failing with
            L{DNSLookupError} when the host has no address, or with the
            resolver's error (L{twisted.names.error.DNSNameError} when the
            name does not exist).
        """
        host = normalName(name)
        if isIPAddress(host) or isIPv6Address(host):
            return defer.succeed(host)
        if not hasattr(self.resolver, "lookupAddress"):
            return defer.maybeDeferred(self.resolver.getHostByName, host)
        return self._resolveHost(host, effort)

    @defer.inlineCallbacks
    def _resolveHost(
        self, host: str, effort: int
    ) -> Generator[defer.Deferred[_Response], _Response, str]:
        resolver = cast(TwistedResolver, self.resolver)
        lookups: list[
            tuple[Callable[[str], defer.Deferred[_Response]], Literal["A", "AAAA"]]
        ] = [(resolver.lookupAddress, "A")]
        if hasattr(self.resolver, "lookupIPV6Address"):
            lookups.append((resolver.lookupIPV6Address, "AAAA"))
        for lookup, kind in lookups:
            name = host
            for _ in range(effort):
                result = yield lookup(name)
                found, alias = addressFromAnswers(result[0], name, kind)
                if found is not None:
                    return found
                if alias is None:
                    break
                name = alias
        raise DNSLookupError("no address for %s" % (host,))

    def resolveAddresses(self, name: Name, effort: int = 5) -> defer.Deferred[list[str]]:
        """
        Find every address of the host C{name}: its AAAA and A records,
        looked up at once (following aliases, at most C{effort} lookups
        each).  (mailclient addition)

        A resolver without C{lookupAddress} is asked C{getHostByName}; one
        without C{lookupIPV6Address} gives IPv4 addresses only.

        @return: A Deferred firing with a non-empty list of addresses as
            text, IPv6 first (in the order of the answers), or failing as
            L{resolveHost} does when the host has none: with
            L{DNSLookupError}, or with the resolver's error when neither
            lookup succeeded (L{twisted.names.error.DNSNameError} when the
            name does not exist).
        """
        host = normalName(name)
        if isIPAddress(host) or isIPv6Address(host):
            return defer.succeed([host])
        if not hasattr(self.resolver, "lookupAddress"):
            d = defer.maybeDeferred(self.resolver.getHostByName, host)
            return d.addCallback(lambda address: [address])
        resolver = cast(TwistedResolver, self.resolver)
        lookups = [self._chase(resolver.lookupAddress, host, "A", effort)]
        if hasattr(self.resolver, "lookupIPV6Address"):
            lookups.insert(0, self._chase(resolver.lookupIPV6Address, host, "AAAA", effort))
        gathered = defer.DeferredList(lookups, consumeErrors=True)
        return gathered.addCallback(self._allAddresses, host)

    @defer.inlineCallbacks
    def _chase(
        self, lookup: Callable[[str], defer.Deferred[_Response]], host: str,
        kind: Literal["A", "AAAA"], effort: int,
    ) -> Generator[defer.Deferred[_Response], _Response, list[str]]:
        name = host
        for _ in range(effort):
            result = yield lookup(name)
            found, alias = addressesFromAnswers(result[0], name, kind)
            if found or alias is None:
                return found
            name = alias
        return []

    def _allAddresses(self, results: list[tuple[bool, Any]], host: str) -> list[str]:
        from twisted.names import error

        addresses: list[str] = []
        failures: list[Failure] = []
        for ok, value in results:
            if ok:
                addresses.extend(value)
            else:
                failures.append(value)
        if addresses:
            return addresses
        # No address: a name that does not exist, or a lookup that failed
        # (for now), says more than "no address".
        for failure in failures:
            if failure.check(error.DNSNameError):
                failure.raiseException()
        if len(failures) == len(results):
            failures[0].raiseException()
        raise DNSLookupError("no address for %s" % (host,))
