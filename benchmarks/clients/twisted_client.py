"""
The stock Twisted runner: the shared Twisted client code with
twisted.mail.smtp, used exactly as its users use it.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import twisted  # noqa: E402
from twisted.mail import smtp  # noqa: E402

import _twisted_common  # noqa: E402

if __name__ == "__main__":
    _twisted_common.run(smtp, "twisted", twisted.__version__, lambda args: {})
