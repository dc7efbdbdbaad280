"""
What an SMTP client of mailclient keeps about its connection and its
messages.

Everything mailclient adds to Twisted's client state lives here, in one
object held by the protocol under one attribute, C{_mailclient}, so that a
subclass may use any other name Twisted's class does not (Twisted's own
test helpers keep the sender in C{self._sender}, for example).  The
attributes Twisted's C{SMTPClient} documents, and that subclasses read and
set, stay on the protocol: L{TWISTED_MESSAGE_ATTRIBUTES}.

A message attempt is a L{Transaction}.  It moves through three phases:

  - L{Phase.OPEN}: under way, its outcome unknown (the first one opens
    with the connection: a failed greeting is reported on it);
  - L{Phase.DATA_ENDED}: the end of its data was written, so a 2xx reply
    may now report it delivered, and only now;
  - L{Phase.REPORTED}: L{sentMail} or L{sendError} was called for it; a
    transaction is reported exactly once.

Usually one transaction is in flight.  With C{pipelineMessages} a second
one may be started before the first is answered: it is the I{following}
transaction, and while it waits its Twisted attributes are kept in it
(L{Transaction.park}), to be put back on the protocol when the first one
is reported (L{Transaction.unpark}).

Pure: no I/O, no Twisted.
"""

from __future__ import annotations

import enum
from collections import deque
from operator import attrgetter
from collections.abc import Callable
from typing import Protocol

from mailclient._wire.data import DataEncoder
from mailclient._wire.errors import SMTPClientError
from mailclient._wire.options import DEFAULT_OPTIONS, MailOptions
from mailclient._wire.reply import ReplyAssembler
from mailclient._wire.tlspolicy import TLSPolicy, TLSRecord
from mailclient._wire.types import BinaryFile


class BodyProducer(Protocol):
    """
    The DATA producer, as the state machine uses it.
    """

    def abort(self, reason: BaseException) -> None: ...


class ChunkProducer(Protocol):
    """
    The BDAT producer, as the state machine uses it.
    """

    finished: bool
    allWritten: bool

    def stop(self) -> None: ...

    def stopProducing(self) -> None: ...


class Scheduler(Protocol):
    """
    What reply timers are scheduled on (a reactor's C{callLater}).
    """

    def callLater(self, delay: float, callable: Callable[[], object]) -> object: ...


class Phase(enum.Enum):
    """
    How far a message attempt has come.
    """

    OPEN = "open"
    DATA_ENDED = "data ended"
    REPORTED = "reported"


#: The per-message attributes that Twisted's C{SMTPClient} keeps on the
#: protocol, where subclasses read and set them.
TWISTED_MESSAGE_ATTRIBUTES = (
    "_from",
    "toAddresses",
    "toAddressesResult",
    "successAddresses",
    "lastAddress",
    "mailFile",
    "_expected",
    "_okresponse",
    "_failresponse",
)

_twistedAttributes = attrgetter(*TWISTED_MESSAGE_ATTRIBUTES)

#: A pipelined command awaiting its reply: the verb and what the reply is
#: about (the recipient of a RCPT; whether a BDAT chunk is the last).
PipelinedCommand = tuple[bytes, object]


