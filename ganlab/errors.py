"""The one exception type that reaches the user as a single line instead of a traceback."""


class UserError(Exception):
    """A configuration or input mistake the user can fix: printed as one line, exit code 1."""
