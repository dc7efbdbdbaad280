"""
The options of C{mailclient relay}: their declaration and their checks, all
made before the reactor starts (L{checkRelayOptions}), each failure one
line and an exit code of L{RELAY_EXIT_CODES}.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from dataclasses import dataclass

from mailclient._commands.common import (
    EX_UNAVAILABLE,
    EX_USAGE,
    RELAY_EXIT_CODES,
    CommandError,
    Flag,
    Option,
    addOptions,
    checkHeloName,
    checkHost,
    checkPort,
    checkSeconds,
    checkUserName,
    exitCodeHelp,
    hostPort,
)
from mailclient._commands.inputs import PASSWORD_OPTIONS, _loadCAFile, _readPassword
from mailclient._commands.queuestore import QUEUE_OPTION, QueueLocation, parseQueue

RELAY_EXAMPLES = """\
examples:
  # Relay a queue directory through a submission server, logging in
  # (the certificate must verify; the password comes from the environment).
  export MAILCLIENT_PASSWORD='...'
  mailclient relay --queue /var/spool/mailclient \\
      --smart-host smtp.example.com:587 --user relay@example.com

  # Relay to each recipient domain's mail exchanges.
  mailclient relay --queue /var/spool/mailclient --identity relay.example.com

  # One worker of a PostgreSQL queue (its password in ~/.pgpass); start
  # as many as you like, on any host.
  mailclient relay --queue postgresql://relay@db.example.com/mail \\
      --smart-host smtp.example.com:465 --user relay@example.com \\
      --password-file /etc/mailclient/smtp-password
