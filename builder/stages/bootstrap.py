"""bootstrap: a minimal guest root filesystem from the distribution's archive (debootstrap)."""

from __future__ import annotations

from ..cachelock import cache_locked
from ..context import BuildContext
from ..proc import run
from ..render import install_stage_files

DESCRIPTION = "debootstrap a minimal root filesystem"


def apt_caches(ctx: BuildContext) -> dict[str, object]:
    """Download caches shared by every build of this release (bind-mounted into the chroot)."""
    return {"/var/cache/apt/archives": ctx.cache_dir / "apt" / f"{ctx.spec.os}-{ctx.spec.release}"}


def run_stage(ctx: BuildContext) -> None:
    spec, prof = ctx.spec, ctx.profile
    mirror = spec.mirror or prof.mirror
    debs = ctx.cache_dir / "apt" / f"{spec.os}-{spec.release}"
    debs.mkdir(parents=True, exist_ok=True)
    ctx.rootfs.mkdir(parents=True)
    with cache_locked(debs, ctx.log):  # debootstrap takes no lock of its own on the shared dir
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
