"""User hooks, diskimage-builder style: hooks/<phase>.d/NN-name executables, run in name order."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from builder.context import BuildContext
from builder.errors import BuilderError, UsageError
from builder.proc import run

# phase -> where it runs. "chroot": inside the guest; "host": in the builder,
# with TARGET_ROOT pointing at the guest's root filesystem.
PHASES = {
    "extra-data.d": "host",
    "pre-install.d": "chroot",
    "install.d": "chroot",
    "post-install.d": "chroot",
    "finalise.d": "chroot",
}
HOOK_DIR_IN_GUEST = "/tmp/trove-builder-hooks"


def hooks_for(hooks_dir: Path | None, phase: str) -> list[Path]:
    if hooks_dir is None:
        return []
    phase_dir = hooks_dir / phase
    if not phase_dir.is_dir():
        return []
    return sorted(p for p in phase_dir.iterdir() if p.is_file() and not p.name.startswith("."))


def validate(hooks_dir: Path | None) -> None:
    """Every hook must be executable; unknown phase directories are a typo worth reporting."""
    if hooks_dir is None:
        return
    for entry in sorted(hooks_dir.iterdir()):
        if entry.is_dir() and entry.name.endswith(".d") and entry.name not in PHASES:
            raise UsageError(f"unknown hook phase {entry.name} in {hooks_dir} (known: {', '.join(PHASES)})")
    for phase in PHASES:
        for hook in hooks_for(hooks_dir, phase):
            if not os.access(hook, os.X_OK):
                raise UsageError(f"hook {hook} is not executable (chmod +x it)")


def hook_env(ctx: BuildContext) -> dict[str, str]:
    spec = ctx.spec
    return {
        "GUEST_OS": spec.os,
        "GUEST_RELEASE": spec.release,
        "DIB_RELEASE": spec.release,
        "DEV_MODE": str(spec.dev_mode).lower(),
        "GUEST_USERNAME": spec.guest_user,
        "TROVE_AGENT_VERSION": spec.resolved_agent_version,
        "SOURCE_DATE_EPOCH": str(spec.source_date_epoch),
    }


def run_phase(ctx: BuildContext, phase: str) -> list[str]:
    """Run one phase's hooks; a failing hook stops the build with its name in the error."""
    hooks = hooks_for(ctx.spec.hooks_dir, phase)
    if not hooks:
        return []
    env = hook_env(ctx)
    if PHASES[phase] == "host":
        for hook in hooks:
            _run_one(ctx, phase, hook, lambda h: run([h], ctx.log, env={**env, "TARGET_ROOT": str(ctx.rootfs)}))
        return [h.name for h in hooks]
    staging = ctx.rootfs / HOOK_DIR_IN_GUEST.lstrip("/")
    chroot = ctx.chroot(env)
    try:
        staging.mkdir(parents=True, exist_ok=True)
        with chroot.session():
            for hook in hooks:
                shutil.copy2(hook, staging / hook.name)
                _run_one(ctx, phase, hook, lambda h: chroot.run([f"{HOOK_DIR_IN_GUEST}/{h.name}"]))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [h.name for h in hooks]


def _run_one(ctx: BuildContext, phase: str, hook: Path, runner) -> None:
    try:
        runner(hook)
    except BuilderError as exc:
        raise BuilderError(f"hook {phase}/{hook.name} failed: {exc}") from None
    ctx.results.setdefault("hooks", []).append(f"{phase}/{hook.name}")
