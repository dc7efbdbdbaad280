"""
The mailclient runner: the shared Twisted client code with mailclient.smtp.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402

common.useWorkingTree()

import mailclient  # noqa: E402
from mailclient import smtp  # noqa: E402

import _twisted_common  # noqa: E402


def options(args):
    """
    The sendmail() options: tls=False, since the sink offers no STARTTLS,
    skips building a certificate-verifying context (which loads the system
    trust store: about 150 ms the first time, 0.14 ms after) for every
    call; variant C{tls-default} keeps the defaults, as a user who does not
    pass C{tls} runs it.
    """
    return {} if args.variant == "tls-default" else {"tls": False}


if __name__ == "__main__":
    _twisted_common.run(smtp, "mailclient", mailclient.__version__, options)
