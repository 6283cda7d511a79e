"""One build per output file: the CLI holds <dir>/.<name>.lock from start to end of a build.

A second build to the same output fails at once instead of racing the first for the same
temporary names. The holder owns every temporary name of its output, so it sweeps those a killed
build left. The builder container watches this lock to learn that its CLI died (claims/watchdog.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from builder.claims.flock import Flock, holder
from builder.errors import BuilderError
from builder.publish import checksum_path, lockfile_path, manifest_path, partial_files


def claim_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.lock")


@contextmanager
def hold_output(output: Path) -> Iterator[Flock]:
    path = claim_path(output)
    try:
        lock = Flock.try_acquire(path, holder=f"pid {os.getpid()}")
    except OSError as exc:  # not another build: this directory does not let us create a file
        raise BuilderError(f"cannot write {output}: creating {path.name} in {path.parent} failed "
                           f"({exc.strerror}); choose an output directory you can write to") from None
    if lock is None:
        raise BuilderError(f"another build is writing {output} ({holder(path) or 'holder unknown'})")
    try:
        for final in (output, manifest_path(output), checksum_path(output), lockfile_path(output)):
            for leftover in partial_files(final):
                leftover.unlink(missing_ok=True)
        yield lock
    finally:
        lock.release()
