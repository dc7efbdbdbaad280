"""
The TLS policy of a delivery, and the record of the TLS it got.

One definition for the whole library: C{sendmail}, the sender factories,
the relay and the command line all choose their level with
L{TLSPolicy.choose}, and every delivery gets a L{TLSRecord}.

The levels are the ones mail servers use (Postfix's C{smtp_tls_security_level}):

  - C{none}: never TLS, even when the server offers STARTTLS;
  - C{may}: opportunistic: STARTTLS when the server offers it, the mail
    goes in clear when it does not.  The certificate is checked and the
    result recorded, but a certificate that does not verify does not stop
    delivery (Twisted would have sent the same mail in clear) unless the
    caller named the host or gave a context (L{TLSPolicy.verifyWhenUsed});
  - C{encrypt}: TLS is required, the certificate is not verified;
  - C{verify}: TLS is required and the certificate must verify for the
    host name.

and implicit TLS (L{TLSPolicy.implicit}: SMTPS, RFC 8314) speaks TLS from
the first byte, at level C{verify} unless another is given.

A policy may name its own trust anchors (L{TLSPolicy.caFile},
L{TLSPolicy.caCertificates}: they replace the system trust store) and the
names a certificate may carry (L{TLSPolicy.matchNames}), like the
C{CAfile=} and C{match=} attributes of a Postfix policy table entry.  The
relay looks policies up per destination in a L{TLSPolicyMap} (Postfix's
C{smtp_tls_policy_maps}).

Where a policy came from (the default, the policy map, MTA-STS, DANE,
REQUIRETLS) is its L{PolicySource}, kept in the L{TLSRecord} of each
delivery.  A DANE policy carries the TLSA records the server's chain must
match (L{TLSPolicy.tlsa}) instead of trust anchors.

Credentials are only ever sent over a connection whose certificate was
verified (or to a loopback address), unless the caller allows cleartext
authentication.

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Union, cast

from mailclient._wire.dane import TLSARecord


class TLSLevel(str, enum.Enum):
    """
    How much TLS a delivery requires (Postfix's names).
    """

    NONE = "none"
    MAY = "may"
    ENCRYPT = "encrypt"
    VERIFY = "verify"

    @property
    def required(self) -> bool:
        """
        Whether the mail must not go without TLS.
        """
        return self in (TLSLevel.ENCRYPT, TLSLevel.VERIFY)


class SourceKind(str, enum.Enum):
    """
    What set the TLS policy of a delivery.
    """

    #: The library's default, or the manager's C{tlsSecurityLevel}.
    DEFAULT = "default"
    #: An entry of the policy map (L{TLSPolicyMap}).
    POLICY_MAP = "policy-map"
    #: The recipient domain's MTA-STS policy (RFC 8461).
    MTA_STS = "mta-sts"
    #: The MX host's DNSSEC-validated TLSA records (RFC 7672).
    DANE = "dane"


@dataclass(frozen=True)
class PolicySource:
    """
    Where a policy came from.

    @ivar kind: a L{SourceKind}.
    @ivar mode: MTA-STS: the policy's mode (C{"enforce"}, C{"testing"}).
    @ivar policyId: MTA-STS: the id of the policy.
    @ivar detail: more, for people (DANE: the records; MTA-STS: why the
        host does not match).
    @ivar requireTLS: the message asked for REQUIRETLS (RFC 8689), which
        raised the level to C{verify}.
    """

    kind: SourceKind = SourceKind.DEFAULT
    mode: str | None = None
    policyId: str | None = None
    detail: str | None = None
    requireTLS: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", SourceKind(self.kind))

    def describe(self) -> str:
        """
        C{"mta-sts enforce id=2024"}, C{"dane"}, C{"policy-map"}, ...
        """
        text = self.kind.value
        if self.mode is not None:
            text += " " + self.mode
        if self.policyId is not None:
            text += " id=" + self.policyId
        if self.requireTLS:
            text += ", REQUIRETLS"
        return text


DEFAULT_SOURCE = PolicySource()


@dataclass(frozen=True)
class TLSPolicy:
    """
    The TLS a delivery asks for.

    @ivar level: see L{TLSLevel}.
    @ivar implicit: speak TLS from the first byte (SMTPS, port 465).
    @ivar verifyWhenUsed: at level C{may}, a certificate that does not
        verify fails the delivery instead of being recorded (the caller
        named the server or gave its own context).  Always true at level
        C{verify}.
    @ivar hostname: the name the certificate is checked against, and sent
        as SNI; L{None}: the name the connection was made to.
    @ivar context: the caller's own TLS context factory or client
        connection creator, used as it is (its own verification applies).
    @ivar caFile: a file of PEM certificates to trust instead of the system
        trust store (Postfix's C{smtp_tls_CAfile}, or C{CAfile=} in a policy
        table).
    @ivar caCertificates: PEM certificates (each item may hold several) to
        trust instead of the system trust store; with C{caFile}, both are
        trusted.
    @ivar matchNames: the names the server's certificate may be valid for
        (Postfix's C{match=}); a name starting with a dot matches any name
        under it (C{".example.com"}: C{mx1.example.com}, ...).  Empty: the
        host name (C{hostname}, else the name connected to).
    @ivar tlsa: DANE (RFC 7672): the usable TLSA records of the host; the
        server's chain must match one of them, and the trust store is not
        used.
    @ivar source: where the policy came from (a L{PolicySource}); not part
        of the policy's equality.
    """

    level: TLSLevel = TLSLevel.MAY
    implicit: bool = False
    verifyWhenUsed: bool = False
    hostname: str | None = None
    context: object = None
    caFile: str | None = None
    caCertificates: tuple[bytes, ...] = ()
    matchNames: tuple[str, ...] = ()
    tlsa: tuple[TLSARecord, ...] = ()
    source: PolicySource = field(default=DEFAULT_SOURCE, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", TLSLevel(self.level))
        object.__setattr__(self, "tlsa", tuple(self.tlsa))
        if self.level is TLSLevel.NONE and self.implicit:
            raise ValueError("implicit TLS needs a TLS level other than 'none'")
        if self.level is TLSLevel.VERIFY:
            object.__setattr__(self, "verifyWhenUsed", True)
        if self.caFile is not None and not isinstance(self.caFile, str):
            raise TypeError("caFile must be a path (str), not %r" % (self.caFile,))
        if self.caCertificates != ():
            object.__setattr__(self, "caCertificates", _pems(self.caCertificates))
        if self.matchNames != ():
            object.__setattr__(self, "matchNames", _names(self.matchNames))

    @property
    def hasTrustAnchors(self) -> bool:
        """
        Whether the policy names its own trust anchors (C{caFile} or
        C{caCertificates}).
        """
        return self.caFile is not None or bool(self.caCertificates)

    def withHostname(self, hostname: str | None) -> TLSPolicy:
        """
        This policy, checking the certificate against (and sending as SNI)
        C{hostname} when it names no host of its own.
        """
        if self.hostname is not None or hostname is None:
            return self
        return replace(self, hostname=hostname)

    @property
    def verifies(self) -> bool:
        """
        Whether a certificate that does not verify stops the delivery.
        """
        return self.verifyWhenUsed

    @classmethod
    def choose(
        cls,
        *,
        tls: bool = True,
        contextFactory: object = None,
        hostname: str | None = None,
        requireTransportSecurity: bool = False,
        requireAuthentication: bool = False,
        implicit: bool = False,
    ) -> TLSPolicy:
        """
        The level that Twisted's arguments select (the table in
        C{docs/security.rst}):

          - C{tls=False}: C{none};
          - TLS required (C{requireTransportSecurity}, implicit TLS) or
            authentication required: C{verify};
          - a host name or a context given, nothing required: C{may}, and
            a certificate that does not verify fails the delivery;
          - nothing given, nothing required: C{may}, and the certificate's
            check is only recorded.
        """
        if not tls:
            return cls(TLSLevel.NONE, hostname=hostname)
        named = hostname is not None or contextFactory is not None
        if requireTransportSecurity or requireAuthentication or implicit:
            level = TLSLevel.VERIFY
        else:
            level = TLSLevel.MAY
        return cls(
            level,
            implicit=implicit,
            verifyWhenUsed=named,
            hostname=hostname,
            context=contextFactory,
        )


def _pems(value: object) -> tuple[bytes, ...]:
    """
    C{caCertificates} as a tuple of PEM bytes.
    """
    items: Iterable[object]
    if isinstance(value, (bytes, str)):
        items = [value]
    else:
        items = cast(Iterable[object], value)  # (if it is not: a TypeError below)
    pems = []
    for item in items:
        if isinstance(item, str):
            item = item.encode("ascii")
        if not isinstance(item, bytes) or b"-----BEGIN CERTIFICATE-----" not in item:
            raise ValueError("caCertificates must hold PEM certificates, not %r"
                             % (item if not isinstance(item, bytes) else item[:40],))
        pems.append(item)
    return tuple(pems)


def _names(value: object) -> tuple[str, ...]:
    """
    C{matchNames} as a tuple of lower-case names without a trailing dot.
    """
    # (Not iterable: a TypeError below.)
    items = [value] if isinstance(value, str) else cast(Iterable[object], value)
    names = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError("matchNames must be names (str), not %r" % (item,))
        name = item.strip().lower()
        name = name[:-1] if name.endswith(".") and len(name) > 1 else name
        if not name or name == "." or any(c.isspace() for c in name):
            raise ValueError("not a name to match: %r" % (item,))
        names.append(name)
    return tuple(names)


#: What a L{TLSPolicyMap} entry may be: a policy, or a level (its name).
PolicyEntry = Union[TLSPolicy, TLSLevel, str]


class TLSPolicyMap(Mapping[str, TLSPolicy]):
    """
    The TLS policy of each destination, as Postfix's
    C{smtp_tls_policy_maps}.

    Keys (without case, trailing dots ignored):

      - C{"example.com"}: mail for the domain C{example.com}, whichever of
        its mail exchanges it goes to;
      - C{".example.com"}: mail for any domain under C{example.com} (an
        exact entry wins);
      - C{"[smtp.example.com]:587"}, C{"[smtp.example.com]"}: the smart
        host C{smtp.example.com} on that port, or on any port; a bare
        C{"smtp.example.com"} names the smart host too.  (A domain literal
        recipient, C{user@[192.0.2.1]}, is looked up as C{"[192.0.2.1]"}.)

    Values: a L{TLSPolicy}, or a level (C{"none"}, C{"may"}, C{"encrypt"},
    C{"verify"}).  A policy that names no C{hostname} checks the
    certificate against the host connected to (the mail exchange's name),
    which is also sent as SNI.

    Pure: no I/O.
    """

    def __init__(self, entries: Mapping[str, PolicyEntry] | Iterable[tuple[str, PolicyEntry]] = ()) -> None:
        items = entries.items() if isinstance(entries, Mapping) else entries
        self._entries: dict[str, TLSPolicy] = {}
        for key, value in items:
            if not isinstance(key, str) or not key.strip():
                raise ValueError("not a destination: %r" % (key,))
            if isinstance(value, TLSPolicy):
                policy = value
            elif isinstance(value, (TLSLevel, str)):
                policy = TLSPolicy(TLSLevel(value))
            else:
                raise TypeError("a TLS policy map holds TLSPolicy or levels, not %r" % (value,))
            self._entries[_key(key)] = policy

    def __getitem__(self, key: str) -> TLSPolicy:
        return self._entries[_key(key)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return "TLSPolicyMap(%r)" % (self._entries,)

    def forDomain(self, domain: str) -> TLSPolicy | None:
        """
        The policy of mail for C{domain}: its own entry, else the entry
        C{".parent"} of its nearest parent domain that has one, else
        L{None}.
        """
        name = _key(domain)
        found = self._entries.get(name)
        if found is not None or name.startswith("["):
            return found
        labels = name.split(".")
        for i in range(1, len(labels)):
            found = self._entries.get("." + ".".join(labels[i:]))
            if found is not None:
                return found
        return None

    def forHost(self, host: str, port: int) -> TLSPolicy | None:
        """
        The policy of the smart host C{host} on C{port}: the entry
        C{"[host]:port"}, else C{"[host]"}, else C{"host"}, else L{None}.
        """
        name = _key(host)
        for key in ("[%s]:%d" % (name, port), "[%s]" % (name,), name):
            found = self._entries.get(key)
            if found is not None:
                return found
        return None


def _key(text: str) -> str:
    key = text.strip().lower()
    if key.endswith(".") and len(key) > 1:
        key = key[:-1]
    return key


@dataclass(frozen=True)
class TLSRecord:
    """
    The TLS one delivery got.

    @ivar level: the level of the policy that applied.
    @ivar protocol: the TLS version negotiated (C{"TLSv1.3"}), or L{None}
        when the mail went in clear.
    @ivar cipher: the cipher suite, or L{None}.
    @ivar verified: whether the server's certificate verified for
        C{hostname} (L{None}: unknown, the caller's own context decided).
    @ivar hostname: the name the certificate was checked against.
    @ivar reason: why the certificate did not verify, when it did not.
    @ivar source: where the policy came from (L{PolicySource}).
    @ivar daneMatch: DANE: the TLSA record the chain matched (presentation
        form, C{"3 1 1 9f86..."}).
    """

    level: TLSLevel
    protocol: str | None = None
    cipher: str | None = None
    verified: bool | None = None
    hostname: str | None = None
    reason: str | None = None
    source: PolicySource = DEFAULT_SOURCE
    daneMatch: str | None = None

    @property
    def encrypted(self) -> bool:
        """
        Whether the mail went over TLS.
        """
        return self.protocol is not None

    def describe(self) -> str:
        """
        One line for logs and the command line, e.g. C{"TLSv1.3
        TLS_AES_256_GCM_SHA384, verified (level verify)"}.
        """
        where = "" if self.source == DEFAULT_SOURCE else ", policy " + self.source.describe()
        if not self.encrypted:
            return "no TLS (level %s%s)" % (self.level.value, where)
        if self.verified is None:
            check = "verified by the caller's context"
        elif self.verified:
            check = "verified"
            if self.daneMatch is not None:
                check += " by DANE TLSA %s" % (self.daneMatch,)
        else:
            check = "not verified: %s" % (self.reason or "unknown reason",)
        return "%s %s, %s (level %s%s)" % (self.protocol, self.cipher, check,
                                           self.level.value, where)


def policyState(policy: TLSPolicy) -> dict[str, object]:
    """
    A policy as plain data (its context, if any, as it is).
    """
    from dataclasses import fields

    state = {f.name: getattr(policy, f.name) for f in fields(policy)}
    state["level"] = policy.level.value
    # What the relay works out per delivery is not configuration.
    for name in ("tlsa", "source"):
        state.pop(name, None)
    return state


def replacePolicy(policy: TLSPolicy, **changes: Any) -> TLSPolicy:
    """
    C{policy} with C{changes}.
    """
    from dataclasses import replace

    return replace(policy, **changes)


def hopPolicy(
    entry: TLSPolicy | None, host: str, port: int, *, smartHost: bool,
    context: object = None, level: TLSLevel | str | None = None, credentials: bool = False,
    caFile: str | None = None, caCertificates: tuple[bytes, ...] = (),
    implicit: bool | None = None,
) -> TLSPolicy:
    """
    The TLS policy of one relay hop to C{host}:C{port} (the rule of
    C{SmartHostSMTPRelayingManager.tlsPolicyFor}):

      - the policy map's C{entry} for the destination, with the manager's
        trust anchors when it names none;
      - else the relayers' own TLS C{context} (Twisted's C{contextFactory}),
        used when the server offers STARTTLS;
      - else C{level}, by default C{may}, or C{verify} for a smart host
        when C{credentials} or trust anchors are given.

    Implicit TLS to a smart host on port 465 (or as C{implicit} says); the
    certificate is checked against C{host} unless the policy names another.
    """
    anchors = {"caFile": caFile, "caCertificates": tuple(caCertificates)}
    hasAnchors = caFile is not None or bool(caCertificates)
    if entry is not None:
        policy = entry
        if hasAnchors and not policy.hasTrustAnchors and policy.context is None:
            policy = replacePolicy(policy, **anchors)
        if policy.source == DEFAULT_SOURCE:
            policy = replacePolicy(policy, source=PolicySource(SourceKind.POLICY_MAP))
    else:
        if context is not None:
            return TLSPolicy(TLSLevel.MAY, verifyWhenUsed=True, context=context, hostname=host)
        if level is None:
            level = TLSLevel.VERIFY if smartHost and (credentials or hasAnchors) else TLSLevel.MAY
        level = TLSLevel(level)
        policy = (TLSPolicy(level, caFile=caFile, caCertificates=tuple(caCertificates))
                  if smartHost else TLSPolicy(level))
    if smartHost and not policy.implicit and policy.level is not TLSLevel.NONE:
        if implicit if implicit is not None else port == 465:
            policy = replacePolicy(policy, implicit=True)
    return policy.withHostname(host)


def requireVerified(policy: TLSPolicy) -> TLSPolicy:
    """
    C{policy} for a message that asked for REQUIRETLS (RFC 8689 section
    4.2.1): TLS required, and a certificate that verifies (by the trust
    store, or by DANE when the policy has TLSA records); never less than
    C{verify}, whatever the policy said.  The caller's own context is
    kept: it verifies by itself.
    """
    source = replace(policy.source, requireTLS=True)
    if policy.level is TLSLevel.VERIFY:
        return replace(policy, source=source)
    return replace(policy, level=TLSLevel.VERIFY, verifyWhenUsed=True, source=source)
