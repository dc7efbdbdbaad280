"""
REQUIRETLS (RFC 8689): the option and its MAIL FROM parameter (pure), the
side file that keeps it with a queued message, and the relay: delivered
only over a verified hop to a server that offers REQUIRETLS; deferred
(4.7.10) without verified TLS, returned (5.7.30) by a verified server
that does not offer it; never sent in clear or unverified.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mailclient._relaying.attempt import DeliveryOutcome
from mailclient._relaying.msgoptions import (
    MessageOptions,
    MessageOptionsError,
    enqueueWithOptions,
    optionsPath,
    readMessageOptions,
    writeMessageOptions,
)
from mailclient._testing import syntax
from mailclient._wire.ehlo import parseCapabilities
from mailclient._wire.options import MailOptions, OptionError, mailParameters
from mailclient._wire.plan import Switches, planTransaction
from mailclient._wire.tlspolicy import SourceKind, TLSLevel, TLSPolicy, requireVerified
from mailclient.test.helpers_tls import certificatesFor
from mailclient.test.helpers_relaytls import MX, RelayMixin as _RelayMixin
from mailclient.testing import SMTPTestServer

CAPS = parseCapabilities(b"mx.example.org\nPIPELINING\nREQUIRETLS\n")
NO_REQUIRETLS = parseCapabilities(b"mx.example.org\nPIPELINING\n")
CERTS = certificatesFor(MX)


class OptionTests(SynchronousTestCase):
    """
    The C{requireTLS} option on MAIL FROM.
    """

    def test_parameter(self) -> None:
        """
        Over verified TLS to a server offering REQUIRETLS: C{REQUIRETLS} on
        MAIL FROM.
        """
        params = mailParameters(MailOptions(requireTLS=True), CAPS, [b"<a@b>"], None, False,
                                False, secure=True)
        self.assertEqual(params, [b"REQUIRETLS"])

    def test_notAskedNotSent(self) -> None:
        self.assertEqual(mailParameters(MailOptions(), CAPS, [b"<a@b>"], None, False, False,
                                        secure=True), [])

    def test_serverWithout(self) -> None:
        """
        A server without REQUIRETLS: refused, 5.7.30.
        """
        e = self.assertRaises(OptionError, mailParameters, MailOptions(requireTLS=True),
                              NO_REQUIRETLS, [b"<a@b>"], None, False, False, secure=True)
        self.assertEqual(e.status, "5.7.30")

    def test_notSecure(self) -> None:
        """
        Not over verified TLS: refused, 5.7.10, even if the server offers
        REQUIRETLS.
        """
        e = self.assertRaises(OptionError, mailParameters, MailOptions(requireTLS=True),
                              CAPS, [b"<a@b>"], None, False, False)
        self.assertEqual(e.status, "5.7.10")

    def test_plan(self) -> None:
        plan = planTransaction(CAPS, Switches(), MailOptions(requireTLS=True), b"<a@b>",
                               [b"c@d"], [b"<c@d>"], None, False, secure=True)
        self.assertIn(b"REQUIRETLS", plan.mailParameters)

    def test_policyRaisedToVerify(self) -> None:
        """
        REQUIRETLS raises any policy to level verify, and says so.
        """
        for level in ("none", "may", "encrypt", "verify"):
            policy = requireVerified(TLSPolicy(level))
            self.assertEqual((policy.level, policy.verifies, policy.source.requireTLS),
                             (TLSLevel.VERIFY, True, True))


class SideFileTests(SynchronousTestCase):
    """
    The C{-O} side file.
    """

    def test_roundTrip(self) -> None:
        base = self.mktemp()
        writeMessageOptions(base, MessageOptions(requireTLS=True), fsync=False)
        self.assertEqual(readMessageOptions(base), MessageOptions(requireTLS=True))
        with open(optionsPath(base), "rb") as f:
            self.assertEqual(f.read(), b'{"requireTLS": true}')

    def test_absent(self) -> None:
        self.assertEqual(readMessageOptions(self.mktemp()), MessageOptions())

    def test_malformed(self) -> None:
        base = self.mktemp()
        for bad in (b"[1]", b"not json", b'{"requireTLS": "yes"}'):
            with open(optionsPath(base), "wb") as f:
                f.write(bad)
            self.assertRaises(MessageOptionsError, readMessageOptions, base)

    def test_noOptionsNoFile(self) -> None:
        base = self.mktemp()
        writeMessageOptions(base, MessageOptions(requireTLS=True), fsync=False)
        writeMessageOptions(base, MessageOptions(), fsync=False)
        self.assertFalse(os.path.exists(optionsPath(base)))


class RequireTLSRelayTests(_RelayMixin, TestCase):
    """
    The relay with messages that asked for REQUIRETLS.
    """

    def setUp(self) -> None:
        self.setUpRelay()
        # The test server takes the REQUIRETLS parameter when it offers
        # the extension.
        syntax._MAIL_PARAMS[b"REQUIRETLS"] = "REQUIRETLS"
        self.addCleanup(syntax._MAIL_PARAMS.pop, b"REQUIRETLS", None)

    def serve(self, kind: str = "good", requiretls: bool = True,
              starttls: bool = True) -> tuple[SMTPTestServer, int]:
        extensions = ["PIPELINING", "8BITMIME"] + (["STARTTLS"] if starttls else []) + (
            ["REQUIRETLS"] if requiretls else [])
        server = SMTPTestServer(hostname=MX, extensions=extensions,
                                tlsCertificate=CERTS.byKind(kind).serverOptions())
        return server, self.listen(server)

    def requireManager(self, port: int, **kw: Any) -> Any:
        manager = self.manager(port, **kw)
        manager.tlsCACertificates = (CERTS.caPEM,)
        return manager

    @defer.inlineCallbacks
    def relayRequired(self, manager: Any) -> Any:
        name = enqueueWithOptions(self.queue, "alice@example.com", "bob@example.org",
                                  b"Subject: secret\n\nHello.\n", MessageOptions(requireTLS=True))
        self.queue.readDirectory()
        yield manager.checkState()
        return name

    def test_enqueueKeepsEnvelopeForTwisted(self) -> None:
        """
        The envelope stays Twisted's pickled C{[from, to]}; the flag is in
        the side file, written with the message.
        """
        name = enqueueWithOptions(self.queue, "alice@example.com", "bob@example.org", b"x\n",
                                  MessageOptions(requireTLS=True))
        base = self.queue.getPath(name)
        with open(base + "-H", "rb") as f:
            self.assertEqual(pickle.loads(f.read()), ["alice@example.com", "bob@example.org"])
        self.assertTrue(readMessageOptions(base).requireTLS)

    @defer.inlineCallbacks
    def test_verifiedHop(self) -> Any:
        """
        Verified TLS to a server offering REQUIRETLS: delivered with
        C{REQUIRETLS} on MAIL FROM; the side file goes with the message.
        """
        server, port = self.serve()
        name = yield self.relayRequired(self.requireManager(port))
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)
        assert report.tls is not None
        self.assertEqual((report.tls.level, report.tls.verified, report.tls.source.requireTLS),
                         (TLSLevel.VERIFY, True, True))
        [message] = server.messages
        self.assertIn(b"REQUIRETLS", message.mailParams)
        self.assertTrue(server.sessions[-1].tls)
        self.assertFalse(os.path.exists(optionsPath(self.queue.getPath(name))))

    @defer.inlineCallbacks
    def test_serverWithoutREQUIRETLS(self) -> Any:
        """
        Verified TLS, but the server does not offer REQUIRETLS: returned to
        its sender with 5.7.30, not sent.
        """
        server, port = self.serve(requiretls=False)
        name = yield self.relayRequired(self.requireManager(port))
        [report] = self.reports
        self.assertEqual((report.outcome, report.status), (DeliveryOutcome.BOUNCED, "5.7.30"))
        self.assertEqual(server.messages, [])
        [bounce] = self.waiting()
        self.assertNotEqual(bounce, name)

    @defer.inlineCallbacks
    def test_unverifiedHop(self) -> Any:
        """
        A certificate that does not verify: deferred (4.7.10), not sent.
        """
        server, port = self.serve("selfSigned")
        manager = self.requireManager(port)
        name = yield self.relayRequired(manager)
        [report] = self.reports
        self.assertEqual((report.outcome, report.status), (DeliveryOutcome.DEFERRED, "4.7.10"))
        self.assertIn("REQUIRETLS", report.reason)
        self.assertEqual(server.messages, [])
        self.assertEqual(self.waiting(), [name])

    @defer.inlineCallbacks
    def test_noTLS(self) -> Any:
        """
        A server without STARTTLS: deferred (4.7.10), never sent in clear.
        """
        server, port = self.serve(starttls=False)
        yield self.relayRequired(self.requireManager(port))
        [report] = self.reports
        self.assertEqual((report.outcome, report.status), (DeliveryOutcome.DEFERRED, "4.7.10"))
        self.assertEqual(server.messages, [])

    @defer.inlineCallbacks
    def test_overridesPolicyMapNone(self) -> Any:
        """
        A policy map entry saying C{none} does not send a REQUIRETLS message
        in clear: it goes over verified TLS.
        """
        server, port = self.serve()
        manager = self.requireManager(port, tlsPolicies={"example.org": "none"})
        yield self.relayRequired(manager)
        [report] = self.reports
        self.assertEqual(report.outcome, DeliveryOutcome.DELIVERED)
        assert report.tls is not None
        self.assertEqual((report.tls.verified, report.tls.source.kind, report.tls.source.requireTLS),
                         (True, SourceKind.POLICY_MAP, True))

    @defer.inlineCallbacks
    def test_otherMessagesUnaffected(self) -> Any:
        """
        A message without REQUIRETLS to the same domain goes as usual
        (opportunistic TLS, unverified); the REQUIRETLS one waits.
        """
        server, port = self.serve("selfSigned")
        manager = self.requireManager(port)
        plain = self.queue.enqueue("alice@example.com", "bob@example.org", b"x\n")
        required = yield self.relayRequired(manager)
        outcomes = {r.message: r.outcome for r in self.reports}
        self.assertEqual(outcomes, {plain: DeliveryOutcome.DELIVERED,
                                    required: DeliveryOutcome.DEFERRED})
        [message] = server.messages
        self.assertNotIn(b"REQUIRETLS", message.mailParams)

    @defer.inlineCallbacks
    def test_malformedSideFileQuarantined(self) -> Any:
        """
        A side file that cannot be read quarantines its message rather than
        relay it without the TLS it may have asked for.
        """
        server, port = self.serve()
        name = self.queue.enqueue("alice@example.com", "bob@example.org", b"x\n")
        with open(optionsPath(self.queue.getPath(name)), "wb") as f:
            f.write(b"garbage")
        self.queue.readDirectory()
        yield self.requireManager(port).checkState()
        self.assertIn(name, self.queue.quarantined)
        self.assertEqual(server.messages, [])


class SMTPRelayTests(_RelayMixin, TestCase):
    """
    A plain SMTP relaying manager cannot honour REQUIRETLS.
    """

    def setUp(self) -> None:
        self.setUpRelay()

    def test_returned(self) -> None:
        """
        The message is returned to its sender with 5.7.30, never sent.
        """
        from mailclient.relaymanager import SmartHostSMTPRelayingManager

        manager = SmartHostSMTPRelayingManager(self.queue, mxcalc=object(), clock=self.clock)
        manager.reportingMTA = "relay.example.net"
        manager.deliveryObservers.append(self.reports.append)
        name = enqueueWithOptions(self.queue, "alice@example.com", "bob@example.org", b"x\n",
                                  MessageOptions(requireTLS=True))
        self.queue.readDirectory()
        manager.checkState()
        [report] = self.reports
        self.assertEqual((report.message, report.outcome, report.status),
                         (name, DeliveryOutcome.BOUNCED, "5.7.30"))
        [bounce] = self.waiting()
        self.assertNotEqual(bounce, name)
