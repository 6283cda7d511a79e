"""`trove-builder verify`: rebuild an image from its lock and say whether the bytes are the same.

The lock beside an image (IMAGE.lock.json, written by its build) names every input; the rebuild is
`build --lock --offline` into a scratch directory of the cache: no network (what the content store
lacks is fetched first, when online), and no checkpoint restored, since a cached image would only
repeat an earlier answer. The rebuild does store its checkpoints: `--reuse-checkpoints` then lets a
later verify from a lock with the same apt files (another agent version, say) restore the stages
before the agent, which proves less and says so. Different bytes are explained by `diff`'s summary.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import defaults
from builder.cache.cas import ContentStore, sha256_file
from builder.errors import BuilderError, UsageError
from builder.image import qemu_img
from builder.lock.lockfile import Lock
from builder.preload.archive import read_archive
from builder.publish import lockfile_path
from builder.spec import BuildSpec, host_ca_bundle_path


@dataclass
class Verdict:
    reproduced: bool
    image_sha256: str
    rebuilt_sha256: str
    report: dict[str, Any] | None  # diff_images' report when the bytes differ


def rebuild_spec(lock: Lock, lock_file: Path, image_info: dict[str, Any], output: Path, **options: Any) -> BuildSpec:
    """The offline build from `lock` that should give the image back.

    How the disk was written (format, compression, size) comes from the lock when its build wrote it,
    else from the image itself (`qemu-img info`); `options` are the runtime's (builder image, cache)."""
    target, image = lock.target, lock.image
    fmt = image.get("format") or ("raw" if image_info.get("format") == "raw" else "qcow2")
    size = image.get("size_gb") or image_info["virtual-size"] // 2**30
    return BuildSpec(
        os=target["os"], release=target["release"], dev_mode=target["dev_mode"], guest_user=target["guest_user"],
        output=output, fmt=fmt, size_gb=size, agent_version=target["agent_version"],
        agent_source=target["agent_source"], mirror=target["mirror"], docker_source=target["docker_source"],
        pip_index_url=target["pip_index_url"], controller_user=target["controller_user"],
        controller_path=target["controller_path"], sync_logs=target["sync_logs"],
        source_date_epoch=lock.source_date_epoch, compression=image.get("compression"),
        lock_file=lock_file, lock_digest=lock.digest, offline=True, **options)


def compare(image: Path, rebuilt: Path) -> Verdict:
    """Same file bytes, or `diff`'s report of what differs."""
    ours, theirs = sha256_file(image), sha256_file(rebuilt)
    if ours == theirs:
        return Verdict(True, ours, theirs, None)
    from builder.image.diff import diff_images

    return Verdict(False, ours, theirs, diff_images(image, rebuilt))


def checked_inputs(image: Path, lock_file: Path | None, runtime: str, keep: Path | None) -> tuple[Lock, Path]:
    """The lock to rebuild `image` from (IMAGE.lock.json unless given), every input checked first."""
    if not image.is_file():
        raise UsageError(f"no image at {image}")
    if lock_file is None:
        lock_file = lockfile_path(image)
        if not lock_file.exists():
            raise UsageError(f"no lock at {lock_file}: builds write IMAGE.lock.json beside the image; "
                             f"give --lock FILE")
    if runtime not in ("docker", "podman"):
        raise UsageError(f"verify rebuilds in a container without network: runtime docker or podman, not '{runtime}'")
    if keep is not None and (keep.exists() or not keep.parent.is_dir()):
        raise UsageError(f"--keep {keep}: give a new file in an existing directory")
    return Lock.load(lock_file), lock_file


def verify(image: Path, lock_file: Path | None, build: Callable[[BuildSpec], None], *, runtime: str,
           cache_dir: Path, builder_image: str | None, ca_bundle: Path | None, keep: Path | None,
           reuse_checkpoints: bool, **options: Any) -> bool:
    """Rebuild `image` from its lock with `build` (the CLI's runner) and print the verdict; True: reproduced."""
    lock, lock_file = checked_inputs(image, lock_file, runtime, keep)
    # Without the archives a preloaded image's lock names, the rebuild would be another image.
    lock.check_preload([read_archive(Path(path)).sha256 for path in options.get("preload_images") or []])
    info = qemu_img.info(image)
    store = ContentStore(cache_dir)
    from builder.lock.fetch import fetch, missing

    if missing(lock, store):
        try:
            fetch(lock, store, host_ca_bundle_path(ca_bundle), lambda line: print(line, file=sys.stderr))
        except BuilderError as exc:
            raise UsageError(f"cannot rebuild offline, a locked file is missing: {exc}") from None
    cache_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="verify-", dir=cache_dir))
    try:
        rebuilt = scratch / image.name
        spec = rebuild_spec(lock, lock_file, info, rebuilt, runtime=runtime, cache_dir=cache_dir,
                            builder_image=builder_image or lock.data.get("builder_image") or defaults.BUILDER_IMAGE,
                            ca_bundle=ca_bundle,
                            reuse_checkpoints=reuse_checkpoints, **options).validate()
        how = "restoring checkpoints of earlier rebuilds" if reuse_checkpoints else "without checkpoints"
        print(f"rebuilding {image.name} from {lock_file}, offline, {how}", file=sys.stderr)
        started = time.monotonic()
        build(spec)
        seconds = time.monotonic() - started
        verdict = compare(image, rebuilt)
        if keep is not None:
            shutil.move(rebuilt, keep)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if verdict.reproduced:
        print(f"reproduced: {image} sha256 {verdict.image_sha256} (rebuilt from {lock_file} in {seconds:.0f}s)")
        return True
    from builder.image.diffreport import render

    assert verdict.report is not None
    print(render(verdict.report))
    print(f"not reproduced: {image} sha256 {verdict.image_sha256}, rebuilt from {lock_file}: "
          f"{verdict.rebuilt_sha256}")
    return False
