"""The build pipeline: named stages in order, each timed, the work dir always cleaned up."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Callable

from builder import diskspace
from builder.cache import aptcache, stagekeys, workdirs
from builder.cache.stagecache import StageCache, parse_size
from builder.context import BuildContext
from builder.errors import BuilderError
from builder.guest import dpkg, hooks
from builder.guest.chroot import mounts_below, unmount_all
from builder.interrupt import terminate_as_interrupt as _terminate_as_interrupt
from builder.proc import Log
from builder.progress import Emitter
from builder.spec import BuildSpec
from builder.stages import agent, assemble, bootstrap, export, normalize, system


def _pre_install_hooks(ctx: BuildContext) -> None:
    hooks.run_phase(ctx, "extra-data.d")
    hooks.run_phase(ctx, "pre-install.d")


def _post_install_hooks(ctx: BuildContext) -> None:
    for phase in ("install.d", "post-install.d", "finalise.d"):
        hooks.run_phase(ctx, phase)
    ctx.results["packages"] = dpkg.installed(ctx.rootfs)
    if ctx.replay is not None:  # hooks included: nothing installed that the lock does not name
        from builder.lock.collect import installed_during_build

        ctx.replay.check_packages(installed_during_build(ctx.rootfs))


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


class Checkpoints:
    """Which stages the stage cache lets this build skip, and where to store new checkpoints."""

    def __init__(self, ctx: BuildContext, enabled: bool, last_stage: str = STAGES[-1][0]):
        self.ctx = ctx
        self.last_stage = last_stage
        self.cache = StageCache(ctx.cache_dir, ctx.log)
        self.enabled = enabled
        self.keys = stagekeys.checkpoint_keys(ctx) if enabled else {}
        self.inputs = stagekeys.stage_inputs(ctx) if enabled else {}
        self.hit: tuple[str, object] | None = None
        self.status: dict[str, str] = {}
        self.cache_seconds = 0.0

    def covered(self, checkpoint: str) -> list[str]:
        names = list(stagekeys.CHECKPOINTS)
        return [s for c in names[: names.index(checkpoint) + 1] for s in stagekeys.CHECKPOINTS[c][0]]

    def find(self) -> list[str]:
        """Look for the latest usable checkpoint; return the stages it makes unnecessary."""
        if not self.enabled:
            return []
        self.cache.sweep()
        names = [s for s, _, _ in STAGES]
        usable = [c for c, (stages, _) in stagekeys.CHECKPOINTS.items()
                  if names.index(stages[-1]) <= names.index(self.last_stage)]
        for checkpoint in reversed(usable):
            entry = self.cache.lookup(checkpoint, self.keys[checkpoint])
            if entry is not None:
                self.hit = (checkpoint, entry)
                return self.covered(checkpoint)
        return []

    def restore(self) -> None:
        """Put the checkpoint found back: the rootfs, or (image) the finished image at the output."""
        checkpoint, entry = self.hit
        started = time.monotonic()
        self.ctx.results.update(entry.results)
        if checkpoint == "image":
            export.publish_copy(self.ctx, lambda tmp: self.cache.restore_file(entry, tmp))
        else:
            self.cache.restore_rootfs(entry, self.ctx.rootfs)
        elapsed = time.monotonic() - started
        self.cache_seconds += elapsed
        self.ctx.log.write(f"stage cache: restored {checkpoint} in {elapsed:.1f}s\n")

    def after(self, stage: str) -> None:
        """Store a checkpoint when `stage` is the last stage it covers."""
        if not self.enabled:
            return
        for checkpoint, (stages, _phases) in stagekeys.CHECKPOINTS.items():
            if stages[-1] != stage:
                continue
            started = time.monotonic()
            key, results = self.keys[checkpoint], dict(self.ctx.results)
            if checkpoint == "image":
                self.cache.save_file(checkpoint, key, self.ctx.spec.output, results, self.inputs[checkpoint])
            else:
                self.cache.save_rootfs(checkpoint, key, self.ctx.rootfs, results, self.inputs[checkpoint])
            elapsed = time.monotonic() - started
            self.cache_seconds += elapsed
            self.ctx.log.write(f"stage cache: stored {checkpoint} in {elapsed:.1f}s\n")
            self.status[checkpoint] = "stored"

    def prune(self, limit: int) -> None:
        if self.enabled:
            for entry in self.cache.prune(limit):
                self.ctx.log.write(f"stage cache: pruned {entry.path.name}\n")


def _start_replay(ctx: BuildContext, emit: Emitter):
    """A locked build: every file it names in the store (fetched first unless offline), then its proxy."""
    from builder.cache.cas import ContentStore
    from builder.lock import fetch
    from builder.lock.lockfile import Lock
    from builder.lock.replay import Replay
    from builder.spec import host_ca_bundle_path

    spec = ctx.spec
    lock, store = Lock.load(spec.lock_file), ContentStore(spec.cache_dir)
    if spec.offline:
        links = sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name != "lo")
        if links:
            raise BuilderError(f"--offline, but this builder has network interfaces: {', '.join(links)}")
        emit.message("offline: no network but the loopback; every file comes from the cache")
    else:
        fetch.fetch(lock, store, host_ca_bundle_path(spec.ca_bundle), emit.message)
    fetch.check_complete(lock, store, spec.offline)
    replay = Replay(lock, store, ctx.work_dir)
    replay.start()
    ctx.replay = replay
    return replay


def _write_lock(ctx: BuildContext, emit: Emitter) -> None:
    from builder.lock.collect import collect

    started = time.monotonic()
    lock = collect(ctx)
    lock.save(ctx.spec.lock_out)
    emit.message(f"locked {len(lock.packages)} packages and {len(lock.python_files)} Python files "
                 f"in {time.monotonic() - started:.0f}s")


def run_pipeline(spec: BuildSpec, emit: Emitter | None = None) -> dict:
    """Build spec.output on this machine (the builder container, or the host with --runtime none)."""
    emit = emit or Emitter()
    spec.validate()
    hooks.validate(spec.hooks_dir)
    prof = spec.profile
    spec.cache_dir.mkdir(parents=True, exist_ok=True)
    workdirs.reap_stale(spec.cache_dir, emit.message)
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
    emit("build-start", os=spec.os, release=spec.release, mode="dev" if spec.dev_mode else "production",
         agent_version=spec.resolved_agent_version, size_gb=spec.size_gb, output=shown_output)
    failed = True
    checkpoints = None
    # `trove-builder lock` needs the guest as the hooks left it: no image is made.
    stages = STAGES[: [s for s, _, _ in STAGES].index("hooks") + 1] if spec.lock_out else STAGES
    total = len(stages)
    aptcache.sweep(spec.cache_dir)
    replay = None
    try:
        with _terminate_as_interrupt():
            if spec.lock_file is not None:
                replay = _start_replay(ctx, emit)
            checkpoints = Checkpoints(ctx, spec.stage_cache, stages[-1][0])
            skipped = checkpoints.find()
            if checkpoints.hit:
                name, entry = checkpoints.hit
                emit("cache-hit", checkpoint=name, entry=entry.path.name, skipped=len(skipped), total=total)
                checkpoints.restore()
            for index, (name, description, func) in enumerate(stages, 1):
                if name in skipped:
                    emit("stage-cached", index=index, total=total, name=name)
                    timings.append((name, 0.0))
                    continue
                emit("stage-start", index=index, total=total, name=name, description=description)
                started = time.monotonic()
                try:
                    with diskspace.out_of_space_as_error(diskspace.places(spec, work_dir)):
                        func(ctx)
                except BuilderError as exc:
                    emit("stage-failed", name=name)
                    raise BuilderError(f"stage {name} failed: {exc}") from None
                except BaseException:
                    emit("stage-failed", name=name)
                    raise
                elapsed = time.monotonic() - started
                timings.append((name, elapsed))
                emit("stage-done", index=index, total=total, name=name, seconds=round(elapsed, 2))
                checkpoints.after(name)
            if spec.lock_out is not None:
                _write_lock(ctx, emit)
            checkpoints.prune(parse_size(spec.cache_limit))
        failed = False
    finally:
        if replay is not None:
            replay.stop()
        aptcache.release(aptcache.private_dir(spec.cache_dir, work_dir),
                         aptcache.shared_dir(spec.cache_dir, spec.os, spec.release))
        log.close()
        if spec.keep_work_dir or (failed and spec.verbose):
            emit.message(f"work dir kept: {work_dir}")
        else:
            remove_work_dir(work_dir)
        claim.release()
    summary = {
        "timings": dict(timings),
        "cache_seconds": round(checkpoints.cache_seconds, 2) if checkpoints else 0.0,
        "cached_checkpoint": checkpoints.hit[0] if checkpoints and checkpoints.hit else None,
        "checkpoint_entries": {name: checkpoints.cache.entry_dir(name, key).name
                               for name, key in checkpoints.keys.items()} if checkpoints else {},
        "sha256": ctx.results.get("sha256"),
        "bytes": ctx.results.get("bytes", 0),
        "output": shown_output,
        "log": log.shown_as,
    }
    emit("build-done", **summary)
    return summary
