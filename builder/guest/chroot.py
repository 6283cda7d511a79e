"""A guest root filesystem entered with chroot: API mounts, no service starts, always cleaned up."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from builder.proc import Log, run

# Tells invoke-rc.d not to start services while packages are installed.
POLICY_RC_D = "#!/bin/sh\n# written by trove-builder for the build only\nexit 101\n"
CHROOT_ENV = {
    "DEBIAN_FRONTEND": "noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN": "true",
    "LC_ALL": "C.UTF-8",
    "LANG": "C.UTF-8",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "TZ": "UTC",
}


def mounts_below(root: Path) -> list[str]:
    """Mount points at or under `root`, deepest first (what must go before root can be removed)."""
    root_s = os.path.realpath(root)
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4].replace("\\040", " ")
            if point == root_s or point.startswith(root_s + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def unmount_all(root: Path) -> None:
    """Unmount everything below `root`, lazily if a busy mount will not go."""
    for point in mounts_below(root):
        if subprocess.call(["umount", point], stderr=subprocess.DEVNULL) != 0:
            subprocess.call(["umount", "-l", point], stderr=subprocess.DEVNULL)


# Where a build mounts the kernel's filesystems in the root. Whether the engine leaves a trace in their
# mtime differs (bionic: /proc bumped under Docker, left at the package's date under Podman), so
# normalize sets their times instead of clamping them.
API_MOUNT_POINTS = ("proc", "sys", "dev", "dev/pts")


class Chroot:
    """Runs commands inside `root` with /proc, /sys, /dev and caches mounted."""

    def __init__(self, root: Path, log: Log, env: Mapping[str, str] | None = None,
                 mounts: Mapping[str, Path] | None = None):
        self.root = root
        self.log = log
        self.env = dict(CHROOT_ENV, **(env or {}))
        # Bound in every session (a locked build's apt config and wheels, whoever enters the chroot).
        self.mounts = dict(mounts or {})

    def path(self, inner: str) -> Path:
        return self.root / inner.lstrip("/")

    def run(self, cmd: Sequence[str], *, env: Mapping[str, str] | None = None, **kw):
        full_env = dict(self.env, **(env or {}))
        return run(["chroot", str(self.root), *cmd], self.log, env=full_env, **kw)

    def sh(self, script: str, **kw):
        return self.run(["/bin/sh", "-ec", script], **kw)

    def bind(self, source: Path, inner: str, readonly: bool = False) -> None:
        target = self.path(inner)
        target.mkdir(parents=True, exist_ok=True)
        run(["mount", "--bind", source, target], self.log)
        if readonly:
            run(["mount", "-o", "remount,bind,ro", target], self.log)

    @contextmanager
    def session(self, caches: Mapping[str, Path] | None = None) -> Iterator[Chroot]:
        """Mount the API filesystems (and cache dirs) for the duration; undo on any exit."""
        policy = self.path("/usr/sbin/policy-rc.d")
        resolv = self.path("/etc/resolv.conf")
        saved_resolv = None
        try:
            api_filesystems: tuple[tuple[str, str, list[str]], ...] = (  # see API_MOUNT_POINTS
                ("proc", "/proc", []),
                ("sysfs", "/sys", []),
            )
            for fs, inner, opts in api_filesystems:
                self.path(inner).mkdir(exist_ok=True)
                run(["mount", "-t", fs, *opts, fs, self.path(inner)], self.log)
            self.bind(Path("/dev"), "/dev")
            if Path("/dev/pts").is_dir():
                self.bind(Path("/dev/pts"), "/dev/pts")
            for inner, source in {**self.mounts, **(caches or {})}.items():
                source.mkdir(parents=True, exist_ok=True)
                self.bind(source, inner)
            policy.parent.mkdir(parents=True, exist_ok=True)
            policy.write_text(POLICY_RC_D)
            policy.chmod(0o755)
            # Name resolution for apt and pip during the build only.
            if resolv.is_symlink() or resolv.exists():
                saved_resolv = resolv.with_name("resolv.conf.trove-builder")
                os.replace(resolv, saved_resolv)
            shutil.copyfile("/etc/resolv.conf", resolv)
            yield self
        finally:
            unmount_all(self.root)
            policy.unlink(missing_ok=True)
            if resolv.exists() or resolv.is_symlink():
                resolv.unlink()
            if saved_resolv is not None:
                os.replace(saved_resolv, resolv)
