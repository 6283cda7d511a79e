"""Real images built in the real builder container, checked file by file against the Trove contract."""

import hashlib
import json
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from builder import profile
from builder.guest.apparmor import recorded_features
from builder.image.contract import check_image
from builder.image.reader import Image
from builder.spec import default_cache_dir
from tests.conftest import REPO

pytestmark = pytest.mark.slow

TARGETS = [("debian", "bookworm"), ("ubuntu", "noble"), ("ubuntu", "bionic")]


def qemu_img_info(path):
    return json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                                     capture_output=True, text=True, check=True).stdout)


@pytest.mark.parametrize("os_name,release", TARGETS)
def test_image_is_a_valid_qcow2_with_manifest_and_checksum(images, os_name, release):
    image = images.get(os_name, release)
    assert subprocess.run(["qemu-img", "check", str(image)], capture_output=True).returncode == 0
    info = qemu_img_info(image)
    assert info["format"] == "qcow2" and info["virtual-size"] == 5 * 1024**3
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert (image.parent / (image.name + ".sha256")).read_text() == f"{digest}  {image.name}\n"
    manifest = json.loads((image.parent / (image.name + ".manifest.json")).read_text())
    assert manifest["image"]["sha256"] == digest
    assert manifest["inputs"]["os"] == os_name and manifest["inputs"]["release"] == release
    names = {p["name"] for p in manifest["packages"]}
    assert {"cloud-init", "openssh-server", "docker.io", "sudo", "curl"} <= names
    assert not {"build-essential", "gcc", "python3-dev"} & names, "build-only packages left in a production image"
    assert any(p.lower().startswith("trove==") for p in manifest["agent"]["pip_freeze"])
    # docker.io's CLI and engine are one package: the launcher knows the engine's API version
    assert re.fullmatch(r"1\.\d+", manifest["agent"]["docker_api_version"] or ""), manifest["agent"]
    # nothing half-written left beside the output
    assert sorted(p.name for p in image.parent.iterdir()) == sorted(
        [image.name, image.name + ".sha256", image.name + ".manifest.json", image.name + ".spdx.json",
         image.name + ".cdx.json", image.name + ".lock.json"])


def build_host_strings(images, image) -> list[str]:
    """What this host's build must not leave in an image: its output, cache and work dirs (as the host and
    the builder container see them), this checkout, the host's name and the operator's home."""
    cache = Path(os.environ.get("TROVE_BUILDER_CACHE") or default_cache_dir()).resolve()
    strings = [str(image.parent), str(images.root), str(cache), str(cache / "work"), "/cache/work/",
               f"/out/{image.name}", str(REPO)]
    host = socket.gethostname()
    # A name like 'vm' is ordinary text (/sys/vm in AppArmor profiles); the guest's own names are no leak.
    if len(host) >= 5 and host not in ("localhost", "debian", "ubuntu"):
        strings.append(host)
    if str(Path.home()) != "/root":
        strings.append(str(Path.home()))
    return strings


def assert_contract(images, image):
    results = check_image(image, forbid=build_host_strings(images, image))
    assert "no build-host strings" in [c.name for c in results]
    failed = [f"{c.name}: {c.detail}" for c in results if not c.passed]
    assert not failed, failed


@pytest.mark.parametrize("os_name,release", TARGETS)
def test_image_meets_the_static_contract(images, os_name, release):
    assert_contract(images, images.get(os_name, release))


@pytest.mark.parametrize("os_name,release", TARGETS)
def test_units_and_files_trove_expects(images, os_name, release):
    image = images.get(os_name, release)
    with Image(image) as img:
        unit = img.read("/etc/systemd/system/guest-agent.service")
        assert "ExecStart=/usr/local/bin/guest-agent --config-dir=/etc/trove/conf.d" in unit
        assert "User=ubuntu" in unit and "Restart=always" in unit
        assert img.stat("/etc/systemd/system/multi-user.target.wants/guest-agent.service").kind == "symlink"
        # production images carry neither the dev-only loader nor a key
        assert not img.exists("/usr/local/sbin/trove-image-loader")
        assert not img.exists("/home/ubuntu/.ssh/id_rsa")
        assert img.stat("/home/ubuntu/.ssh").mode & 0o777 == 0o700
        # no ssh host keys, no machine identity, no apt lists
        assert not [n for n in img.listdir("/etc/ssh") if n.startswith("ssh_host_")]
        assert img.read("/etc/machine-id") == ""
        assert img.listdir("/var/lib/apt/lists") in ([], ["partial"], ["auxfiles", "partial"], ["lock", "partial"])
        # kernel and initrd the static GRUB configuration points at
        assert img.stat("/boot/vmlinuz").kind == "symlink" and img.stat("/boot/initrd.img").kind == "symlink"
        grub = img.read("/boot/grub/grub.cfg")
        assert "root=LABEL=cloudimg-rootfs" in grub and "console=ttyS0,115200" in grub
        # the build host's CA bundle was only lent to pip
        assert not img.exists("/tmp/trove-builder-ca.pem")
        assert "ip_forward = 1" in img.read("/etc/sysctl.d/60-trove-ip-forward.conf")
        # every file time clamped to SOURCE_DATE_EPOCH
        stat = img.debugfs("stat /etc/trove/conf.d")
        assert "2026-01-01" in stat or "Jan  1 00:00:00 2026" in stat