class Transaction:
    """
    One message attempt.

    @ivar phase: see L{Phase}.
    @ivar body: the DATA producer while the body is being written.
    @ivar chunks: the BDAT producer while the body is being written.
    @ivar encoder: the line-ending (and, for DATA, dot-stuffing) encoder of
        the body.
    @ivar pendingFile: the message file, when it was asked for before MAIL
        (SIZE, 8-bit detection, BDAT).
    @ivar pendingRecipients: the checked recipients, when they were asked
        for before MAIL.
    @ivar quoted: each recipient and its C{<address>} form, by the
        recipient's C{id}, made when they were checked (so that each is
        quoted once).
    @ivar pipeline: the pipelined commands still awaiting a reply.
    @ivar pipelined: whether the envelope went out as one pipelined group.
    @ivar chunked: whether the body goes out with BDAT.
    @ivar allWritten: whether every command and chunk has been written and
        has left the transport.
    @ivar mailReply: the reply to a pipelined MAIL.
    @ivar bdatFailure: the first refused BDAT chunk's reply.
    @ivar options: the message's L{MailOptions}.
    @ivar mailParams: the parameters of its MAIL command.
    @ivar refuseEightBit: whether 8-bit data found while streaming must
        stop the message (the server did not offer 8BITMIME).
    @ivar ownError: the error this transaction failed with on its own
        while another one's replies were awaited.
    @ivar parked: its Twisted attributes while it waits (see L{park}).
    @ivar dataWritten: whether the end of its data was ever written (set
        with L{Phase.DATA_ENDED}, and kept when the phase moves on): after
        it, a lost connection leaves the message's fate unknown.
    """

    __slots__ = (
        "phase", "body", "chunks", "encoder", "pendingFile",
        "pendingRecipients", "quoted", "pipeline", "pipelined", "chunked",
        "allWritten", "mailReply", "bdatFailure", "options", "mailParams",
        "refuseEightBit", "ownError", "parked", "dataWritten",
    )

    def __init__(self) -> None:
        self.phase = Phase.OPEN
        self.body: BodyProducer | None = None
        self.chunks: ChunkProducer | None = None
        self.encoder = DataEncoder()
        self.pendingFile: BinaryFile | None = None
        self.pendingRecipients: list[object] | None = None
        self.quoted: dict[int, tuple[object, bytes]] = {}
        self.pipeline: deque[PipelinedCommand] = deque()
        self.pipelined = False
        self.chunked = False
        self.allWritten = False
        self.mailReply: tuple[int, bytes] | None = None
        self.bdatFailure: tuple[int, bytes] | None = None
        self.options: MailOptions = DEFAULT_OPTIONS
        self.mailParams: list[bytes] = []
        self.refuseEightBit = False
        self.ownError: SMTPClientError | None = None
        self.parked: tuple[object, ...] | None = None
        self.dataWritten = False

    @property
    def reported(self) -> bool:
        """
        Whether the outcome of this attempt was reported.
        """
        return self.phase is Phase.REPORTED

    def endData(self) -> None:
        """
        The end of the data was written.
        """
        self.phase = Phase.DATA_ENDED
        self.dataWritten = True

    @property
    def dataEnded(self) -> bool:
        """
        Whether the end of the data was written (and not yet reported).
        """
        return self.phase is Phase.DATA_ENDED

    def park(self, client: object) -> None:
        """
        Keep C{client}'s Twisted attributes, which describe this
        transaction, while another one's replies come first.
        """
        self.parked = _twistedAttributes(client)

    def unpark(self, client: object) -> None:
        """
        Put the attributes kept by L{park} back on C{client}.
        """
        parked, self.parked = self.parked, None
        assert parked is not None
        for name, value in zip(TWISTED_MESSAGE_ATTRIBUTES, parked):
            setattr(client, name, value)


#: A message asked for early that could not be started: the transaction
#: to report it on (None when there is no message), what to do once the
#: message before it is reported, and the error to report it with.
DeferredStart = tuple[Transaction | None, Callable[[], object], SMTPClientError | None]


class ClientState:
    """
    mailclient's state of one client connection (C{client._mailclient}).

    @ivar replies: assembles reply lines into replies.
    @ivar transaction: the message attempt whose replies come next.
    @ivar following: with C{pipelineMessages}, the message started before
        C{transaction} was answered.
    @ivar deferredStart: with C{pipelineMessages}, a message asked for
        early that could not be started (see L{DeferredStart}).
    @ivar early: whether the next message is being started early, now.
    @ivar encoding: the transaction whose body is being encoded, now.
    @ivar quitting: whether QUIT was sent (or the connection is being
        closed on purpose): nothing is left to report.
    @ivar inSASL: whether the line being sent carries credentials.
    @ivar failureReason: why the connection was lost, for the factories.
    @ivar clock: what reply timers are scheduled on (None: the global
        reactor).
    @ivar tlsPolicy: the TLS policy the connection was set up with
        (L{None}: the client's own C{context} and
        C{requireTransportSecurity}, as in Twisted).
    @ivar tls: the TLS record of the connection, once TLS is up.
    @ivar resetOwed: the last transaction succeeded and no C{RSET} followed
        it (see C{SMTPClient.resetAfterEveryMessage}): one is sent before
        C{QUIT}, as Twisted's wire has it, if no message follows.
    @ivar autoContext: the opportunistic TLS context made for a client
        without its own (see C{ESMTPClient.opportunisticTLS}).
    @ivar sessionEnd: when the session must end (clock seconds), when
        L{Timeouts.session} fixes a limit.
    @ivar bodyStart: when the current body began to be written.
    @ivar bodySent: how many bytes of it were handed to the transport.
    @ivar saslChallenges: how many challenges the current authentication
        exchange has answered.
    """

    __slots__ = (
        "replies", "transaction", "following", "deferredStart", "early",
        "encoding", "quitting", "inSASL", "failureReason", "clock",
        "tlsPolicy", "tls", "autoContext", "resetOwed", "sessionEnd", "bodyStart",
        "bodySent", "saslChallenges",
    )

    def __init__(self) -> None:
        self.replies = ReplyAssembler()
        self.transaction = Transaction()
        self.following: Transaction | None = None
        self.deferredStart: DeferredStart | None = None
        self.early = False
        self.encoding: Transaction | None = None
        self.quitting = False
        self.inSASL = False
        self.failureReason: object = None
        self.clock: Scheduler | None = None
        self.tlsPolicy: TLSPolicy | None = None
        self.tls: TLSRecord | None = None
        self.autoContext: object = None
        self.resetOwed = False
        self.sessionEnd: float | None = None
        self.bodyStart = 0.0
        self.bodySent = 0
        self.saslChallenges = 0

    def encodingTransaction(self) -> Transaction:
        """
        The transaction whose body chunks are being encoded.
        """
        return self.encoding or self.transaction
