"""The build pipeline: named stages in order, each timed, the work dir always cleaned up."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from builder import diskspace
from builder.cache import aptcache, stagekeys, workdirs
from builder.cache.stagecache import Entry, StageCache, parse_size
from builder.context import BuildContext
from builder.errors import BuilderError
from builder.guest import hooks
from builder.interrupt import terminate_as_interrupt as _terminate_as_interrupt
from builder.proc import Log
from builder.progress import Emitter
from builder.publish import publish_copy
from builder.spec import BuildSpec
from builder.stages import STAGES, lock_stages

if TYPE_CHECKING:
    from builder.lock.replay import Replay


def display_path(path: Path, cache_dir: Path) -> str:
    """How the operator sees a cache path (the builder container mounts the cache elsewhere)."""
    shown = os.environ.get("TROVE_BUILDER_CACHE_SHOWN_AS")
    if shown and path.is_relative_to(cache_dir):
        return str(Path(shown) / path.relative_to(cache_dir))
    return str(path)


class Checkpoints:
    """Which stages the stage cache lets this build skip, and where to store new checkpoints."""

    def __init__(self, ctx: BuildContext, enabled: bool, last_stage: str = STAGES[-1].name):
        self.ctx = ctx
        self.last_stage = last_stage
        self.cache = StageCache(ctx.cache_dir, ctx.log)
        self.enabled = enabled
        self.keys = stagekeys.checkpoint_keys(ctx) if enabled else {}
        self.inputs = stagekeys.stage_inputs(ctx) if enabled else {}
        self.hit: tuple[str, Entry] | None = None
        self.status: dict[str, str] = {}
        self.cache_seconds = 0.0

    def covered(self, checkpoint: str) -> list[str]:
        names = list(stagekeys.CHECKPOINTS)
        return [s for c in names[: names.index(checkpoint) + 1] for s in stagekeys.CHECKPOINTS[c][0]]

    def find(self) -> list[str]:
        """Look for the latest usable checkpoint; return the stages it makes unnecessary."""
        if not self.enabled or not self.ctx.spec.reuse_checkpoints:
            return []
        self.cache.sweep()
        names = [s.name for s in STAGES]
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
        assert self.hit is not None, "restore() follows a find() that found a checkpoint"
        checkpoint, entry = self.hit
        started = time.monotonic()
        self.ctx.results.update(entry.results)
        if checkpoint == "image":
            publish_copy(self.ctx, lambda tmp: self.cache.restore_file(entry, tmp))
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


def _start_replay(ctx: BuildContext, emit: Emitter, lock_file: Path) -> Replay:
    """A locked build: every file it names in the store (fetched first unless offline), then its proxy."""
    from builder.cache.cas import ContentStore
    from builder.lock import fetch
    from builder.lock.lockfile import Lock
    from builder.lock.replay import Replay
    from builder.spec import host_ca_bundle_path

    spec = ctx.spec
    lock, store = Lock.load(lock_file), ContentStore(spec.cache_dir)
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


def _write_lock(ctx: BuildContext, emit: Emitter, lock_out: Path) -> None:
    """`trove-builder lock`: the lock stage's lock, to its own file (without its image section)."""
    from builder.lock.lockfile import Lock

    if ctx.results.get("lock") is None:
        raise BuilderError(ctx.results.get("unlockable") or "this build cannot be locked")
    lock = Lock({k: v for k, v in ctx.results["lock"].items() if k != "image"})
    lock.save(lock_out)
    emit.message(f"locked {len(lock.packages)} packages and {len(lock.python_files)} Python files")


def run_pipeline(spec: BuildSpec, emit: Emitter | None = None) -> dict:
    """Build spec.output on this machine (the builder container, or the host with --runtime none)."""
    emit = emit or Emitter()
    spec.validate()
    hooks.validate(spec.hooks_dir)
    prof = spec.profile
    spec.cache_dir.mkdir(parents=True, exist_ok=True)
    workdirs.reap_stale(spec.cache_dir, emit.message)
    work_dir = spec.work_dir or (spec.cache_dir / "work"
                                 / f"build-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}")
    claim = workdirs.claim(work_dir, owned=spec.work_dir is None)
    work_dir.mkdir(parents=True, exist_ok=True)
    # Every command of this build inherits it: if the build is killed, the next one knows them by it.
    owner_before = os.environ.get(workdirs.OWNER_ENV)
    os.environ[workdirs.OWNER_ENV] = os.path.realpath(work_dir)
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
    # `trove-builder lock` stops at the lock stage: no image is made.
    stages = lock_stages() if spec.lock_out else STAGES
    total = len(stages)
    aptcache.sweep(spec.cache_dir)
    replay = None
    try:
        with _terminate_as_interrupt():
            if spec.lock_file is not None:
                replay = _start_replay(ctx, emit, spec.lock_file)
            checkpoints = Checkpoints(ctx, spec.stage_cache, stages[-1].name)
            skipped = checkpoints.find()
            if checkpoints.hit:
                name, entry = checkpoints.hit
                emit("cache-hit", checkpoint=name, entry=entry.path.name, skipped=len(skipped), total=total)
                checkpoints.restore()
            for index, stage in enumerate(stages, 1):
                name = stage.name
                if name in skipped:
                    emit("stage-cached", index=index, total=total, name=name)
                    timings.append((name, 0.0))
                    continue
                emit("stage-start", index=index, total=total, name=name, description=stage.description)
                started = time.monotonic()
                try:
                    with diskspace.out_of_space_as_error(diskspace.places(spec, work_dir)):
                        stage.run(ctx)
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
                _write_lock(ctx, emit, spec.lock_out)
            elif ctx.results.get("unlockable"):
                emit.message(f"no lock written beside the image: {ctx.results['unlockable']}")
            checkpoints.prune(parse_size(spec.cache_limit))
        failed = False
    finally:
        if replay is not None:
            replay.stop()
        aptcache.release(aptcache.private_dir(spec.cache_dir, work_dir),
                         aptcache.shared_dir(spec.cache_dir, spec.os, spec.release))
        log.close()
        if spec.keep_work_dir or (failed and spec.verbose):
            kept = next(place.shown for place in diskspace.places(spec, work_dir) if place.role == "work dir")
            emit.message(f"work dir kept: {kept}")  # as the operator named it, not the container's path
        else:
            workdirs.remove_work_dir(work_dir)
        claim.release()
        if owner_before is None:
            os.environ.pop(workdirs.OWNER_ENV, None)
        else:
            os.environ[workdirs.OWNER_ENV] = owner_before
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
