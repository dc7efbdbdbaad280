"""
The exception classes of the SMTP client.

Names, constructor signatures, attributes and ``str()``/``bytes()`` formats
are those of ``twisted.mail.smtp``, so code that catches or inspects them
keeps working after changing its imports.
"""

from __future__ import annotations


from mailclient._wire.status import isPermanent, isTemporary, parseEnhancedStatus


class SMTPError(Exception):
    """
    Base class of every SMTP error.
    """


class SMTPClientError(SMTPError):
    """
    Base class for SMTP client errors.

    @ivar code: The SMTP reply code associated with the error, or -1 when the
        error did not come from a server reply.
    @ivar resp: The reply text (L{bytes}).
    @ivar log: The transcript leading up to the error (L{bytes}), with any
        credentials redacted, or L{None}.
    @ivar addresses: Per-recipient results, when relevant.
    @ivar isFatal: Whether the connection cannot be used any more.
    @ivar retry: Whether delivery may be retried.
    """

    def __init__(
        self,
        code: int,
        resp: bytes | str,
        log: bytes | str | None = None,
        addresses: object | None = None,
        isFatal: bool = False,
        retry: bool = False,
    ) -> None:
        if isinstance(resp, str):
            resp = resp.encode("utf-8")
        if isinstance(log, str):
            log = log.encode("utf-8")
        self.code = code
        self.resp: bytes = resp
        self.log: bytes | None = log
        self.addresses = addresses
        self.isFatal = isFatal
        self.retry = retry

    @property
    def enhancedStatus(self) -> tuple[int, int, int] | None:
        """
        The enhanced status code (RFC 3463) at the start of C{resp}, such as
        C{(5, 1, 1)}, or L{None}.  When C{resp} has none (as in "No
        recipients accepted"), the code of the first recipient refused with
        the same reply code.  (mailclient addition)
        """
        found = parseEnhancedStatus(self.code, self.resp.split(b"\n", 1)[0])
        if found is None and isinstance(self.addresses, (list, tuple)):
            # "No recipients accepted": the recipients' replies say why.
            for entry in self.addresses:
                try:
                    _, code, resp = entry
                except (TypeError, ValueError):
                    continue
                if code == self.code and isinstance(resp, bytes):
                    found = parseEnhancedStatus(code, resp)
                    if found is not None:
                        break
        return found

    @property
    def isTemporary(self) -> bool:
        """
        Whether the server said the failure is temporary (4xx, or an
        enhanced code of class 4): the message may succeed later.
        """
        return isTemporary(self.code, self.enhancedStatus)

    @property
    def isPermanent(self) -> bool:
        """
        Whether the server said the failure is permanent (5xx, or an
        enhanced code of class 5).
        """
        return isPermanent(self.code, self.enhancedStatus)

    def __str__(self) -> str:
        return self.__bytes__().decode("utf-8", "replace")

    def __bytes__(self) -> bytes:
        if self.code > 0:
            parts = [b"%03d " % (self.code,) + self.resp]
        else:
            parts = [self.resp]
        if self.log:
            parts.append(self.log)
            parts.append(b"")
        return b"\n".join(parts)


class ESMTPClientError(SMTPClientError):
    """
    Base class for ESMTP client errors.
    """


class EHLORequiredError(ESMTPClientError):
    """
    The server does not support EHLO.

    This is considered a non-fatal error (the connection will not be dropped).
    """


class AUTHRequiredError(ESMTPClientError):
    """
    Authentication was required but could not be performed.

    This is considered a non-fatal error (the connection will not be dropped).
    """


class TLSRequiredError(ESMTPClientError):
    """
    Transport security was required but the server does not support it.

    This is considered a non-fatal error (the connection will not be dropped).
    """


class AUTHDeclinedError(ESMTPClientError):
    """
    The server rejected our credentials.

    This is considered a non-fatal error (the connection will not be dropped).
    """


class AuthenticationError(ESMTPClientError):
    """
    An error occurred while authenticating.

    This is considered a non-fatal error (the connection will not be dropped).
    """


class SMTPConnectError(SMTPClientError):
    """
    Failed to connect to the mail exchange host, or lost the connection.

    This is considered a fatal error.  A retry will be made.
    """

    def __init__(
        self,
        code: int,
        resp: bytes | str,
        log: bytes | str | None = None,
        addresses: object | None = None,
        isFatal: bool = True,
        retry: bool = True,
    ) -> None:
        SMTPClientError.__init__(self, code, resp, log, addresses, isFatal, retry)


