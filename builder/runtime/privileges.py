"""Can this process do what a build does (mount, make device nodes)? Asked before the first stage, so
that `docker run trove-builder build ...` without the right flags fails at once, naming the flags.

debootstrap and the chroot mount /proc, /sys and /dev and make device nodes: that takes CAP_SYS_ADMIN and
CAP_MKNOD (and package scripts' PAM calls CAP_AUDIT_WRITE), a seccomp/AppArmor profile that lets mount(2)
through, and no user namespace (the kernel refuses device nodes to a rootless container whatever its
capabilities)."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

from builder.errors import BuilderError

# capability -> bit in /proc/self/status CapEff. AUDIT_WRITE: Docker grants it by default, Podman 4 does not,
# and without it PAM fails in package scripts (bionic's systemd postinst: "chfn: PAM: System error").
CAPABILITIES = {"SYS_ADMIN": 21, "MKNOD": 27, "AUDIT_WRITE": 29}
ENGINE_FLAGS = (" ".join(f"--cap-add {name}" for name in CAPABILITIES)
                + " --security-opt seccomp=unconfined --security-opt apparmor=unconfined")
CONTAINER_MARKERS = (Path("/.dockerenv"), Path("/run/.containerenv"))


def in_container() -> bool:
    return any(marker.exists() for marker in CONTAINER_MARKERS)


def in_user_namespace() -> bool:
    """True unless this process sees the whole uid range as its own (the initial user namespace)."""
    try:
        first = Path("/proc/self/uid_map").read_text().split()
    except OSError:
        return False
    return first[:3] != ["0", "0", "4294967295"]


def missing_capabilities() -> list[str]:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            effective = int(line.split()[1], 16)
            return [name for name, bit in CAPABILITIES.items() if not effective >> bit & 1]
    return list(CAPABILITIES)


def _refused(probe: str) -> str | None:
    """Try a tmpfs mount and a /dev/null node in a scratch dir; the refused one's error, or None."""
    with tempfile.TemporaryDirectory(prefix="trove-builder-probe-") as scratch:
        if probe == "mount":
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "probe", scratch],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                return done.stderr.strip() or "mount failed"
            subprocess.run(["umount", scratch], check=True)
            return None
        try:
            os.mknod(Path(scratch) / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        except OSError as exc:
            return exc.strerror
    return None


def check() -> None:
    """Raise with the one line that says what to change, if a build could not mount or make nodes here."""
    where = "start the container with" if in_container() else "run where these are allowed, e.g. in a container with"
    missing = missing_capabilities()
    if missing:
        raise BuilderError(f"this process lacks {', '.join('CAP_' + c for c in missing)} (debootstrap and the chroot "
                           f"mount filesystems, make device nodes, and run PAM): {where} {ENGINE_FLAGS}")
    if (why := _refused("mknod")) and in_user_namespace():
        raise BuilderError(f"device nodes are refused here ({why}): this is a user namespace (a rootless "
                           f"container), where the kernel never allows them; run the engine as root "
                           f"(sudo podman/docker ..., or trove-builder --runtime podman as root)")
    if why := _refused("mount"):
        raise BuilderError(f"mounting is refused here ({why}), although CAP_SYS_ADMIN is held: a seccomp or "
                           f"AppArmor profile forbids it; {where} {ENGINE_FLAGS}")
    if why := _refused("mknod"):
        raise BuilderError(f"device nodes are refused here ({why}): {where} {ENGINE_FLAGS}")