"""

TLS_LEVELS = ("none", "may", "encrypt", "verify")

#: The options of C{mailclient relay}, in the order of its C{--help}.
RELAY_OPTIONS = (
    QUEUE_OPTION,
    Option("--smart-host", "relay everything through this server; an IPv6 address in "
           "brackets with a port (default: each recipient domain's mail exchanges; "
           "port 25)", "HOST[:PORT]"),
    Option("--tls-level", "TLS on every connection: none, may (STARTTLS when offered), "
           "encrypt (required), verify (required, the certificate verified) (default: "
           "may; verify to a smart host given --user or --cafile)", choices=TLS_LEVELS),
    Option("--cafile", "trust the CA certificates in this PEM file for the smart host "
           "(default: the system's trust store)", "FILE"),
    Flag("--implicit-tls", "speak TLS from the first byte to the smart host (default: "
         "only on port 465)"),
    Option("--user", "log in to the smart host with this user name (default: no login)",
           "NAME"),
    *PASSWORD_OPTIONS,
    Flag("--no-esmtp", "speak plain SMTP (HELO): no TLS, no login, as Twisted's "
         "SmartHostSMTPRelayingManager (default: ESMTP)"),
    Flag("--allow-private-addresses", "connect to mail exchanges at loopback, private or "
         "link-local addresses (default: refuse them)"),
    Option("--identity", "the name given in EHLO/HELO and in bounces (default: this "
           "host's name)", "NAME"),
    Option("--max-connections", "the most connections open at once (default: 2)", "N",
           "2"),
    Option("--max-messages-per-connection", "the most messages sent over one connection "
           "(default: 10)", "N", "10"),
    Option("--interval", "the longest time between two looks at the queue (default: 5 "
           "for a directory, 30 for PostgreSQL, whose workers are woken at once when "
           "mail is queued)", "SECONDS"),
    Option("--stop-timeout", "when stopping, how long to wait for the messages being "
           "sent (default: 30)", "SECONDS", "30"),
    Option("--schema", "PostgreSQL: the schema of the queue's tables (default: "
           "mailclient)", "NAME"),
    Option("--scratch", "PostgreSQL: this worker's own directory for the messages it "
           "claimed (default: a new directory, removed at exit, in $XDG_RUNTIME_DIR or "
           "/dev/shm, in memory, else in the temporary directory)", "DIR"),
    Option("--worker", "PostgreSQL: this worker's name in its leases (default: host "
           "name, process id and a random suffix)", "NAME"),
    Option("--lease", "PostgreSQL: how long a claim lasts unless renewed: a dead "
           "worker's messages come back after it (default: 60)", "SECONDS"),
    Option("--destination-limit", "PostgreSQL: the most connections the whole fleet "
           "opens to one destination (default: no limit, or the destinations table's)",
           "N"),
    Flag("-v --verbose", "also print the informational log lines (default: deliveries, "
         "warnings and errors only)"),
)


def configureRelayParser(relay: argparse.ArgumentParser) -> None:
    """
    Add the options of C{mailclient relay} to its parser.
    """
    addOptions(relay, RELAY_OPTIONS)


RELAY_EPILOG = RELAY_EXAMPLES + "\n" + exitCodeHelp(RELAY_EXIT_CODES)


# -- Checking the options --------------------------------------------------

def checkCount(value: str, option: str, minimum: int = 1) -> int:
    """
    A whole number, at least C{minimum}.

    @raise CommandError: with L{EX_USAGE}.
    """
    try:
        number = int(value, 10)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise CommandError(EX_USAGE, "%s: %r is not a whole number of at least %d"
                           % (option, value, minimum))
    return number


def parseSmartHost(value: str) -> tuple[str, int]:
    """
    C{HOST}, C{HOST:PORT}, C{[IPV6]:PORT} or a bare IPv6 address; the port
    defaults to 25.

    @raise CommandError: with L{EX_USAGE}.
    """
    option = "--smart-host"
    bracketed = re.fullmatch(r"\[([^\]]*)\](?::(.*))?", value)
    if bracketed is not None:
        host, port = bracketed.group(1), bracketed.group(2)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise CommandError(EX_USAGE, "%s: %r is not [IPv6 address]:port"
                               % (option, value)) from None
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, None
        if ":" in host and not _isIPAddress(host):
            # checkHost's hint ("a port goes in --port") is send's: relay
            # has no --port.
            raise CommandError(EX_USAGE, "%s: %r is not HOST[:PORT] (an IPv6 address "
                               "goes in brackets with a port: [2001:db8::1]:25)"
                               % (option, value))
    checkHost(host, option)
    return host, 25 if port is None else checkPort(port, option)


def _isIPAddress(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _isLoopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _noUse(option: str, why: str) -> CommandError:
    return CommandError(EX_USAGE, "%s has no use %s" % (option, why))


_DATABASE_ONLY = (("--scratch", "scratch"), ("--worker", "worker"),
                  ("--lease", "lease"), ("--destination-limit", "destination_limit"))


def _checkCombinations(args: argparse.Namespace, location: QueueLocation,
                       smartHost: tuple[str, int] | None) -> None:
    if args.no_esmtp:
        for option, given in (("--tls-level", args.tls_level), ("--cafile", args.cafile),
                              ("--implicit-tls", args.implicit_tls),
                              ("--user", args.user)):
            if given:
                raise _noUse(option, "with --no-esmtp (plain SMTP has no TLS or login)")
    if smartHost is None:
        for option, given in (("--user", args.user), ("--cafile", args.cafile),
                              ("--implicit-tls", args.implicit_tls)):
            if given:
                raise _noUse(option, "without --smart-host")
    elif args.allow_private_addresses:
        raise _noUse("--allow-private-addresses",
                     "with --smart-host (a smart host is never refused)")
    if not location.isDatabase:
        for option, name in _DATABASE_ONLY:
            if getattr(args, name) is not None:
                raise _noUse(option, "with a queue directory")
    if (args.user is not None and smartHost is not None and not _isLoopback(smartHost[0])
            and args.tls_level in ("none", "may", "encrypt")):
        raise CommandError(
            EX_USAGE, "--user with --tls-level %s: the password is sent only over TLS "
            "whose certificate verifies; use --tls-level verify (the default with "
            "--user)" % (args.tls_level,))



@dataclass(frozen=True)
class RelayOptions:
    """
    The options of C{mailclient relay}, checked, and the password read.

    @ivar args: The options as given (the flags are read from them).
    """

    args: argparse.Namespace
    location: QueueLocation
    smartHost: tuple[str, int] | None
    maxConnections: int
    perConnection: int
    interval: float
    stopTimeout: float
    lease: float
    destinationLimit: int | None
    identity: str
    password: bytes | None

    def describe(self) -> str:
        """
        What the relay does, for the line it starts with.
        """
        args, smartHost = self.args, self.smartHost
        if smartHost is not None:
            where = "through %s" % (hostPort(*smartHost),)
        else:
            where = "to each domain's mail exchanges (%s)" % (
                "private addresses allowed" if args.allow_private_addresses
                else "private addresses refused")
        if args.no_esmtp:
            tls = "plain SMTP, no TLS"
        else:
            level = args.tls_level or ("verify" if smartHost is not None and (
                args.user or args.cafile) else "may")
            implicit = smartHost is not None and (args.implicit_tls or smartHost[1] == 465)
            tls = "TLS %s%s" % (level, ", implicit" if implicit else "")
            if args.user:
                tls += ", login as %s" % (args.user,)
        return "the queue %s %s (%s), at most %d connection%s of %d message%s" % (
            self.location.describe(), where, tls, self.maxConnections,
            "" if self.maxConnections == 1 else "s", self.perConnection,
            "" if self.perConnection == 1 else "s")


def checkRelayOptions(args: argparse.Namespace) -> RelayOptions:
    """
    Check the options of C{relay} and read the password.

    @raise CommandError: with the line to print and the exit code.
    """
    from mailclient._wire.host import getDNSName

    location = parseQueue(args.queue, args.schema)
    smartHost = None if args.smart_host is None else parseSmartHost(args.smart_host)
    _checkCombinations(args, location, smartHost)
    maxConnections = checkCount(args.max_connections, "--max-connections")
    perConnection = checkCount(args.max_messages_per_connection,
                               "--max-messages-per-connection")
    interval = checkSeconds(args.interval, "--interval") if args.interval is not None \
        else (30.0 if location.isDatabase else 5.0)
    stopTimeout = checkSeconds(args.stop_timeout, "--stop-timeout")
    # Given or not (None): compared with the default's text, "--lease 60"
    # with a queue directory went unnoticed while "--lease 61" was refused.
    lease = checkSeconds(args.lease, "--lease") if args.lease is not None else 60.0
    limit = None if args.destination_limit is None else checkCount(
        args.destination_limit, "--destination-limit")
    identity = checkHeloName(args.identity, "--identity") if args.identity is not None \
        else getDNSName().decode("ascii")
    checkUserName(args.user)
    if (args.tls_level in ("encrypt", "verify") or args.cafile or args.implicit_tls):
        from mailclient._protocol.tls import tlsAvailable

        if not tlsAvailable():
            raise CommandError(EX_UNAVAILABLE, "TLS support is not installed: pip "
                               "install 'mailclient[tls]'")
    if args.cafile is not None:
        _loadCAFile(args.cafile)
    return RelayOptions(args, location, smartHost, maxConnections, perConnection, interval,
                        stopTimeout, lease, limit, identity, _readPassword(args))


__all__ = ["RELAY_EPILOG", "RelayOptions", "checkRelayOptions", "configureRelayParser"]
