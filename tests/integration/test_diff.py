"""`trove-builder diff`: small real disk images (GPT, FAT ESP, ext4 root made by mkfs.ext4 -d,
exported to qcow2) built here in seconds, compared by the real command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.image.disk import Layout
from tests.conftest import run_tb
from tests.integration.test_cli_errors import assert_one_line_error

TOOLS = ("qemu-img", "sfdisk", "debugfs", "mkfs.ext4", "mkfs.fat", "mcopy", "blkid")
pytestmark = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                reason=f"needs {', '.join(TOOLS)} (scripts/setup-host.sh installs them)")

EPOCH = 1767225600
LATER = EPOCH + 86400
LABEL_ID = "44444444-4444-4444-4444-444444444444"
PARTS = {"bios": "11111111-1111-1111-1111-111111111111", "esp": "22222222-2222-2222-2222-222222222222",
         "root": "33333333-3333-3333-3333-333333333333"}
FS_UUID = "55555555-5555-5555-5555-555555555555"


def make_tree(root: Path) -> Path:
    """A tiny root filesystem: files, a script, a symlink, a directory; every time clamped."""
    files = {"etc/hostname": "guest\n", "etc/trove/conf.d/guest_info.conf": "[DEFAULT]\n",
             "usr/bin/hello": "#!/bin/sh\necho hello\n", "var/lib/data.bin": "x" * 100_000,
             "etc/with space 'quoted' ünï.conf": "odd name\n"}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "usr/bin/hello").chmod(0o755)
    (root / "etc/localtime").symlink_to("/usr/share/zoneinfo/UTC")
    (root / "tmp").mkdir()
    stamp(root)
    return root


def stamp(root: Path, when: int = EPOCH) -> None:
    for path in [root, *root.rglob("*")]:
        os.utime(path, (when, when), follow_symlinks=False)


def make_image(tmp_path: Path, name: str, tree: Path, fs_uuid: str = FS_UUID, esp_file: bytes = b"grub\n",
               patch: dict[int, bytes] | None = None, fat_id: str = "12345678") -> Path:
    """What the assemble stage does, small: GPT by sfdisk, FAT32 ESP, ext4 root at its offset."""
    layout = Layout.for_size(1)
    raw = tmp_path / f"{name}.raw"
    with open(raw, "wb") as fh:
        fh.truncate(layout.total_bytes)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH), "E2FSPROGS_FAKE_TIME": str(EPOCH),
           "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"}

    def run(*cmd, **kw):
        return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, env=env, **kw)

    run("sfdisk", "--no-reread", "--no-tell-kernel", "-q", raw, input=layout.sfdisk_script(LABEL_ID, PARTS).encode())
    run("mkfs.ext4", "-q", "-F", "-b", "4096", "-L", "cloudimg-rootfs", "-U", fs_uuid,
        "-E", f"hash_seed={fs_uuid},offset={layout.root.offset},root_owner=0:0",
        "-d", tree, raw, layout.root.bytes // 4096)
    # This host's mkfs.ext4 copies the tree's ctimes and atimes (now-ish); clamp them as a build does.
    clamp = "".join(f"sif \"/{p.relative_to(tree) if p != tree else ''}\" {field} @{EPOCH}\n"
                    for p in [tree, *tree.rglob("*")] for field in ("ctime", "atime"))
    run("debugfs", "-w", "-f", "-", f"{raw}?offset={layout.root.offset}", input=clamp.encode())
    # No -n: bookworm's mkfs.fat stamps the volume label's directory entry with the clock.
    run("mkfs.fat", "-F", "32", "-S", "512", "-s", "1", "-i", fat_id,
        "--offset", layout.esp.start, raw, layout.esp.bytes // 1024)
    efi = tmp_path / f"{name}-BOOTX64.EFI"
    efi.write_bytes(esp_file)
    os.utime(efi, (EPOCH, EPOCH))
    esp = f"{raw}@@{layout.esp.offset}"
    run("mmd", "-i", esp, "::/EFI", "::/EFI/BOOT")
    run("mcopy", "-m", "-i", esp, efi, "::/EFI/BOOT/BOOTX64.EFI")
    with open(raw, "r+b") as fh:
        for offset, data in (patch or {}).items():  # e.g. boot code written outside any filesystem
            fh.seek(offset)
            fh.write(data)
    image = tmp_path / f"{name}.qcow2"
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, image)
    raw.unlink()
    return image


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The reference image and the tree it was made from."""
    tmp = tmp_path_factory.mktemp("diff-base")
    tree = make_tree(tmp / "tree")
    return make_image(tmp, "base", tree), tree


