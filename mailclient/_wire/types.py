"""
Type names the layers share, so that no signature says C{Any} where a
narrower type is meant.

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

from typing import Protocol, TypeVar, Union

#: A value that may come as text or bytes (host names, addresses, replies).
Text = Union[str, bytes]

#: One recipient's result, as C{sentMail} and the senders' Deferred report
#: it: the address as given, the reply code, the reply text.
RecipientResult = tuple[object, int, bytes]

#: What a sender's Deferred fires with: how many recipients were accepted,
#: and each recipient's result.
SendResult = tuple[int, list[RecipientResult]]

T = TypeVar("T")


class MessageFile(Protocol):
    """
    A message to send: anything with C{read} (a binary file, or a text
    file sent as UTF-8).
    """

    def read(self, size: int = -1, /) -> bytes | str: ...


class BinaryFile(Protocol):
    """
    A message file read as bytes (see C{_protocol.body.binaryFile}).
    """

    def read(self, size: int = -1, /) -> bytes: ...


class Seekable(MessageFile, Protocol):
    """
    A message file that can be rewound (for a retry), or measured.
    """

    def tell(self) -> int: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...
