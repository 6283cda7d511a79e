"""bootstrap: a minimal guest root filesystem from the distribution's archive (debootstrap)."""

from __future__ import annotations

from pathlib import Path

from .. import aptcache
from ..context import BuildContext
from ..proc import run
from ..render import install_stage_files

DESCRIPTION = "debootstrap a minimal root filesystem"


def apt_archives(ctx: BuildContext) -> Path:
    """This build's apt archive dir, seeded with every .deb downloaded before (builder/aptcache.py)."""
    return aptcache.seed(aptcache.shared_dir(ctx.cache_dir, ctx.spec.os, ctx.spec.release),
                         aptcache.private_dir(ctx.cache_dir, ctx.work_dir))


def apt_caches(ctx: BuildContext) -> dict[str, object]:
    """Download caches bind-mounted into the chroot."""
    return {"/var/cache/apt/archives": apt_archives(ctx)}


def run_stage(ctx: BuildContext) -> None:
    spec, prof = ctx.spec, ctx.profile
    mirror = spec.mirror or prof.mirror
    debs = apt_archives(ctx)
    ctx.rootfs.mkdir(parents=True)
    run(
        [
            "debootstrap",
            f"--variant={prof.variant}",
            f"--arch={prof.arch}",
            f"--components={','.join(prof.components)}",
            f"--keyring={prof.keyring}",
            f"--cache-dir={debs}",
            spec.release,
            ctx.rootfs,
            mirror,
        ],
        ctx.log,
        env={"SOURCE_DATE_EPOCH": str(spec.source_date_epoch)},
    )
    install_stage_files(ctx.rootfs, "bootstrap", ctx.template_context())
    chroot = ctx.chroot()
    with chroot.session(apt_caches(ctx)):
        chroot.run(["apt-get", "update"])
        chroot.run(["apt-get", "-y", "-o", "Dpkg::Options::=--force-confold", "dist-upgrade"])