def first_boot_work_left(image, blacklist: list[str]) -> list[str]:
    """What cloud-init's config stage, apparmor.service or udev would still do at first boot that the
    build could spare it (builder/guest/firstboot.py, builder/guest/apparmor.py, `blacklist`: the
    profile's kernel_module_blacklist); empty when the build did it."""
    left = []
    with Image(image) as img:
        conf = img.read("/etc/modprobe.d/trove-builder-blacklist.conf") or ""
        if missing := [m for m in blacklist if not re.search(rf"^blacklist {m}$", conf, re.MULTILINE)]:
            left.append(f"kernel modules: not blacklisted (udev loads them at boot): {' '.join(missing)}")
        if "LANG=C.UTF-8" not in (img.read("/etc/default/locale") or ""):
            left.append("locale: /etc/default/locale has no LANG=C.UTF-8 (cloud-init runs update-locale)")
        sshd = (img.read("/etc/ssh/sshd_config.d/50-cloud-init.conf") or "") + (img.read("/etc/ssh/sshd_config") or "")
        if not re.search(r"^PasswordAuthentication no$", sshd, re.MULTILINE):
            left.append("sshd: no 'PasswordAuthentication no' (cloud-init writes it and restarts sshd)")
        kernels = img.listdir("/lib/modules")
        recorded = recorded_features(kernels[0]) if len(kernels) == 1 else None
        if recorded is None:
            left.append(f"AppArmor: no feature set recorded for kernel(s) {kernels}")
            return left
        caches = [f"/var/cache/apparmor/{d}" for d in img.listdir("/var/cache/apparmor") or []]
        caches += ["/etc/apparmor.d/cache"] if img.exists("/etc/apparmor.d/cache/.features") else []
        matching = [c for c in caches if img.read(f"{c}/.features") == recorded.read_text()]
        if not matching:
            left.append(f"AppArmor: no cache compiled with {recorded.name} (apparmor.service compiles at boot)")
        elif not [n for n in img.listdir(matching[0]) if n != ".features"]:
            left.append(f"AppArmor: {matching[0]} holds no compiled profile")
    return left


@pytest.mark.parametrize("os_name,release", TARGETS)
def test_first_boot_work_is_done_by_the_build(images, os_name, release):
    blacklist = profile.load(os_name, release).kernel_module_blacklist
    assert first_boot_work_left(images.get(os_name, release), blacklist) == []


def test_dev_image_syncs_code_from_the_controller_with_the_operators_key(images, dev_image, dev_key):
    assert dev_image.name == "trove-guest-debian-bookworm-dev.qcow2"
    with Image(dev_image) as img:
        unit = img.read("/etc/systemd/system/guest-agent.service")
        assert "stack@${CONTROLLER}:/opt/stack/trove/ /home/ubuntu/trove" in unit
        assert "contrib/trove-guestagent" in unit and "EnvironmentFile=/etc/trove/controller.conf" in unit
        key = img.stat("/home/ubuntu/.ssh/id_rsa")
        assert key.mode & 0o777 == 0o600 and key.uid == 1000
        assert img.read("/home/ubuntu/.ssh/id_rsa") == dev_key.read_text()
        public = dev_key.with_suffix(".pub").read_text()
        assert img.read("/home/ubuntu/.ssh/id_rsa.pub").split()[:2] == public.split()[:2]
        assert img.exists("/usr/local/sbin/trove-image-loader") and img.exists("/usr/local/sbin/fix-default-route")
        assert "trove-image-loader.service" in img.listdir("/etc/systemd/system/multi-user.target.wants")
        assert not img.exists("/usr/local/bin/guest-agent")  # production's entry point only
        # dev mode reinstalls requirements at every start: the compilers stay
        assert img.exists("/usr/bin/gcc")
    manifest = json.loads((dev_image.parent / (dev_image.name + ".manifest.json")).read_text())
    assert manifest["inputs"]["dev_mode"] is True and manifest["agent"]["dev_ssh_key"] is True
    assert_contract(images, dev_image)
