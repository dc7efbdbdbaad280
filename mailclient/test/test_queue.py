"""
Tests for L{mailclient._relaying.queue}: the on-disk relay queue, in Twisted's
format.
"""

from __future__ import annotations

import errno
import os
import pickle
from typing import Any, List

from twisted.trial.unittest import SynchronousTestCase

from mailclient import relaymanager
from mailclient._relaying.queue import (
    AtomicFile,
    EnvelopeError,
    LOCK_NAME,
    Queue,
    QueueBusyError,
    QueueFileError,
    checkQueueFile,
    dumpEnvelope,
    isNullSender,
    loadEnvelope,
    openQueueFile,
    readEnvelope,
)
from mailclient._wire.queuestate import (
    RETRY_SUFFIX,
    RetryState,
    bounceName,
    decodeRetryState,
    defaultRetryDelay,
    delayWarningDue,
    encodeRetryState,
    isSafeName,
    newMessageName,
    originalOf,
    recipientDomainOf,
    smartHostDestination,
    warningName,
)


class _MakeDirectory:
    """
    Unpickling this runs C{os.mkdir(path)}: a stand-in for any code a
    malicious queue file could run.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (os.mkdir, (self.path,))


class EnvelopeTests(SynchronousTestCase):
    """
    Envelopes are pickled C{[from, to]} lists, read without running code.
    """

    def test_roundTrip(self) -> None:
        """
        L{dumpEnvelope} and L{loadEnvelope} keep C{str} and C{bytes}.
        """
        for envelope in (["a@example.com", "b@example.org"], [b"", b"c@example.com"], ["", "d@\u00e9xample.org"]):
            self.assertEqual(loadEnvelope(dumpEnvelope(*envelope)), envelope)

    def test_everyProtocol(self) -> None:
        """
        Envelopes pickled with any protocol, as lists or tuples, with
        C{bytes} (which protocols 0 to 2 pickle through C{_codecs.encode}),
        are read.
        """
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            for envelope in (["a@example.com", "b@example.org"], ("a@example.com", b"b@example.org"), [b"", b"\xffx@y"]):
                self.assertEqual(
                    loadEnvelope(pickle.dumps(envelope, protocol=proto)), list(envelope), proto
                )

    def test_python2Strings(self) -> None:
        """
        A Python 2 envelope (C{str} pickled as C{STRING}) is read as text.
        """
        data = b"(lp0\nS'a@example.com'\np1\naS'b@example.org'\np2\na."
        self.assertEqual(loadEnvelope(data), ["a@example.com", "b@example.org"])

    def test_refusesCode(self) -> None:
        """
        A pickle that would call a function is refused and the function is
        not called.
        """
        marker = os.path.abspath(self.mktemp())
        data = pickle.dumps([_MakeDirectory(marker), "b@example.org"])
        error = self.assertRaises(EnvelopeError, loadEnvelope, data)
        self.assertIn("mkdir", str(error))
        self.assertFalse(os.path.exists(marker))

    def test_refusesOtherCodecs(self) -> None:
        """
        C{_codecs.encode} is only allowed for Latin-1, as pickle uses it.
        """
        data = b"c_codecs\nencode\n(Vabc\nVrot13\ntR."
        self.assertRaises(EnvelopeError, loadEnvelope, data)

    def test_refusesOtherShapes(self) -> None:
        """
        Only a list or tuple of exactly two strings is an envelope; garbage
        and truncated data are refused with L{EnvelopeError}.
        """
        for value in (["only one"], ["a", "b", "c"], {"a": "b"}, [1, 2], "ab", None):
            self.assertRaises(EnvelopeError, loadEnvelope, pickle.dumps(value))
        good = dumpEnvelope("a@example.com", "b@example.org")
        for data in (b"", b"garbage", good[: len(good) // 2]):
            self.assertRaises(EnvelopeError, loadEnvelope, data)

    def test_refusesHugeFile(self) -> None:
        """
        An envelope file of more than 64 KiB is refused unread.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(dumpEnvelope("a@example.com", "b" * 70000))
        self.assertRaises(EnvelopeError, readEnvelope, path)

    def test_refusesDeepNesting(self) -> None:
        """
        A small file that nests lists thirty thousand deep (which Twisted's
        own C{repr} in the error would crash on) is refused with
        L{EnvelopeError}, quickly and with a short message.
        """
        depth = 30000
        data = b"(" * depth + b"l" * depth + b"."
        with self.assertRaises(EnvelopeError) as caught:
            loadEnvelope(data)
        self.assertIn("deep", str(caught.exception))

    def test_refusesSharedBlowUp(self) -> None:
        """
        A pickle whose lists share one another, so that walking or showing
        it would reach millions of objects from a few kilobytes, is
        refused.
        """
        leaf = ["x" * 50]
        wide = [leaf] * 1000
        data = pickle.dumps([wide] * 1000, protocol=2)
        self.assertLess(len(data), 10000)
        with self.assertRaises(EnvelopeError) as caught:
            loadEnvelope(data)
        self.assertIn("too many", str(caught.exception))

    def test_refusesLargeConstructorCalls(self) -> None:
        """
        The constructors an envelope may name build only what a pickle of
        a string needs: C{bytes(400000000)} (400 MB from 40 bytes) is
        refused without being built.
        """
        for data in (
            b"c__builtin__\nbytes\n(I400000000\ntR.",
            b"cbuiltins\nlist\n(I400000000\ntR.",
            b"cbuiltins\nstr\n(I5\nI6\ntR.",
        ):
            self.assertRaises(EnvelopeError, loadEnvelope, data)

    def test_errorMessagesBounded(self) -> None:
        """
        However large what the file holds, the error describing it is
        short (it goes to the log).
        """
        for value in (["a" * 60000], [["b" * 1000] * 50, "c", "d"], {"k" * 5000: "v"}):
            with self.assertRaises(EnvelopeError) as caught:
                loadEnvelope(pickle.dumps(value))
            self.assertLess(len(str(caught.exception)), 400, value.__class__)

    def test_nullSender(self) -> None:
        """
        The null reverse-path is recognised in its forms.
        """
        for sender in ("", b"", "<>", b"<>", " <> "):
            self.assertTrue(isNullSender(sender), sender)
        for sender in ("a@example.com", b"a@example.com"):
            self.assertFalse(isNullSender(sender), sender)

    def test_twistedRunsCode(self) -> None:
        """
        Twisted's C{Queue.getEnvelope} runs whatever a queue file asks for;
        mailclient's refuses it.
        """
        from twisted.mail.relaymanager import Queue as TwistedQueue

        directory = self.mktemp()
        os.mkdir(directory)
        marker = os.path.abspath(self.mktemp())
        with open(os.path.join(directory, "evil-H"), "wb") as f:
            pickle.dump([_MakeDirectory(marker), "b@example.org"], f)
        with open(os.path.join(directory, "evil-D"), "wb") as f:
            f.write(b"x\n")

        queue = Queue(directory)
        self.assertRaises(EnvelopeError, queue.getEnvelope, "evil")
        self.assertFalse(os.path.exists(marker))

        twistedQueue = TwistedQueue(directory)
        twistedQueue.noisy = False
        twistedQueue.getEnvelope("evil")
        self.assertTrue(os.path.isdir(marker))


