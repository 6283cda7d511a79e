"""User-facing errors: the CLI prints them as one line on stderr, never a traceback."""


class BuilderError(Exception):
    """A failure the operator can act on; its message is the whole story."""

    exit_code = 1


class UsageError(BuilderError):
    """Bad input (unknown OS, bad path, bad option value)."""

    exit_code = 2
