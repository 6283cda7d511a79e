"""Read a built image without mounting it: qemu-img to raw, the GPT from sfdisk, ext4 via debugfs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuilderError, UsageError


@dataclass
class Entry:
    path: str
    kind: str  # regular, directory, symlink, ...
    mode: int
    uid: int
    gid: int
    link: str | None = None


class Image:
    """A read-only view of an image's root filesystem (context manager: cleans its temp copy)."""

    def __init__(self, image: Path):
        self.image = Path(image)
        self._tmp: Path | None = None
        self._raw: Path | None = None
        self.partitions: list[dict] = []
        self.root_offset = 0

    def __enter__(self) -> Image:
        if shutil.which("debugfs") is None:
            raise BuilderError("reading an image needs debugfs (Debian package e2fsprogs)")
        if not self.image.is_file():
            raise UsageError(f"no image at {self.image}")
        self._tmp = Path(tempfile.mkdtemp(prefix="trove-builder-inspect-"))
        self._raw = self._tmp / "disk.raw"
        out = subprocess.run(["qemu-img", "convert", "-O", "raw", str(self.image), str(self.raw)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            self.__exit__(None, None, None)
            raise UsageError(f"qemu-img cannot read {self.image}: {out.stderr.strip()}")
        listed = subprocess.run(["sfdisk", "--json", str(self.raw)], capture_output=True, text=True)
        table = json.loads(listed.stdout)["partitiontable"] if listed.returncode == 0 and listed.stdout.strip() else {}
        if not table.get("partitions"):
            self.__exit__(None, None, None)
            raise UsageError(f"{self.image} has no partition table: not a disk image")
        self.table = table
        self.partitions = table.get("partitions", [])
        self.root_offset = self.partitions[-1]["start"] * table.get("sectorsize", 512)
        return self

    @property
    def raw(self) -> Path:
        """The raw copy of the image (while it is open)."""
        assert self._raw is not None, "read an Image inside `with Image(path) as img`"
        return self._raw

    def __exit__(self, *exc) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @property
    def _device(self) -> str:
        return f"{self.raw}?offset={self.root_offset}"

    def debugfs(self, request: str, offset: int | None = None) -> str:
        """One debugfs request on the root filesystem (or the ext4 at byte offset)."""
        device = self._device if offset is None else f"{self.raw}?offset={offset}"
        out = subprocess.run(["debugfs", "-R", request, device], capture_output=True, text=True)
        return out.stdout

    def superblock(self, offset: int | None = None) -> dict[str, str]:
        fields = {}
        for line in self.debugfs("stats", offset).splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith(" "):
                fields[key.strip()] = value.strip()
            if line.startswith("Group "):
                break
        return fields

    def stat(self, path: str) -> Entry | None:
        text = self.debugfs(f'stat "{path}"')
        match = re.search(r"Type:\s+(\S+)\s+Mode:\s+(\d+)", text)
        if not match:
            return None
        ids = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", text)
        assert ids is not None, f"debugfs gave no owner for {path}"
        link = re.search(r'Fast link dest: "(.*)"', text)
        if match.group(1) == "symlink" and not link:
            link_text = self.read(path, follow=False)
            link = re.match(r"(.*)", link_text) if link_text else None
        return Entry(path, match.group(1), int(match.group(2), 8), int(ids.group(1)), int(ids.group(2)),
                     link.group(1) if link else None)

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def read(self, path: str, follow: bool = True) -> str | None:
        if follow:
            entry = self.stat(path)
            if entry is None:
                return None
            if entry.kind == "symlink" and entry.link:
                target = entry.link if entry.link.startswith("/") else str(Path(path).parent / entry.link)
                return self.read(target)
        out = subprocess.run(["debugfs", "-R", f'cat "{path}"', self._device], capture_output=True)
        return out.stdout.decode(errors="replace")

    def listdir(self, path: str) -> list[str]:
        names = []
        for line in self.debugfs(f'ls -p "{path}"').splitlines():
            parts = line.strip("/").split("/")
            if len(parts) >= 5 and parts[4] not in (".", ".."):
                names.append(parts[4])
        return names

    def extract(self, path: str, dest: Path) -> Path:
        """Copy a directory tree out of the image (for scans that need every file)."""
        dest.mkdir(parents=True, exist_ok=True)
        subprocess.run(["debugfs", "-R", f'rdump "{path}" "{dest}"', self._device],
                       capture_output=True, check=True)
        return dest / Path(path).name