class AtomicFileTests(SynchronousTestCase):
    """
    L{AtomicFile} appears under its name only when complete.
    """

    def test_visibleOnlyWhenClosed(self) -> None:
        base = self.mktemp()
        f = AtomicFile(base, base + ".tmp")
        f.write(b"data")
        self.assertFalse(os.path.exists(base))
        f.close()
        f.close()
        self.assertTrue(f.closed)
        with open(base, "rb") as g:
            self.assertEqual(g.read(), b"data")
        self.assertFalse(os.path.exists(base + ".tmp"))

    def test_discardedOnError(self) -> None:
        """
        Leaving a C{with} block with an exception leaves no file at all.
        """
        base = self.mktemp()

        def fail() -> None:
            with AtomicFile(base, base + ".tmp", fsync=False) as f:
                f.write(b"half")
                raise RuntimeError("disk full")

        self.assertRaises(RuntimeError, fail)
        self.assertFalse(os.path.exists(base))
        self.assertFalse(os.path.exists(base + ".tmp"))


class QueueTests(SynchronousTestCase):
    """
    L{Queue} keeps Twisted's state methods, with fixes.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        self.queue = Queue(self.directory)
        self.queue.noisy = False

    def add(self, recipient: str = "b@example.org", data: bytes = b"x\n") -> str:
        return self.queue.enqueue("a@example.com", recipient, data)

    def test_publicFace(self) -> None:
        """
        C{mailclient.relaymanager.Queue} is this class.
        """
        self.assertIs(relaymanager.Queue, Queue)

    def test_createNewMessage(self) -> None:
        """
        C{createNewMessage} returns an envelope file and a message receiver
        used as Twisted's C{DomainQueuer} uses them; nothing is visible
        until each is complete, and the message is stored LF-terminated.
        """
        header, message = self.queue.createNewMessage()
        with header:
            pickle.dump(["a@example.com", "b@example.org"], header)
            header.flush()
            self.assertFalse(os.path.exists(header.name))
        base = message.finalName[:-2]
        self.assertTrue(os.path.exists(base + "-H"))
        message.lineReceived(b"Subject: hi")
        message.lineReceived(b"")
        message.lineReceived(b"\xff body")
        self.queue.readDirectory()
        self.assertEqual(self.queue.getWaiting(), [])
        result: List[str] = []
        message.eomReceived().addCallback(result.append)
        self.assertEqual(result, [message.finalName])
        self.queue.readDirectory()
        name = os.path.basename(base)
        self.assertEqual(self.queue.getWaiting(), [name])
        self.assertEqual(self.queue.getEnvelope(name), ["a@example.com", "b@example.org"])
        with open(base + "-D", "rb") as f:
            self.assertEqual(f.read(), b"Subject: hi\n\n\xff body\n")
        self.assertEqual(sorted(os.listdir(self.directory)), [name + "-D", name + "-H"])

    def test_connectionLostForgetsPartialMessage(self) -> None:
        """
        A message receiver whose connection is lost leaves nothing behind.
        """
        header, message = self.queue.createNewMessage()
        header.discard()
        message.lineReceived(b"partial")
        message.connectionLost()
        self.assertEqual(os.listdir(self.directory), [])

    def test_envelopeFile(self) -> None:
        """
        C{getEnvelopeFile} opens the C{-H} file in binary mode.
        """
        name = self.add()
        with self.queue.getEnvelopeFile(name) as f:
            self.assertEqual(pickle.load(f), ["a@example.com", "b@example.org"])
        self.assertEqual(self.queue.getPath(name), os.path.join(self.directory, name))

    def test_waitingOldestFirst(self) -> None:
        """
        C{readDirectory} lists new messages oldest first, whatever the
        order of the directory.
        """
        names = [self.add("%d@example.org" % (i,)) for i in range(5)]
        for age, name in enumerate(reversed(names)):
            path = self.queue.getPath(name) + "-D"
            os.utime(path, (1000000 + age, 1000000 + age))
        self.queue.readDirectory()
        self.assertEqual(self.queue.getWaiting(), list(reversed(names)))
        self.assertTrue(self.queue.hasWaiting())

    def test_states(self) -> None:
        """
        Messages move between waiting and relayed; C{readDirectory} does not
        make a relayed message wait; C{done} removes both files.
        """
        first, second = self.add(), self.add()
        self.queue.readDirectory()
        self.queue.setRelaying(first)
        self.queue.readDirectory()
        self.assertEqual(self.queue.getWaiting(), [second])
        self.assertEqual(self.queue.getRelayed(), [first])
        self.queue.setWaiting(first)
        self.assertEqual(self.queue.getWaiting(), [second, first])
        self.assertEqual(self.queue.getRelayed(), [])
        self.queue.setRelaying(first)
        self.queue.done(self.queue.getPath(first))
        self.assertEqual(self.queue.getRelayed(), [])
        self.assertEqual(sorted(os.listdir(self.directory)), [second + "-D", second + "-H"])
        self.queue.setRelaying(second)
        self.queue.done(second)
        self.assertFalse(self.queue.hasWaiting())
        self.assertEqual(os.listdir(self.directory), [])

    def test_vanishedMessagesForgotten(self) -> None:
        """
        A waiting message whose files were removed by someone else stops
        waiting at the next C{readDirectory}.
        """
        name = self.add()
        self.queue.readDirectory()
        os.remove(self.queue.getPath(name) + "-D")
        self.queue.readDirectory()
        self.assertEqual(self.queue.getWaiting(), [])

    def test_ignoresOtherFiles(self) -> None:
        """
        Only C{-D} files are messages: partial files and stray envelopes
        are ignored.
        """
        for name in ("x-C", "y-H", "z-H.tmp", "notes.txt"):
            with open(os.path.join(self.directory, name), "wb") as f:
                f.write(b"")
        self.queue.readDirectory()
        self.assertEqual(self.queue.getWaiting(), [])

    def test_quarantine(self) -> None:
        """
        A quarantined message is neither waiting nor relayed, and
        C{readDirectory} leaves it alone; a new L{Queue} sees it again.
        """
        name = self.add()
        self.queue.readDirectory()
        self.queue.quarantine(name)
        self.queue.readDirectory()
        self.assertEqual((self.queue.getWaiting(), self.queue.getRelayed()), ([], []))
        self.assertEqual(Queue(self.directory).getWaiting(), [name])

    def test_pickle(self) -> None:
        """
        A pickled queue keeps only its directory and rereads it.
        """
        name = self.add()
        self.queue.readDirectory()
        self.queue.setRelaying(name)
        copy = pickle.loads(pickle.dumps(self.queue))
        self.assertEqual(copy.directory, self.directory)
        self.assertEqual(copy.getWaiting(), [name])
        self.assertEqual(copy.getRelayed(), [])

    def test_bytesDirectory(self) -> None:
        """
        The directory may be given as bytes.
        """
        name = self.add()
        queue = Queue(os.fsencode(self.directory))
        self.assertEqual(queue.getWaiting(), [name])
        self.assertEqual(queue.getEnvelope(name), ["a@example.com", "b@example.org"])


class QueueFileTests(SynchronousTestCase):
    """
    Queue files are read only if they are regular files of the queue's
    owner: not through a link, not from a FIFO (which would block the
    reactor), not someone else's.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        self.queue = Queue(self.directory)
        self.queue.noisy = False
        self.name = self.queue.enqueue("a@example.com", "b@example.org", b"x\n")
        self.path = self.queue.getPath(self.name)

    def test_regularFile(self) -> None:
        with openQueueFile(self.path + "-D") as f:
            self.assertEqual(f.read(), b"x\n")
        self.assertEqual(readEnvelope(self.path + "-H"), ["a@example.com", "b@example.org"])

    def test_symbolicLinkRefused(self) -> None:
        """
        A link is not followed, for the envelope or the message, even to a
        file that would be readable.
        """
        target = os.path.join(self.directory, "elsewhere")
        with open(target, "wb") as f:
            f.write(dumpEnvelope("x@example.com", "y@example.org"))
        for suffix in ("-H", "-D"):
            os.remove(self.path + suffix)
            os.symlink(target, self.path + suffix)
        self.assertRaises(QueueFileError, readEnvelope, self.path + "-H")
        self.assertRaises(QueueFileError, self.queue.getEnvelope, self.name)
        self.assertRaises(QueueFileError, checkQueueFile, self.path + "-D")

    def test_fifoRefusedWithoutBlocking(self) -> None:
        """
        A FIFO in place of a queue file is refused at once; opening it
        for reading would otherwise wait for a writer for ever.
        """
        for suffix in ("-H", "-D"):
            os.remove(self.path + suffix)
            os.mkfifo(self.path + suffix)
        self.assertRaises(QueueFileError, readEnvelope, self.path + "-H")
        self.assertRaises(QueueFileError, checkQueueFile, self.path + "-D")

    def test_directoryRefused(self) -> None:
        os.remove(self.path + "-D")
        os.mkdir(self.path + "-D")
        self.assertRaises(QueueFileError, checkQueueFile, self.path + "-D")

    def test_otherOwnerRefused(self) -> None:
        """
        A file that does not belong to the queue's owner (by default, the
        owner of the directory) is refused.
        """
        with self.assertRaises(QueueFileError) as caught:
            openQueueFile(self.path + "-H", owner=os.getuid() + 1)
        self.assertIn("belongs to uid", str(caught.exception))

    def test_missingFileIsOSError(self) -> None:
        """
        A file that is gone is L{FileNotFoundError} (its message vanished),
        not a quarantine.
        """
        os.remove(self.path + "-D")
        self.assertRaises(FileNotFoundError, checkQueueFile, self.path + "-D")


