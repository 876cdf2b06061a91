"""The exceptions that reach the user as a single line instead of a traceback."""


class UserError(Exception):
    """A configuration or input mistake the user can fix: printed as one line, exit code 1."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``timeout``, ``docker stop``, ``scancel`` and systemd send), raised as Ctrl-C is: a
    ``KeyboardInterrupt``, so that whatever ends a training on Ctrl-C (its MLflow run marked KILLED, queued
    writes finished, the lock released, one line) ends it on SIGTERM too. Python's own SIGTERM kills at once."""
