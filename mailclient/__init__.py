"""
mailclient: a drop-in, correct replacement for the SMTP client half of
C{twisted.mail}.
"""

from mailclient.smtp import (
    SMTPClient,
    SMTPClientError,
    SMTPDeliveryError,
    quoteaddr,
)

__version__ = "0.1.0"

__all__ = [
    "SMTPClient",
    "SMTPClientError",
    "SMTPDeliveryError",
    "__version__",
    "quoteaddr",
]
