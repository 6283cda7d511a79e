"""register: the plan made real, step by step, saying what changed (or that nothing did)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from builder.register.cloud import connect, translate
from builder.register.digest import file_digests
from builder.register.errors import RegisterError
from builder.register.plan import Plan, manage_only_note


def register(plan: Plan, os_cloud: str | None, log: Callable[[str], None] = print) -> list[str]:
    """Register `plan`'s image; return the changes made (empty: everything was already in place)."""
    digests = file_digests(plan.image)
    if digests["sha256"] != plan.sha256:
        raise RegisterError(f"checksum mismatch: {plan.image.name}'s sha256 is {digests['sha256'][:16]}..., "
                            f"its manifest says {plan.sha256[:16]}... (the file changed after the build)")
    conn = connect(os_cloud)
    from builder.register import glance, trove

    done: list[str] = []
    step = "trove"
    try:
        # Trove first: a user without the admin role is stopped before anything is uploaded.
        tc = trove.trove_client(conn)
        trove.find_version(tc, plan)
        step = "glance"
        image = glance.ensure_image(conn, plan, digests, log)
        done += image.changes
        step = "trove"
        version = trove.ensure_version(tc, plan, image.id, log)
        done += version.changes
        done += trove.ensure_parameters(tc, plan, version.id)
    except RegisterError as exc:
        raise RegisterError(_with_progress(str(exc), done)) from None
    except Exception as exc:
        raise RegisterError(_with_progress(str(translate(exc, step)), done)) from None
    for change in done:
        log(f"changed: {change}")
    target = (f"image {image.id} as {plan.datastore} {plan.version} "
              f"({len(plan.api_parameters)} configuration parameters)")
    log(f"registered {target}" if done else f"nothing to change: {target} already registered")
    if plan.manage_only_parameters:
        print(f"trove-builder: {manage_only_note(plan)}", file=sys.stderr)
    return done


def _with_progress(message: str, done: list[str]) -> str:
    """A failure half-way says what is already there, so that a rerun (which reuses it) finishes the job."""
    if not done:
        return message
    return f"{message} (already done: {'; '.join(done)}; run register again to finish)"
