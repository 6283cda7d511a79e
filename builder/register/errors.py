"""Registration failures the operator can act on (one line each, printed by the CLI)."""

from __future__ import annotations

from builder.errors import BuilderError, UsageError


class RegisterError(BuilderError):
    """The cloud refused or could not be reached; the message says what was already created."""


class MissingExtra(UsageError):
    """openstacksdk / python-troveclient are not installed."""

    def __init__(self, module: str):
        super().__init__(f"registering needs {module}: pip install 'trove-builder[register]'")
