"""The build pipeline: named stages in order, each timed, the work dir always cleaned up."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Callable

from . import dpkg, hooks, workdirs
from .chroot import mounts_below, unmount_all
from .context import BuildContext
from .errors import BuilderError
from .interrupt import terminate_as_interrupt as _terminate_as_interrupt
from .proc import Log
from .spec import BuildSpec
from .stages import agent, assemble, bootstrap, export, normalize, system


def _pre_install_hooks(ctx: BuildContext) -> None:
    hooks.run_phase(ctx, "extra-data.d")
    hooks.run_phase(ctx, "pre-install.d")


def _post_install_hooks(ctx: BuildContext) -> None:
    for phase in ("install.d", "post-install.d", "finalise.d"):
        hooks.run_phase(ctx, phase)
    ctx.results["packages"] = dpkg.installed(ctx.rootfs)


# (name, what it does, function). Hooks sit where diskimage-builder's phases do.
STAGES: list[tuple[str, str, Callable[[BuildContext], None]]] = [
    ("bootstrap", bootstrap.DESCRIPTION, bootstrap.run_stage),
    ("pre-hooks", "run extra-data.d and pre-install.d hooks", _pre_install_hooks),
    ("system", system.DESCRIPTION, system.run_stage),
    ("agent", agent.DESCRIPTION, agent.run_stage),
    ("hooks", "run install.d, post-install.d and finalise.d hooks", _post_install_hooks),
    ("normalize", normalize.DESCRIPTION, normalize.run_stage),
    ("assemble", assemble.DESCRIPTION, assemble.run_stage),
    ("export", export.DESCRIPTION, export.run_stage),
]


def display_path(path: Path, cache_dir: Path) -> str:
    """How the operator sees a cache path (the builder container mounts the cache elsewhere)."""
    shown = os.environ.get("TROVE_BUILDER_CACHE_SHOWN_AS")
    if shown and path.is_relative_to(cache_dir):
        return str(Path(shown) / path.relative_to(cache_dir))
    return str(path)


def say(text: str) -> None:
    print(text, flush=True)


def remove_work_dir(path: Path) -> None:
    """rm -rf that never follows into a mount (a bind-mounted /dev must never be emptied).

    The work dir itself may be a mount point (--work-dir in the container): its contents go,
    the directory stays."""
    if not path.exists():
        return
    own = os.path.realpath(path)
    for point in mounts_below(path):
        if point != own:
            unmount_all(Path(point))
    left = [m for m in mounts_below(path) if m != own]
    if left:
        raise BuilderError(f"cannot remove {path}: still mounted: {', '.join(left)}")
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    try:
        path.rmdir()
    except OSError:
        pass  # a mount point: emptied is all we can do


def run_pipeline(spec: BuildSpec) -> dict:
    """Build spec.output on this machine (the builder container, or the host with --runtime none)."""
    spec.validate()
    hooks.validate(spec.hooks_dir)
    prof = spec.profile
    spec.cache_dir.mkdir(parents=True, exist_ok=True)
    workdirs.reap_stale(spec.cache_dir, say)
    work_dir = spec.work_dir or (spec.cache_dir / "work" / f"build-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}")
    if work_dir.exists() and any(work_dir.iterdir()):
        raise BuilderError(f"work dir {work_dir} is not empty")
    claim = workdirs.claim(work_dir, owned=spec.work_dir is None)
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = spec.cache_dir / "logs" / f"{work_dir.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = Log(log_path, verbose=spec.verbose, shown_as=display_path(log_path, spec.cache_dir))
    ctx = BuildContext(spec=spec, profile=prof, work_dir=work_dir, log=log)
    timings: list[tuple[str, float]] = []
    shown_output = os.environ.get("TROVE_BUILDER_OUTPUT_SHOWN_AS", str(spec.output))
    say(f"trove-builder: {spec.os} {spec.release}, {'dev' if spec.dev_mode else 'production'} mode, "
        f"trove {spec.resolved_agent_version}, {spec.size_gb} GB -> {shown_output}")
    failed = True
    try:
        with _terminate_as_interrupt():
            for index, (name, description, func) in enumerate(STAGES, 1):
                say(f"[{index}/{len(STAGES)}] {name}: {description} ...")
                started = time.monotonic()
                try:
                    func(ctx)
                except BuilderError as exc:
                    raise BuilderError(f"stage {name} failed: {exc}") from None
                elapsed = time.monotonic() - started
                timings.append((name, elapsed))
                say(f"      {name} done in {elapsed:.1f}s")
        failed = False
    finally:
        log.close()
        if spec.keep_work_dir or (failed and spec.verbose):
            say(f"work dir kept: {work_dir}")
        else:
            remove_work_dir(work_dir)
        claim.release()
    total = sum(t for _, t in timings)
    say("stage timings:")
    for name, elapsed in timings:
        say(f"  {name:<10} {elapsed:7.1f}s")
    say(f"  {'total':<10} {total:7.1f}s")
    say(f"image: {shown_output} ({ctx.results.get('bytes', 0) / 2**20:.0f} MiB, sha256 {ctx.results.get('sha256')})")
    return {"timings": dict(timings), "sha256": ctx.results.get("sha256"), "output": str(spec.output)}
