"""system: kernel, cloud-init, Docker, ssh and the rest of the guest's packages, the guest user, config files."""

from __future__ import annotations

from builder.cache.aptcache import apt_caches
from builder.context import BuildContext
from builder.errors import BuilderError
from builder.guest.chroot import Chroot
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
        chroot.run(["systemctl", "enable", "docker.service", "ssh.service", "chrony.service"])
