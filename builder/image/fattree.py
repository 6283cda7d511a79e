"""Every file of a FAT filesystem (the ESP) inside a disk file, read with mtools: no mount.

`mcopy -s -m` copies the tree out (with FAT modification times) into a scratch directory that the
caller owns; `mattrib -/` lists every entry with its FAT attributes (archive, hidden, system, ...).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from builder.errors import BuilderError
from builder.image.ext4tree import Node

# FAT times carry no time zone: read them as UTC so the same bytes give the same numbers anywhere.
MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"}
_ATTRIB = re.compile(r"^(.*?)::(/.*)$")


class FatTree:
    """The files of the FAT filesystem at byte `offset` of the raw disk `raw`."""

    def __init__(self, raw: Path, offset: int, scratch: Path):
        if shutil.which("mcopy") is None:
            raise BuilderError("reading an ESP needs mtools (Debian package mtools)")
        self.image = f"{raw}@@{offset}"
        self.scratch = scratch
        self.nodes: dict[str, Node] = {}

    def _mtools(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*args[:1], "-i", self.image, *args[1:]], capture_output=True, text=True,
                              env={**os.environ, **MTOOLS_ENV})

    def boot_sector(self) -> dict[str, str]:
        """The boot sector's fields as minfo prints them (serial number, label, geometry)."""
        out = self._mtools("minfo", "::").stdout
        fields, started = {}, False
        for line in out.splitlines():
            started = started or line.startswith("bootsector information")
            key, sep, value = line.partition(":") if ": " in line else line.partition("=")
            if started and sep and key.strip():
                fields[key.strip()] = value.strip().strip('"')
        return fields

    def scan(self) -> FatTree:
        listing = self._mtools("mattrib", "-/", "::*")
        entries = {}
        for line in listing.stdout.splitlines():
            m = _ATTRIB.match(line)
            if m:
                entries[m.group(2)] = "".join(m.group(1).split())
        self.nodes["/"] = Node("/", 0, "directory", mode=None, uid=None, gid=None, size=None, links=None)
        if not entries:
            return self
        self.scratch.mkdir(parents=True, exist_ok=True)
        copied = self._mtools("mcopy", "-s", "-m", "-n", "-Q", "::*", f"{self.scratch}/")
        if copied.returncode != 0:
            raise BuilderError(f"mcopy cannot read the FAT filesystem at {self.image}: {copied.stderr.strip()}")
        for path, attrs in sorted(entries.items()):
            local = self.scratch / path.lstrip("/")
            if not os.path.lexists(local):
                raise BuilderError(f"mcopy did not copy {path} out of {self.image}")
            st = local.lstat()
            is_dir = local.is_dir()
            node = Node(path, 0, "directory" if is_dir else "regular", mode=None, uid=None, gid=None,
                        size=None if is_dir else st.st_size, links=None, flags=attrs)
            node.times["mtime"] = str(int(st.st_mtime))
            if not is_dir:
                with open(local, "rb") as fh:
                    node.sha256 = hashlib.file_digest(fh, "sha256").hexdigest()
            self.nodes[path] = node
        return self

    def local(self, path: str) -> Path:
        """Where a scanned file's bytes were copied (for diffoscope)."""
        return self.scratch / path.lstrip("/")

    def layout(self) -> list[tuple[int, int, str, str | None]]:
        """(first, last, what, path) sector runs: the FAT's own structures, then each directory's
        entries and each file's data (cluster chains from mshowfat)."""
        fields = self.boot_sector()
        try:
            reserved = int(fields["reserved (boot) sectors"])
            fats = int(fields["fats"])
            fat_len = int(fields.get("Big fatlen") or fields.get("sectors per fat") or 0)
            per_cluster = int(fields["cluster size"].split()[0])
            sector = int(fields["sector size"].split()[0])
            root_sectors = -(-int(fields.get("max available root directory slots", 0)) * 32 // sector)
        except (KeyError, ValueError):
            return []
        fat_end = reserved + fats * fat_len
        data = fat_end + root_sectors
        runs: list[tuple[int, int, str, str | None]] = [
                (0, reserved - 1, "boot sector and reserved sectors", None),
                (reserved, fat_end - 1, "allocation tables (FATs)", None)]
        if root_sectors:
            runs.append((fat_end, data - 1, "directory entries", "/"))
        paths = ["/", *(p for p in self.nodes if p != "/")]
        chains = self._mtools("mshowfat", *(f"::{p}" for p in paths)).stdout
        for line in chains.splitlines():
            path, _, listing = line.rpartition(" <")
            node = self.nodes.get(path[2:] or "/")
            if not path.startswith("::") or node is None:
                continue
            what = "directory entries" if node.kind == "directory" else "file data"
            for a, b in re.findall(r"(\d+)(?:-(\d+))?", listing.replace("> <", " ")):
                first, last = int(a), int(b or a)
                runs.append((data + (first - 2) * per_cluster, data + (last - 1) * per_cluster - 1, what, node.path))
        return runs
