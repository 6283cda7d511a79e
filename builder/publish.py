"""An image and its sidecars (manifest, .sha256, lock) written under temporary names, then renamed into place.

The export stage publishes a freshly converted image; the stage cache publishes a cached one the same
way; the output claim sweeps what a killed build left under these temporary names."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable
from pathlib import Path

from builder import __version__
from builder.cache.cas import sha256_file
from builder.context import BuildContext
from builder.image import qemu_img
from builder.lock.lockfile import Lock

# Upstream warts this builder does not repeat (TROVE-GUEST-CONTRACT.md §6), recorded in every manifest.
DEVIATIONS = [
    "no unauthenticated apt configuration; Docker's repository (if used) has a signed-by keyring",
    "guest user password locked; keypair access only",
    "guest-agent.service started after local-fs.target (its imports beside cloud-init's stages): "
    "/usr/local/bin/guest-agent is a launcher that imports trove.cmd.guest, waits for guest-agent-setup.service "
    "(after cloud-init.service, ConditionPathExists=/etc/trove/conf.d/guest_info.conf: the chown, upstream's "
    "pre-start step) and runs its main(); exit 78 outside Trove (no restart), RestartSec=5; docker-hostnic.service "
    "enabled (started at boot), not by a Plugin.Activate call the agent waits for",
    "cloud-init's four stages from one process (cloud-init-main.service): cloud-init's own --all-stages on noble, "
    "/usr/local/sbin/cloud-init-fork-server (one set of imports, a fork per stage) on bookworm and bionic",
    "no private key in production images; dev images carry only an operator-supplied key",
    "trove-image-loader and fix-default-route only in dev images; image pulls are best effort",
    "agent version pinned per release profile, constraints = the resolved venv (/opt/upper-constraints.txt)",
    "default release noble",
    "chrony as the one time daemon; no ntp.conf rewrite",
    "ip_forward via /etc/sysctl.d/60-trove-ip-forward.conf",
    "curl installed explicitly",
    "non-packaged units under /etc/systemd/system",
    "guest-log-collection templated with the guest user",
    "no ssh host keys, no machine-id, no apt lists baked in",
    "no build-host firewall rules (iptables-persistent autosave off, rules files removed)",
    "network rendered by cloud-init from the data source (DHCP fallback), no eth0/eth1 stanzas",
    "build-only packages (compilers, -dev libraries) purged from production images; no docs",
    "GPT disk with BIOS and UEFI GRUB built from files; linux-image-virtual/cloud kernel",
    "first boot: ssh host keys of the profile's types only (ed25519); one network stack per release "
    "(rendered by cloud-init, the other stacks' units masked); only the cloud-init modules a Trove guest "
    "uses; AppArmor profiles of absent programs disabled, the others compiled at build for the kernel's recorded "
    "feature set (builder/apparmor-features); /etc/.updated and /var/.updated written at build; no GRUB menu "
    "wait; /etc/default/locale's LANG and sshd's PasswordAuthentication set at build as cloud-init's config "
    "stage would set them; kernel modules for what a Trove guest never uses (nested virtualization, floppy, "
    "PC speaker, PS/2 mouse, VGA framebuffer) blacklisted in /etc/modprobe.d (profile kernel_module_blacklist)",
]



def file_owner(out_dir: Path) -> tuple[int, int] | None:
    """Who gets the image. The CLI's own container is told (TROVE_BUILDER_OWNER: the CLI's user); a build
    run as root anywhere else (`docker run -v $PWD/images:/out ...`) hands it to the output directory's
    owner, not to root; None: keep this process's."""
    if owner := os.environ.get("TROVE_BUILDER_OWNER"):
        uid, gid = (int(x) for x in owner.split(":"))
        return uid, gid
    if os.geteuid() != 0:
        return None
    st = out_dir.stat()
    return st.st_uid, st.st_gid

