"""system: kernel, cloud-init, Docker, ssh and the rest of the guest's packages, the guest user, config files."""

from __future__ import annotations

from builder.cache.aptcache import apt_caches
from builder.context import BuildContext
from builder.errors import BuilderError
from builder.guest.apparmor import disable_absent_apparmor_profiles
from builder.guest.chroot import Chroot
from builder.guest.firstboot import preset_locale, preset_ssh_password_auth
from builder.guest.render import install_stage_files

DESCRIPTION = "install packages, kernel, Docker, cloud-init; guest user and config"

# Answered before installing: iptables-persistent would otherwise save the build
# host's live firewall rules into the image (upstream wart).
DEBCONF_SELECTIONS = """\
iptables-persistent iptables-persistent/autosave_v4 boolean false
iptables-persistent iptables-persistent/autosave_v6 boolean false
"""
GUEST_UID = 1000  # uid/gid 1001 must stay free: the agent creates `database` with them.
DOCKER_CE_REPO = "https://download.docker.com/linux/{os}"
# Started at boot because guest-agent.service wants them (docker.service wants containerd), not by
# multi-user.target: that target, and cloud-init's final stage after it (cloud-init done), would
# otherwise wait for dockerd's start (~15 s under emulation) that nothing in them needs. A docker call
# made before dockerd is up waits on docker.socket (enabled), as the agent's first one does.
STARTED_BY_THE_AGENT = ("docker.service", "containerd.service")


def package_set(ctx: BuildContext) -> list[str]:
    prof = ctx.profile
    packages = list(prof.packages) + [prof.kernel_package]
    if ctx.spec.docker_source == "distro":
        packages.append(prof.docker_package)
    return packages


def _add_docker_ce_repo(ctx: BuildContext, chroot: Chroot) -> None:
    """Docker's own repository, its key as a signed-by keyring (never apt-key, never unsigned)."""
    repo = DOCKER_CE_REPO.format(os=ctx.spec.os)
    chroot.run(["apt-get", "install", "-y", "curl", "ca-certificates", "gnupg"])
    try:
        chroot.sh(
            f"install -d -m 0755 /etc/apt/keyrings && "
            f"curl -fsSL --retry 3 {repo}/gpg | gpg --dearmor -o /etc/apt/keyrings/docker.gpg"
        )
    except BuilderError as exc:
        raise BuilderError(f"could not fetch Docker's apt key from {repo}/gpg: {exc}") from None
    (ctx.rootfs / "etc/apt/sources.list.d/docker.list").write_text(
        f"deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.gpg] {repo} {ctx.spec.release} stable\n"
    )
    chroot.run(["apt-get", "update"])
    chroot.run(["apt-get", "install", "-y", "docker-ce", "docker-ce-cli", "containerd.io"])


def _create_guest_user(ctx: BuildContext, chroot: Chroot) -> None:
    user = ctx.spec.guest_user
    chroot.sh(
        f"getent group docker >/dev/null || groupadd --system docker\n"
        f"if ! id -u {user} >/dev/null 2>&1; then\n"
        f"  groupadd --gid {GUEST_UID} {user}\n"
        f"  useradd --uid {GUEST_UID} --gid {GUEST_UID} --create-home --shell /bin/bash "
        f"--comment 'Trove guest user' {user}\n"
        f"fi\n"
        f"usermod -a -G sudo,docker,adm {user}\n"
        # Locked: no usable password; access is by the nova keypair only.
        f"usermod -L {user}\n"
        f"passwd -l root >/dev/null\n"
        f"install -d -m 0700 -o {user} -g {user} /home/{user}/.ssh\n"
    )


def _select_boot_units(ctx: BuildContext, chroot: Chroot) -> None:
    """The profile's boot_enabled_units (the network stack cloud-init renders for, where nothing
    else enables it) are started at boot; its boot_disabled_units (the other stacks) are neither
    started nor pulled in by another unit. Absent ones are skipped."""
    def present(units: list[str]) -> list[str]:
        return [unit for unit in units
                if any((ctx.rootfs / d / unit).exists() for d in ("lib/systemd/system", "usr/lib/systemd/system"))]

    if enabled := present(ctx.profile.boot_enabled_units):
        chroot.run(["systemctl", "enable", *enabled])
    if masked := present(ctx.profile.boot_disabled_units):
        chroot.run(["systemctl", "mask", *masked])


def run_stage(ctx: BuildContext) -> None:
    chroot = ctx.chroot()
    with chroot.session(apt_caches(ctx)):
        chroot.run(["debconf-set-selections"], input=DEBCONF_SELECTIONS)
        chroot.run(
            ["apt-get", "install", "-y", "-o", "Dpkg::Options::=--force-confold", *package_set(ctx)]
        )
        if ctx.spec.docker_source == "docker-ce":
            _add_docker_ce_repo(ctx, chroot)
        _create_guest_user(ctx, chroot)
        install_stage_files(ctx.rootfs, "system", ctx.template_context())
        # No saved firewall rules from the build host, whatever the package did.
        for rules in ("rules.v4", "rules.v6"):
            (ctx.rootfs / "etc/iptables" / rules).unlink(missing_ok=True)
        chroot.run(["systemctl", "enable", "docker.socket", "ssh.service", "chrony.service"])
        chroot.run(["systemctl", "disable", *STARTED_BY_THE_AGENT])
        _select_boot_units(ctx, chroot)
        if ctx.profile.cloud_init_stage_runner != "per-stage":
            chroot.run(["systemctl", "enable", "cloud-init-main.service"])
        disabled = disable_absent_apparmor_profiles(ctx.rootfs)
        ctx.log.write(f"system: {len(disabled)} AppArmor profiles of absent programs disabled: {' '.join(disabled)}\n")
        preset_locale(chroot, ctx.profile.locale)
        preset_ssh_password_auth(chroot)
