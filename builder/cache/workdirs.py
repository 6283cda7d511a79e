"""Scratch dirs in the cache (cache/work/build-*), each owned through a lock its build holds.

A build that dies without cleaning up (SIGKILL, OOM, `docker kill`) leaves its work dir, perhaps
with mounts and running processes; its lock is then free, which tells the next build that the dir
is a leftover and not a live build's. Dirs without a lock file (--keep-work-dir, older versions)
are never touched.

A dead build's processes are of two kinds: chrooted ones (apt, dpkg) and ones that write into the dir
from outside (debootstrap's tar extracting packages, still running after its parent CLI was killed).
The first are known by their root, the second by the variable every command of the build inherits
(OWNER_ENV, set while the build runs): so a person's shell that merely stands in the dir is spared.
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
# Inherited by every command a build runs (its debootstrap, tar, dpkg-deb): names the work dir they write to.
OWNER_ENV = "TROVE_BUILDER_WORK_DIR"


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
    """SIGKILL every process of a dead build in `root`: chrooted inside it, or started by its build.

    Not the cwd: a person looking around in the dir is spared."""
    inside = os.path.realpath(root)
    killed: set[int] = set()
    for _ in range(10):  # again until no new one is found: a shell killed mid-loop may have forked once more
        victims = [pid for pid in _processes_of(inside) if pid not in killed]
        if not victims:
            return
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed.update(victims)
        deadline = time.monotonic() + wait
        while victims and time.monotonic() < deadline:
            victims = [pid for pid in victims if _alive(pid)]
            time.sleep(0.1)


def _processes_of(inside: str) -> list[int]:
    """Pids of the processes chrooted inside `inside` or started by the build that owned it."""
    return [int(entry.name) for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and int(entry.name) != os.getpid()
            and (_chrooted_in(entry, inside) or _started_by_build_of(entry, inside))]


def _chrooted_in(proc: Path, inside: str) -> bool:
    try:
        target = os.readlink(proc / "root")
    except OSError:
        return False
    return target == inside or target.startswith(inside + "/")


def _started_by_build_of(proc: Path, work_dir: str) -> bool:
    try:
        environ = (proc / "environ").read_bytes()
    except OSError:
        return False
    return f"{OWNER_ENV}={work_dir}".encode() in environ.split(b"\0")


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
