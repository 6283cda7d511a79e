"""The stage cache: checkpoints of a build (rootfs tarballs, the finished image) kept under their input keys.

Each entry is a directory `<cache>/stages/<checkpoint>-<key>` holding one payload and meta.json (key,
payload sha256, the stage results the later stages need). Entries are written under a temporary name
and renamed into place, verified against their sha256 before every use (a corrupt entry is deleted and
rebuilt, never used), and pruned least-recently-used first to stay within a size limit.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.cache.cas import sha256_file
from builder.errors import UsageError
from builder.proc import Log, run

META = "meta.json"
# tar keeps what a root filesystem needs: owners by number, modes, xattrs (file capabilities), ACLs,
# hard links, device nodes and holes.
TAR_KEEP = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "--sparse"]
COMPRESS = "zstd -T0 -1"  # fast: a checkpoint is written on every cold build


def parse_size(text: str) -> int:
    """'20G', '512M', '1.5T' or plain bytes -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise UsageError(f"'{text}' is not a size (examples: 20G, 512M, 1073741824)")
    scale = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[match.group(2).upper()]
    return int(float(match.group(1)) * scale)


@dataclass
class Entry:
    path: Path
    meta: dict[str, Any]

    @property
    def checkpoint(self) -> str:
        return self.meta["checkpoint"]

    @property
    def payload(self) -> Path:
        return self.path / self.meta["payload"]

    @property
    def bytes(self) -> int:
        return self.meta.get("bytes", 0)

    @property
    def last_used(self) -> float:
        stamp = self.path / "last-used"
        return stamp.stat().st_mtime if stamp.exists() else self.meta.get("created", 0)

    @property
    def results(self) -> dict[str, Any]:
        return self.meta.get("results", {})


class StageCache:
    def __init__(self, cache_dir: Path, log: Log | None = None):
        self.root = cache_dir / "stages"
        self.log = log or Log(None)

    # -- locking: readers share, pruning excludes them ------------------------------------------
    @contextmanager
    def _lock(self, exclusive: bool) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def entry_dir(self, checkpoint: str, key: str) -> Path:
        return self.root / f"{checkpoint}-{key[:24]}"

    def _read(self, path: Path) -> Entry | None:
        try:
            return Entry(path, json.loads((path / META).read_text()))
        except (OSError, ValueError, KeyError):
            return None

    def entries(self) -> list[Entry]:
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.iterdir()):
            if path.is_dir() and not path.name.startswith("."):
                entry = self._read(path)
                if entry is not None:
                    found.append(entry)
        return found

    # -- use ------------------------------------------------------------------------------------
    def lookup(self, checkpoint: str, key: str) -> Entry | None:
        """The verified entry for `key`, or None. A damaged entry is removed so that it is rebuilt."""
        path = self.entry_dir(checkpoint, key)
        if not path.is_dir():
            return None
        with self._lock(exclusive=False):
            entry = self._read(path)
            problem = None
            if entry is None:
                problem = "unreadable meta.json"
            elif entry.meta.get("key") != key:
                problem = "key mismatch"
            elif not entry.payload.is_file():
                problem = "payload missing"
            elif sha256_file(entry.payload) != entry.meta.get("sha256"):
                problem = "payload checksum mismatch"
        if problem:
            self.log.write(f"stage cache: {path.name}: {problem}; rebuilding it\n")
            print(f"      cache entry {path.name} is damaged ({problem}): rebuilding it", flush=True)
            self._remove(path)
            return None
        (path / "last-used").touch()
        return entry

    def restore_rootfs(self, entry: Entry, rootfs: Path) -> None:
        rootfs.mkdir(parents=True)
        with self._lock(exclusive=False):
            run(["tar", "--extract", "--file", entry.payload, "--use-compress-program", "zstd",
                 "--preserve-permissions", "--same-owner", *TAR_KEEP, "--directory", rootfs], self.log)

    def restore_file(self, entry: Entry, dest: Path) -> None:
        with self._lock(exclusive=False):
            run(["cp", "--sparse=always", "--reflink=auto", entry.payload, dest], self.log)

    # -- store ----------------------------------------------------------------------------------
    def save_rootfs(self, checkpoint: str, key: str, rootfs: Path, results: dict, inputs: Any = None) -> Entry | None:
        def write(tmp: Path) -> str:
            payload = tmp / "rootfs.tar.zst"
            run(["tar", "--create", "--file", payload, "--use-compress-program", COMPRESS, "--sort=name",
                 *TAR_KEEP, "--directory", rootfs, "."], self.log)
            return payload.name
        return self._store(checkpoint, key, write, results, inputs)

    def save_file(self, checkpoint: str, key: str, source: Path, results: dict, inputs: Any = None) -> Entry | None:
        def write(tmp: Path) -> str:
            payload = tmp / f"image{source.suffix}"
            run(["cp", "--sparse=always", "--reflink=auto", source, payload], self.log)
            return payload.name
        return self._store(checkpoint, key, write, results, inputs)

    def _store(self, checkpoint, key, write, results, inputs) -> Entry | None:
        final = self.entry_dir(checkpoint, key)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{checkpoint}-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
        writing = open(tmp / ".writing", "w")
        fcntl.flock(writing, fcntl.LOCK_EX)  # sweep() leaves alone what a live build is writing
        try:
            payload = write(tmp)
            meta = {"checkpoint": checkpoint, "key": key, "payload": payload,
                    "sha256": sha256_file(tmp / payload), "bytes": (tmp / payload).stat().st_size,
                    "created": time.time(), "results": results, "inputs": inputs}
            (tmp / META).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n")
            with self._lock(exclusive=False):
                if final.exists():  # another build stored the same key meanwhile: theirs is as good
                    return self._read(final)
                os.rename(tmp, final)
            return Entry(final, meta)
        finally:
            writing.close()
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    # -- housekeeping ---------------------------------------------------------------------------
    def _remove(self, path: Path) -> None:
        doomed = path.with_name(f".del-{path.name}-{uuid.uuid4().hex[:6]}")
        try:
            os.rename(path, doomed)  # gone from lookups at once, even if the rm is interrupted
        except OSError:
            return
        shutil.rmtree(doomed, ignore_errors=True)

    def sweep(self) -> None:
        """Remove temporaries left by a build that was killed while writing an entry."""
        if not self.root.is_dir():
            return
        for path in self.root.iterdir():
            if path.name.startswith(".del-"):
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.startswith(".tmp-"):
                try:
                    with open(path / ".writing", "a") as fh:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a build is writing it right now
                except OSError:
                    pass
                shutil.rmtree(path, ignore_errors=True)

    def total_bytes(self) -> int:
        return sum(e.bytes for e in self.entries())

    def prune(self, limit: int) -> list[Entry]:
        """Drop least-recently-used entries until the cache fits in `limit` bytes; return them."""
        removed = []
        with self._lock(exclusive=True):
            entries = sorted(self.entries(), key=lambda e: e.last_used, reverse=True)
            kept = 0
            for entry in entries:
                if kept + entry.bytes <= limit:
                    kept += entry.bytes
                else:
                    self._remove(entry.path)
                    removed.append(entry)
        return removed

    def clear(self) -> list[Entry]:
        return self.prune(0)
