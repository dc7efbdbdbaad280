"""
A message given to the pool, made ready to send: its envelope checked and
its body read into memory.

The body is read whole when the message is given, so that a file that
cannot be read fails that message alone, before any connection sees it,
and so that a message can be sent again on another connection when one is
lost before the end of its data.  The envelope of an
L{email.message.Message} comes from its header, as C{smtplib}'s
C{send_message} takes it and with the same strict parser as the command
line's C{-t} (L{mailclient._wire.headers}); Bcc and Resent-Bcc are removed
from the copy sent.
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

from mailclient._wire.address import quoteaddr
from mailclient._wire.errors import InvalidAddressError, MessageReadError
from mailclient._wire.headers import HeaderError, envelopeFromMessage, withoutBcc


@dataclass(frozen=True, slots=True)
class PreparedMessage:
    """
    A message ready to send.

    @ivar sender: the envelope sender (C{""} for the null sender).
    @ivar recipients: the envelope recipients, at least one.
    @ivar body: the message as it is sent (before the line-ending and
        dot-stuffing the client applies on the wire).
    """

    sender: str
    recipients: tuple[str, ...]
    body: bytes


def _text(address: object, what: str) -> str:
    if isinstance(address, bytes):
        try:
            return address.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidAddressError("%s is not UTF-8: %r" % (what, address[:200])) from None
    if isinstance(address, str):
        return address
    raise TypeError("%s must be str or bytes, not %r" % (what, type(address).__name__))


def _recipients(recipients: object) -> tuple[str, ...]:
    if (type(recipients) is list or type(recipients) is tuple) and all(
            type(r) is str for r in recipients):
        return tuple(recipients)
    if isinstance(recipients, (str, bytes)):
        items: Iterable[object] = [recipients]
    else:
        try:
            items = iter(cast(Iterable[object], recipients))
        except TypeError:
            raise TypeError("recipients must be an address or a list of addresses, not %r"
                            % (type(recipients).__name__,)) from None
    return tuple(_text(r, "a recipient") for r in items)


def _readBody(read: Callable[[], object]) -> bytes:
    try:
        data = read()
    except Exception as e:
        raise MessageReadError(
            "Could not read the message to send: %s: %s" % (type(e).__name__, e)) from e
    if isinstance(data, str):
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError as e:
            raise MessageReadError("Could not read the message to send: %s" % (e,)) from e
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MessageReadError(
            "Could not read the message to send: read() returned %s, not bytes or str"
            % (type(data).__name__,))
    return bytes(data)


def prepareMessage(message: object, sender: object = None,
                   recipients: object = None) -> PreparedMessage:
    """
    Make C{message} ready to send.

    @param message: an L{email.message.Message} (C{EmailMessage}), L{bytes},
        L{str} (sent as UTF-8), or a file (binary or text) read to its end.
    @param sender: the envelope sender; for a C{Message}, L{None} takes it
        from the header (C{Sender}, else C{From}, or their C{Resent-}
        forms).
    @param recipients: the envelope recipients (one address or a list);
        for a C{Message}, L{None} takes them from C{To}, C{Cc} and C{Bcc}
        (or their C{Resent-} forms).

    @raise InvalidAddressError: if an address cannot be sent (also for an
        address in the header that cannot be parsed), or there is no
        recipient.
    @raise MessageReadError: if the file cannot be read.
    @raise TypeError: for bytes, text or a file without a sender and
        recipients, or for arguments of the wrong type.
    """
    if isinstance(message, email.message.Message):
        if sender is None or recipients is None:
            try:
                fromHeader, toHeader = envelopeFromMessage(message)
            except HeaderError as e:
                raise InvalidAddressError(
                    "the message's header gives no envelope: %s" % (e,)) from e
            sender = fromHeader if sender is None else sender
            recipients = toHeader if recipients is None else recipients
        body = withoutBcc(message)
    elif sender is None or recipients is None:
        raise TypeError(
            "a message given as bytes, text or a file needs its sender and recipients; "
            "only an email.message.Message gives them from its header")
    elif isinstance(message, (bytes, bytearray, memoryview)):
        body = bytes(message)
    elif isinstance(message, str):
        body = message.encode("utf-8")
    elif callable(read := getattr(message, "read", None)):
        body = _readBody(read)
    else:
        raise TypeError("cannot send %r: give an email.message.Message, bytes, str or a file"
                        % (type(message).__name__,))
    senderText = _text(sender, "the sender")
    recipientTexts = _recipients(recipients)
    if not recipientTexts:
        raise InvalidAddressError("the message has no recipients")
    # Refused now, where the caller sees it, rather than on a connection:
    # lists, junk, CR and LF.  (Non-ASCII addresses are allowed here; they
    # are refused later if the server does not offer SMTPUTF8.)
    quoteaddr(senderText, utf8=True)
    for address in recipientTexts:
        quoteaddr(address, utf8=True)
    return PreparedMessage(senderText, recipientTexts, body)


__all__ = ["PreparedMessage", "prepareMessage"]
