"""lock: what this build installed, as the lock that rebuilds it (export writes it beside the image).

Runs after the hooks, before normalize scrubs apt's lists (builder/lock/collect.py reads them)."""

from __future__ import annotations

from builder.context import BuildContext
from builder.lock.collect import collect
from builder.lock.lockfile import unlockable

DESCRIPTION = "record every installed file's source and sha256"


def run_stage(ctx: BuildContext) -> None:
    lock = collect(ctx)
    ctx.results["lock"] = lock.data if lock is not None else None
    ctx.results["unlockable"] = None if lock is not None else unlockable(ctx.spec)
