"""Cache keys: each checkpoint's key is a digest of exactly what its stages read, chained to the previous one.

A key changes when, and only when, something its stages depend on changes: the builder's code and
tools, the profile, the rendered guest files of those stages, the hooks of the phases they run, and
the spec fields they use. Chaining (each key includes the previous) makes a change early in the
pipeline invalidate everything after it, and a change late in the pipeline nothing before it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

from builder.cache.cas import sha256_file
from builder.guest import hooks
from builder.guest.render import stage_files
from builder.stages import checkpoints

# Checkpoints in pipeline order: name -> (stages it covers, hook phases those stages run).
CHECKPOINTS = checkpoints()
TOOL_PACKAGES = ["debootstrap", "e2fsprogs", "fdisk", "dosfstools", "mtools", "grub-common",
                 "grub-pc-bin", "grub-efi-amd64-bin", "qemu-utils", "tar", "zstd"]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def tree_digest(root: Path, skip: frozenset[str] = frozenset()) -> str:
    """Names, executable bits and contents of every file below `root` (symlinks by target).

    `skip`: names of top-level directories left out."""
    entries: list[tuple[str, object, str]] = []
    for dirpath, dirs, files in os.walk(root):
        if Path(dirpath) == root:
            dirs[:] = [d for d in dirs if d not in skip]
        dirs.sort()
        for name in sorted(files):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                entries.append((rel, "link", os.readlink(path)))
            else:
                entries.append((rel, os.access(path, os.X_OK), sha256_file(path)))
    return _digest(entries)


@functools.cache
def code_digest() -> str:
    """The builder's own Python code (not the boot-test harness): a code change is a new cache."""
    package = Path(str(resources.files("builder")))
    files = sorted(p for p in package.rglob("*.py") if "verify" not in p.relative_to(package).parts)
    return _digest([(str(p.relative_to(package)), sha256_file(p)) for p in files])


@functools.cache
def toolchain_id() -> str:
    """The tools that write the image: the builder image's ID, or this host's package versions."""
    image = os.environ.get("TROVE_BUILDER_IMAGE_ID")
    if image:
        return image
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *TOOL_PACKAGES],
                         capture_output=True, text=True)
    return out.stdout


def rendered_files(context: dict[str, Any], stage: str) -> list[tuple[str, str, str, str]]:
    """(path, mode, owner, content digest) of every guest file `stage` writes, as it would write them."""
    return [(path, mode, owner, hashlib.sha256(content.encode()).hexdigest())
            for path, mode, owner, content in stage_files(stage, context)]


def hooks_digest(hooks_dir: Path | None, phases: tuple[str, ...]) -> str | None:
    """The hooks of `phases` (None when there are none, so an empty hooks dir changes nothing)."""
    if hooks_dir is None:
        return None
    parts: dict[str, Any] = {}
    for phase in phases:
        if not hooks.hooks_for(hooks_dir, phase):
            continue
        if hooks.PHASES[phase] == "host":
            # Host-side hooks may read files kept beside them: all of the dir but other phases counts.
            parts[phase] = tree_digest(hooks_dir, skip=frozenset(hooks.PHASES) - {phase})
        else:
            parts[phase] = tree_digest(hooks_dir / phase)
    return _digest(parts) if parts else None


def _optional_file(path: Path | None) -> str | None:
    return sha256_file(path) if path is not None and path.is_file() else None


def _agent_source(source: str | None) -> Any:
    """A local path's content counts, not its name; a requirement string counts as written."""
    if source and Path(source).exists():
        path = Path(source)
        return tree_digest(path) if path.is_dir() else sha256_file(path)
    return source


def _locked(ctx, part: str) -> str | None:
    """A locked build's apt or python part: the stages before the agent read only the apt files, so a
    lock that differs in its Python files alone (another agent version) reuses their checkpoints."""
    return _digest(ctx.replay.lock.data[part]) if ctx.replay is not None else None


def stage_inputs(ctx) -> dict[str, dict[str, Any]]:
    """What each checkpoint's stages read (the JSON behind each key, shown by `cache ls --verbose`)."""
    spec, prof = ctx.spec, ctx.profile
    context = ctx.template_context()
    return {
        "bootstrap": {
            "os": spec.os, "release": spec.release, "mirror": spec.mirror or prof.mirror, "lock": _locked(ctx, "apt"),
            "profile": {k: prof.data.get(k) for k in ("arch", "variant", "components", "keyring",
                                                       "bootstrap_tool", "suites", "security_suite",
                                                       "security_mirror")},
            "files": rendered_files(context, "bootstrap"),
        },
        "system": {
            "hooks": hooks_digest(spec.hooks_dir, CHECKPOINTS["system"][1]),
            "profile": prof.data,
            "guest_user": spec.guest_user, "dev_mode": spec.dev_mode, "docker_source": spec.docker_source,
            "files": rendered_files(context, "system"),
        },
        "agent": {
            "agent_version": spec.resolved_agent_version, "agent_source": _agent_source(spec.agent_source),
            "pip_index_url": spec.pip_index_url, "dev_ssh_key": _optional_file(spec.dev_ssh_key),
            "lock": _locked(ctx, "python"),
            "files": rendered_files(context, "agent"),
        },
        "image": {
            "hooks": hooks_digest(spec.hooks_dir, CHECKPOINTS["image"][1]),
            "identity": spec.image_identity, "lock": spec.lock_digest,  # the preloaded archives' digests included
        } | ({"preload_files": rendered_files(context, "preload")} if spec.preload_images else {}),
    }


def checkpoint_keys(ctx) -> dict[str, str]:
    """Checkpoint name -> key; each key chains the previous one."""
    base = {"code": code_digest(), "tools": toolchain_id(), "source_date_epoch": ctx.spec.source_date_epoch}
    keys, previous = {}, _digest(base)
    for name, inputs in stage_inputs(ctx).items():
        previous = _digest({"previous": previous, "checkpoint": name, "inputs": inputs})
        keys[name] = previous
    return keys
