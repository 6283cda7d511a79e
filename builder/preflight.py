"""Checks on the host before a build starts: places writable, enough disk space, the mirror answers."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from builder import diskspace, mirror
from builder.errors import UsageError
from builder.spec import BuildSpec, host_ca_bundle_path


def _writable(path: Path, what: str) -> None:
    """Write and remove a file there: the only test that sees read-only mounts, immutable dirs and quotas."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".trove-builder-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"{what} {path} is not writable ({exc.strerror or exc})") from None


def run(spec: BuildSpec, progress: TextIO = sys.stdout) -> None:
    """Everything that can be known in seconds, so that a doomed build fails before the slow part.

    `progress` gets the retry notices (stderr with --json, whose stdout is the summary)."""
    _writable(spec.output.parent if str(spec.output.parent) else Path("."), "output directory")
    _writable(spec.cache_dir, "cache directory")
    if spec.work_dir:
        _writable(spec.work_dir, "work directory")
    diskspace.check(spec)
    if spec.lock_file is not None:
        return  # a locked build reaches no mirror but the lock's URLs, checked file by file
    mirror.probe(spec.mirror or spec.profile.mirror, spec.release, host_ca_bundle_path(spec.ca_bundle),
                 say=lambda text: print(f"trove-builder: {text}", file=progress, flush=True))
