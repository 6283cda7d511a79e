"""Where two raw disk files differ, as byte runs, reading only what either file holds.

Holes (sparse zeros) are found with SEEK_DATA/SEEK_HOLE, so a 5 GiB disk with 1.5 GiB of data
costs 1.5 GiB of reads. Chunks are compared whole, and only differing chunks sector by sector.
"""

from __future__ import annotations

import os
from pathlib import Path

CHUNK = 1 << 20
SECTOR = 512


def data_runs(path: Path) -> list[tuple[int, int]]:
    """[start, end) runs that hold data (everything if the file system cannot tell)."""
    size = path.stat().st_size
    runs = []
    with open(path, "rb") as fh:
        fd, pos = fh.fileno(), 0
        try:
            while pos < size:
                try:
                    start = os.lseek(fd, pos, os.SEEK_DATA)
                except OSError:  # ENXIO: only a hole is left
                    break
                end = os.lseek(fd, start, os.SEEK_HOLE)
                runs.append((start, end))
                pos = end
        except (AttributeError, OSError):
            return [(0, size)]
    return runs


def _union(runs: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Merge runs widened to whole chunks and clipped to size."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(runs):
        start, end = start - start % CHUNK, min(size, -(-end // CHUNK) * CHUNK)
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif start < end:
            merged.append((start, end))
    return merged


def _read(fh, offset: int, length: int) -> bytes:
    data = os.pread(fh.fileno(), length, offset)
    return data.ljust(length, b"\0")  # past the end of the shorter file reads as zeros


def differing_runs(a: Path, b: Path) -> list[tuple[int, int]]:
    """[start, end) byte runs, sector-aligned and merged, where a and b differ (the shorter
    file counts as zero-filled up to the longer one's size)."""
    size = max(a.stat().st_size, b.stat().st_size)
    runs: list[tuple[int, int]] = []
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for start, end in _union(data_runs(a) + data_runs(b), size):
            for pos in range(start, end, CHUNK):
                length = min(CHUNK, end - pos)
                da, db = _read(fa, pos, length), _read(fb, pos, length)
                if da == db:
                    continue
                va, vb = memoryview(da), memoryview(db)
                for off in range(0, length, SECTOR):
                    if va[off:off + SECTOR] != vb[off:off + SECTOR]:
                        s, e = pos + off, pos + min(off + SECTOR, length)
                        if runs and runs[-1][1] == s:
                            runs[-1] = (runs[-1][0], e)
                        else:
                            runs.append((s, e))
    return runs


def overlap(runs: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """The parts of runs inside [start, end)."""
    return [(max(s, start), min(e, end)) for s, e in runs if s < end and e > start]