class EnqueueFailureTests(SynchronousTestCase):
    """
    A message that cannot be written whole (a full disk) leaves nothing
    behind: no temporary file, no envelope without its message.
    """

    def test_nothingLeftBehind(self) -> None:
        directory = self.mktemp()
        os.mkdir(directory)
        queue = Queue(directory)
        queue.noisy = False
        real = AtomicFile.write

        def write(self: AtomicFile, data: bytes) -> int:
            if self.name.endswith("-D"):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(self, data)

        self.patch(AtomicFile, "write", write)
        with self.assertRaises(OSError) as caught:
            queue.enqueue("a@example.com", "b@example.org", b"x" * 1000)
        self.assertEqual(caught.exception.errno, errno.ENOSPC)
        self.assertEqual(os.listdir(directory), [])

    def test_commitFailure(self) -> None:
        """
        A failure while the message is committed (after its envelope was)
        removes the envelope too.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        queue = Queue(directory)
        queue.noisy = False
        real = os.replace

        def replace(src: str, dst: str) -> None:
            if dst.endswith("-D"):
                raise OSError(errno.EIO, "Input/output error")
            real(src, dst)

        self.patch(os, "replace", replace)
        self.assertRaises(OSError, queue.enqueue, "a@example.com", "b@example.org", b"x")
        self.assertEqual(os.listdir(directory), [])


class RelayLockTests(SynchronousTestCase):
    """
    One relaying manager may hold a queue at a time.
    """

    def test_exclusive(self) -> None:
        directory = self.mktemp()
        os.mkdir(directory)
        first, second = Queue(directory), Queue(directory)
        first.acquireRelayLock()
        self.addCleanup(first.releaseRelayLock)
        first.acquireRelayLock()
        with self.assertRaises(QueueBusyError) as caught:
            second.acquireRelayLock()
        self.assertIn(LOCK_NAME, str(caught.exception))
        first.releaseRelayLock()
        second.acquireRelayLock()
        self.addCleanup(second.releaseRelayLock)
        self.assertRaises(QueueBusyError, first.acquireRelayLock)

    def test_lockFileIsNotAMessage(self) -> None:
        directory = self.mktemp()
        os.mkdir(directory)
        queue = Queue(directory)
        queue.acquireRelayLock()
        self.addCleanup(queue.releaseRelayLock)
        queue.readDirectory()
        self.assertEqual(queue.getWaiting(), [])


class TwistedQueueCompatibilityTests(SynchronousTestCase):
    """
    A queue written by Twisted is read by mailclient and the other way
    round.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.mkdir(self.directory)

    def _queueWithDomainQueuer(self, queue: Any) -> None:
        from twisted.mail.relay import DomainQueuer

        class Service:
            pass

        class User:
            orig = "alice@example.com"
            dest = "bob@example.org"

        service = Service()
        service.queue = queue  # type: ignore[attr-defined]
        message = DomainQueuer(service).startMessage(User())
        for line in (b"Subject: caf\xc3\xa9", b"", b"\xff\xfe body"):
            message.lineReceived(line)
        message.eomReceived()

    def test_twistedWritesMailclientReads(self) -> None:
        """
        Messages queued by Twisted's C{DomainQueuer} into Twisted's
        C{Queue} are found and read by mailclient's.
        """
        from twisted.mail.relaymanager import Queue as TwistedQueue

        twistedQueue = TwistedQueue(self.directory)
        twistedQueue.noisy = False
        self._queueWithDomainQueuer(twistedQueue)

        queue = Queue(self.directory)
        [name] = queue.getWaiting()
        self.assertEqual(queue.getEnvelope(name), ["alice@example.com", "bob@example.org"])
        with open(queue.getPath(name) + "-D", "rb") as f:
            self.assertEqual(f.read(), b"Subject: caf\xc3\xa9\n\n\xff\xfe body\n")

    def test_mailclientWritesTwistedReads(self) -> None:
        """
        Messages queued by Twisted's C{DomainQueuer} into mailclient's
        C{Queue}, or by L{Queue.enqueue}, are found and read by Twisted's
        C{Queue}.
        """
        from twisted.mail.relaymanager import Queue as TwistedQueue

        queue = Queue(self.directory)
        queue.noisy = False
        self._queueWithDomainQueuer(queue)
        queue.enqueue("", "carol@example.com", b"bounce\n")

        twistedQueue = TwistedQueue(self.directory)
        twistedQueue.noisy = False
        envelopes = sorted(twistedQueue.getEnvelope(n) for n in twistedQueue.getWaiting())
        self.assertEqual(
            envelopes, [["", "carol@example.com"], ["alice@example.com", "bob@example.org"]]
        )


