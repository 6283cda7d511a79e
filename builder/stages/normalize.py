"""normalize: remove build leftovers and per-instance identity; clamp every file time."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
from pathlib import Path

from builder.context import BuildContext
from builder.errors import BuilderError
from builder.guest.apparmor import compile_profiles
from builder.guest.chroot import API_MOUNT_POINTS
from builder.guest.initramfs import InitramfsError, repack_file
from builder.guest.pyc import recompile_packaged
from builder.guest.render import install_stage_files
from builder.guest.times import clamp_times

DESCRIPTION = "write the boot config; scrub caches, logs, keys, identity; compile AppArmor profiles; clamp times"

# Removed outright (globs relative to the guest root).
REMOVE = [
    "etc/ssh/ssh_host_*",            # generated at first boot (cloud-init or the ssh drop-in)
    "etc/iptables/rules.v*",         # never the build host's firewall
    "etc/apt/apt.conf.d/*unauthenticated*",
    "var/lib/apt/lists/*",
    "var/cache/apt/*.bin",
    "var/cache/apt/archives/*.deb",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "var/cache/ldconfig/aux-cache",
    "var/lib/dbus/machine-id",
    "var/lib/systemd/random-seed",
    "var/lib/cloud/*",
    "root/.cache",
    "root/.wget-hsts",
    "tmp/*",
    "var/tmp/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "etc/resolv.conf",
    "etc/hostname.trove-builder",
    "usr/sbin/policy-rc.d",
    "var/cache/trove-builder-*",     # mount points of the build's download and lock dirs
]
TRUNCATE = ["etc/machine-id"]


def _remove(root: Path, pattern: str) -> None:
    for match in glob.glob(str(root / pattern)):
        path = Path(match)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _strip_docs(root: Path) -> None:
    """Docs of packages installed before the dpkg excludes took effect; licences stay."""
    doc = root / "usr/share/doc"
    for dirpath, _dirs, files in os.walk(doc):
        for name in files:
            if name != "copyright":
                Path(dirpath, name).unlink()


def _truncate_logs(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root / "var/log"):
        for name in files:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            if name.endswith((".gz", ".xz", ".old")) or name[-2:-1] == "." and name[-1].isdigit():
                path.unlink()
            else:
                path.write_bytes(b"")


def _clamp_shadow(root: Path, epoch: int) -> None:
    """The shadow file's 'last changed' day is the build day unless clamped."""
    days = str(epoch // 86400)
    for name in ("etc/shadow", "etc/shadow-"):
        path = root / name
        if not path.exists():
            continue
        lines = []
        for line in path.read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2]:
                fields[2] = days
            lines.append(":".join(fields))
        stat = path.stat()
        path.write_text("\n".join(lines) + "\n")
        os.chmod(path, stat.st_mode)


def _repack_initramfs(ctx: BuildContext) -> None:
    """Where the guest's mkinitramfs is not reproducible, write its output again so that it is."""
    for path in sorted((ctx.rootfs / "boot").glob("initrd.img-*")):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            packed = repack_file(path, ctx.spec.source_date_epoch)
        except InitramfsError as exc:
            raise BuilderError(f"cannot re-pack /boot/{path.name} deterministically: {exc}") from None
        # update-initramfs keeps each image's sha1 and refuses to update an image that no longer matches.
        state = ctx.rootfs / "var/lib/initramfs-tools" / path.name.removeprefix("initrd.img-")
        if state.is_file():
            state.write_text(f"{hashlib.sha1(packed).hexdigest()}  /boot/{path.name}\n")
        ctx.log.write(f"normalize: /boot/{path.name} re-packed deterministically\n")


def mark_updated(root: Path, epoch: int) -> None:
    """/etc/.updated and /var/.updated as systemd-update-done writes them: the image's /usr is not
    newer than its /etc and /var, so first boot skips the ConditionNeedsUpdate= units (ldconfig,
    hwdb, journal catalog, sysusers) whose work the build already did."""
    for name in ("etc/.updated", "var/.updated"):
        path = root / name
        path.write_text("# This file was created by trove-builder, as systemd-update-done would.\n"
                        f"TIMESTAMP_NSEC={epoch * 1_000_000_000}\n")
        os.utime(path, (epoch, epoch))


def run_stage(ctx: BuildContext) -> None:
    root = ctx.rootfs
    # Files that name the finished disk (grub.cfg: the root filesystem's UUID) are written here,
    # so that the cached rootfs of earlier stages does not depend on the disk's size or format.
    install_stage_files(root, "normalize", {**ctx.template_context(), "root_uuid": ctx.stable_uuid("rootfs")})
    # After the hooks and preload (every profile is final), before the removals below (what the chroot
    # session leaves: resolv.conf, the cache mount points) and the clamped times (none newer than the cache).
    ctx.log.write(f"normalize: AppArmor: {compile_profiles(ctx.chroot())}\n")
    for pattern in REMOVE + ctx.profile.remove_unreproducible:
        _remove(root, pattern)
    for name in TRUNCATE:
        (root / name).write_bytes(b"")
    _strip_docs(root)
    _truncate_logs(root)
    _clamp_shadow(root, ctx.spec.source_date_epoch)
    if ctx.profile.initramfs_repack:
        _repack_initramfs(ctx)
    if ctx.profile.recompile_pyc:
        ctx.log.write(f"normalize: {recompile_packaged(ctx)} packaged .pyc written again with a fixed hash seed\n")
    mark_updated(root, ctx.spec.source_date_epoch)
    # dpkg's database in its canonical form is left as is; only times are clamped.
    clamp_times(root, ctx.spec.source_date_epoch)
    for point in API_MOUNT_POINTS:
        if (root / point).is_dir():
            os.utime(root / point, (ctx.spec.source_date_epoch,) * 2)
