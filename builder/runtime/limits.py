"""The builder container's ulimits, derived from this host's own hard limits.

Podman asks the kernel for a container's nofile/nproc limits as configured (its defaults are high); where
the host's hard limits are lower, as in constrained sandboxes, the container never starts ("error setting
rlimit type 7"). A container cannot usefully have more processes than pid_max, and some sandboxes refuse
more, so nproc is capped there too."""

from __future__ import annotations

import resource
from pathlib import Path

PID_MAX = Path("/proc/sys/kernel/pid_max")
NR_OPEN = Path("/proc/sys/fs/nr_open")


def _ceiling(path: Path, fallback: int) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return fallback


def _hard(kind: int, ceiling: int) -> int:
    hard = resource.getrlimit(kind)[1]
    return ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)


def host_ulimits() -> dict[str, int]:
    """name -> limit (soft = hard) for the builder container: the host's hard limits, at most the kernel's."""
    return {"nofile": _hard(resource.RLIMIT_NOFILE, _ceiling(NR_OPEN, 1 << 20)),
            "nproc": _hard(resource.RLIMIT_NPROC, _ceiling(PID_MAX, 32768))}
