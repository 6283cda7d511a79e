"""The boot test's libraries are the `verify` extra: checked before anything starts, so that a plain
`pip install trove-builder` gets one line naming the extra instead of an ImportError mid-test."""

from __future__ import annotations

import importlib.util

from builder.errors import UsageError

# module -> the distribution that ships it (pyproject.toml's `verify` extra)
VERIFY_MODULES = {"oslo_messaging": "oslo.messaging", "pycdlib": "pycdlib", "asyncssh": "asyncssh"}


def require_verify_extra() -> None:
    missing = []
    for module, dist in VERIFY_MODULES.items():
        try:  # found, not imported (oslo.messaging's import is slow and warns)
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # ValueError: blocked (None in sys.modules)
            found = False
        if not found:
            missing.append(dist)
    if missing:
        raise UsageError(f"boot-test needs {', '.join(missing)} (not installed): "
                         f"pip install 'trove-builder[verify]'")
