"""Settings cloud-init applies at every guest's first boot, applied by the build instead.

cloud-init's config stage makes the same two changes on every Trove guest: the locale (`update-locale`,
a Perl program) and sshd's PasswordAuthentication (our cloud.cfg says `ssh_pwauth: false`; it writes
the sshd config, then restarts sshd). Under emulation that is 5-7 s of the stage, on the way to
"cloud-init done" and beside the agent's start. The build makes them with the guest's own tools and
cloud-init's own function, so the stage finds nothing to change and the guest ends up the same. User
data that asks for another locale or for password login still gets it.
"""

from __future__ import annotations

from builder.guest.chroot import Chroot

# What cloud-init's set_passwords module writes for `ssh_pwauth: false` (templates/cloud-default-user.cfg),
# through its own ssh_util: sshd_config.d/50-cloud-init.conf where sshd_config includes that directory,
# else sshd_config itself.
_SSH_PASSWORD_AUTH = ("from cloudinit import ssh_util; "
                      "ssh_util.update_ssh_config({'PasswordAuthentication': 'no'})")


def preset_locale(chroot: Chroot, locale: str) -> None:
    """/etc/default/locale as cloud-init's locale module writes it for `locale` (cloud-locale.cfg)."""
    chroot.run(["update-locale", "--locale-file=/etc/default/locale", f"LANG={locale}"])


def preset_ssh_password_auth(chroot: Chroot) -> None:
    """sshd's PasswordAuthentication as cloud-init's set_passwords module sets it (-B: no .pyc written)."""
    chroot.run(["python3", "-B", "-c", _SSH_PASSWORD_AUTH])
