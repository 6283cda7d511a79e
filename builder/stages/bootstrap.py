"""bootstrap: a minimal guest root filesystem from the distribution's archive (debootstrap)."""

from __future__ import annotations

import re
import shutil

from builder.cache import aptcache
from builder.context import BuildContext
from builder.diskspace import NO_SPACE
from builder.errors import BuilderError
from builder.guest.chroot import mounts_below, unmount_all
from builder.guest.render import install_stage_files
from builder.proc import CommandFailed, run
from builder.retry import Backoff, with_backoff

DESCRIPTION = "debootstrap a minimal root filesystem"
# What debootstrap (and the wget it drives) says when a download failed: worth another try.
NETWORK_FAILURE = re.compile(
    r"Failed getting release|Couldn't download|Couldn't retrieve|Connection (refused|timed out|reset)"
    r"|Temporary failure in name resolution|unable to resolve host|Network is unreachable|Read error"
    r"|Hash Sum mismatch|Size mismatch", re.I)


def run_stage(ctx: BuildContext) -> None:
    spec, prof = ctx.spec, ctx.profile
    mirror = spec.mirror or prof.mirror
    debs = aptcache.apt_archives(ctx)
    debootstrap(ctx, mirror, debs)
    install_stage_files(ctx.rootfs, "bootstrap", ctx.template_context())
    chroot = ctx.chroot()
    with chroot.session(aptcache.apt_caches(ctx)):
        chroot.run(["apt-get", "update"])
        chroot.run(["apt-get", "-y", "-o", "Dpkg::Options::=--force-confold", "dist-upgrade"])


def _network_failure(exc: Exception) -> bool:
    return isinstance(exc, CommandFailed) and bool(NETWORK_FAILURE.search(str(exc))) and NO_SPACE not in str(exc)


def _explain_failure(ctx: BuildContext) -> None:
    """debootstrap prints 'Couldn't download' for a full disk too; its own log in the target says which."""
    own_log = ctx.rootfs / "debootstrap" / "debootstrap.log"
    text = own_log.read_text(errors="replace") if own_log.is_file() else ""
    ctx.log.write(f"--- {own_log.name} ---\n{text}")
    full = [line for line in text.splitlines() if NO_SPACE in line]
    if full:
        raise BuilderError(f"debootstrap: {full[-1].strip()}")


def debootstrap(ctx: BuildContext, mirror: str, debs) -> None:
    """debootstrap into an empty rootfs, again with backoff when a download failed (kept .debs are reused)."""
    spec, prof = ctx.spec, ctx.profile

    def once() -> None:
        if ctx.rootfs.exists():  # what a failed attempt left (debootstrap unmounts on exit; be sure)
            unmount_all(ctx.rootfs)
            if mounts_below(ctx.rootfs):
                raise BuilderError(f"cannot retry debootstrap: {ctx.rootfs} still has mounts")
            shutil.rmtree(ctx.rootfs)
        ctx.rootfs.mkdir(parents=True)
        try:
            run(["debootstrap", f"--variant={prof.variant}", f"--arch={prof.arch}",
                 f"--components={','.join(prof.components)}", f"--keyring={prof.keyring}", f"--cache-dir={debs}",
                 spec.release, ctx.rootfs, mirror],
                ctx.log, env={**ctx.reproducible_env(),
                              **({"http_proxy": ctx.replay.proxy_url} if ctx.replay else {})})
        except CommandFailed:
            _explain_failure(ctx)
            raise

    def retrying(exc: Exception, attempt: int, delay: float) -> None:
        # In the log only (shown with --verbose): stdout belongs to the progress events.
        ctx.log.write(f"debootstrap: download failed, retry {attempt + 1} in {delay:g}s\n")

    # A mirror mid-sync or a dropped connection: minutes of work are at stake, so wait a little longer.
    with_backoff(once, _network_failure, Backoff.from_env(attempts=3, first_delay=5.0), retrying)
