"""Scratch dirs in the cache (cache/work/build-*), each owned through a lock its build holds.

A build that dies without cleaning up (SIGKILL, OOM, `docker kill`) leaves its work dir, perhaps
with mounts and chrooted processes; its lock is then free, which tells the next build that the dir
is a leftover and not a live build's. Dirs without a lock file (--keep-work-dir, older versions)
are never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from builder.claims.flock import Flock
from builder.errors import BuilderError
from builder.guest.chroot import mounts_below, unmount_all

CLAIM_SUFFIX = ".lock"


def claim_path(work_dir: Path) -> Path:
    return work_dir.with_name(work_dir.name + CLAIM_SUFFIX)


class Claim:
    """This process's ownership of a work dir in the cache (no-op for a --work-dir)."""

    def __init__(self, lock: Flock | None):
        self.lock = lock

    def release(self) -> None:
        """The dir is gone or kept on purpose: either way no longer a leftover to sweep."""
        if self.lock:
            self.lock.release()


def claim(work_dir: Path, owned: bool) -> Claim:
    """Take the work dir's lock before the dir exists (so a dir is never seen without its owner)."""
    if not owned:
        return Claim(None)
    work_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = Flock.try_acquire(claim_path(work_dir), holder=f"pid {os.getpid()}")
    if lock is None:
        raise BuilderError(f"work dir {work_dir} is in use by another build")
    return Claim(lock)


def reap_stale(cache_dir: Path, say: Callable[[str], None]) -> list[str]:
    """Remove work dirs whose build is dead: kill what still runs in them, unmount, delete."""
    removed = []
    for lock_file in sorted((cache_dir / "work").glob(f"build-*{CLAIM_SUFFIX}")):
        lock = Flock.try_acquire(lock_file, create=False)
        if lock is None:
            continue  # its build is alive
        work_dir = lock_file.with_name(lock_file.name[: -len(CLAIM_SUFFIX)])
        try:
            kill_processes_in(work_dir)
            remove_work_dir(work_dir)
        except (BuilderError, OSError) as exc:
            say(f"trove-builder: could not remove the stale work dir {work_dir.name}: {exc}")
            lock.release(remove=False)
            continue
        lock.release()
        removed.append(work_dir.name)
    if removed:
        say(f"trove-builder: removed {len(removed)} stale work dir(s) of killed builds: {', '.join(removed)}")
    return removed


def kill_processes_in(root: Path, wait: float = 10.0) -> None:
    """SIGKILL every process chrooted inside `root` (a dead build's apt or dpkg, still running).

    Only the root directory counts, not the cwd: a person looking around in the dir is spared."""
    inside = os.path.realpath(root)
    victims = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            target = os.readlink(entry / "root")
        except OSError:
            continue
        if target == inside or target.startswith(inside + "/"):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                victims.append(int(entry.name))
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + wait
    while victims and time.monotonic() < deadline:
        victims = [pid for pid in victims if _alive(pid)]
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def remove_work_dir(path: Path) -> None:
    """rm -rf that never follows into a mount (a bind-mounted /dev must never be emptied).

    The work dir itself may be a mount point (--work-dir in the container): its contents go,
    the directory stays."""
    if not path.exists():
        return
    own = os.path.realpath(path)
    for point in mounts_below(path):
        if point != own:
            unmount_all(Path(point))
    left = [m for m in mounts_below(path) if m != own]
    if left:
        raise BuilderError(f"cannot remove {path}: still mounted: {', '.join(left)}")
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    try:
        path.rmdir()
    except OSError:
        pass  # a mount point: emptied is all we can do
