"""
DANE for the relay (RFC 7672): the TLSA records of an MX host, as a
DNSSEC-validating resolver the operator declares trusted reports them
(the AD bit of its answer, as Postfix relies on with
C{smtp_dns_support_level = dnssec}).

Twisted does not validate DNSSEC: L{DNSSECResolver} asks the trusted
resolver (a local validating one, such as Unbound on 127.0.0.1) with the
AD bit set in the query (RFC 6840 section 5.7) and believes the AD bit of
its answer.  An object with a C{lookupTLSA(host, port)} method returning
a Deferred L{TLSAAnswer} (a L{TLSAResolver}) can stand in for it.

What the records mean for a connection is in L{mailclient._wire.dane};
the match against the server's chain happens during the handshake
(L{mailclient._protocol.tls.RecordingTLS} with C{tlsa}).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast
from collections.abc import Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IReactorUDP
from twisted.python.failure import Failure

from mailclient._wire.dane import TLSA_TYPE, TLSAError, TLSARecord, parseTLSA, tlsaName, usable

if TYPE_CHECKING:
    from twisted.names import dns


class TLSALookupError(Exception):
    """
    The TLSA records could not be looked up (the resolver failed, timed
    out, or said SERVFAIL: with a validating resolver, possibly bogus
    records).  The host is not used for now (RFC 7672 section 2.2).
    """


@dataclass(frozen=True)
class TLSAAnswer:
    """
    The TLSA records of a host's SMTP service.

    @ivar records: every record read (usable or not).
    @ivar authenticated: the resolver validated them with DNSSEC (AD bit).
    @ivar malformed: how many records could not be read.
    """

    records: tuple[TLSARecord, ...] = ()
    authenticated: bool = False
    malformed: int = 0

    @property
    def usable(self) -> tuple[TLSARecord, ...]:
        """
        The records SMTP can use (DANE-TA and DANE-EE, known selectors and
        matching types).
        """
        return usable(self.records)

    @property
    def present(self) -> bool:
        """
        Whether there are validated records (usable or not): then TLS is
        required to the host.
        """
        return self.authenticated and bool(self.records or self.malformed)


class TLSAResolver(Protocol):
    """
    What the relay asks of the resolver it trusts for TLSA records (see
    L{DNSSECResolver}).
    """

    def lookupTLSA(self, host: str, port: int = 25) -> defer.Deferred[TLSAAnswer]:
        """
        The TLSA records of C{host}'s SMTP service on C{port}.

        @raise TLSALookupError: (in the Deferred) if they cannot be had.
        """


def answerFromMessage(message: dns.Message, name: str) -> TLSAAnswer:
    """
    The TLSA answer in a DNS response (L{twisted.names.dns.Message}).

    @raise TLSALookupError: if the response is an error other than
        NXDOMAIN, or was truncated.
    """
    from twisted.names import dns

    if message.trunc:
        raise TLSALookupError("the TLSA answer for %s was truncated" % (name,))
    if message.rCode == dns.ENAME:
        return TLSAAnswer((), bool(message.authenticData))
    if message.rCode != dns.OK:
        raise TLSALookupError("the TLSA lookup for %s failed (DNS rcode %d)"
                              % (name, message.rCode))
    records = []
    malformed = 0
    for answer in message.answers:
        if answer.type != TLSA_TYPE:
            continue
        try:
            records.append(parseTLSA(getattr(answer.payload, "data", b"")))
        except TLSAError:
            malformed += 1
    return TLSAAnswer(tuple(records), bool(message.authenticData), malformed)


class DNSSECResolver:
    """
    Looks up TLSA records from a DNSSEC-validating resolver the operator
    trusts (and the path to which: use one on this host, as RFC 7672
    section 8 advises).

    @ivar servers: the C{(address, port)} of the trusted resolvers, tried
        in order.
    @ivar timeout: seconds to wait for each.
    """

    def __init__(self, servers: Sequence[tuple[str, int]] = (("127.0.0.1", 53),),
                 reactor: IReactorUDP | None = None, timeout: float = 10) -> None:
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            # Every reactor Twisted ships listens on UDP (IReactorUDP).
            reactor = cast(IReactorUDP, globalReactor)
        if not servers:
            raise ValueError("DNSSECResolver needs a resolver to trust")
        self.servers = [(str(host), int(port)) for host, port in servers]
        self.reactor = reactor
        self.timeout = timeout

    async def _lookup(self, host: str, port: int) -> TLSAAnswer:
        from twisted.names import dns

        name = tlsaName(host, port)
        problems = []
        for server in self.servers:
            try:
                message = await _query(self.reactor, server, dns.Query(name, TLSA_TYPE, dns.IN),
                                       self.timeout)
            except Exception as e:
                problems.append("%s: %s" % (server[0], e or type(e).__name__))
                continue
            return answerFromMessage(message, name)
        raise TLSALookupError("no answer for %s (%s)" % (name, "; ".join(problems)))

    def lookupTLSA(self, host: str, port: int = 25) -> defer.Deferred[TLSAAnswer]:
        """
        The TLSA records of C{host}'s SMTP service on C{port}
        (C{_25._tcp.<host>}).

        @raise TLSALookupError: (in the Deferred) if they cannot be had.
        """
        return defer.ensureDeferred(self._lookup(host, port))


def _query(
    reactor: IReactorUDP, server: tuple[str, int], query: dns.Query, timeout: float
) -> defer.Deferred[dns.Message]:
    """
    One query over UDP to C{server}, with the AD bit set, from a port of
    its own closed once answered.
    """
    from twisted.names import dns

    class ADQuery(dns.DNSDatagramProtocol):
        def writeMessage(self, message: dns.Message, address: tuple[str, int]) -> None:
            # RFC 6840 section 5.7: ask the validating resolver to say
            # whether it validated the answer.
            message.authenticData = 1
            dns.DNSDatagramProtocol.writeMessage(self, message, address)

    class Controller:
        def messageReceived(
            self, message: dns.Message, protocol: object, address: object = None
        ) -> None:
            pass

    address = ipaddress.ip_address(server[0].split("%")[0])
    if address.is_loopback:
        interface = str(address)
    else:
        interface = "::" if address.version == 6 else ""
    protocol = ADQuery(Controller(), reactor=reactor)
    listening = reactor.listenUDP(0, protocol, interface=interface, maxPacketSize=512)
    d = protocol.query(server, [query], timeout)

    def stop(result: dns.Message | Failure) -> dns.Message | Failure:
        listening.stopListening()
        return result

    return d.addBoth(stop)
