"""Docker image archives (`docker save` format): read what one holds, and write one from a root tar.

Reading needs no Docker engine: the build host only checks an archive and copies it into the guest,
where the guest's own dockerd loads it. Writing exists so that `make datastore-image` gives the same
bytes for the same root tar (`docker save` stamps layer times and orders entries as it likes); the
format is the few JSON files `docker load` reads, which no maintained Python library writes.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.cache.cas import sha256_file
from builder.errors import UsageError


@dataclass(frozen=True)
class ImageArchive:
    """One archive given to `--preload-image`: its file digest and the image names it carries."""

    path: Path
    sha256: str
    repo_tags: tuple[str, ...]
    bytes: int

    @property
    def guest_name(self) -> str:
        """Its file name in the guest: content-addressed, so two archives never collide."""
        return f"{self.sha256[:16]}.tar"

    def describe(self, guest_dir: str) -> dict[str, Any]:
        """What the manifest records (no host path: the same archive anywhere gives the same record)."""
        return {"sha256": self.sha256, "repo_tags": list(self.repo_tags), "bytes": self.bytes,
                "guest_path": f"{guest_dir}/{self.guest_name}"}


def read_archive(path: Path) -> ImageArchive:
    """Check that `path` is a `docker save` archive whose images have names; UsageError if not."""
    if not path.is_file():
        raise UsageError(f"preload image {path} is not a file")
    stat = path.stat()
    return _read_archive(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _read_archive(path: Path, size: int, mtime_ns: int) -> ImageArchive:
    """read_archive, once per file version (the spec asks for the digests more than once)."""
    try:
        with tarfile.open(path) as tar:
            names = set(tar.getnames())
            member = tar.extractfile("manifest.json") if "manifest.json" in names else None
            if member is None:
                kind = "an OCI layout without manifest.json" if "index.json" in names else "not an image archive"
                raise UsageError(f"preload image {path}: {kind} (use `docker save` or `make datastore-image`)")
            manifest = json.load(member)
    except (tarfile.TarError, OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"preload image {path} cannot be read as a tar archive: {exc}") from None
    tags = tuple(tag for entry in manifest for tag in (entry.get("RepoTags") or []))
    if not tags:
        raise UsageError(f"preload image {path} names no image (RepoTags): `docker save NAME:TAG`, not an image ID")
    return ImageArchive(path=path, sha256=sha256_file(path), repo_tags=tags, bytes=path.stat().st_size)


def _member(name: str, size: int, epoch: int, mode: int = 0o644, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.type = size, epoch, mode, kind
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_archive(rootfs_tar: Path, image: dict[str, Any], out: Path, epoch: int) -> str:
    """Write a one-layer `docker save` archive of `rootfs_tar` to `out`; return the image ID.

    `image`: name, tag, entrypoint, cmd, env, exposed_ports, stop_signal (containerfiles/datastore/*/image.yaml)."""
    layer_digest = sha256_file(rootfs_tar)
    created = _iso(epoch)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "Entrypoint": image["entrypoint"],
            "Cmd": image["cmd"],
            "Env": image["env"],
            "ExposedPorts": {port: {} for port in image.get("exposed_ports", [])},
            "StopSignal": image.get("stop_signal", "SIGTERM"),
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created": created, "created_by": "trove-builder make datastore-image (mmdebstrap)"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    image_id = hashlib.sha256(config_bytes).hexdigest()
    tag = f"{image['name']}:{image['tag']}"
    manifest = [{"Config": f"{image_id}.json", "RepoTags": [tag], "Layers": [f"{layer_digest}/layer.tar"]}]
    repositories = {image["name"]: {image["tag"]: layer_digest}}
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_member(f"{layer_digest}/", 0, epoch, 0o755, tarfile.DIRTYPE))
        with rootfs_tar.open("rb") as fh:
            tar.addfile(_member(f"{layer_digest}/layer.tar", rootfs_tar.stat().st_size, epoch), fh)
        for name, data in ((f"{image_id}.json", config_bytes),
                           ("manifest.json", json.dumps(manifest, sort_keys=True).encode()),
                           ("repositories", json.dumps(repositories, sort_keys=True).encode())):
            tar.addfile(_member(name, len(data), epoch), io.BytesIO(data))
    return image_id


def _iso(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
