"""Podman's Docker-compatible API socket: $CONTAINER_HOST, a running service's, or one started now.

Why the API socket and not the podman CLI: the same docker SDK code then drives both engines (create with
labels, the log stream, wait, stop on Ctrl-C, the stale-container reaper), errors come back as API errors
instead of parsed CLI text, and testcontainers reaches Podman through the same socket."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from builder.errors import BuilderError

IDLE_SECONDS = 600  # a service started here exits after this long without a client
START_SECONDS = 30


def default_socket() -> Path:
    """Where `podman system service` listens by default: the system socket as root, else the user's."""
    if os.geteuid() == 0:
        return Path("/run/podman/podman.sock")
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
    return Path(runtime_dir) / "podman" / "podman.sock"


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def socket_url() -> str:
    """The URL of a Podman API socket that answers; starts `podman system service` if none does."""
    if given := os.environ.get("CONTAINER_HOST"):
        return given
    path = default_socket()
    if _answers(path):
        return f"unix://{path}"
    if shutil.which("podman") is None:
        raise BuilderError("--runtime podman: podman is not installed (apt-get install podman) "
                           "and CONTAINER_HOST names no Podman socket")
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.Popen(["podman", "system", "service", "--time", str(IDLE_SECONDS), f"unix://{path}"],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)  # outlives this build (idle timeout), not its Ctrl-C
    deadline = time.monotonic() + START_SECONDS
    while not _answers(path):
        if time.monotonic() > deadline:
            raise BuilderError(f"`podman system service` did not answer at {path} within {START_SECONDS} s "
                               f"(run it yourself to see why, or start podman.socket)")
        time.sleep(0.2)
    return f"unix://{path}"
