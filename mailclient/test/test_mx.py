"""
Tests for L{mailclient._relaying.mx}: finding mail exchanges, with a fake resolver
(no network).
"""

from __future__ import annotations

import random
from typing import Any, List

from twisted.internet import defer
from twisted.internet.error import DNSLookupError
from twisted.internet.task import Clock
from twisted.names import dns, error
from twisted.trial.unittest import SynchronousTestCase

from mailclient import relaymanager
from mailclient._relaying.mx import (
    CanonicalNameChainTooLong,
    CanonicalNameLoop,
    MXCalculator,
    UndeliverableDomain,
    classifyAnswers,
    orderExchanges,
)
from mailclient.test.helpers import FakeResolver, _name, mx


class KeepOrder(random.Random):
    """
    A C{random.Random} whose C{shuffle} leaves lists alone, so tests can
    expect an exact order of exchanges.
    """

    def shuffle(self, x: Any, *args: Any) -> None:
        pass


class Reverse(random.Random):
    """
    A C{random.Random} whose C{shuffle} reverses lists, and records them.
    """

    def __init__(self) -> None:
        random.Random.__init__(self)
        self.shuffled: List[List[str]] = []

    def shuffle(self, x: Any, *args: Any) -> None:
        self.shuffled.append([str(r.name) for r in x])
        x.reverse()