class SMTPTLSError(ESMTPClientError, SMTPConnectError):
    """
    An error occurred while negotiating transport security: the server
    refused STARTTLS, or the handshake or the certificate check failed.

    It is also an L{SMTPConnectError}: where Twisted's factories report a
    TLS failure, they report the connection as lost (C{SMTPConnectError}),
    so code written for Twisted that catches that keeps working.  Not
    retried: the next attempt would meet the same certificate.
    """

    def __init__(
        self,
        code: int,
        resp: bytes | str,
        log: bytes | str | None = None,
        addresses: object | None = None,
        isFatal: bool = False,
        retry: bool = False,
    ) -> None:
        SMTPClientError.__init__(self, code, resp, log, addresses, isFatal, retry)


# The public name (Twisted exports the class as TLSError too).
TLSError = SMTPTLSError


class SMTPTimeoutError(SMTPClientError):
    """
    Failed to receive a response from the server in the expected time period.

    This is considered a fatal error.  A retry will be made.
    """

    def __init__(
        self,
        code: int,
        resp: bytes | str,
        log: bytes | str | None = None,
        addresses: object | None = None,
        isFatal: bool = True,
        retry: bool = True,
    ) -> None:
        SMTPClientError.__init__(self, code, resp, log, addresses, isFatal, retry)


class SMTPProtocolError(SMTPClientError):
    """
    The server sent a mangled response.

    This is considered a fatal error.  A retry will not be made.
    """

    def __init__(
        self,
        code: int,
        resp: bytes | str,
        log: bytes | str | None = None,
        addresses: object | None = None,
        isFatal: bool = True,
        retry: bool = False,
    ) -> None:
        SMTPClientError.__init__(self, code, resp, log, addresses, isFatal, retry)


class SMTPDeliveryError(SMTPClientError):
    """
    Indicates that a delivery attempt has had an error.
    """


class AddressError(SMTPError):
    """
    Parse error in address.
    """


class InvalidAddressError(SMTPClientError, AddressError):
    """
    The client refused to put an address (or a host name) on the wire.

    Raised for an empty list, a list of several addresses given as one,
    trailing junk, CR, LF or NUL characters, or non-ASCII characters that the
    server did not agree to receive.  No command carrying it was sent.

    This is a mailclient addition.  It is both an L{SMTPClientError} (code -1,
    not fatal: the connection can still be closed politely; never retried)
    and an L{AddressError}.
    """

    def __init__(
        self,
        resp: bytes | str,
        log: bytes | str | None = None,
        addresses: object | None = None,
    ) -> None:
        SMTPClientError.__init__(
            self, -1, resp, log, addresses, isFatal=False, retry=False
        )


class MessageReadError(SMTPClientError):
    """
    The message body could not be read or encoded while it was being sent.

    The transaction was abandoned by closing the connection, so the server
    never accepted the message.  Fatal; never retried.  A mailclient
    addition.
    """

    def __init__(
        self,
        resp: bytes | str,
        log: bytes | str | None = None,
    ) -> None:
        SMTPClientError.__init__(self, -1, resp, log, None, isFatal=True, retry=False)


class CannotSendError(SMTPDeliveryError):
    """
    The client refused to send this message to this server: it exceeds the
    server's SIZE limit, holds 8-bit data the server did not agree to
    receive, or asks for DSN the server lacks while DSN was required.  A
    mailclient addition; never retried.  Fatal only when found while the
    body was being sent (the connection is then dropped).

    It is an L{SMTPDeliveryError}: Twisted sends such a message and the
    server refuses it, which Twisted reports as one.
    """

    def __init__(
        self,
        resp: bytes | str,
        log: bytes | str | None = None,
        isFatal: bool = False,
        status: str = "5.3.3",
    ) -> None:
        SMTPClientError.__init__(self, -1, resp, log, None, isFatal=isFatal, retry=False)
        #: The RFC 3463 status of the refusal, for a bounce: 5.3.4 (too
        #: big), 5.6.3 (8-bit or binary data the server cannot take), 5.3.3
        #: (a feature the server lacks).
        self.status = status
