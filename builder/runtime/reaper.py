"""Builder containers whose CLI is dead: stopped (they clean up on SIGTERM) and removed.

Every build container is labelled with the host path of the output lock its CLI holds and the
host it was started from. A container is stale when that lock is free or gone (its CLI died),
or when this CLI now holds it (a new build to the same output). Containers without these labels
(another version, another tool) and those started from another host or container are left alone.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from builder.claims.flock import Flock

LABEL = "trove-builder"
LOCK_LABEL = f"{LABEL}.lock"
HOST_LABEL = f"{LABEL}.host"


def labels(lock: Path) -> dict[str, str]:
    return {LOCK_LABEL: str(lock), HOST_LABEL: socket.gethostname()}


def owner_gone(lock: Path) -> bool:
    """True only when we can tell: the lock file is free or removed in a directory we can see."""
    if not lock.parent.is_dir():
        return False
    try:
        held = Flock.try_acquire(lock, create=False)
    except OSError:
        return False
    if held is None:
        return not lock.exists()
    held.release()
    return True


def reap_stale_containers(client, own_lock: Path, stop_timeout: int, say: Callable[[str], None]) -> list[str]:
    import docker

    removed = []
    for container in client.containers.list(all=True, filters={"label": LOCK_LABEL}):
        tags = container.labels
        if tags.get(HOST_LABEL) != socket.gethostname():
            continue
        lock = Path(tags[LOCK_LABEL])
        if lock != own_lock and not owner_gone(lock):
            continue
        try:
            if container.status in ("running", "restarting", "paused"):
                container.stop(timeout=stop_timeout)
            container.remove(force=True)
        except docker.errors.APIError:
            continue  # gone or going meanwhile (its own CLI, another build's reaper)
        removed.append(container.name)
    if removed:
        say(f"trove-builder: removed {len(removed)} stale build container(s) of killed builds: {', '.join(removed)}")
    return removed
