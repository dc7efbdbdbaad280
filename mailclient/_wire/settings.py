"""
How a client sends: one frozen L{ClientSettings}.

C{sendmail}, the sender factories and the protocols they build share one
instance, so that each option is defined, checked and documented here once.
The factories keep Twisted's attribute names for the options Twisted has
(C{timeout}, C{_contextFactory}, C{_heloFallback}, ...); those read and
write the factory's settings.

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mailclient._wire.options import MailOptions
from mailclient._wire.retry import RetryPolicy
from mailclient._wire.timeouts import Timeouts
from mailclient._wire.text import hostName
from mailclient._wire.tlspolicy import TLSPolicy

if TYPE_CHECKING:
    from mailclient.interfaces import IClientAuthentication


@dataclass(frozen=True)
class ClientSettings:
    """
    The options of a client delivery.

    @ivar timeout: seconds to wait for every server reply, whatever the
        phase (Twisted's C{timeout}); L{None} leaves it to C{timeouts}.
    @ivar timeouts: per-phase limits (L{Timeouts}, RFC 5321 4.5.3.2), used
        when C{timeout} is L{None}; L{None} with no C{timeout}: wait for ever.
    @ivar heloFallback: fall back to HELO when the server refuses EHLO
        (never when TLS or authentication is required).
    @ivar requireAuthentication: fail unless the client can log in.
    @ivar requireTransportSecurity: fail unless the connection is over TLS.
    @ivar allowCleartextAuthentication: send credentials over a connection
        that is not encrypted, or whose certificate was not verified, to a
        remote host (by default they only go over verified TLS, or to a
        loopback address).
    @ivar contextFactory: the caller's own TLS context (used as is).
    @ivar hostname: the name the server's certificate is checked against
        (and sent as SNI); L{None}: the name connected to.
    @ivar tls: C{False} never uses TLS, even when the server offers it.
    @ivar implicitTLS: speak TLS from the first byte (SMTPS, RFC 8314).
    @ivar tlsPolicy: a L{TLSPolicy} to use instead of the one the options
        above select (L{TLSPolicy.choose}).
    @ivar authenticators: SASL authenticators to use instead of the
        default CRAM-MD5, LOGIN and PLAIN.
    @ivar pipelining: C{False} never pipelines commands (RFC 2920).
    @ivar chunking: C{False} never sends the body with BDAT (RFC 3030).
    @ivar mailOptions: DSN, 8-bit and binary options (L{MailOptions}).
    @ivar retry: when a delivery that failed for now is tried again
        (L{RetryPolicy}; Twisted's C{retries} is its C{retries}).
    @ivar connectTimeout: seconds each connection attempt (one address of
        the host) may take to connect, and the host name to resolve
        (Postfix's C{smtp_connect_timeout}).
    @ivar bindAddress: the local C{(address, port)} to connect from (port
        0: any), or a list of one per family (Postfix's
        C{smtp_bind_address} and C{smtp_bind_address6}); addresses of a
        family with none are not tried.  L{None}: the system chooses.
    """

    timeout: float | None = None
    timeouts: Timeouts | None = None
    heloFallback: bool = False
    requireAuthentication: bool = True
    requireTransportSecurity: bool = True
    allowCleartextAuthentication: bool = False
    contextFactory: object = None
    hostname: str | None = None
    tls: bool = True
    implicitTLS: bool = False
    tlsPolicy: TLSPolicy | None = None
    authenticators: tuple[IClientAuthentication, ...] | None = None
    pipelining: bool = True
    chunking: bool = True
    mailOptions: MailOptions | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    connectTimeout: float = 30.0
    bindAddress: object = None

    def __post_init__(self) -> None:
        if self.connectTimeout != 30.0 and not (
                isinstance(self.connectTimeout, (int, float)) and self.connectTimeout > 0):
            raise ValueError("connectTimeout must be a positive number of seconds, not %r"
                             % (self.connectTimeout,))
        if self.bindAddress is not None:
            bindAddresses(self.bindAddress)
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError("timeout must be a positive number of seconds or None, not %r"
                             % (self.timeout,))
        if self.timeouts is not None and not isinstance(self.timeouts, Timeouts):
            raise TypeError("timeouts must be a Timeouts, not %r" % (self.timeouts,))
        if self.mailOptions is not None and not isinstance(self.mailOptions, MailOptions):
            raise TypeError("mailOptions must be a MailOptions, not %r" % (self.mailOptions,))
        if self.tlsPolicy is not None and not isinstance(self.tlsPolicy, TLSPolicy):
            raise TypeError("tlsPolicy must be a TLSPolicy, not %r" % (self.tlsPolicy,))
        if not isinstance(self.retry, RetryPolicy):
            raise TypeError("retry must be a RetryPolicy, not %r" % (self.retry,))
        if self.hostname is not None:
            object.__setattr__(self, "hostname", hostName(self.hostname))
        if self.authenticators is not None:
            authenticators = tuple(self.authenticators)
            for auth in authenticators:
                if not (callable(getattr(auth, "getName", None))
                        and callable(getattr(auth, "challengeResponse", None))):
                    raise TypeError("%r is not an IClientAuthentication provider" % (auth,))
            object.__setattr__(self, "authenticators", authenticators or None)

    def replace(self, **changes: Any) -> ClientSettings:
        """
        A copy with C{changes} (checked the same way).
        """
        return replace(self, **changes)

    def tlsPolicyFor(self, hostname: str | None = None) -> TLSPolicy:
        """
        The L{TLSPolicy} of a delivery with these settings: C{tlsPolicy}
        when given, else the one C{tls}, C{contextFactory}, C{hostname},
        C{requireTransportSecurity}, C{requireAuthentication} and
        C{implicitTLS} select.

        @param hostname: the name to check the certificate against when
            the settings name none (the host connected to).
        """
        if self.tlsPolicy is not None:
            return self.tlsPolicy
        policy = TLSPolicy.choose(
            tls=self.tls,
            contextFactory=self.contextFactory,
            hostname=self.hostname,
            requireTransportSecurity=self.requireTransportSecurity,
            requireAuthentication=self.requireAuthentication,
            implicit=self.implicitTLS,
        )
        if policy.hostname is None and hostname is not None:
            policy = replace(policy, hostname=hostname)
        return policy


def addressFamily(address: str) -> int:
    """
    6 for an IPv6 address, 4 otherwise.
    """
    return 6 if ":" in address else 4


def _isAddress(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return False
    return True


def bindAddresses(bindAddress: object) -> dict[int, tuple[str, int]]:
    """
    The local address to bind each family's connections to, from
    C{bindAddress}: L{None}, one C{(address, port)}, or a sequence of them
    (at most one per family).

    @raise ValueError: when C{bindAddress} is none of these.
    """
    if bindAddress is None:
        return {}
    items: Sequence[object]
    if (isinstance(bindAddress, tuple) and len(bindAddress) == 2
            and isinstance(bindAddress[0], str)):
        items = [bindAddress]
    elif isinstance(bindAddress, (list, tuple)):
        items = bindAddress
    else:
        raise ValueError("bindAddress must be (address, port) or a list of them, not %r"
                         % (bindAddress,))
    found: dict[int, tuple[str, int]] = {}
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], int) and not isinstance(item[1], bool)
                and 0 <= item[1] <= 65535 and _isAddress(item[0])):
            raise ValueError("a bind address is (IP address, port), not %r" % (item,))
        kind = addressFamily(item[0])
        if kind in found:
            raise ValueError("two bind addresses for IPv%d in %r" % (kind, bindAddress))
        found[kind] = (item[0], item[1])
    return found


#: The defaults (frozen, so shared).
_DEFAULTS = ClientSettings()


def settingsFrom(settings: ClientSettings | None, **options: object) -> ClientSettings:
    """
    C{settings} (or the defaults) with C{options} applied.

    @raise TypeError: for an option L{ClientSettings} does not have.
    """
    base = settings if settings is not None else _DEFAULTS
    fields = ClientSettings.__dataclass_fields__
    unknown = [name for name in options if name not in fields]
    if unknown:
        raise TypeError("unknown option(s): %s" % (", ".join(sorted(unknown)),))
    # Only what differs (a copy is checked again whole: one per factory).
    changes = {name: value for name, value in options.items()
               if getattr(base, name) is not value}
    return base.replace(**changes) if changes else base


__all__ = ["ClientSettings", "settingsFrom", "bindAddresses", "addressFamily"]
