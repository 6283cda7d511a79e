"""One build at a time writes a download dir that builds share (cache/apt/<os>-<release>).

apt takes archives/lock without waiting, so a second build's apt-get on the same dir fails at
once ("Could not get lock /var/cache/apt/archives/lock"); debootstrap --cache-dir takes no lock
and downloads into the same partial/ dir apt uses. So each apt-get and debootstrap run on a
shared dir first waits for <dir>.lock; builds of other releases never wait.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .locks import FileLock, holder
from .proc import Log


def lock_path(shared_dir: Path) -> Path:
    return shared_dir.with_name(shared_dir.name + ".lock")


@contextmanager
def cache_locked(shared_dir: Path, log: Log) -> Iterator[None]:
    path = lock_path(shared_dir)
    me = f"pid {os.getpid()} on {os.uname().nodename}"
    lock = FileLock.try_acquire(path, holder=me)
    if lock is None:
        log.write(f"# waiting for another build using {shared_dir} ({holder(path) or 'holder unknown'})\n")
        lock = FileLock.acquire(path, holder=me)
    try:
        yield
    finally:
        lock.release(remove=False)  # shared and long-lived: no point in removing it
