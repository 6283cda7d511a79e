"""runtime none: the pipeline straight on this host, which must be Debian-like, root, with the tools."""

from __future__ import annotations

import os
import shutil

from builder.errors import BuilderError
from builder.image.disk import GRUB_DIR
from builder.pipeline import run_pipeline
from builder.progress import Emitter, Reporter
from builder.runtime import privileges
from builder.spec import BuildSpec

# tool -> Debian package that ships it
REQUIRED_TOOLS = {
    "debootstrap": "debootstrap",
    "mkfs.ext4": "e2fsprogs",
    "sfdisk": "fdisk",
    "mkfs.fat": "dosfstools",
    "mcopy": "mtools",
    "grub-mkimage": "grub-common",
    "qemu-img": "qemu-utils",
    "dpkg-query": "dpkg",
    "chroot": "coreutils",
}
GRUB_PLATFORMS = {"i386-pc": "grub-pc-bin", "x86_64-efi": "grub-efi-amd64-bin"}


def missing_tools() -> list[str]:
    missing = [f"{tool} ({pkg})" for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None]
    missing += [f"{GRUB_DIR / p} ({pkg})" for p, pkg in GRUB_PLATFORMS.items() if not (GRUB_DIR / p).is_dir()]
    return missing


def build(spec: BuildSpec, reporter: Reporter | None = None) -> dict:
    if os.geteuid() != 0:
        raise BuilderError("--runtime none must run as root (debootstrap, chroot and mounts need it)")
    missing = missing_tools()
    if missing:
        raise BuilderError(f"--runtime none needs these tools on this host: {', '.join(missing)}")
    privileges.check()
    return run_pipeline(spec, Emitter(reporter))
