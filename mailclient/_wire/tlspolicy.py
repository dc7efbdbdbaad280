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

Credentials are only ever sent over a connection whose certificate was
verified (or to a loopback address), unless the caller allows cleartext
authentication.

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


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
    """

    level: TLSLevel = TLSLevel.MAY
    implicit: bool = False
    verifyWhenUsed: bool = False
    hostname: str | None = None
    context: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", TLSLevel(self.level))
        if self.level is TLSLevel.NONE and self.implicit:
            raise ValueError("implicit TLS needs a TLS level other than 'none'")
        if self.level is TLSLevel.VERIFY:
            object.__setattr__(self, "verifyWhenUsed", True)

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
        contextFactory: Any = None,
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
    """

    level: TLSLevel
    protocol: str | None = None
    cipher: str | None = None
    verified: bool | None = None
    hostname: str | None = None
    reason: str | None = None

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
        if not self.encrypted:
            return "no TLS (level %s)" % (self.level.value,)
        if self.verified is None:
            check = "verified by the caller's context"
        elif self.verified:
            check = "verified"
        else:
            check = "not verified: %s" % (self.reason or "unknown reason",)
        return "%s %s, %s (level %s)" % (self.protocol, self.cipher, check, self.level.value)
