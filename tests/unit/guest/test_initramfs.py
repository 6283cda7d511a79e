"""The initramfs re-pack (bionic): same content, and the same bytes whatever order, inodes, times
and gzip header the guest's mkinitramfs produced."""

import gzip
import os
import subprocess
from pathlib import Path

import pytest

from builder.guest.initramfs import InitramfsError, repack

EPOCH = 1_767_225_600  # 2026-01-01
OLD = 1_600_000_000    # a packaged file's time, before the epoch: kept



def make_tree(root: Path, now: int) -> None:
    """A small initramfs tree: dirs, a file with hard links (busybox style), a symlink, a script."""
    (root / "bin").mkdir(parents=True)
    (root / "conf").mkdir()
    (root / "bin/busybox").write_bytes(b"\x7fELF pretend busybox" * 100)
    for name in ("sh", "mount", "cat"):
        os.link(root / "bin/busybox", root / "bin" / name)
    (root / "bin/busybox").chmod(0o755)
    (root / "init").write_text("#!/bin/sh\nexec /bin/sh\n")
    (root / "init").chmod(0o755)
    (root / "conf/arch.conf").write_text("DPKG_ARCH=amd64\n")
    os.symlink("busybox", root / "bin/ls")
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(Path(dirpath) / name, (now, now), follow_symlinks=False)
    os.utime(root / "bin/busybox", (OLD, OLD))
    os.utime(root, (now, now))


def cpio_of(root: Path, reverse: bool) -> bytes:
    """What mkinitramfs 0.130 does: `find .` (here in either order) piped to cpio -o -H newc."""
    names = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout.splitlines()
    names.sort(reverse=reverse)
    return subprocess.run(["cpio", "--quiet", "-o", "-H", "newc"], cwd=root, input=b"\n".join(names) + b"\n",
                          capture_output=True, check=True).stdout


def initramfs(tmp_path: Path, tag: str, now: int, reverse: bool, early: bytes = b"") -> bytes:
    root = tmp_path / tag
    make_tree(root, now)
    return early + gzip.compress(cpio_of(root, reverse), mtime=now)


def extract(blob: bytes, dest: Path) -> Path:
    dest.mkdir()
    subprocess.run(["cpio", "--quiet", "-idm"], cwd=dest, input=gzip.decompress(blob), check=True)
    return dest


def test_two_builds_of_the_same_tree_give_the_same_bytes_after_the_repack(tmp_path):
    one = initramfs(tmp_path, "one", now=EPOCH + 1000, reverse=False)
    two = initramfs(tmp_path, "two", now=EPOCH + 90000, reverse=True)
    assert one != two, "the inputs must differ as two builds of mkinitramfs do"
    assert repack(one, EPOCH) == repack(two, EPOCH)


def test_the_repacked_initramfs_has_the_same_files_links_and_clamped_times(tmp_path):
    original = initramfs(tmp_path, "src", now=EPOCH + 5000, reverse=True)
    packed = repack(original, EPOCH)
    assert packed[:2] == b"\x1f\x8b" and packed[4:8] == b"\0\0\0\0", "gzip, without a time in its header"
    out = extract(packed, tmp_path / "out")
    assert (out / "bin/busybox").read_bytes() == b"\x7fELF pretend busybox" * 100
    inodes = {os.stat(out / "bin" / n).st_ino for n in ("busybox", "sh", "mount", "cat")}
    assert inodes == {os.stat(out / "bin/sh").st_ino}
    assert os.stat(out / "bin/sh").st_nlink == 4
    assert os.readlink(out / "bin/ls") == "busybox"
    assert (out / "init").stat().st_mode & 0o777 == 0o755
    assert (out / "conf/arch.conf").read_text() == "DPKG_ARCH=amd64\n"
    assert (out / "conf/arch.conf").stat().st_mtime == EPOCH, "build-time files are clamped to the epoch"
    assert (out / "bin/busybox").stat().st_mtime == OLD, "older (packaged) times are kept"


def test_an_uncompressed_early_archive_stays_first_and_uncompressed(tmp_path):
    early_root = tmp_path / "early"
    (early_root / "kernel/x86/microcode").mkdir(parents=True)
    (early_root / "kernel/x86/microcode/GenuineIntel.bin").write_bytes(b"microcode")
    blob = initramfs(tmp_path, "main", now=EPOCH + 7, reverse=False, early=cpio_of(early_root, reverse=True))
    packed = repack(blob, EPOCH)
    assert packed.startswith(b"070701")
    listing = subprocess.run(["cpio", "--quiet", "-t"], input=packed, capture_output=True, check=True).stdout.decode()
    assert "kernel/x86/microcode/GenuineIntel.bin" in listing.split()
    main = packed[packed.index(b"\x1f\x8b"):]
    assert "bin/busybox" in subprocess.run(["cpio", "--quiet", "-t"], input=gzip.decompress(main),
                                           capture_output=True, check=True).stdout.decode().split()
    assert repack(packed, EPOCH) == packed


def test_an_unknown_compression_is_refused_not_guessed():
    with pytest.raises(InitramfsError, match="unknown compression"):
        repack(b"\x28\xb5\x2f\xfd" + b"zstd frame", EPOCH)
