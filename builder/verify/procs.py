"""Child processes the boot test owns: started in their own group, always ended, never leaked.

Every process the harness starts (broker, epmd, QEMU, QEMU's guestfwd helpers) gets a marker in
its environment. Daemons that escape their process group (``epmd -daemon``, slirp's setsid'ed
``guestfwd`` commands) still inherit it, so cleanup can find them without touching anything the
harness did not start.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

MARKER_VAR = "TROVE_BOOT_TEST_OWNER"


def new_marker(prefix: str) -> str:
    """A token unique to one owner (a broker, a VM): the value of MARKER_VAR in its children."""
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
FREE_PORT_SPAN = 10000  # how far below the ephemeral range free_port looks


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, below the kernel's ephemeral range: the kernel gives
    those to no outgoing connection, one of which could otherwise take the port before its user
    binds it (seen: rabbitmq-server, seconds into its start, failing with eaddrinuse)."""
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(max(1024, low - FREE_PORT_SPAN), max(1025, low))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # all taken: the kernel's pick
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def spawn(
    argv: Sequence[str | os.PathLike],
    *,
    marker: str,
    env: Mapping[str, str] | None = None,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.STDOUT,
    cwd: Path | None = None,
) -> subprocess.Popen:
    """Start `argv` as the leader of a new session (so its whole group can be signalled)."""
    full_env = {**os.environ, **(env or {}), MARKER_VAR: marker}
    return subprocess.Popen(
        [str(a) for a in argv],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=full_env,
        cwd=cwd,
        start_new_session=True,
    )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def marked_pids(marker: str) -> list[int]:
    """Processes whose environment carries `marker` (only ours can be read unless we are root)."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def terminate(proc: subprocess.Popen | None, marker: str | None = None, grace: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL what is left after `grace` s, then any marked stragglers.

    Safe to call twice and on an already-dead process; reaps the leader.
    """
    if proc is not None:
        pgid = proc.pid  # leader of its own session: pgid == pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            proc.poll()
            if not _group_alive(pgid):
                break
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    if marker:
        for _ in range(3):
            pids = marked_pids(marker)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)


_sigterm: dict[str, Any] = {"depth": 0, "fired": False, "previous": None}


def _raise_on_sigterm(signum, frame):
    if _sigterm["fired"]:
        return  # already unwinding: let the cleanups finish
    _sigterm["fired"] = True
    raise SystemExit(128 + signal.SIGTERM)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into SystemExit(143) inside the block, so `finally` cleanups run.

    Nestable. Only the first SIGTERM raises (more during cleanup are ignored); the handler from
    before the outermost block is restored when it ends. Outside the main thread Python cannot
    install handlers: a no-op there.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _sigterm["depth"] == 0:
        _sigterm["previous"] = signal.signal(signal.SIGTERM, _raise_on_sigterm)
        _sigterm["fired"] = False
    _sigterm["depth"] += 1
    try:
        yield
    finally:
        _sigterm["depth"] -= 1
        if _sigterm["depth"] == 0:
            signal.signal(signal.SIGTERM, _sigterm["previous"] or signal.SIG_DFL)
