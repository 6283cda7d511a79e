"""agent: the Trove guest agent in /opt/guest-agent-venv, its units, /etc/trove, dev-mode key."""

from __future__ import annotations

import os
from pathlib import Path

from builder.cache.aptcache import apt_caches
from builder.context import TROVE_DIRS, VENV, BuildContext
from builder.guest.chroot import Chroot
from builder.guest.dockerapi import engine_api_version
from builder.guest.pip import (
    PIP_CACHE,
    agent_requirement,
    downloaded,
    freeze,
    installed_packages,
    lend_host_ca,
    run_pip,
)
from builder.guest.pyc import compile_tree
from builder.guest.render import guest_ids, install_stage_files, write_into
from builder.guest.times import clamp_times

DESCRIPTION = "install the Trove guest agent and its units"

def _install_agent(ctx: BuildContext, chroot: Chroot, wheels_only: bool) -> bool:
    """pip install the agent; with wheels_only, False (nothing installed) when something needs building."""
    only = ["--only-binary", ":all:"] if wheels_only else []
    return run_pip(ctx, chroot, "install", *_locked_source(ctx), "--no-compile", *only, agent_requirement(ctx),
                   check=not wheels_only).returncode == 0


def _locked_source(ctx: BuildContext) -> list[str]:
    """A locked build runs the same pip commands, from the locked files alone (builder/replay.py)."""
    return ctx.replay.pip_source_args if ctx.replay is not None else []


def _install_build_tools(ctx: BuildContext, chroot: Chroot) -> None:
    chroot.run(["apt-get", "install", "-y", *ctx.profile.build_packages])
    ctx.results["build_tools"] = True


def _install_venv(ctx: BuildContext, chroot: Chroot) -> None:
    prof = ctx.profile
    with lend_host_ca(ctx):
        chroot.run(["/usr/bin/python3", "-m", "venv", VENV])
        # What python3-venv itself put there (a locked .deb, not a download; bionic's pkg-resources 0.0.0).
        ctx.results["venv_bundled"] = freeze(ctx)
        # A lock without pip: the unlocked build found the bundled pip up to date and changed nothing.
        if ctx.replay is None or ctx.replay.locks_pip:
            run_pip(ctx, chroot, "install", *_locked_source(ctx), "--upgrade", prof.pip_bootstrap)
        # Wheels alone when they exist (no compilers to install and purge again); else with the
        # build packages, as a source install needs them.
        if ctx.results.get("build_tools") or not _install_agent(ctx, chroot, wheels_only=True):
            if not ctx.results.get("build_tools"):
                ctx.log.write("agent: not every requirement has a wheel: installing the build packages\n")
                _install_build_tools(ctx, chroot)
            _install_agent(ctx, chroot, wheels_only=False)
    # Byte-compile once, reproducibly (builder/guest/pyc.py): with hashes instead of source times where
    # Python has them (3.7+); before that the .pyc carries its source's mtime, so those are clamped
    # first (the normalize stage clamps them to the same value later, and the .pyc stay valid).
    if prof.python_version >= (3, 7):
        options = ["--invalidation-mode", "checked-hash"]
    else:
        options = []
        clamp_times(ctx.rootfs / VENV.lstrip("/"), ctx.spec.source_date_epoch)
    compile_tree(ctx, chroot, f"{VENV}/bin/python", VENV, options)
    frozen = freeze(ctx)
    if ctx.replay is not None:
        ctx.replay.check_python(downloaded(ctx, frozen))
    ctx.results["pip_freeze"] = frozen
    # The constraints dev-mode starts reinstall under: exactly what was resolved here.
    write_into(ctx.rootfs, "/opt/upper-constraints.txt", "\n".join(frozen) + "\n")
    ctx.results["docker_plugin"] = (ctx.rootfs / VENV.lstrip("/") / "bin/trove-docker-plugin").exists()


def _trove_tree(ctx: BuildContext) -> None:
    user = ctx.spec.guest_user
    uid, _ = guest_ids(ctx.rootfs, f"{user}:root")
    for inner in TROVE_DIRS:
        path = ctx.rootfs / inner.lstrip("/")
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, 0)
        path.chmod(0o755)
    venv = ctx.rootfs / VENV.lstrip("/")
    for dirpath, dirnames, filenames in os.walk(venv):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, 0)
    os.chown(venv, uid, 0)
    # /usr/local/bin/guest-agent is the launcher from builder/templates (production) or dev mode's own.
    links = {"/usr/local/bin/trove-docker-plugin": f"{VENV}/bin/trove-docker-plugin"}
    for link, target in links.items():
        if not (ctx.rootfs / target.lstrip("/")).exists():
            continue
        path = ctx.rootfs / link.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.symlink_to(target)


def _dev_key(ctx: BuildContext, chroot: Chroot) -> None:
    """Dev mode: the operator's deploy key, never the build host's own key."""
    key = ctx.spec.dev_ssh_key
    ctx.results["dev_ssh_key"] = bool(key)
    if not key:
        return
    user = ctx.spec.guest_user
    write_into(ctx.rootfs, f"{ctx.guest_home}/.ssh/id_rsa", key.read_text(), 0o600, f"{user}:{user}")
    chroot.sh(f"ssh-keygen -y -f {ctx.guest_home}/.ssh/id_rsa > {ctx.guest_home}/.ssh/id_rsa.pub && "
              f"chown {user}:{user} {ctx.guest_home}/.ssh/id_rsa.pub")


def run_stage(ctx: BuildContext) -> None:
    chroot = ctx.chroot()
    caches = {**apt_caches(ctx), PIP_CACHE: ctx.cache_dir / "pip"}
    with chroot.session(caches):
        before = installed_packages(ctx)
        ctx.results["build_tools"] = False
        if ctx.spec.dev_mode:  # dev mode reinstalls from the controller's checkout at each start
            _install_build_tools(ctx, chroot)
        _install_venv(ctx, chroot)
        if not ctx.spec.dev_mode:
            # Exactly what the build step added goes again (apt's autoremove would keep
            # compilers that some installed package merely recommends). Dev mode keeps
            # them: it reinstalls requirements from the controller's checkout at every start.
            added = sorted(installed_packages(ctx) - before)
            if added:
                chroot.run(["apt-get", "purge", "-y", *added])
        _trove_tree(ctx)
        if not ctx.spec.dev_mode:  # for the launcher (builder/guest/dockerapi.py says why)
            version, why = engine_api_version(chroot)
            ctx.results["docker_api_version"] = version
            ctx.log.write(f"agent: the launcher's docker API version: {version or 'asked of dockerd'} ({why})\n")
        written = install_stage_files(ctx.rootfs, "agent", ctx.template_context())
        if ctx.spec.dev_mode:
            _dev_key(ctx, chroot)
        units = [Path(p).name for p in written if p.endswith((".service", ".socket", ".timer"))]
        # The plugin's service: socket-activated in dev mode (its code comes with the agent's, from
        # the controller), started at boot in a production image (docker-hostnic.service says why).
        socket_activated = ("docker-hostnic.service",) if ctx.spec.dev_mode else ()
        enable = [u for u in units if u not in (*socket_activated, "guest-log-collection.service")]
        chroot.run(["systemctl", "enable", *enable])
