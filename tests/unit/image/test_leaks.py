"""The build-host leak scan on a real directory tree (the scan `check --forbid` runs on an image's files)."""

import os
import shutil

import pytest

from builder.image import leaks


def tree(tmp_path, files: dict[str, bytes]):
    for name, data in files.items():
        path = tmp_path / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return tmp_path


def test_finds_a_host_path_in_contents_names_and_link_targets(tmp_path):
    root = tree(tmp_path, {"/etc/a.conf": b"x=/tmp/pytest-of-root/pytest-3/images0\n",
                           "/usr/bin/tool": b"\x7fELF\0\0/home/alice/src\0",
                           "/var/lib/alice-notes/ok": b"nothing"})
    os.symlink("/tmp/pytest-of-root/pytest-3/x", root / "etc/link")
    hits = leaks.scan_tree(root, ["/tmp/pytest-of-root", "/home/alice", "alice", "/absent"])
    assert hits == {"/tmp/pytest-of-root": ["/etc/a.conf", "/etc/link"],
                    "/home/alice": ["/usr/bin/tool"],
                    "alice": ["/usr/bin/tool", "/var/lib/alice-notes", "/var/lib/alice-notes/ok"]}


def test_a_short_name_must_stand_alone(tmp_path):
    """A host called 'vm' is not in 'vmlinuz' or 'kvm', but is in 'root@vm' and a line 'vm'."""
    root = tree(tmp_path, {"/boot/vmlinuz": b"vmlinuz kvm vm_area", "/etc/hostname": b"vm\n",
                           "/etc/ssh/key.pub": b"ssh-ed25519 AAAA root@vm\n"})
    assert leaks.scan_tree(root, ["vm"]) == {"vm": ["/etc/hostname", "/etc/ssh/key.pub"]}


def test_a_match_across_read_chunks_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(leaks, "CHUNK", 7)
    root = tree(tmp_path, {"/big": b"a" * 40 + b"/work/main/x" + b"b" * 40})
    assert leaks.scan_tree(root, ["/work/main"]) == {"/work/main": ["/big"]}


def test_dev_mode_allows_the_controller_path_only(tmp_path):
    """Dev images bake in the controller's path by design; the same host prefix elsewhere is still a leak."""
    root = tree(tmp_path, {"/etc/systemd/system/guest-agent.service": b"rsync stack@ctl:/work/ctl/trove/ dst\n",
                           "/etc/other": b"cache=/work/ctl/cache\n"})
    hits = leaks.scan_tree(root, ["/work/ctl"], allow=["stack", "/work/ctl/trove"])
    assert hits == {"/work/ctl": ["/etc/other"]}


def test_summary_is_short():
    text = leaks.summary({"/x": [f"/f{i}" for i in range(5)]})
    assert text == "'/x' in 5 files (/f0, /f1, /f2, ...)"


def small_disk_image(tmp_path, files: dict[str, bytes]):
    """A real GPT disk whose last partition is ext4 made from `files` (what `check` reads, without a build)."""
    import subprocess

    root = tree(tmp_path / "tree", files)
    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as fh:
        fh.truncate(24 * 2**20)
    subprocess.run(["sfdisk", "-q", str(disk)], input="label: gpt\nstart=2048, type=linux\n", text=True, check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(root), "-E", f"offset={2048 * 512}", str(disk), "20M"],
                   check=True)
    return disk


@pytest.mark.skipif(not all(shutil.which(t) for t in ("sfdisk", "mkfs.ext4", "debugfs", "qemu-img")),
                    reason="needs sfdisk, mkfs.ext4, debugfs, qemu-img")
def test_check_forbid_on_a_real_disk_image(tmp_path):
    from tests.conftest import run_tb

    disk = small_disk_image(tmp_path, {"/etc/trove/conf.d/x.conf": b"log_dir=/srv/build-host-42/logs\n",
                                       "/usr/bin/tool": b"\0\0/usr/lib\0"})
    found = run_tb("check", str(disk), "--forbid", "/srv/build-host-42", "--forbid", "elsewhere")
    def scan_line(result):
        return [" ".join(line.split()) for line in result.stdout.splitlines() if "no build-host strings" in line]

    assert found.returncode == 1  # the other contract checks fail too on this bare disk
    assert scan_line(found) == ["FAIL no build-host strings '/srv/build-host-42' in 1 file (/etc/trove/conf.d/x.conf)"]
    clean = run_tb("check", str(disk), "--forbid", "/srv/other-host")
    assert scan_line(clean) == ["PASS no build-host strings none of 1 strings"]