def variant(tmp_path: Path, base_tree: Path, change, **kw) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(base_tree, tree, symlinks=True)
    stamp(tree)
    change(tree)
    return make_image(tmp_path, "variant", tree, **kw)


def diff_json(a: Path, b: Path) -> tuple[int, dict]:
    result = run_tb("diff", str(a), str(b), "--json", timeout=300)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def root_files(report: dict) -> dict[str, dict]:
    root = next(p for p in report["partitions"] if p["name"] == "root")
    return {f["path"]: f for f in root.get("files", [])}


def test_same_tree_twice_is_identical(base, tmp_path):
    image, tree = base
    again = make_image(tmp_path, "again", tree)
    result = run_tb("diff", str(image), str(again), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("identical")


def test_same_disk_as_raw_is_identical_content(base, tmp_path):
    image, _ = base
    raw = tmp_path / "base.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    code, report = diff_json(image, raw)
    assert code == 0 and report["identical"] and not report["identical_files"]
    assert {"what": "format", "a": "qcow2", "b": "raw"} in report["disk"]


def test_changed_content_is_named_with_its_path(base, tmp_path):
    image, tree = base

    odd = "etc/with space 'quoted' ünï.conf"

    def change(root):  # same sizes, same times: only the bytes differ
        for rel, text in (("etc/hostname", "other\n"), (odd, "odd NAME\n")):
            (root / rel).write_text(text)
            os.utime(root / rel, (EPOCH, EPOCH))

    code, report = diff_json(image, variant(tmp_path, tree, change))
    assert code == 1
    files = root_files(report)
    for rel in ("etc/hostname", odd):
        assert files[f"/{rel}"]["status"] == "changed"
        assert list(files[f"/{rel}"]["changes"]) == ["content"]
    assert "/usr/bin/hello" not in files and "/var/lib/data.bin" not in files


def test_changed_mode_and_mtime_show_both_values(base, tmp_path):
    image, tree = base

    def change(root):
        (root / "usr/bin/hello").chmod(0o700)
        os.utime(root / "var/lib/data.bin", (LATER, LATER))

    variant_image = variant(tmp_path, tree, change)
    code, report = diff_json(image, variant_image)
    assert code == 1
    files = root_files(report)
    assert files["/usr/bin/hello"]["changes"]["mode"] == ["0755", "0700"]
    assert "content" not in files["/usr/bin/hello"]["changes"]
    assert files["/var/lib/data.bin"]["changes"]["mtime"] == [str(EPOCH), str(LATER)]
    human = run_tb("diff", str(image), str(variant_image), timeout=300)
    assert human.returncode == 1
    assert f"changed  /var/lib/data.bin  mtime {EPOCH} -> {LATER}" in human.stdout
    assert "changed  /usr/bin/hello  mode 0755 -> 0700" in human.stdout


def test_changed_xattr(base, tmp_path):
    image, tree = base

    def change(root):
        try:
            os.setxattr(root / "usr/bin/hello", "user.trove", b"1")
        except OSError as exc:
            pytest.skip(f"the scratch filesystem keeps no user xattrs: {exc}")

    code, report = diff_json(image, variant(tmp_path, tree, change))
    assert code == 1
    changes = root_files(report)["/usr/bin/hello"]["changes"]
    assert changes["xattrs"][0] == [] or changes["xattrs"][0] is None
    assert any("user.trove" in x for x in changes["xattrs"][1])


def test_added_and_removed_files(base, tmp_path):
    image, tree = base

    def change(root):
        (root / "etc/trove/conf.d/guest_info.conf").unlink()
        (root / "etc/machine-id").write_text("0123456789abcdef\n")
        os.utime(root / "etc/machine-id", (EPOCH, EPOCH))
        stamp(root / "etc")

    code, report = diff_json(image, variant(tmp_path, tree, change))
    assert code == 1
    files = root_files(report)
    assert files["/etc/trove/conf.d/guest_info.conf"]["status"] == "removed"
    assert files["/etc/machine-id"]["status"] == "added"
    assert files["/etc/machine-id"]["size"] == len("0123456789abcdef\n")
    root = next(p for p in report["partitions"] if p["name"] == "root")
    assert root["file_counts"]["added"] == 1 and root["file_counts"]["removed"] == 1


def test_same_files_other_filesystem_uuid_is_metadata(base, tmp_path):
    image, tree = base
    other = make_image(tmp_path, "uuid", tree, fs_uuid="66666666-6666-6666-6666-666666666666")
    code, report = diff_json(image, other)
    assert code == 1
    root = next(p for p in report["partitions"] if p["name"] == "root")
    assert root["files"] == []
    assert {"what": "Filesystem UUID", "a": FS_UUID, "b": "66666666-6666-6666-6666-666666666666"} in root["superblock"]
    where = {w["what"] for w in root["where"]}
    assert "superblock" in where and "file data" not in where
    human = run_tb("diff", str(image), str(other), timeout=300)
    assert "no file differs" in human.stdout and "superblock" in human.stdout


def test_changed_esp_file(base, tmp_path):
    image, tree = base
    code, report = diff_json(image, make_image(tmp_path, "esp", tree, esp_file=b"grub, rebuilt\n"))
    assert code == 1
    esp = next(p for p in report["partitions"] if p["name"] == "esp")
    assert esp["filesystem"] == "vfat"
    changed = {f["path"]: f for f in esp["files"]}
    assert "content" in changed["/EFI/BOOT/BOOTX64.EFI"]["changes"]
    assert {"what": "file data", "bytes": 512, "paths": ["/EFI/BOOT/BOOTX64.EFI"]} in esp["where"]
    assert root_files(report) == {}


def test_other_esp_serial_is_boot_sector_metadata(base, tmp_path):
    image, tree = base
    code, report = diff_json(image, make_image(tmp_path, "serial", tree, fat_id="87654321"))
    assert code == 1
    esp = next(p for p in report["partitions"] if p["name"] == "esp")
    assert esp["files"] == []
    assert {"what": "serial number", "a": "12345678", "b": "87654321"} in esp["boot_sector"]
    assert [w["what"] for w in esp["where"]] == ["boot sector and reserved sectors"]


def test_boot_code_outside_filesystems_is_located(base, tmp_path):
    image, tree = base
    bios = Layout.for_size(1).bios
    other = make_image(tmp_path, "boot", tree, patch={0x10: b"GRUB", bios.offset + 4096: b"core.img"})
    code, report = diff_json(image, other)
    assert code == 1
    assert [(a["what"], a["bytes"]) for a in report["outside_partitions"]] == \
        [("MBR (boot code, protective partition table)", 512)]
    part1 = report["partitions"][0]
    assert part1["name"] == "bios" and part1["bytes_differ"] == 512
    assert all(p["bytes_differ"] == 0 for p in report["partitions"][1:])
    human = run_tb("diff", str(image), str(other), timeout=300).stdout.splitlines()
    assert human[-1] == ("different: no file differs; the bytes differ in partition 1 bios (BIOS boot, GRUB core.img), "
                         "MBR (boot code, protective partition table)")


@pytest.mark.skipif(shutil.which("diffoscope") is None, reason="diffoscope is not installed")
def test_diffoscope_shows_the_changed_line(base, tmp_path):
    image, tree = base

    def change(root):
        (root / "usr/bin/hello").write_text("#!/bin/sh\necho goodbye\n")
        os.utime(root / "usr/bin/hello", (EPOCH, EPOCH))

    result = run_tb("diff", str(image), str(variant(tmp_path, tree, change)), "--diffoscope", timeout=300)
    assert result.returncode == 1, result.stderr
    assert "=== diffoscope partition 3:/usr/bin/hello" in result.stdout
    assert "echo goodbye" in result.stdout and "echo hello" in result.stdout


def test_diffoscope_missing_is_one_line(base, tmp_path):
    """Asked for diffoscope where there is none: one line on stderr, the comparison still runs."""
    image, tree = base
    other = make_image(tmp_path, "esp", tree, esp_file=b"grub, rebuilt\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in (*TOOLS, "dumpe2fs", "mattrib", "minfo", "mshowfat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    result = run_tb("diff", str(image), str(other), "--diffoscope", env={"PATH": str(bin_dir)}, timeout=300)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == "trove-builder: diffoscope is not installed: listing the differences without it"
    assert "changed  /EFI/BOOT/BOOTX64.EFI  content" in result.stdout and "=== diffoscope" not in result.stdout


@pytest.mark.parametrize("make_b,fragment", [
    (lambda tmp: tmp / "missing.qcow2", "no image at"),
    (lambda tmp: (tmp / "notes.txt", (tmp / "notes.txt").write_text("not a disk\n"))[0], "not a disk image"),
    (lambda tmp: (tmp / "bad.qcow2", (tmp / "bad.qcow2").write_bytes(b"QFI\xfb" + b"\0" * 508))[0], "bad.qcow2"),
    (lambda tmp: tmp, "no image at"),
])
def test_bad_input_is_one_line(base, tmp_path, make_b, fragment):
    image, _ = base
    assert_one_line_error(run_tb("diff", str(image), str(make_b(tmp_path))), 2, fragment)
