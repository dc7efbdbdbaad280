"""
L{sendmail}: send one message with one call, returning a Deferred.
"""

from __future__ import annotations

import email.message
import enum
import io
from typing import cast

from twisted.internet import defer
from twisted.internet.interfaces import (
    IConnector,
    IReactorTCP,
    ITCPTransport,
)

from mailclient._protocol.client import checkIdentity
from mailclient._protocol.connect import connectSender
from mailclient._wire.errors import InvalidAddressError, TLSRequiredError
from mailclient._protocol.sender import ESMTPSenderFactory
from mailclient._wire.timeouts import Timeouts
from mailclient._protocol.tls import contextForPolicy
from mailclient._wire.text import hostName
from mailclient._wire.types import MessageFile, SendResult

#: The default per-phase reply limits (RFC 5321 section 4.5.3.2).
DEFAULT_TIMEOUTS = Timeouts()


class _Default(enum.Enum):
    """
    C{sendmail}'s C{timeout} when not given: RFC 5321's per-phase limits.
    """

    RFC5321 = "<RFC 5321 per-phase timeouts>"

    def __repr__(self) -> str:
        return self.value


_DEFAULT = _Default.RFC5321

#: The port on which SMTP is spoken over implicit TLS (RFC 8314).
SMTPS_PORT = 465


def _messageFile(msg: object) -> MessageFile:
    if hasattr(msg, "read"):
        return cast(MessageFile, msg)
    if isinstance(msg, email.message.Message):
        # Flatten with CRLF line endings, keeping the message's own policy.
        return io.BytesIO(msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))
    if isinstance(msg, str):
        return io.BytesIO(msg.encode("utf-8"))
    return io.BytesIO(bytes(cast(bytes, msg)))


def sendmail(
    smtphost: str | bytes,
    from_addr: object,
    to_addrs: object,
    msg: object,
    senderDomainName: str | bytes | None = None,
    port: int = 25,
    reactor: IReactorTCP | None = None,
    username: str | bytes | None = None,
    password: str | bytes | None = None,
    requireAuthentication: bool = False,
    requireTransportSecurity: bool = False,
    *,
    timeout: float | None | _Default = _DEFAULT,
    implicitTLS: bool | None = None,
    retries: int = 5,
    _factoryClass: type[ESMTPSenderFactory] = ESMTPSenderFactory,
    **options: object,
) -> defer.Deferred[SendResult]:
    """
    Send an email, as C{twisted.mail.smtp.sendmail} does.

    Falls back to plain SMTP if the server does not speak ESMTP (unless TLS
    or authentication is required), uses STARTTLS when the server offers it,
    verifying the certificate for C{smtphost}, and authenticates when a
    password is given.

    A host name is resolved for IPv6 and IPv4 at once and its addresses
    tried in turn, the next one 250 ms after the previous unless that one
    failed sooner, the first connection made winning (happy eyeballs, RFC
    8305: see L{connectSender}); an IP address is connected to directly.

    @param smtphost: The host the message should be sent to.
    @param from_addr: The (envelope) address sending this mail.
    @param to_addrs: A list of addresses to send this mail to; a string is
        one address.
    @param msg: The message, including headers: L{bytes}, L{str} (sent as
        UTF-8), a file (binary or text mode), or an L{email.message.Message}
        (flattened with CRLF line endings).
    @param senderDomainName: Name by which to identify (default: this host's
        name).
    @param port: Remote port to which to connect.
    @param reactor: The reactor to use (default: the global reactor, looked
        up when C{sendmail} is called, so that importing mailclient never
        installs a reactor).
    @param username: The username to use, if authenticating.
    @param password: The secret to use; without it there is no
        authentication.
    @param requireAuthentication: Whether authentication is required.
    @param requireTransportSecurity: Whether TLS is required.
    @param timeout: Seconds to wait for every server reply, whatever the
        phase; L{None} waits for ever, as Twisted does.  When not given,
        the C{timeouts} option applies, by default RFC 5321 section
        4.5.3.2's (5 minutes for the greeting, MAIL and RCPT, 2 for DATA,
        3 per data block, 10 for the final reply).
    @param implicitTLS: Speak TLS from the first byte (SMTPS, RFC 8314).
        Defaults to True when C{port} is 465.
    @param retries: How many times to retry after a connection failure or
        a temporary error (the first at once, then with growing delays; see
        L{RetryPolicy}).
    @param options: (keyword only) any option of L{ClientSettings}:
        C{timeouts}, C{contextFactory}, C{tls}, C{tlsPolicy},
        C{allowCleartextAuthentication}, C{authenticators}, C{pipelining},
        C{chunking}, C{mailOptions}, C{retry}, C{connectTimeout} (seconds
        for each address to connect, default 30), C{bindAddress} (the
        local C{(address, port)} to connect from, or one per family).

    @return: A cancellable Deferred that fires with C{(numOk, addresses)}
        when the server accepted the message for at least one recipient,
        or fails with an L{SMTPClientError}.  Cancelling it stops retrying
        and drops the connection at once.
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = cast(IReactorTCP, globalReactor)
    if timeout is _DEFAULT:
        timeout = None
        options.setdefault("timeouts", DEFAULT_TIMEOUTS)
    if implicitTLS is None:
        implicitTLS = port == SMTPS_PORT
    tlsHostname = hostName(smtphost)
    if isinstance(username, str):
        username = username.encode("utf-8")
    if isinstance(password, str):
        password = password.encode("utf-8")

    factory: ESMTPSenderFactory | None = None
    connector: IConnector | None = None

    def cancel(d: defer.Deferred[SendResult]) -> None:
        if factory is None:
            return
        factory.sendFinished = True
        factory.cancelRetry()
        current = factory.currentProtocol
        transport = cast(ITCPTransport | None, current.transport if current is not None else None)
        if current is not None:
            # No reply timer outlives the cancellation, even on a transport
            # that never reports the connection lost.
            current.setTimeout(None)
        if transport is not None:
            transport.abortConnection()
        elif connector is not None:
            connector.disconnect()

    d: defer.Deferred[SendResult] = defer.Deferred(cancel)
    try:
        domain = None if senderDomainName is None else checkIdentity(senderDomainName)
        factory = _factoryClass(
            username,
            password,
            from_addr,
            to_addrs,
            _messageFile(msg),
            d,
            retries=retries,
            timeout=timeout,
            heloFallback=True,
            requireAuthentication=requireAuthentication,
            requireTransportSecurity=requireTransportSecurity,
            hostname=tlsHostname,
            implicitTLS=implicitTLS,
            **options,
        )
    except (ValueError, InvalidAddressError) as e:
        d.errback(
            e if isinstance(e, InvalidAddressError) else InvalidAddressError(str(e))
        )
        return d
    except Exception:
        d.errback()
        return d
    if domain is not None:
        factory.domain = domain
    factory.reactor = reactor
    if implicitTLS:
        context = contextForPolicy(factory.settings.tlsPolicyFor(tlsHostname), tlsHostname)
        if context is None:
            d.errback(
                TLSRequiredError(
                    -1,
                    b"Implicit TLS requested but TLS is off or TLS support is not "
                    b"installed (pip install mailclient[tls])",
                )
            )
            return d
        connector = connectSender(reactor, tlsHostname, port, factory, contextFactory=context)
    else:
        connector = connectSender(reactor, tlsHostname, port, factory)
    return d