def temp_name(final: Path) -> Path:
    """Where a file is written before it is renamed to `final` (same directory, so rename is atomic)."""
    return final.with_name(f".{final.name}.partial-{os.getpid()}")


def partial_files(final: Path) -> list[Path]:
    """Every build's temporary names of `final`: what a killed build may have left behind."""
    return sorted(final.parent.glob(f".{glob.escape(final.name)}.partial-*"))


def manifest_path(image: Path) -> Path:
    return image.with_name(image.name + ".manifest.json")


def checksum_path(image: Path) -> Path:
    return image.with_name(image.name + ".sha256")


def lockfile_path(image: Path) -> Path:
    """The lock that rebuilds `image` (`build --lock`, `verify`)."""
    return image.with_name(image.name + ".lock.json")


def publish_copy(ctx: BuildContext, copy_to: Callable[[Path], object]) -> None:
    """Publish an image another step provides (the stage cache): `copy_to(path)` writes it there."""
    tmp = temp_name(ctx.spec.output)
    try:
        copy_to(tmp)
        publish(ctx, tmp)
    finally:
        tmp.unlink(missing_ok=True)


def publish(ctx: BuildContext, tmp: Path) -> None:
    """Check the image at its temporary name, write manifest and checksum beside it, rename all three."""
    spec = ctx.spec
    final = spec.output
    try:
        if spec.fmt == "qcow2":
            qemu_img.check(tmp)
        digest = sha256_file(tmp)
        manifest = {
            # image: the builder image's ID (the container runtime passes it; none with --runtime none)
            "builder": {"name": "trove-builder", "version": __version__,
                        "image": os.environ.get("TROVE_BUILDER_IMAGE_ID")},
            "inputs": spec.image_identity,
            "image": {"file": final.name, "format": spec.fmt, "sha256": digest,
                      "virtual_size": qemu_img.info(tmp)["virtual-size"], "bytes": tmp.stat().st_size},
            "agent": {"version": spec.resolved_agent_version, "venv": "/opt/guest-agent-venv",
                      "pip_freeze": ctx.results.get("pip_freeze", []),
                      "docker_plugin": ctx.results.get("docker_plugin", False),
                      # the API version the launcher gives the docker SDK (None: the SDK asks dockerd)
                      "docker_api_version": ctx.results.get("docker_api_version"),
                      # True when some requirement had no wheel and the build packages were installed
                      # (and, in production, purged again); dev mode always has them.
                      "built_from_source": ctx.results.get("build_tools", False),
                      "dev_ssh_key": ctx.results.get("dev_ssh_key", False) if spec.dev_mode else None},
            "disk": ctx.results.get("layout"),
            "hooks": ctx.results.get("hooks", []),
            "preload_images": ctx.results.get("preload_images", []),
            "packages": ctx.results.get("packages", []),
            "deviations": DEVIATIONS,
        }
        man_tmp, sum_tmp = temp_name(manifest_path(final)), temp_name(checksum_path(final))
        man_tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        sum_tmp.write_text(f"{digest}  {final.name}\n")
        written = [tmp, man_tmp, sum_tmp]
        lock = ctx.results.get("lock")
        lock_tmp = temp_name(lockfile_path(final))
        if lock is not None:
            lock_tmp.write_text(Lock(lock).dump())
            written.append(lock_tmp)
        owner = file_owner(final.parent)
        if owner:
            for path in written:
                os.chown(path, *owner)
        os.replace(tmp, final)
        os.replace(man_tmp, manifest_path(final))
        os.replace(sum_tmp, checksum_path(final))
        if lock is not None:
            os.replace(lock_tmp, lockfile_path(final))
        else:  # an earlier build's lock would describe another image
            lockfile_path(final).unlink(missing_ok=True)
        ctx.results["sha256"] = digest
        ctx.results["bytes"] = final.stat().st_size
    finally:
        for leftover in (tmp, *(temp_name(f(final)) for f in (manifest_path, checksum_path, lockfile_path))):
            leftover.unlink(missing_ok=True)
