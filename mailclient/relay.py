"""
Relaying queued messages: the drop-in for C{twisted.mail.relay}'s
relayers.

A relayer is an SMTP client given the base paths of queued messages (see
L{mailclient.relaymanager.Queue} for the C{-H}/C{-D} format); it sends them
one after another over one connection and removes each from the queue once
the server has accepted it (the final reply to C{DATA}).  Each body is
opened only while its message is sent, so a relayer holds at most one file
open however many messages it is given.  Where this differs from Twisted:
C{docs/compatibility.rst}, "Relaying".
"""

from __future__ import annotations

from mailclient._relaying.relayer import ESMTPRelayer, RelayerMixin, SMTPRelayer
from mailclient._wire.util import publicPath

__all__ = ["RelayerMixin", "SMTPRelayer", "ESMTPRelayer"]

# Documented (and pickled, were one pickled) under this public path.
publicPath(__name__, [RelayerMixin, SMTPRelayer, ESMTPRelayer])
