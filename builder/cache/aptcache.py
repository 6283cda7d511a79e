"""Shared .deb downloads with per-build apt locks.

apt locks /var/cache/apt/archives while it works, so two builds bind-mounting one shared archive
dir would fail ("Could not get lock"). Each build therefore gets its own archive dir, seeded with
hard links to every .deb already downloaded for the release, and hands the .debs it downloaded back
to the shared dir (hard link, atomic, first one wins) when it ends. apt only ever moves complete,
hash-checked files into archives/, so whatever is handed back is whole.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from builder.context import BuildContext

# private dir -> its open, locked .owner file: held for the build's life, so sweep() can tell
# a live build's dir from one a killed build left.
_held: dict[Path, IO[str]] = {}


def shared_dir(cache_dir: Path, os_name: str, release: str) -> Path:
    return cache_dir / "apt" / f"{os_name}-{release}"


def private_dir(cache_dir: Path, work_dir: Path) -> Path:
    """On the cache's filesystem (hard links need that), removed with the build."""
    return cache_dir / "apt" / ".builds" / work_dir.name


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except FileExistsError:
        pass
    except OSError:
        tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
        shutil.copy2(src, tmp)
        try:
            os.link(tmp, dst)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)


def seed(shared: Path, private: Path) -> Path:
    """The build's own archive dir, holding links to every .deb downloaded before (idempotent)."""
    if private not in _held:
        (private / "partial").mkdir(parents=True, exist_ok=True)
        owner = open(private / ".owner", "a")
        fcntl.flock(owner, fcntl.LOCK_EX)
        _held[private] = owner
    if not (private / ".seeded").exists():
        shared.mkdir(parents=True, exist_ok=True)
        for deb in shared.glob("*.deb"):
            link_or_copy(deb, private / deb.name)
        (private / ".seeded").touch()
    return private


def harvest(private: Path, shared: Path) -> int:
    """Give this build's new downloads to every later build; return how many were new."""
    if not private.is_dir():
        return 0
    shared.mkdir(parents=True, exist_ok=True)
    new = 0
    for deb in private.glob("*.deb"):
        if not (shared / deb.name).exists():
            link_or_copy(deb, shared / deb.name)
            new += 1
    return new


def release(private: Path, shared: Path) -> None:
    """End of build: hand back downloads, drop the private dir."""
    harvest(private, shared)
    shutil.rmtree(private, ignore_errors=True)
    owner = _held.pop(private, None)
    if owner is not None:
        owner.close()


def sweep(cache_dir: Path) -> int:
    """Remove the private dirs of builds that were killed (their lock is free); return how many."""
    root = cache_dir / "apt" / ".builds"
    if not root.is_dir():
        return 0
    removed = 0
    for private in root.iterdir():
        if private in _held:
            continue
        try:
            with open(private / ".owner", "a") as owner:
                fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its build is running
        except OSError:
            pass
        shutil.rmtree(private, ignore_errors=True)  # its release is unknown: the downloads go too
        removed += 1
    return removed


def apt_archives(ctx: BuildContext) -> Path:
    """This build's apt archive dir, seeded with every .deb downloaded before."""
    return seed(shared_dir(ctx.cache_dir, ctx.spec.os, ctx.spec.release),
                         private_dir(ctx.cache_dir, ctx.work_dir))


def apt_caches(ctx: BuildContext) -> dict[str, Path]:
    """Download caches bind-mounted into the chroot."""
    return {"/var/cache/apt/archives": apt_archives(ctx)}
