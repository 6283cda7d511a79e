"""Lock files: every input of a build resolved to exact versions and sha256 (JSON, sorted, diffable).

A lock names the target (OS, release, mode, agent), the SOURCE_DATE_EPOCH, the builder image, the
signed apt indexes and every .deb the build installed (including build-only packages it purged
again), and every Python file the agent venv was made from. `build --lock` installs exactly that.
A lock written by a build (IMAGE.lock.json) also says how its disk was written ("image": format,
compression, size), which a build from it takes unless told otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import UsageError

FORMAT = 1
# Spec fields a lock fixes (they decide which packages are installed).
TARGET_FIELDS = ("os", "release", "dev_mode", "guest_user", "agent_version", "agent_source", "mirror",
                 "docker_source", "pip_index_url", "controller_user", "controller_path", "sync_logs")
HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Artifact:
    """One file a build needs: where it comes from, its hash, and what to call it in messages."""

    kind: str  # "index", "deb", "python"
    url: str
    sha256: str
    label: str
    filename: str = ""


class Lock:
    def __init__(self, data: dict[str, Any], path: Path | None = None):
        self.data = data
        self.path = path

    # -- reading -------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> Lock:
        """Read and check a lock file; anything wrong is one UsageError line naming the file."""
        if not path.is_file() or not os.access(path, os.R_OK):
            raise UsageError(f"lock file {path} is not a readable file")
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(f"lock file {path} is not valid JSON ({exc})") from None
        lock = cls(data, path)
        problem = lock._problem()
        if problem:
            raise UsageError(f"lock file {path}: {problem}")
        return lock

    def _problem(self) -> str | None:
        data = self.data
        if not isinstance(data, dict) or data.get("trove_builder_lock") != FORMAT:
            return f"not a trove-builder lock (format {FORMAT} expected)"
        target = data.get("target")
        if not isinstance(target, dict) or not all(k in target for k in TARGET_FIELDS):
            return "its 'target' section is missing or incomplete"
        if not isinstance(data.get("source_date_epoch"), int):
            return "'source_date_epoch' must be a whole number"
        try:
            artifacts = list(self.artifacts())
        except (KeyError, TypeError, AttributeError) as exc:
            return f"an entry lacks a field ({exc})"
        if not any(a.kind == "deb" for a in artifacts):
            return "it locks no packages"
        for image in data.get("preload_images", []):
            if not isinstance(image, dict) or not HEX64.fullmatch(str(image.get("sha256"))):
                return f"preload image entry {image!r} has no sha256"
        for art in artifacts:
            if not HEX64.fullmatch(str(art.sha256)):
                return f"{art.label}: '{art.sha256}' is not a sha256"
            if not art.url.startswith(("http://", "https://")):
                return f"{art.label}: '{art.url}' is not an http(s) URL"
        return None

    @property
    def target(self) -> dict[str, Any]:
        return self.data["target"]

    @property
    def source_date_epoch(self) -> int:
        return self.data["source_date_epoch"]

    @property
    def image(self) -> dict[str, Any]:
        """format, compression, size_gb of the image that wrote this lock ({} for `trove-builder lock`'s)."""
        return self.data.get("image") or {}

    @property
    def preload_digests(self) -> list[str]:
        """sha256 of each --preload-image archive the locked build was given (sorted)."""
        return sorted(image["sha256"] for image in self.data.get("preload_images", []))

    def check_preload(self, given: list[str]) -> None:
        """The archives given to `build --lock` must be exactly those the lock names."""
        want, have = self.preload_digests, sorted(given)
        if want != have:
            missing = [d[:16] for d in want if d not in have]
            extra = [d[:16] for d in have if d not in want]
            parts = ([f"--preload-image archives it names are missing (sha256 {', '.join(missing)}...)"] if missing
                     else []) + ([f"archives it does not name were given (sha256 {', '.join(extra)}...)"] if extra
                                 else [])
            raise UsageError(f"lock file {self.path}: {'; '.join(parts)}")

    @property
    def packages(self) -> list[dict[str, Any]]:
        return self.data["apt"]["packages"]

    @property
    def python_files(self) -> list[dict[str, Any]]:
        return self.data["python"]["files"]

    def artifacts(self) -> Iterator[Artifact]:
        for index in self.data["apt"]["indexes"]:
            yield Artifact("index", index.get("fetch_url") or index["url"], index["sha256"], f"index {index['url']}")
        for pkg in self.data["apt"]["packages"]:
            yield Artifact("deb", pkg["url"], pkg["sha256"], f"package {pkg['name']} {pkg['version']} ({pkg['arch']})")
        for item in self.data["python"]["files"]:
            yield Artifact("python", item["url"], item["sha256"],
                           f"python package {item['name']} {item['version']} ({item['filename']})", item["filename"])

    @property
    def digest(self) -> str:
        """What the image depends on: the lock's content, not its file name or formatting."""
        return hashlib.sha256(json.dumps(self.data, sort_keys=True).encode()).hexdigest()

    # -- writing -------------------------------------------------------------------------------------
    def dump(self) -> str:
        return json.dumps(self.data, indent=1, sort_keys=True) + "\n"

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            tmp.write_text(self.dump())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def unlockable(spec) -> str | None:
    """Why a build with these inputs cannot be locked (None: it can): what the replay cannot serve."""
    mirror = spec.mirror or spec.profile.mirror
    if not mirror.startswith("http://"):
        return f"mirror {mirror}: locks replay apt through an http proxy; use an http:// mirror"
    if spec.docker_source == "docker-ce":
        return "--docker-source docker-ce: Docker's own repository cannot be locked"
    source = spec.agent_source
    if source and (source.startswith((".", "/")) or Path(source).exists()):
        return f"--agent-source {source} is a local path: only releases on a package index can be locked"
    return None


def normalize_name(name: str) -> str:
    """A Python distribution's name as PEP 503 compares it (oslo.config == oslo-config == Oslo_Config)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def default_lock_path(output: Path) -> Path:
    """images/trove-guest-ubuntu-noble.qcow2 -> images/trove-guest-ubuntu-noble.lock.json"""
    return output.with_name(output.stem + ".lock.json")