class ExchangeTests(SynchronousTestCase):
    """
    L{MXCalculator.getExchanges} and C{getMX} order exchanges and track bad
    ones.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.resolver = FakeResolver(
            [
                ("example.com", mx(20, "mx2.example.com")),
                ("example.com", mx(10, "mx1.example.com.")),
                ("example.com", mx(10, "MX1b.example.com")),
                ("mx1.example.com", dns.Record_A("10.0.0.1")),
            ]
        )
        self.calc = MXCalculator(self.resolver, self.clock)
        # Exact orders below; shuffling is tested on its own.
        self.calc.random = KeepOrder()

    def names(self, domain: str = "example.com") -> List[str]:
        records = self.successResultOf(self.calc.getExchanges(domain))
        return [str(r.name) for r in records]

    def test_byPreference(self) -> None:
        """
        Exchanges come by preference (with shuffling turned off, equal
        preferences keep the answer's order).
        """
        self.assertEqual(self.names(), ["mx1.example.com.", "MX1b.example.com", "mx2.example.com"])
        self.assertEqual(self.resolver.queries, [("example.com", dns.MX)])

    def test_caseAndTrailingDot(self) -> None:
        """
        The domain may be given as bytes, in any case, with a final dot.
        """
        self.assertEqual(self.names(b"EXAMPLE.com."), self.names())  # type: ignore[arg-type]

    def test_getMX(self) -> None:
        """
        C{getMX} gives the best exchange, as Twisted's does.
        """
        record = self.successResultOf(self.calc.getMX("example.com"))
        self.assertEqual((record.preference, str(record.name)), (10, "mx1.example.com."))

    def test_markBad(self) -> None:
        """
        An exchange marked bad comes last until C{timeOutBadMX} has passed;
        C{markGood} restores it at once.  Host names match regardless of
        case, type and final dot.
        """
        self.calc.markBad("mx1.example.com")
        self.assertEqual(self.names(), ["MX1b.example.com", "mx2.example.com", "mx1.example.com."])
        self.assertEqual(str(self.successResultOf(self.calc.getMX("example.com")).name), "MX1b.example.com")
        self.clock.advance(self.calc.timeOutBadMX - 1)
        self.assertEqual(self.names()[-1], "mx1.example.com.")
        self.clock.advance(1)
        self.assertEqual(self.names()[0], "mx1.example.com.")

        self.calc.markBad(b"MX1.example.com.")
        self.calc.markGood("mx1.EXAMPLE.com")
        self.assertEqual(self.names()[0], "mx1.example.com.")
        self.assertEqual(self.calc.badMXs, {})

    def test_allBad(self) -> None:
        """
        When every exchange is bad, C{getMX} gives the most preferred one
        (as Twisted does) and C{getExchanges} all of them by preference.
        """
        for name in ("mx1.example.com", "mx1b.example.com", "mx2.example.com"):
            self.calc.markBad(name)
        self.assertEqual(self.names(), ["mx1.example.com.", "MX1b.example.com", "mx2.example.com"])
        self.assertEqual(str(self.successResultOf(self.calc.getMX("example.com")).name), "mx1.example.com.")

    def test_equalPreferencesShuffled(self) -> None:
        """
        Exchanges of equal preference are shuffled (RFC 5321 section 5.1:
        the load is spread over them), by C{MXCalculator.random}; the
        preference order itself is kept.
        """
        self.calc.random = random.Random(4)
        orders = set()
        for _ in range(50):
            names = self.names()
            self.assertEqual(names[2], "mx2.example.com")
            orders.add(tuple(names[:2]))
        self.assertEqual(
            orders,
            {("mx1.example.com.", "MX1b.example.com"), ("MX1b.example.com", "mx1.example.com.")},
        )
        firsts = [str(self.successResultOf(self.calc.getMX("example.com")).name) for _ in range(50)]
        self.assertEqual(set(firsts), {"mx1.example.com.", "MX1b.example.com"})

    def test_shuffledOnlyWithinPreference(self) -> None:
        """
        Only the groups of equal preference are shuffled, each on its own;
        exchanges marked bad still come last.
        """
        resolver = FakeResolver(
            [
                ("example.net", mx(30, "e")),
                ("example.net", mx(10, "a")),
                ("example.net", mx(20, "c")),
                ("example.net", mx(10, "b")),
                ("example.net", mx(20, "d")),
            ]
        )
        calc = MXCalculator(resolver, self.clock)
        calc.random = shuffler = Reverse()
        names = [str(r.name) for r in self.successResultOf(calc.getExchanges("example.net"))]
        self.assertEqual(names, ["b", "a", "d", "c", "e"])
        self.assertEqual(shuffler.shuffled, [["a", "b"], ["c", "d"]])
        calc.markBad("b")
        names = [str(r.name) for r in self.successResultOf(calc.getExchanges("example.net"))]
        self.assertEqual(names, ["a", "d", "c", "e", "b"])

    def test_defaultRandom(self) -> None:
        """
        By default a calculator shuffles with a C{random.Random}.
        """
        self.assertIsInstance(MXCalculator(self.resolver, self.clock).random, random.Random)

    def test_twistedFailsOnEqualPreferences(self) -> None:
        """
        Twisted's calculator sorts C{(preference, record)} pairs, which
        fails on Python 3 (C{TypeError}) as soon as two exchanges share a
        preference, the very case that should spread the load.
        """
        from twisted.mail.relaymanager import MXCalculator as TwistedMXCalculator

        twisted = TwistedMXCalculator(self.resolver, self.clock)
        self.failureResultOf(twisted.getMX("example.com"), TypeError)
        self.assertEqual(str(self.successResultOf(self.calc.getMX("example.com")).name), "mx1.example.com.")

    def test_twistedMarkBadIgnoresBytes(self) -> None:
        """
        Twisted's C{markBad} keys bad hosts by C{str(mx)}, so a C{bytes}
        host name (as Twisted documents it) never matches an exchange and
        marking it bad changes nothing; mailclient's works with both.
        """
        from twisted.mail.relaymanager import MXCalculator as TwistedMXCalculator

        resolver = FakeResolver([("example.net", mx(10, "mx1.example.net")), ("example.net", mx(20, "mx2.example.net"))])
        twisted = TwistedMXCalculator(resolver, self.clock)
        twisted.markBad(b"mx1.example.net")
        self.assertEqual(str(self.successResultOf(twisted.getMX("example.net")).name), "mx1.example.net")

        calc = MXCalculator(resolver, self.clock)
        calc.markBad(b"mx1.example.net")
        self.assertEqual(str(self.successResultOf(calc.getMX("example.net")).name), "mx2.example.net")
        calc.markGood(b"mx1.example.net")
        self.assertEqual(str(self.successResultOf(calc.getMX("example.net")).name), "mx1.example.net")
        calc.markBad("mx1.example.net")
        self.assertEqual(str(self.successResultOf(calc.getMX("example.net")).name), "mx2.example.net")
        calc.markGood(b"MX1.EXAMPLE.NET.")
        self.assertEqual(calc.badMXs, {})

    def test_orderExchangesPure(self) -> None:
        """
        L{orderExchanges} needs no resolver.
        """
        records = [mx(5, "b"), mx(1, "a"), mx(5, "c")]
        self.assertEqual(
            [str(r.name) for r in orderExchanges(records, {"a": 100.0}, 50.0)], ["b", "c", "a"]
        )
        self.assertEqual(
            [str(r.name) for r in orderExchanges(records, {"a": 100.0}, 100.0)], ["a", "b", "c"]
        )

    def test_publicFace(self) -> None:
        """
        C{mailclient.relaymanager} exports these classes.
        """
        self.assertIs(relaymanager.MXCalculator, MXCalculator)
        self.assertIs(relaymanager.CanonicalNameLoop, CanonicalNameLoop)
        self.assertIs(relaymanager.CanonicalNameChainTooLong, CanonicalNameChainTooLong)
        self.assertIs(relaymanager.UndeliverableDomain, UndeliverableDomain)


class NoMXTests(SynchronousTestCase):
    """
    Without MX records a domain's own address is used (RFC 5321 section
    5.1); a null MX (RFC 7505) or a domain without any host is
    undeliverable.
    """

    def setUp(self) -> None:
        self.resolver = FakeResolver()
        self.calc = MXCalculator(self.resolver, Clock())

    def undeliverable(self, domain: str) -> UndeliverableDomain:
        failure = self.failureResultOf(self.calc.getExchanges(domain), UndeliverableDomain)
        self.assertIsInstance(failure.value, DNSLookupError)
        self.assertIsInstance(failure.value, OSError)
        return failure.value  # type: ignore[return-value]

    def test_implicitMX(self) -> None:
        """
        A domain with an address and no MX is its own exchange, asked for
        with an A query (not ANY).
        """
        self.resolver.add("example.com", dns.Record_A("10.0.0.7"))
        [record] = self.successResultOf(self.calc.getExchanges("example.com"))
        self.assertEqual((record.preference, str(record.name)), (0, "10.0.0.7"))
        self.assertEqual(self.resolver.queries, [("example.com", dns.MX), ("example.com", dns.A)])

    def test_implicitMXIPv6(self) -> None:
        """
        An IPv6-only domain is its own exchange too.
        """
        self.resolver.add("example.com", dns.Record_AAAA("2001:db8::25"))
        record = self.successResultOf(self.calc.getMX("example.com"))
        self.assertEqual(str(record.name), "2001:db8::25")

    def test_noMXNoAddress(self) -> None:
        """
        A domain with neither MX nor address cannot receive mail (5.4.4).
        """
        self.resolver.add("example.com", dns.Record_TXT(b"v=spf1 -all"))
        self.assertEqual(self.undeliverable("example.com").status, "5.4.4")

    def test_noSuchDomain(self) -> None:
        """
        A domain that does not exist cannot receive mail (5.1.2).
        """
        error = self.undeliverable("nowhere.example")
        self.assertEqual((error.status, error.domain), ("5.1.2", "nowhere.example"))

    def test_nxdomainForMXButAddress(self) -> None:
        """
        When the MX lookup says no such name but an address is found (as a
        hosts file may do), the address is used, as Twisted does.
        """
        self.resolver.add("localhost", dns.Record_A("127.0.0.1"))
        self.resolver.errors[("localhost", dns.MX)] = error.DNSNameError("localhost")
        self.assertEqual(str(self.successResultOf(self.calc.getMX("localhost")).name), "127.0.0.1")

    def test_nullMX(self) -> None:
        """
        A null MX (preference 0, exchange the root) means the domain accepts no
        mail (5.1.10); no address lookup is made.
        """
        self.resolver.add("example.com", mx(0, ""))
        self.resolver.add("example.com", dns.Record_A("10.0.0.7"))
        self.assertEqual(self.undeliverable("example.com").status, "5.1.10")
        self.assertEqual(self.resolver.queries, [("example.com", dns.MX)])

    def test_nullMXAmongOthers(self) -> None:
        """
        A null MX published next to real ones (which RFC 7505 forbids) is
        skipped.
        """
        self.resolver.add("example.com", mx(0, ""))
        self.resolver.add("example.com", mx(10, "mx.example.com"))
        self.assertEqual(
            [str(r.name) for r in self.successResultOf(self.calc.getExchanges("example.com"))],
            ["mx.example.com"],
        )

    def test_noFallback(self) -> None:
        """
        With C{fallbackToDomain} off, a domain without MX fails with an
        L{OSError}, as in Twisted.
        """
        self.calc.fallbackToDomain = False
        self.resolver.add("example.com", dns.Record_A("10.0.0.7"))
        self.assertEqual(self.undeliverable("example.com").status, "5.4.4")

    def test_temporaryErrors(self) -> None:
        """
        Server failures and timeouts are passed on as they are: they are not
        reasons to give up on the domain.
        """
        self.resolver.add("example.com", dns.Record_TXT(b"x"))
        self.resolver.errors[("example.com", dns.MX)] = error.DNSServerError("SERVFAIL")
        self.failureResultOf(self.calc.getExchanges("example.com"), error.DNSServerError)
        del self.resolver.errors[("example.com", dns.MX)]
        self.resolver.errors[("example.com", dns.A)] = error.DNSQueryTimeoutError("example.com")
        self.failureResultOf(self.calc.getExchanges("example.com"), error.DNSQueryTimeoutError)

    def test_twistedUsesNullMX(self) -> None:
        """
        Twisted's calculator returns the null MX as the exchange to connect
        to (a host named ""); mailclient's refuses the domain.
        """
        from twisted.mail.relaymanager import MXCalculator as TwistedMXCalculator

        self.resolver.add("example.com", mx(0, ""))
        record = self.successResultOf(TwistedMXCalculator(self.resolver, Clock()).getMX("example.com"))
        self.assertEqual(str(record.name), "")
        self.undeliverable("example.com")

    def test_twistedFallbackNeedsANY(self) -> None:
        """
        Twisted's fallback to the domain's address asks C{ANY}, which
        resolvers following RFC 8482 no longer answer, so it fails;
        mailclient's asks for A records.
        """
        from twisted.mail.relaymanager import MXCalculator as TwistedMXCalculator

        self.resolver.add("example.com", dns.Record_A("10.0.0.7"))
        self.resolver.refuseANY = True
        self.failureResultOf(
            TwistedMXCalculator(self.resolver, Clock()).getMX("example.com"), DNSLookupError
        )
        self.assertEqual(str(self.successResultOf(self.calc.getMX("example.com")).name), "10.0.0.7")


class CanonicalNameTests(SynchronousTestCase):
    """
    CNAME records are followed, within limits.
    """

    def chain(self, length: int, chase: bool) -> FakeResolver:
        names = ["alias%d.example.com" % (i,) for i in range(length)] + ["real.example.com"]
        resolver = FakeResolver(chase=chase)
        for source, target in zip(names, names[1:]):
            resolver.add(source, dns.Record_CNAME(target))
        resolver.add("real.example.com", mx(10, "mx.example.com"))
        return resolver

    def test_inAnswer(self) -> None:
        """
        Aliases within one answer are followed without more queries.
        """
        resolver = self.chain(5, chase=True)
        record = self.successResultOf(MXCalculator(resolver, Clock()).getMX("alias0.example.com"))
        self.assertEqual(str(record.name), "mx.example.com")
        self.assertEqual(len(resolver.queries), 1)

    def test_byLookup(self) -> None:
        """
        Aliases whose targets are not in the answer are looked up, up to
        C{maximumCanonicalChainLength} times.
        """
        resolver = self.chain(3, chase=False)
        calc = MXCalculator(resolver, Clock())
        self.assertEqual(str(self.successResultOf(calc.getMX("alias0.example.com")).name), "mx.example.com")
        self.assertEqual(len(resolver.queries), 4)
        failure = self.failureResultOf(
            calc.getMX("alias0.example.com", maximumCanonicalChainLength=2), CanonicalNameChainTooLong
        )
        self.assertEqual(str(failure.value.args[0].name), "real.example.com")

    def test_defaultLimit(self) -> None:
        """
        By default three aliases are looked up (Twisted's documented limit,
        C{maximumCanonicalChainLength=3}); a fourth fails with
        L{CanonicalNameChainTooLong}, as Twisted's calculator does.
        """
        from twisted.mail import relaymanager as twisted_relaymanager

        TwistedMXCalculator = twisted_relaymanager.MXCalculator
        for calculator in (MXCalculator, TwistedMXCalculator):
            resolver = self.chain(3, chase=False)
            record = self.successResultOf(calculator(resolver, Clock()).getMX("alias0.example.com"))
            self.assertEqual(str(record.name), "mx.example.com")
            self.assertEqual(len(resolver.queries), 4)

            resolver = self.chain(4, chase=False)
            failure = self.failureResultOf(
                calculator(resolver, Clock()).getMX("alias0.example.com"),
                CanonicalNameChainTooLong if calculator is MXCalculator
                else twisted_relaymanager.CanonicalNameChainTooLong,
            )
            self.assertEqual(str(failure.value.args[0].name), "real.example.com")
            self.assertEqual(len(resolver.queries), 4)

    def test_noLimitWithinAnswer(self) -> None:
        """
        Aliases whose targets are in the same answer cost no lookup, so
        they do not count against the limit (as in Twisted).
        """
        resolver = self.chain(8, chase=True)
        calc = MXCalculator(resolver, Clock())
        record = self.successResultOf(calc.getMX("alias0.example.com", maximumCanonicalChainLength=0))
        self.assertEqual(str(record.name), "mx.example.com")

    def test_loop(self) -> None:
        """
        A cycle of aliases in the answer fails with L{CanonicalNameLoop},
        also when the cycle does not pass through the queried name (where
        Twisted's calculator loops for ever).
        """
        resolver = FakeResolver(chase=True)
        resolver.add("a.example.com", dns.Record_CNAME("b.example.com"))
        resolver.add("b.example.com", dns.Record_CNAME("a.example.com"))
        self.failureResultOf(MXCalculator(resolver, Clock()).getMX("a.example.com"), CanonicalNameLoop)

        answers = [
            dns.RRHeader("a.example.com", dns.CNAME, payload=dns.Record_CNAME("b.example.com")),
            dns.RRHeader("b.example.com", dns.CNAME, payload=dns.Record_CNAME("c.example.com")),
            dns.RRHeader("c.example.com", dns.CNAME, payload=dns.Record_CNAME("B.example.com.")),
        ]
        self.assertRaises(CanonicalNameLoop, classifyAnswers, answers, "a.example.com")

    def test_loopAcrossLookups(self) -> None:
        """
        A cycle found one lookup at a time is a loop too (Twisted's
        calculator goes round until the chain limit).
        """
        resolver = FakeResolver(chase=False)
        resolver.add("a.example.com", dns.Record_CNAME("b.example.com"))
        resolver.add("b.example.com", dns.Record_CNAME("a.example.com"))
        resolver.queries = []
        original = resolver._lookup

        def oneAtATime(name: Any, cls: int, type: int, timeout: Any) -> Any:
            d = original(name, cls, type, timeout)
            return d.addCallback(lambda r: ([a for a in r[0] if _name(a.name) == _name(name)], [], []))

        resolver._lookup = oneAtATime  # type: ignore[method-assign]
        self.failureResultOf(
            MXCalculator(resolver, Clock()).getMX("a.example.com"), CanonicalNameLoop
        )
        self.assertEqual(len(resolver.queries), 2)


class ResolveHostTests(SynchronousTestCase):
    """
    L{MXCalculator.resolveHost} finds an exchange's address.
    """

    def setUp(self) -> None:
        self.resolver = FakeResolver(chase=False)
        self.calc = MXCalculator(self.resolver, Clock())

    def test_address(self) -> None:
        self.resolver.add("mx.example.com", dns.Record_A("10.1.2.3"))
        self.assertEqual(self.successResultOf(self.calc.resolveHost("MX.example.com.")), "10.1.2.3")

    def test_ipv6(self) -> None:
        """
        Without an A record, the AAAA record is used.
        """
        self.resolver.add("mx.example.com", dns.Record_AAAA("2001:db8::1"))
        self.assertEqual(self.successResultOf(self.calc.resolveHost("mx.example.com")), "2001:db8::1")

    def test_alias(self) -> None:
        """
        An alias is followed, by lookup if need be.
        """
        self.resolver.add("mx.example.com", dns.Record_CNAME("host.example.net"))
        self.resolver.add("host.example.net", dns.Record_A("10.9.9.9"))
        self.assertEqual(self.successResultOf(self.calc.resolveHost("mx.example.com")), "10.9.9.9")

    def test_noAddress(self) -> None:
        """
        A host without address fails with L{DNSLookupError}; one that does
        not exist with the resolver's L{error.DNSNameError}.
        """
        self.resolver.add("mx.example.com", dns.Record_TXT(b"x"))
        self.failureResultOf(self.calc.resolveHost("mx.example.com"), DNSLookupError)
        self.failureResultOf(self.calc.resolveHost("none.example.com"), error.DNSNameError)

    def test_literal(self) -> None:
        """
        An address is its own address; nothing is looked up.
        """
        for address in ("192.0.2.1", "2001:db8::2"):
            self.assertEqual(self.successResultOf(self.calc.resolveHost(address)), address)
        self.assertEqual(self.resolver.queries, [])

    def test_otherResolvers(self) -> None:
        """
        A resolver with only C{getHostByName} is asked that.
        """

        class HostsOnly:
            def getHostByName(self, name: str) -> "defer.Deferred[str]":
                return defer.succeed({"mx.example.com": "10.5.5.5"}[name])

        calc = MXCalculator(HostsOnly(), Clock())
        self.assertEqual(self.successResultOf(calc.resolveHost("mx.example.com")), "10.5.5.5")


class ResolveAddressesTests(SynchronousTestCase):
    """
    L{MXCalculator.resolveAddresses} finds every address of an exchange,
    AAAA and A alike, for the relay to try them (happy eyeballs).
    """

    def setUp(self) -> None:
        self.resolver = FakeResolver(chase=False)
        self.calc = MXCalculator(self.resolver, Clock())

    def test_bothFamilies(self) -> None:
        """
        Every AAAA and A record, IPv6 first, each in the order of the
        answer; both asked at once.
        """
        for address in ("10.1.2.3", "10.1.2.4"):
            self.resolver.add("mx.example.com", dns.Record_A(address))
        for address in ("2001:db8::1", "2001:db8::2"):
            self.resolver.add("mx.example.com", dns.Record_AAAA(address))
        self.assertEqual(
            self.successResultOf(self.calc.resolveAddresses("MX.example.com.")),
            ["2001:db8::1", "2001:db8::2", "10.1.2.3", "10.1.2.4"])
        self.assertEqual(sorted(self.resolver.queries),
                         [("mx.example.com", dns.A), ("mx.example.com", dns.AAAA)])

    def test_oneFamily(self) -> None:
        """
        A host with addresses of one family only; Twisted's lookup (and
        C{resolveHost}) would look for AAAA only when there is no A.
        """
        self.resolver.add("v4.example.com", dns.Record_A("10.1.2.3"))
        self.resolver.add("v6.example.com", dns.Record_AAAA("2001:db8::1"))
        self.assertEqual(self.successResultOf(self.calc.resolveAddresses("v4.example.com")),
                         ["10.1.2.3"])
        self.assertEqual(self.successResultOf(self.calc.resolveAddresses("v6.example.com")),
                         ["2001:db8::1"])

    def test_alias(self) -> None:
        self.resolver.add("mx.example.com", dns.Record_CNAME("host.example.net"))
        self.resolver.add("host.example.net", dns.Record_A("10.9.9.9"))
        self.resolver.add("host.example.net", dns.Record_AAAA("2001:db8::9"))
        self.assertEqual(self.successResultOf(self.calc.resolveAddresses("mx.example.com")),
                         ["2001:db8::9", "10.9.9.9"])

    def test_noAddress(self) -> None:
        self.resolver.add("mx.example.com", dns.Record_TXT(b"x"))
        self.failureResultOf(self.calc.resolveAddresses("mx.example.com"), DNSLookupError)
        self.failureResultOf(self.calc.resolveAddresses("none.example.com"), error.DNSNameError)

    def test_oneLookupFails(self) -> None:
        """
        When one lookup fails for now, the other family's addresses are
        used; when both fail, the failure is the resolver's.
        """
        self.resolver.add("mx.example.com", dns.Record_A("10.1.2.3"))
        self.resolver.errors[("mx.example.com", dns.AAAA)] = error.DNSServerError("SERVFAIL")
        self.assertEqual(self.successResultOf(self.calc.resolveAddresses("mx.example.com")),
                         ["10.1.2.3"])
        self.resolver.errors[("mx.example.com", dns.A)] = error.DNSServerError("SERVFAIL")
        self.failureResultOf(self.calc.resolveAddresses("mx.example.com"), error.DNSServerError)

    def test_literalAndOtherResolvers(self) -> None:
        self.assertEqual(self.successResultOf(self.calc.resolveAddresses("2001:db8::2")),
                         ["2001:db8::2"])
        self.assertEqual(self.resolver.queries, [])

        class HostsOnly:
            def getHostByName(self, name: str) -> "defer.Deferred[str]":
                return defer.succeed({"mx.example.com": "10.5.5.5"}[name])

        calc = MXCalculator(HostsOnly(), Clock())
        self.assertEqual(self.successResultOf(calc.resolveAddresses("mx.example.com")),
                         ["10.5.5.5"])
