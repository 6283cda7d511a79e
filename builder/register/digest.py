"""The image file's digests, read once: sha256 (the manifest's), md5 (openstacksdk's owner_specified
properties) and whatever Glance reports as os_hash_algo (sha512 unless the cloud configures another)."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 4 << 20


def file_digests(path: Path, algorithms: tuple[str, ...] = ("sha256", "sha512", "md5")) -> dict[str, str]:
    hashers = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def digest_with(path: Path, algorithm: str, known: dict[str, str]) -> str:
    """`path`'s digest with `algorithm`, from `known` when already computed."""
    if algorithm not in known:
        try:
            known.update(file_digests(path, (algorithm,)))
        except ValueError:  # hashlib does not know it
            raise ValueError(f"Glance hashes with '{algorithm}', which this Python cannot compute") from None
    return known[algorithm]
