"""Advisory file locks (flock) that name their holder and vanish with the holder's process.

The kernel drops an flock when its holder dies, even by SIGKILL, so a free lock is proof that its
owner is gone. A lock file is only ever removed by a process holding its lock, and whoever takes
a lock checks that the path still names the file it locked (else it retries): so no two processes
ever both think they hold the lock of one path.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class Flock:
    """An exclusive lock held on `path` by this process until release() or exit."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = fd

    @classmethod
    def try_acquire(cls, path: Path, holder: str | None = None, create: bool = True) -> Flock | None:
        """The lock, or None if another process holds it (or, with create=False, no file is there)."""
        return cls._acquire(path, holder, create, blocking=False)

    @classmethod
    def acquire(cls, path: Path, holder: str | None = None) -> Flock:
        """The lock, waiting as long as another process holds it (a signal still interrupts)."""
        lock = cls._acquire(path, holder, create=True, blocking=True)
        assert lock is not None  # blocking, creating: only an exception ends the wait without the lock
        return lock

    @classmethod
    def _acquire(cls, path: Path, holder: str | None, create: bool, blocking: bool) -> Flock | None:
        while True:
            try:
                fd = _open(path, create)
            except FileNotFoundError:
                if create:  # the directory does not take new files (/proc, a vanished dir): not "busy"
                    raise
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return None
            except BaseException:
                os.close(fd)
                raise
            if _names(path, fd):
                break
            os.close(fd)  # its holder removed it while we waited: lock whatever is there now
            if not create:
                return None
        lock = cls(path, fd)
        if holder:
            lock.describe(holder)
        return lock

    def describe(self, holder: str) -> None:
        """Say who holds the lock (read by whoever finds it taken)."""
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, holder.encode(), 0)
        except OSError:
            pass  # opened read-only (someone else's file): the old text stays

    def release(self, remove: bool = True) -> None:
        """Give the lock up; with remove, delete the file first (only a holder may)."""
        if self.fd < 0:
            return
        if remove and _names(self.path, self.fd):
            try:
                self.path.unlink()
            except OSError:
                pass
        os.close(self.fd)
        self.fd = -1


def holder(path: Path) -> str:
    """What the holder of `path` wrote about itself ('' if nothing or unreadable)."""
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def _open(path: Path, create: bool) -> int:
    flags = os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        return os.open(path, os.O_RDWR | flags, 0o644)
    except PermissionError:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # flock needs no write access


def _names(path: Path, fd: int) -> bool:
    """Does `path` still name the open file `fd`?"""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)
