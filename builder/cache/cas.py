"""A content-addressed store of downloads (`<cache>/cas/sha256/<hex>`): what a lock names, by hash.

A file is only ever added after its sha256 was checked, under a temporary name then renamed, so
a reader finds either nothing or the whole, verified file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class HashMismatch(Exception):
    def __init__(self, expected: str, actual: str):
        super().__init__(f"sha256 {actual[:16]}… where {expected[:16]}… was expected")
        self.expected, self.actual = expected, actual


class ContentStore:
    def __init__(self, cache_dir: Path):
        self.root = cache_dir / "cas" / "sha256"

    def path(self, sha256: str) -> Path:
        return self.root / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def verify(self, sha256: str) -> bool:
        """Present and whole; a damaged file is removed so that the next fetch replaces it."""
        path = self.path(sha256)
        if not path.is_file():
            return False
        if sha256_file(path) == sha256:
            return True
        path.unlink(missing_ok=True)
        return False

    def add_file(self, source: Path, sha256: str) -> Path:
        """Link (or copy) `source` in after checking its hash; HashMismatch if it is not that file."""
        actual = sha256_file(source)
        if actual != sha256:
            raise HashMismatch(sha256, actual)
        target = self.path(sha256)
        if target.is_file():
            return target
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{sha256}.tmp-{os.getpid()}")
        try:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def add_bytes(self, data: bytes, sha256: str | None = None) -> str:
        actual = hashlib.sha256(data).hexdigest()
        if sha256 is not None and actual != sha256:
            raise HashMismatch(sha256, actual)
        target = self.path(actual)
        if not target.is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{actual}.tmp-{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return actual

    def new_temp(self, sha256: str) -> Path:
        """Where a download goes before add_file checks it (same filesystem: a link, not a copy)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f".{sha256}.download-{os.getpid()}"
