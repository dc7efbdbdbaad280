"""
Loading Twisted's own client-side tests against mailclient.

See L{mailclient.test.test_twisted_suite}.  Nothing here imports Twisted's
mail package, or the reactor, before L{loadTwistedTests} is called, so that
L{main} can install another reactor first.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple

#: The client-side names of each of Twisted's modules: these come from
#: mailclient's module of the same name; everything else stays Twisted's.
#: (The errors the server raises, SMTPBadRcpt and friends, and the
#: server's Address stay Twisted's, so that the server side of the tests
#: catches what it raises.)
CLIENT_NAMES: Dict[str, Tuple[str, ...]] = {
    "twisted.mail.smtp": (
        "SMTPClient", "ESMTPClient", "SenderMixin", "SMTPSender",
        "SMTPSenderFactory", "ESMTPSender", "ESMTPSenderFactory", "sendmail",
        "CramMD5ClientAuthenticator", "LOGINAuthenticator",
        "PLAINAuthenticator", "IClientAuthentication",
        "SMTPClientError", "ESMTPClientError", "EHLORequiredError",
        "AUTHRequiredError", "TLSRequiredError", "AUTHDeclinedError",
        "AuthenticationError", "TLSError", "SMTPConnectError",
        "SMTPTimeoutError", "SMTPProtocolError", "SMTPDeliveryError",
        "SUCCESS", "Address", "quoteaddr", "messageid", "rfc822date",
        "idGenerator", "xtext_codec", "xtext_encode", "xtext_decode",
        "xtextStreamReader", "xtextStreamWriter",
    ),
    "twisted.mail.relay": ("RelayerMixin", "SMTPRelayer", "ESMTPRelayer"),
    "twisted.mail.relaymanager": (
        "ManagedRelayerMixin", "SMTPManagedRelayer", "ESMTPManagedRelayer",
        "SMTPManagedRelayerFactory", "ESMTPManagedRelayerFactory", "Queue",
        "_AttemptManager", "SmartHostSMTPRelayingManager",
        "SmartHostESMTPRelayingManager", "_checkState", "RelayStateHelper",
        "CanonicalNameLoop", "CanonicalNameChainTooLong", "MXCalculator",
    ),
}

#: Twisted's modules that the test modules use, imported before the
#: substitution so that none of them binds a mailclient name.
_PRELOAD = (
    "twisted.internet.testing", "twisted.protocols.loopback",
    "twisted.mail.smtp", "twisted.mail.relay", "twisted.mail.relaymanager",
    "twisted.mail.mail", "twisted.mail.maildir", "twisted.mail.alias",
    "twisted.mail.protocols", "twisted.mail.pop3", "twisted.mail.bounce",
    "twisted.mail._cred", "twisted.names.client", "twisted.names.common",
    "twisted.names.server", "twisted.names.dns", "twisted.names.error",
    "twisted.test.ssl_helpers",
)

#: The test modules, and their client-side test classes.
TEST_CLASSES: Dict[str, Tuple[str, ...]] = {
    "twisted.mail.test.test_smtp": (
        "SMTPClientTests", "AuthTests", "SMTPHelperTests", "TLSTests",
        "TimeoutTests", "SMTPSenderFactoryTests", "SMTPSenderFactoryRetryTests",
        "SMTPClientErrorTests", "SenderMixinSentMailTests",
        "ESMTPDowngradeTestCase", "SSLTestCase", "SendmailTests",
    ),
    "twisted.mail.test.test_mail": (
        "RelayerTests", "ManagedRelayerTests", "DirectoryQueueTests",
        "MXTests", "LiveFireExerciseTests", "_AttemptManagerTests",
    ),
}

#: Every client-side test counted, as in Twisted 26.10.  A test of this
#: list that Twisted's suite no longer has is reported (L{missingTests});
#: one Twisted adds to these classes runs too, and is reported as not yet
#: counted (L{uncountedTests}).
COUNTED_TESTS: Dict[str, Tuple[str, ...]] = {
    "AuthTests": (
        "test_crammd5Auth", "test_loginAgainstWeirdServer", "test_loginAuth",
    ),
    "DirectoryQueueTests": (
        "testDone", "testEnvelope", "testRelaying", "testWaiting",
    ),
    "ESMTPDowngradeTestCase": (
        "test_requireAuthFailsHELOFallback", "test_requireHELOFallbackOperates",
        "test_requireTLSAndHELOFallbackSucceedsIfOverTLS",
        "test_requireTLSFailsHELOFallback",
    ),
    "LiveFireExerciseTests": (
        "testLocalDelivery", "testRelayDelivery",
    ),
    "MXTests": (
        "testManyRecords", "testSimpleFailure", "testSimpleFailureWithFallback",
        "testSimpleSuccess", "test_badExchangeExcluded", "test_badExchangeExpires",
        "test_cnameChain", "test_cnameLoopWithGlueRecords", "test_cnameWithGlueRecords",
        "test_cnameWithoutGlueRecords", "test_defaultClock",
        "test_failureWithSuccessfulFallback", "test_fallbackForAllBadExchanges",
        "test_goodExchangeUsed", "test_mailExchangePreference",
        "test_successWithoutResults",
    ),
    "ManagedRelayerTests": (
        "testConnectionLost", "testFailedSentMail", "testSuccessfulSentMail",
    ),
    "RelayerTests": (
        "testMailData", "testMailFrom", "testMailTo",
    ),
    "SMTPClientErrorTests": (
        "test_str", "test_strWithLog", "test_strWithNegativeCode",
    ),
    "SMTPClientTests": (
        "test_messages", "test_sendFatalError", "test_sendNonFatalError",
        "test_sendOtherError", "test_timeoutConnection", "test_transferError",
    ),
    "SMTPHelperTests": (
        "testMessageID", "testQuoteAddr", "testUser", "testXtextEncoding",
        "test_decodeWithErrors", "test_encodeWithErrors",
    ),
    "SMTPSenderFactoryRetryTests": (
        "test_retryAfterDisconnect",
    ),
    "SMTPSenderFactoryTests": (
        "test_removeCurrentProtocolWhenClientConnectionFailed",
        "test_removeCurrentProtocolWhenClientConnectionLost",
    ),
    "SSLTestCase": (
        "test_esmtpClientTlsModeDeprecationGet",
        "test_esmtpClientTlsModeDeprecationGetAttributeError",
        "test_esmtpClientTlsModeDeprecationSet", "test_requireTransportSecurityOverSSL",
        "test_requireTransportSecurityTLSNotOffered",
        "test_requireTransportSecurityTLSOffered",
        "test_requireTransportSecurityTLSOfferedOverSSL",
    ),
    "SenderMixinSentMailTests": (
        "test_onlyLogFailedAddresses",
    ),
    "SendmailTests": (
        "test_cancelAfterConnectionMade", "test_cancelBeforeConnectionMade",
        "test_defaultReactorIsGlobalReactor", "test_honorsESMTPArgumentsBytesUserPW",
        "test_honorsESMTPArgumentsUnicodeUserPW", "test_messageFilePassthrough",
        "test_messageStringMadeFile", "test_senderDomainName",
    ),
    "TLSTests": (
        "testTLS", "test_ESMTPSenderFactory_TLSError",
    ),
    "TimeoutTests": (
        "test_ESMTPClient", "test_SMTPClientRecipientBytes",
        "test_SMTPClientRecipientList", "test_SMTPClientRecipientUnicode",
        "test_resetTimeoutWhileSending",
    ),
    "_AttemptManagerTests": (
        "test_initNoisy", "test_initNoisyDefault", "test_initQuiet", "test_initReactor",
        "test_initReactorDefault", "test_notifyDoneNoisy", "test_notifyDoneQuiet",
        "test_notifyFailureNoisy", "test_notifyFailureQuiet",
        "test_notifyNoConnectionNoisy", "test_notifyNoConnectionQuiet",
        "test_notifySuccessNoisy", "test_notifySuccessQuiet",
    ),
}

#: Counted tests that older supported Twisted releases do not have yet.
ABSENT_IN: Dict[str, Tuple[str, ...]] = {
    "TLSTests.test_ESMTPSenderFactory_TLSError": ("23.10.0",),
}

_COMPATIBILITY = "docs/compatibility.rst, section 'Twisted's own tests'"

#: The only tests expected to fail against mailclient, and why.
EXPECTED_FAILURES: Dict[str, str] = {
    "SSLTestCase.test_esmtpClientTlsModeDeprecationGet": (
        "asserts that the deprecation warning names twisted.mail.smtp.ESMTPClient; "
        "mailclient's names mailclient.smtp.ESMTPClient"
    ),
    "SSLTestCase.test_esmtpClientTlsModeDeprecationSet": (
        "asserts that the deprecation warning names twisted.mail.smtp.ESMTPClient; "
        "mailclient's names mailclient.smtp.ESMTPClient"
    ),
    "SendmailTests.test_defaultReactorIsGlobalReactor": (
        "inspects the default of sendmail's reactor argument; mailclient looks "
        "the reactor up when sendmail is called, so that importing mailclient "
        "never installs a reactor (Scrapy installs the asyncio reactor after "
        "importing its mail code); " + _COMPATIBILITY
    ),
    "RelayerTests.testMailData": (
        "expects the queued body opened in text mode; mailclient reads it as "
        "bytes: text mode decodes with the locale's encoding, so an 8-bit "
        "message fails to decode or goes out altered; " + _COMPATIBILITY
    ),
}


class _PackageView(types.ModuleType):
    """
    A package whose named submodules are replaced and whose other
    attributes are the real package's.
    """

    def __init__(self, real: types.ModuleType, replaced: Dict[str, Any]) -> None:
        types.ModuleType.__init__(self, real.__name__, real.__doc__)
        self.__dict__.update(replaced)
        self.__dict__["_real"] = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_real"], name)


def standIn(realName: str) -> types.ModuleType:
    """
    A copy of Twisted's module C{realName} in which the client-side names
    are mailclient's.
    """
    real = importlib.import_module(realName)
    ours = importlib.import_module("mailclient." + realName.rsplit(".", 1)[1])
    module = types.ModuleType(realName, real.__doc__)
    module.__dict__.update(
        (k, v) for k, v in vars(real).items() if k not in ("__name__", "__doc__")
    )
    for name in CLIENT_NAMES[realName]:
        setattr(module, name, getattr(ours, name))
    module.__dict__["__mailclient_standin__"] = True
    return module


def _substitute(standIns: Dict[str, types.ModuleType]) -> Callable[[], None]:
    """
    Put the stand-ins in C{sys.modules} and on C{twisted.mail}; return the
    function that undoes it.
    """
    import twisted.mail

    saved: List[Tuple[str, Any]] = []
    for name, module in standIns.items():
        saved.append((name, sys.modules.get(name)))
        sys.modules[name] = module
    attrs = [(n.rsplit(".", 1)[1], m) for n, m in standIns.items()]
    savedAttrs = [(a, twisted.mail.__dict__.get(a)) for a, _ in attrs]
    for attr, module in attrs:
        setattr(twisted.mail, attr, module)

    def undo() -> None:
        for name, old in saved:
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
        for attr, old in savedAttrs:
            setattr(twisted.mail, attr, old)

    return undo


_loaded: Dict[str, types.ModuleType] = {}


def _ownName(testName: str) -> str:
    """
    The name under which Twisted's test module C{testName} is loaded here:
    Twisted's own module of that name is left alone.
    """
    return "mailclient.test._twisted_" + testName.rsplit(".", 1)[1]


def _importAs(testName: str, name: str) -> types.ModuleType:
    """
    Execute the source of Twisted's module C{testName} as module C{name}.
    """
    import importlib.util

    origin = importlib.util.find_spec(testName)
    assert origin is not None and origin.origin is not None, testName
    spec = importlib.util.spec_from_file_location(name, origin.origin)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def loadTwistedTests() -> Dict[str, types.ModuleType]:
    """
    Import Twisted's client-side test modules against mailclient (once).

    @return: the test modules by name; their globals see the client names
        as mailclient's, while every other module still sees Twisted's.
    """
    if _loaded:
        return _loaded
    for name in _PRELOAD:
        importlib.import_module(name)
    import twisted
    import twisted.mail
    import twisted.mail.test

    standIns = {name: standIn(name) for name in CLIENT_NAMES}
    mailView = _PackageView(
        twisted.mail, {n.rsplit(".", 1)[1]: m for n, m in standIns.items()}
    )
    twistedView = _PackageView(twisted, {"mail": mailView})
    undo = _substitute(standIns)
    try:
        for testName in TEST_CLASSES:
            _loaded[testName] = module = _importAs(testName, _ownName(testName))
            # Looked up while the tests run, not only at import time.
            for name, value in list(vars(module).items()):
                if value is twisted.mail:
                    setattr(module, name, mailView)
                elif value is twisted:
                    setattr(module, name, twistedView)
    finally:
        undo()
    return _loaded


def leakedStandIns() -> List[str]:
    """
    The names of modules, other than the loaded test modules, whose globals
    hold a stand-in: the substitution must not have reached them.
    """
    loaded = set(map(id, _loaded.values()))
    leaks = []
    for name, module in list(sys.modules.items()):
        if module is None or id(module) in loaded:
            continue
        if getattr(module, "__mailclient_standin__", False):
            leaks.append(name)
            continue
        if not name.startswith("twisted."):
            continue
        for value in list(vars(module).values()):
            if getattr(value, "__mailclient_standin__", False):
                leaks.append(name)
                break
    return leaks


def clientTestClasses() -> Iterator[Tuple[str, type]]:
    """
    Twisted's client-side test classes, by name.
    """
    for testName, classNames in TEST_CLASSES.items():
        module = loadTwistedTests()[testName]
        for className in classNames:
            cls = getattr(module, className, None)
            if cls is not None:
                yield className, cls


def loadedTests() -> List[str]:
    """
    The ids (C{Class.test_method}) of the tests Twisted's classes hold.
    """
    return sorted(
        "%s.%s" % (className, name)
        for className, cls in clientTestClasses()
        for name in dir(cls)
        if name.startswith("test") and callable(getattr(cls, name))
    )


def countedTests() -> List[str]:
    return sorted(
        "%s.%s" % (className, method)
        for className, methods in COUNTED_TESTS.items()
        for method in methods
    )


def missingTests() -> List[str]:
    """
    Counted tests that the installed Twisted's suite does not have (and
    that are not known to be absent from this release).
    """
    import twisted

    loaded = set(loadedTests())
    return [
        test for test in countedTests()
        if test not in loaded and twisted.__version__ not in ABSENT_IN.get(test, ())
    ]


def uncountedTests() -> List[str]:
    """
    Tests of the counted classes that are not in L{COUNTED_TESTS}.
    """
    counted = set(countedTests())
    return [test for test in loadedTests() if test not in counted]


def exposeTestClasses(namespace: Dict[str, Any]) -> None:
    """
    Define, in C{namespace}, a subclass of each of Twisted's client-side
    test classes, so that pytest and trial collect them there.  The tests
    of L{EXPECTED_FAILURES} are marked as expected to fail (trial's
    C{todo}, which pytest reports as xfail): one that passes is reported.
    """
    moduleName = namespace["__name__"]
    for className, cls in clientTestClasses():
        for test, reason in EXPECTED_FAILURES.items():
            owner, name = test.split(".")
            method = cls.__dict__.get(name) if owner == className else None
            if method is not None:
                # The function belongs to this copy of Twisted's module.
                method.todo = reason
        namespace[className] = type(className, (cls,), {"__module__": moduleName})


def _reporterCounts(result: Any) -> Tuple[int, int, int, int]:
    successes = result.successes
    passed = len(successes) if isinstance(successes, list) else successes
    expected = len(result.expectedFailures)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skips)
    return passed, expected, failed, skipped


def main(argv: Sequence[str] = ()) -> int:
    """
    Run Twisted's client-side suite against mailclient with trial's runner
    and print C{N passed, M expected failures, K failed}.
    """
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--reactor", default=None, help="asyncio, epoll, poll, select")
    args = parser.parse_args(list(argv) or sys.argv[1:])
    if args.reactor is not None:
        from twisted.application.reactors import installReactor

        installReactor(args.reactor)
    from twisted.trial.reporter import VerboseTextReporter
    from twisted.trial.runner import TestLoader, TrialRunner

    namespace: Dict[str, Any] = {"__name__": "mailclient.test.test_twisted_suite"}
    exposeTestClasses(namespace)
    loader = TestLoader()
    suite = loader.suiteFactory(
        [loader.loadClass(cls) for _, cls in sorted(namespace.items()) if isinstance(cls, type)]
    )
    runner = TrialRunner(VerboseTextReporter, workingDirectory="_trial_temp_twisted_suite")
    result = runner.run(suite)
    passed, expected, failed, skipped = _reporterCounts(result)
    import twisted
    from twisted.internet import reactor

    missing = missingTests()
    for test in missing:
        print("MISSING: %s is counted but Twisted %s does not have it" % (test, twisted.__version__))
    for test in uncountedTests():
        print("NOT COUNTED: %s (new in Twisted %s?)" % (test, twisted.__version__))
    print(
        "Twisted %s client suite against mailclient (%s): %d passed, %d expected "
        "failures, %d failed (%d skipped by Twisted, %d missing)"
        % (twisted.__version__, type(reactor).__name__, passed, expected, failed,
           skipped, len(missing))
    )
    return 0 if failed == 0 and not missing else 1


if __name__ == "__main__":
    raise SystemExit(main())
