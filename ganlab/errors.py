"""The exceptions that reach the user as a single line instead of a traceback."""

import re


class UserError(Exception):
    """A configuration or input mistake the user can fix: printed as one line, exit code 1."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``timeout``, ``docker stop``, ``scancel`` and systemd send), raised as Ctrl-C is: a
    ``KeyboardInterrupt``, so that whatever ends a training on Ctrl-C (its MLflow run marked KILLED, queued
    writes finished, the lock released, one line) ends it on SIGTERM too. Python's own SIGTERM kills at once."""


# C0 and C1 controls, DEL, the Unicode line breaks and the bidirectional overrides
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with its control characters escaped as Python writes them (``\\n``, ``\\x1b``,
    ``\\u202e``): a folder may be named ``a<newline>error: ...``, and printed raw it would forge a
    line of output, or a terminal escape would rewrite the screen."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
