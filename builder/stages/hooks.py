"""The operator's hooks, where diskimage-builder's phases run them: before and after the system and agent."""

from __future__ import annotations

from builder.context import BuildContext
from builder.guest import dpkg, hooks

PRE_INSTALL_PHASES = ("extra-data.d", "pre-install.d")
POST_INSTALL_PHASES = ("install.d", "post-install.d", "finalise.d")
PRE_DESCRIPTION = f"run {' and '.join(PRE_INSTALL_PHASES)} hooks"
POST_DESCRIPTION = f"run {', '.join(POST_INSTALL_PHASES[:-1])} and {POST_INSTALL_PHASES[-1]} hooks"


def run_pre_install(ctx: BuildContext) -> None:
    for phase in PRE_INSTALL_PHASES:
        hooks.run_phase(ctx, phase)


def run_post_install(ctx: BuildContext) -> None:
    for phase in POST_INSTALL_PHASES:
        hooks.run_phase(ctx, phase)
    ctx.results["packages"] = dpkg.installed(ctx.rootfs)
    if ctx.replay is not None:  # hooks included: nothing installed that the lock does not name
        from builder.lock.collect import installed_during_build

        ctx.replay.check_packages(installed_during_build(ctx.rootfs))
