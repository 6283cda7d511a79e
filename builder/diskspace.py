"""Disk space: refuse to start a build that cannot fit, and name the full disk when one fills up anyway."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuilderError
from builder.spec import BuildSpec

NO_SPACE = "No space left on device"
SKIP_ENV = "TROVE_BUILDER_SKIP_SPACE_CHECK"
GIB = 2**30


@dataclass
class Place:
    """Somewhere a build writes: what it is, where (as this process sees it and as the operator does)."""

    role: str
    path: Path
    shown: str
    need: int = 0  # bytes, from the profile's space_mib


def default_work_dir(spec: BuildSpec) -> Path:
    return spec.work_dir or spec.cache_dir / "work"


def places(spec: BuildSpec, work_dir: Path | None = None) -> list[Place]:
    """The build's places with the profile's estimate for each (release profiles may override it)."""
    mib = spec.profile.space_mib
    shown_cache = os.environ.get("TROVE_BUILDER_CACHE_SHOWN_AS")
    shown_output = os.environ.get("TROVE_BUILDER_OUTPUT_SHOWN_AS")
    shown_work = os.environ.get("TROVE_BUILDER_WORK_SHOWN_AS")
    work = work_dir or default_work_dir(spec)

    def shown(path: Path, inner: Path, outer: str | None) -> str:
        if outer and path.is_relative_to(inner):
            return str(Path(outer) / path.relative_to(inner))
        return str(path)

    if spec.work_dir and shown_work:
        work_shown = shown(work, spec.work_dir, shown_work)
    else:
        work_shown = shown(work, spec.cache_dir, shown_cache)
    return [
        Place("work dir", work, work_shown, mib["work"] * 2**20),
        Place("cache", spec.cache_dir, shown(spec.cache_dir, spec.cache_dir, shown_cache), mib["cache"] * 2**20),
        Place("output", spec.output.parent, str(Path(shown_output).parent) if shown_output else str(spec.output.parent),
              mib[f"output_{spec.fmt}"] * 2**20),
    ]


def _existing(path: Path) -> Path:
    """The path itself or its nearest existing parent (the cache or work dir may not exist yet)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    st = os.statvfs(_existing(path))
    return st.f_bavail * st.f_frsize


def check(spec: BuildSpec) -> None:
    """Raise one line if a filesystem the build writes to has less free space than the estimate."""
    if os.environ.get(SKIP_ENV):
        return
    by_fs: dict[int, list[Place]] = {}
    for place in places(spec):
        by_fs.setdefault(os.stat(_existing(place.path)).st_dev, []).append(place)
    for group in by_fs.values():
        need = sum(p.need for p in group)
        free = free_bytes(group[0].path)
        if free < need:
            parts = " + ".join(f"{p.role} {p.need / GIB:.1f}" for p in group)
            raise BuilderError(
                f"not enough free space in {group[0].shown}: {free / GIB:.1f} GiB free, a build needs about "
                f"{need / GIB:.1f} GiB there ({parts} GiB); free some space or put --work-dir/--cache-dir/the "
                f"output elsewhere ({SKIP_ENV}=1 skips this check)")


def _fullest(candidates: list[Place], filename: str | None) -> Place:
    """The place a failed write went to: the one holding `filename`, else the one with least room."""
    if filename:
        for place in candidates:
            if Path(os.path.abspath(filename)).is_relative_to(place.path.absolute()):
                return place
    return min(candidates, key=lambda p: free_bytes(p.path))


@contextmanager
def out_of_space_as_error(candidates: list[Place]) -> Iterator[None]:
    """ENOSPC from Python or 'No space left on device' from a tool becomes one line naming the disk."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        place = _fullest(candidates, exc.filename)
        raise BuilderError(f"no space left on device in {place.shown} ({place.role})") from None
    except BuilderError as exc:
        if NO_SPACE not in str(exc):
            raise
        named = re.search(rf"(/[^\s:'\"]+)[^\n]*{NO_SPACE}", str(exc))  # 'unxz: /x/y: Write error: No space ...'
        place = _fullest(candidates, named.group(1) if named else None)
        raise BuilderError(f"no space left on device in {place.shown} ({place.role})") from None
