"""Build-host leaks: no file in an image may name the host's paths or names (work, cache, output dir, host).

Every regular file is read whole (a bookworm image: 33k files, 1.1 GiB, ~8 s), as are symlink targets
and the paths themselves. A string that starts or ends with a letter or digit must stand alone there,
so a host called 'vm' is not found in 'vmlinuz'."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from builder.image.reader import Image

CHUNK = 16 * 2**20


def pattern(text: str) -> re.Pattern[bytes]:
    raw = text.encode()
    return re.compile((rb"(?<![A-Za-z0-9_])" if raw[:1].isalnum() else b"") + re.escape(raw)
                      + (rb"(?![A-Za-z0-9_])" if raw[-1:].isalnum() else b""))


def _mask(data: bytes, allow: list[bytes]) -> bytes:
    for text in allow:
        data = data.replace(text, b"\0" * len(text))
    return data


def _file_hits(path: str, patterns: dict[str, re.Pattern[bytes]], allow: list[bytes], keep: int) -> set[str]:
    """Forbidden strings in one file, read in chunks that overlap so no match is cut in two."""
    found: set[str] = set()
    tail = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            data = _mask(tail + chunk, allow)
            found.update(s for s, pat in patterns.items()
                         if s not in found and s.encode() in data and pat.search(data))
            tail = (tail + chunk)[-keep:]
    return found


def scan_tree(root: Path, forbid: list[str], allow: Sequence[str] = ()) -> dict[str, list[str]]:
    """Forbidden string -> the paths (as in the image) whose contents, name or link target hold it.

    `allow`: strings masked out first (a dev image's controller user and path, baked in by design)."""
    forbid = [f for f in dict.fromkeys(forbid) if f]
    patterns = {text: pattern(text) for text in forbid}
    allowed = sorted((a.encode() for a in allow if a), key=len, reverse=True)
    keep = max([len(f.encode()) for f in forbid] + [len(a) for a in allowed] + [1]) + 1
    hits: dict[str, list[str]] = {text: [] for text in forbid}
    root_s = str(root)
    for dirpath, dirnames, filenames in os.walk(root_s):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            shown = full[len(root_s):]
            found = {s for s, pat in patterns.items() if pat.search(_mask(shown.encode(), allowed))}
            if os.path.islink(full):
                target = _mask(os.fsencode(os.readlink(full)), allowed)
                found |= {s for s, pat in patterns.items() if pat.search(target)}
            elif name in filenames and os.path.isfile(full):
                found |= _file_hits(full, patterns, allowed, keep)
            for text in found:
                hits[text].append(shown)
    return {text: sorted(paths) for text, paths in hits.items() if paths}


def scan_image(img: Image, forbid: list[str], allow: Sequence[str] = ()) -> dict[str, list[str]]:
    """Copy the image's root filesystem out (debugfs rdump, no mount) and scan it."""
    with tempfile.TemporaryDirectory(prefix="trove-builder-leaks-") as tmp:
        return scan_tree(img.extract("/", Path(tmp)), forbid, allow)


def summary(hits: dict[str, list[str]], shown: int = 3) -> str:
    """'STRING in N files (a, b, c, ...)' for each string found."""
    parts = []
    for text, paths in hits.items():
        more = ", ..." if len(paths) > shown else ""
        plural = "s" if len(paths) != 1 else ""
        parts.append(f"'{text}' in {len(paths)} file{plural} ({', '.join(paths[:shown])}{more})")
    return "; ".join(parts)