class DurableRetryTests(SynchronousTestCase):
    """
    The retry schedule of the directory queue is kept in C{<name>-R} files,
    so that a restarted manager resumes the back-off.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.mkdir(self.directory)
        self.queue = Queue(self.directory)
        self.queue.noisy = False

    def reopen(self) -> Queue:
        queue = Queue(self.directory)
        queue.noisy = False
        return queue

    def test_recordFailure(self) -> None:
        """
        L{Queue.recordFailure} counts the failure, schedules the next
        attempt C{retryDelay(failures)} after it (by default 30 s, doubling,
        at most an hour), and writes it to the C{-R} file.
        """
        name = self.queue.enqueue("a@example.com", "b@example.org", b"x\n")
        self.assertIsNone(self.queue.schedule(name))
        self.assertTrue(self.queue.isDue(name, 0))
        state = self.queue.recordFailure(name, "451 4.3.0 later", when=1000.0)
        self.assertEqual(state, RetryState(1, 1030.0, 1000.0, "451 4.3.0 later", False))
        self.assertEqual(self.queue.schedule(name), state)
        self.assertFalse(self.queue.isDue(name, 1029.9))
        self.assertTrue(self.queue.isDue(name, 1030.0))
        state = self.queue.recordFailure(name, "again", when=2000.0)
        self.assertEqual((state.failures, state.nextAttempt), (2, 2060.0))
        state = self.queue.recordFailure(name, retryDelay=lambda n: 7.0 * n, when=3000.0)
        self.assertEqual((state.failures, state.nextAttempt), (3, 3021.0))
        with open(self.queue.getPath(name) + RETRY_SUFFIX, "rb") as f:
            self.assertEqual(decodeRetryState(f.read()), state)

    def test_restartResumesBackOff(self) -> None:
        """
        A new queue on the directory (a restarted process) has the schedule
        of every message.
        """
        first = self.queue.enqueue("a@example.com", "b@example.org", b"x\n")
        second = self.queue.enqueue("a@example.com", "c@example.org", b"y\n")
        self.queue.recordFailure(first, "later", when=1000.0)
        queue = self.reopen()
        self.assertEqual(sorted(queue.getWaiting()), sorted([first, second]))
        self.assertEqual(queue.schedule(first).failures, 1)
        self.assertFalse(queue.isDue(first, 1010.0))
        self.assertTrue(queue.isDue(second, 1010.0))
        self.assertEqual(queue.recordFailure(first, when=1100.0).failures, 2)

    def test_unreadableRetryFile(self) -> None:
        """
        A retry file that cannot be read only costs the back-off.
        """
        name = self.queue.enqueue("a@example.com", "b@example.org", b"x\n")
        with open(self.queue.getPath(name) + RETRY_SUFFIX, "wb") as f:
            f.write(b"\x80garbage")
        queue = self.reopen()
        self.assertEqual(queue.getWaiting(), [name])
        self.assertIsNone(queue.schedule(name))

    def test_doneRemovesRetryFile(self) -> None:
        """
        A message removed from the queue takes its retry file along.
        """
        name = self.queue.enqueue("a@example.com", "b@example.org", b"x\n")
        self.queue.recordFailure(name, when=1.0)
        self.queue.done(name)
        self.assertEqual(os.listdir(self.directory), [])
        self.assertIsNone(self.queue.schedule(name))

    def test_strayRetryFiles(self) -> None:
        """
        A retry file left without its message (removed by Twisted's queue,
        which does not know it) is removed by the manager holding the queue.
        """
        name = self.queue.enqueue("a@example.com", "b@example.org", b"x\n")
        self.queue.recordFailure(name, when=1.0)
        for suffix in ("-D", "-H"):
            os.remove(self.queue.getPath(name) + suffix)
        self.queue.readDirectory()
        self.assertTrue(os.path.exists(self.queue.getPath(name) + RETRY_SUFFIX))
        self.queue.acquireRelayLock()
        self.addCleanup(self.queue.releaseRelayLock)
        self.queue.readDirectory()
        self.assertEqual(os.listdir(self.directory), [LOCK_NAME])

    def test_twistedIgnoresRetryFiles(self) -> None:
        """
        Twisted's C{Queue} sees the same messages, and nothing of the retry
        files.
        """
        from twisted.mail.relaymanager import Queue as TwistedQueue

        name = self.queue.enqueue("a@example.com", "b@example.org", b"x\n")
        self.queue.recordFailure(name, when=1.0)
        twistedQueue = TwistedQueue(self.directory)
        twistedQueue.noisy = False
        self.assertEqual(list(twistedQueue.getWaiting()), [name])

    def test_returnMessage(self) -> None:
        """
        L{Queue.returnMessage} queues the bounce under a name made from the
        message's and removes the message.
        """
        name = self.queue.enqueue("a@example.com", "b@example.org", b"x\n")
        self.assertTrue(self.queue.returnMessage(name, b"report\n", "a@example.com"))
        bounce = bounceName(name)
        self.assertEqual(self.queue.getWaiting(), [])
        queue = self.reopen()
        self.assertEqual(queue.getWaiting(), [bounce])
        self.assertEqual(queue.getEnvelope(bounce), ["", "a@example.com"])

    def test_bounceCrashRecovery(self) -> None:
        """
        A process that stopped after queueing a bounce and before removing
        the message leaves both: the next scan removes the message, so it is
        never relayed, nor returned, again.
        """
        name = self.queue.enqueue("a@example.com", "b@example.org", b"x\n")
        self.queue.recordFailure(name, when=1.0)
        # The first step of returnMessage only.
        self.assertTrue(self.queue._enqueueAs(bounceName(name), "", "a@example.com", b"r\n"))
        queue = self.reopen()
        self.assertEqual(queue.getWaiting(), [bounceName(name)])
        self.assertFalse(os.path.exists(queue.getPath(name) + "-D"))
        self.assertFalse(os.path.exists(queue.getPath(name) + RETRY_SUFFIX))
        # Returning it again queues nothing more.
        self.assertFalse(self.queue._enqueueAs(bounceName(name), "", "x@y", b"r2\n"))

    def test_delayWarningOnce(self) -> None:
        """
        L{Queue.sendDelayWarning} queues one warning per message, and marks
        the message warned, durably.
        """
        name = self.queue.enqueue("a@example.com", "b@example.org", b"x\n")
        self.queue.recordFailure(name, when=1.0)
        self.assertTrue(self.queue.sendDelayWarning(name, b"delayed\n", "a@example.com"))
        self.assertFalse(self.queue.sendDelayWarning(name, b"delayed\n", "a@example.com"))
        self.assertTrue(self.queue.schedule(name).warned)
        queue = self.reopen()
        self.assertTrue(queue.schedule(name).warned)
        self.assertEqual(sorted(queue.getWaiting()), sorted([name, warningName(name)]))
        self.assertEqual(queue.schedule(name).failures, 1)

    def test_failureWithWarning(self) -> None:
        """
        L{Queue.recordFailure} can queue the delay warning too, once.
        """
        name = self.queue.enqueue("a@example.com", "b@example.org", b"x\n")
        state = self.queue.recordFailure(name, when=1.0, warning=(b"w\n", "a@example.com"))
        self.assertEqual((state.failures, state.warned), (1, True))
        state = self.queue.recordFailure(name, when=2.0, warning=(b"w2\n", "a@example.com"))
        self.assertEqual((state.failures, state.warned), (2, True))
        self.assertEqual(sorted(self.reopen().getWaiting()), sorted([name, warningName(name)]))

    def test_warningCrashRecovery(self) -> None:
        """
        A process that stopped after queueing a warning and before marking
        the message leaves the warning: the next scan marks the message, so
        no second warning is sent.
        """
        name = self.queue.enqueue("a@example.com", "b@example.org", b"x\n")
        self.queue._enqueueAs(warningName(name), "", "a@example.com", b"w\n")
        queue = self.reopen()
        self.assertTrue(queue.schedule(name).warned)
        self.assertFalse(queue.sendDelayWarning(name, b"w\n", "a@example.com"))

    def test_staleTemporaryFiles(self) -> None:
        """
        Temporary files left by a process that stopped while writing a
        retry file or a bounce do not stop the next one.
        """
        name = self.queue.enqueue("a@example.com", "b@example.org", b"x\n")
        path = self.queue.getPath(name)
        for leftover in (path + RETRY_SUFFIX + ".tmp", self.queue.getPath(bounceName(name))
                         + "-H.tmp", self.queue.getPath(bounceName(name)) + "-C"):
            with open(leftover, "wb") as f:
                f.write(b"half")
        self.queue.recordFailure(name, when=1.0)
        self.assertTrue(self.queue.returnMessage(name, b"r\n", "a@example.com"))
        self.assertEqual(sorted(os.listdir(self.directory)),
                         sorted([bounceName(name) + "-H", bounceName(name) + "-D"]))


class RetryStateTests(SynchronousTestCase):
    """
    L{RetryState} and its file format.
    """

    def test_roundTrip(self) -> None:
        for state in (RetryState(), RetryState(3, 12.5, 10.0, "451 x", True)):
            self.assertEqual(decodeRetryState(encodeRetryState(state)), state)

    def test_refused(self) -> None:
        """
        What is not a retry file is refused with L{ValueError}.
        """
        for data in (b"", b"[]", b'{"failures": -1}', b'{"failures": true}',
                     b'{"nextAttempt": "soon"}', b'{"nextAttempt": NaN}',
                     b'{"lastReason": 3}', b'{"warned": 1}', b"{" + b" " * 20000 + b"}"):
            self.assertRaises(ValueError, decodeRetryState, data)
        self.assertEqual(decodeRetryState(b'{"failures": 2, "future": 1}').failures, 2)

    def test_failed(self) -> None:
        """
        A bad delay is refused; reasons are kept on one bounded line.
        """
        state = RetryState().failed(5.0, "a\nb  c" + "x" * 2000, lambda n: 1.0)
        self.assertTrue(state.lastReason.startswith("a b cx"))
        self.assertEqual(len(state.lastReason), 1000)
        self.assertRaises(ValueError, RetryState().failed, 0.0, "", lambda n: -1.0)
        self.assertRaises(ValueError, RetryState().failed, 0.0, "", lambda n: float("nan"))

    def test_defaultPolicy(self) -> None:
        """
        The default back-off is the relaying manager's: 30 s, doubling, at
        most an hour.
        """
        self.assertEqual([defaultRetryDelay(n) for n in (1, 2, 3, 8, 100)],
                         [30.0, 60.0, 120.0, 3600.0, 3600.0])

    def test_delayWarningDue(self) -> None:
        state = RetryState(failures=1)
        self.assertTrue(delayWarningDue(state, 0.0, 3600.0, 3600.0))
        self.assertFalse(delayWarningDue(state, 0.0, 3599.0, 3600.0))
        self.assertFalse(delayWarningDue(state.asWarned(), 0.0, 9999.0, 3600.0))
        self.assertFalse(delayWarningDue(RetryState(), 0.0, 9999.0, 3600.0))
        self.assertFalse(delayWarningDue(state, 0.0, 9999.0, None))
        self.assertFalse(delayWarningDue(None, 0.0, 9999.0, 1.0))

    def test_names(self) -> None:
        self.assertEqual(originalOf(bounceName("m1")), "m1")
        self.assertEqual(originalOf(warningName("m1")), "m1")
        self.assertIsNone(originalOf("m1"))
        self.assertIsNone(originalOf(".bounce"))
        self.assertTrue(isSafeName(newMessageName()))
        self.assertTrue(isSafeName("123_1700000000.123_0_140"))
        for bad in ("", ".x", "a/b", "..", "x" * 201, "a b", "\u00e9"):
            self.assertFalse(isSafeName(bad), bad)

    def test_domains(self) -> None:
        """
        The destination of a recipient is its lower-cased domain, as the
        managed relayers compute it.
        """
        from mailclient._relaying.managed import recipientDomain

        for recipient in ("a@Example.ORG", b"<b@example.net>", "c@[192.0.2.1]", "nodomain",
                          "@x", "\"q\"@example.com"):
            self.assertEqual(recipientDomainOf(recipient), recipientDomain(recipient))
        self.assertEqual(smartHostDestination("SMTP.example.com.", 587),
                         "[smtp.example.com]:587")
