"""The stage cache keeps a root filesystem exactly, refuses damaged entries and stays within its limit."""

import fcntl
import json
import os
import stat
import time

import pytest

from builder.cache.stagecache import StageCache, parse_size
from builder.errors import UsageError


def make_tree(root):
    (root / "etc").mkdir(parents=True)
    (root / "etc/conf").write_text("x = 1\n")
    os.chmod(root / "etc/conf", 0o640)
    os.chown(root / "etc/conf", 1001, 1002)
    os.link(root / "etc/conf", root / "etc/conf-hardlink")
    os.symlink("conf", root / "etc/conf-link")
    (root / "bin").mkdir()
    (root / "bin/ping").write_bytes(b"\x7fELF" + b"\0" * 100)
    os.setxattr(root / "bin/ping", "security.capability",
                bytes.fromhex("0100000200200000000000000000000000000000"))
    os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    with open(root / "sparse", "wb") as fh:
        fh.truncate(1 << 30)
    os.utime(root / "etc/conf", (1000, 1000), follow_symlinks=False)


def test_a_rootfs_comes_back_exactly(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src)
    cache = StageCache(tmp_path / "cache")
    entry = cache.save_rootfs("system", "k" * 64, src, {"hooks": ["a"]})
    assert entry.bytes < 1 << 20, "holes are not stored"
    found = cache.lookup("system", "k" * 64)
    assert found is not None and found.results == {"hooks": ["a"]}
    cache.restore_rootfs(found, dst)
    conf = os.lstat(dst / "etc/conf")
    assert (stat.S_IMODE(conf.st_mode), conf.st_uid, conf.st_gid, conf.st_mtime) == (0o640, 1001, 1002, 1000)
    assert conf.st_ino == os.lstat(dst / "etc/conf-hardlink").st_ino
    assert os.readlink(dst / "etc/conf-link") == "conf"
    assert os.getxattr(dst / "bin/ping", "security.capability") == os.getxattr(src / "bin/ping", "security.capability")
    assert stat.S_ISCHR(os.lstat(dst / "null").st_mode) and os.lstat(dst / "null").st_rdev == os.makedev(1, 3)
    assert os.path.getsize(dst / "sparse") == 1 << 30


def test_a_damaged_entry_is_removed_not_used(tmp_path, capsys):
    src = tmp_path / "src"
    make_tree(src)
    cache = StageCache(tmp_path / "cache")
    entry = cache.save_rootfs("agent", "a" * 64, src, {})
    with open(entry.payload, "r+b") as fh:
        fh.seek(40)
        fh.write(b"\xff\xff\xff\xff")
    assert cache.lookup("agent", "a" * 64) is None
    assert "damaged (payload checksum mismatch)" in capsys.readouterr().out
    assert not entry.path.exists() and cache.entries() == []


def test_an_entry_for_another_key_is_not_used(tmp_path):
    cache = StageCache(tmp_path / "cache")
    image = tmp_path / "image.qcow2"
    image.write_bytes(b"image")
    entry = cache.save_file("image", "b" * 64, image, {})
    meta = json.loads((entry.path / "meta.json").read_text())
    meta["key"] = "c" * 64
    (entry.path / "meta.json").write_text(json.dumps(meta))
    assert cache.lookup("image", "b" * 64) is None


def test_prune_keeps_the_most_recently_used_within_the_limit(tmp_path):
    cache = StageCache(tmp_path / "cache")
    payload = tmp_path / "p.raw"
    payload.write_bytes(os.urandom(100_000))
    for index, key in enumerate("defg"):
        cache.save_file("image", key * 64, payload, {})
        stamp = cache.entry_dir("image", key * 64) / "last-used"
        stamp.touch()
        os.utime(stamp, (time.time() - 1000 + index, time.time() - 1000 + index))
    cache.lookup("image", "d" * 64)  # used now: the newest
    removed = cache.prune(250_000)
    assert sorted(e.path.name[6:7] for e in removed) == ["e", "f"]
    assert sorted(e.path.name[6:7] for e in cache.entries()) == ["d", "g"]
    assert cache.total_bytes() <= 250_000
    assert len(cache.clear()) == 2 and cache.entries() == []


def test_sweep_removes_what_a_killed_build_left_but_not_a_live_write(tmp_path):
    cache = StageCache(tmp_path / "cache")
    cache.root.mkdir(parents=True)
    stale, live = cache.root / ".tmp-system-stale", cache.root / ".tmp-agent-live"
    for path in (stale, live):
        path.mkdir()
        (path / ".writing").touch()
        (path / "rootfs.tar.zst").write_bytes(b"partial")
    with open(live / ".writing") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        cache.sweep()
    assert not stale.exists() and live.exists()


@pytest.mark.parametrize("text, size", [("20G", 20 << 30), ("512M", 512 << 20), ("1.5GiB", 3 << 29), ("1000", 1000)])
def test_sizes(text, size):
    assert parse_size(text) == size


def test_a_bad_size_is_a_usage_error():
    with pytest.raises(UsageError, match="is not a size"):
        parse_size("lots")


def test_builds_share_downloads_but_not_apt_locks(tmp_path):
    """Each build gets its own archive dir (apt locks it) linked to the shared downloads."""
    from builder.cache import aptcache

    shared = aptcache.shared_dir(tmp_path, "debian", "bookworm")
    shared.mkdir(parents=True)
    (shared / "old_1_amd64.deb").write_bytes(b"old")
    one = aptcache.seed(shared, aptcache.private_dir(tmp_path, tmp_path / "work" / "build-1"))
    two = aptcache.seed(shared, aptcache.private_dir(tmp_path, tmp_path / "work" / "build-2"))
    assert one != two
    assert (one / "old_1_amd64.deb").stat().st_ino == (shared / "old_1_amd64.deb").stat().st_ino
    (one / "new_2_amd64.deb").write_bytes(b"new")
    (one / "partial" / "half_3_amd64.deb").write_bytes(b"ha")
    aptcache.release(one, shared)
    assert (shared / "new_2_amd64.deb").read_bytes() == b"new"
    assert not (shared / "half_3_amd64.deb").exists(), "partial downloads are never shared"
    assert not one.exists() and two.exists()
    assert aptcache.sweep(tmp_path) == 0, "a live build's dir is left alone"
    aptcache._held.pop(two).close()  # as if its build had been killed
    assert aptcache.sweep(tmp_path) == 1 and not two.exists()
