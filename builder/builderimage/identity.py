"""Which builder image a name points at: its ID (the digest of its config) and the lock it came from."""

from __future__ import annotations

from builder.builderimage.assemble import LOCK_LABEL


def describe(name: str) -> str:
    """One line for `trove-builder version`: the image's ID and builder lock, or why there is none."""
    import docker

    try:
        image = docker.from_env().images.get(name)
    except docker.errors.ImageNotFound:
        return f"builder image {name}: not found (make builder)"
    except docker.errors.DockerException as exc:
        return f"builder image {name}: the container engine does not answer ({type(exc).__name__})"
    lock = ((image.attrs.get("Config") or {}).get("Labels") or {}).get(LOCK_LABEL)
    origin = f"from builder lock {lock}" if lock else "not built from a builder lock"
    return f"builder image {name}: {image.id} ({origin})"
