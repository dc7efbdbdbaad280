"""
The SMTP client half of C{twisted.mail.smtp}, reimplemented.

Change C{from twisted.mail.smtp import X} into C{from mailclient.smtp import X}
and the same names, signatures, attributes, hooks and Deferred results are
there.  The logic lives in private modules; this module only gathers it.
"""

from __future__ import annotations

from mailclient._wire.address import Address, quoteaddr
from mailclient._protocol.client import SUCCESS, SMTPClient
from mailclient._protocol.credentials import LOGINCredentials
from mailclient._protocol.esmtp import ESMTPClient
from mailclient._wire.sasl import (
    CramMD5ClientAuthenticator,
    LOGINAuthenticator,
    OAUTHBEARERAuthenticator,
    PLAINAuthenticator,
    XOAUTH2Authenticator,
)
from mailclient._protocol.sender import (
    ESMTPSender,
    ESMTPSenderFactory,
    SenderMixin,
    SMTPSender,
    SMTPSenderFactory,
)
from mailclient._protocol.sendmail import sendmail
from mailclient._protocol.connect import connectSender
from mailclient._wire.errors import (
    AddressError,
    AUTHDeclinedError,
    AuthenticationError,
    AUTHRequiredError,
    CannotSendError,
    EHLORequiredError,
    ESMTPClientError,
    InvalidAddressError,
    MessageReadError,
    SMTPClientError,
    SMTPConnectError,
    SMTPDeliveryError,
    SMTPError,
    SMTPProtocolError,
    SMTPTimeoutError,
    TLSError,
    TLSRequiredError,
)
from mailclient._wire.host import getDNSName
from mailclient._wire.servererrors import (
    SMTPAddressError,
    SMTPBadRcpt,
    SMTPBadSender,
    SMTPServerError,
)
from mailclient._wire.options import MailOptions
from mailclient._wire.retry import RetryPolicy
from mailclient._wire.settings import ClientSettings
from mailclient._wire.timeouts import Timeouts
from mailclient._wire.tlspolicy import TLSLevel, TLSPolicy, TLSRecord
from mailclient._wire.util import idGenerator, messageid, rfc822date
from mailclient._wire.xtext import (
    xtext_codec,
    xtext_decode,
    xtext_encode,
    xtextStreamReader,
    xtextStreamWriter,
)
from mailclient.interfaces import IClientAuthentication


def __getattr__(name: str) -> bytes:
    # DNSNAME is looked up on first use, not at import time.  (It is not in
    # __all__, as in Twisted, so that a star import does not look it up.)
    if name == "DNSNAME":
        return getDNSName()
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


__all__ = [
    "CannotSendError",
    "connectSender",
    "ClientSettings",
    "MailOptions",
    "RetryPolicy",
    "Timeouts",
    "TLSLevel",
    "TLSPolicy",
    "TLSRecord",
    "CramMD5ClientAuthenticator",
    "ESMTPClient",
    "ESMTPSender",
    "ESMTPSenderFactory",
    "LOGINAuthenticator",
    "LOGINCredentials",
    "OAUTHBEARERAuthenticator",
    "PLAINAuthenticator",
    "SMTPSender",
    "SMTPSenderFactory",
    "SenderMixin",
    "XOAUTH2Authenticator",
    "sendmail",
    "AUTHDeclinedError",
    "AUTHRequiredError",
    "Address",
    "AddressError",
    "AuthenticationError",
    "EHLORequiredError",
    "ESMTPClientError",
    "IClientAuthentication",
    "InvalidAddressError",
    "MessageReadError",
    "SMTPAddressError",
    "SMTPBadRcpt",
    "SMTPBadSender",
    "SMTPClient",
    "SMTPClientError",
    "SMTPConnectError",
    "SMTPDeliveryError",
    "SMTPError",
    "SMTPProtocolError",
    "SMTPServerError",
    "SMTPTimeoutError",
    "SUCCESS",
    "TLSError",
    "TLSRequiredError",
    "idGenerator",
    "messageid",
    "quoteaddr",
    "rfc822date",
    "xtextStreamReader",
    "xtextStreamWriter",
    "xtext_codec",
    "xtext_decode",
    "xtext_encode",
]
