"""
mailclient: a drop-in, correct replacement for the SMTP client half of
C{twisted.mail}.
"""

from mailclient.smtp import (
    ESMTPClient,
    ESMTPSender,
    ESMTPSenderFactory,
    SMTPSender,
    SMTPSenderFactory,
    sendmail,
    SMTPClient,
    SMTPClientError,
    SMTPDeliveryError,
    quoteaddr,
)

__version__ = "0.1.0"

__all__ = [
    "ESMTPClient",
    "ESMTPSender",
    "ESMTPSenderFactory",
    "SMTPSender",
    "SMTPSenderFactory",
    "sendmail",
    "SMTPClient",
    "SMTPClientError",
    "SMTPDeliveryError",
    "__version__",
    "quoteaddr",
]
