"""File times in the guest: none newer than SOURCE_DATE_EPOCH."""

from __future__ import annotations

import os
from pathlib import Path


def clamp_times(root: Path, epoch: int) -> None:
    """No file in the image is newer than SOURCE_DATE_EPOCH (and none keeps a build-time stamp)."""
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            if os.lstat(path).st_mtime > epoch:
                os.utime(path, (epoch, epoch), follow_symlinks=False)
    os.utime(root, (epoch, epoch))
