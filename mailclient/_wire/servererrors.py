"""
The errors of an SMTP I{server}: Twisted's C{smtp} module exports them and
client code names them in C{except} clauses, so mailclient keeps them.

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

from mailclient._wire.address import Address
from mailclient._wire.errors import SMTPError


class SMTPServerError(SMTPError):
    """
    An error reply, as raised by server-side code.
    """

    def __init__(self, code: int, resp: object) -> None:
        self.code = code
        self.resp = resp

    def __str__(self) -> str:
        return "%.3d %s" % (self.code, self.resp)


class SMTPAddressError(SMTPServerError):
    """
    An address was refused.
    """

    def __init__(self, addr: object, code: int, resp: object) -> None:
        SMTPServerError.__init__(self, code, resp)
        self.addr = Address(addr)

    def __str__(self) -> str:
        return "%.3d <%s>... %s" % (self.code, self.addr, self.resp)


class SMTPBadRcpt(SMTPAddressError):
    """
    A recipient address was refused.
    """

    def __init__(
        self,
        addr: object,
        code: int = 550,
        resp: object = "Cannot receive for specified address",
    ) -> None:
        SMTPAddressError.__init__(self, addr, code, resp)


class SMTPBadSender(SMTPAddressError):
    """
    A sender address was refused.
    """

    def __init__(
        self, addr: object, code: int = 550, resp: object = "Sender not acceptable"
    ) -> None:
        SMTPAddressError.__init__(self, addr, code, resp)
