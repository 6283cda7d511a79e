"""Lock files, the content-addressed store, fetch and the replay proxy, without a build."""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import urllib.error
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from builder.cache.cas import ContentStore, HashMismatch
from builder.errors import BuilderError, UsageError
from builder.lock.collect import _dist_of, installed_during_build, release_hashes
from builder.lock.fetch import check_complete, fetch
from builder.lock.lockfile import TARGET_FIELDS, Lock
from builder.lock.replay import Replay


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


DEB = b"pretend this is a .deb"
INDEX = b"pretend this is Packages.xz"
WHEEL = b"pretend this is a wheel"


def lock_data(base_url: str = "http://mirror.example/debian") -> dict:
    return {
        "trove_builder_lock": 1,
        "target": {name: None for name in TARGET_FIELDS} | {"os": "debian", "release": "bookworm"},
        "source_date_epoch": 1767225600,
        "builder_image": "sha256:" + "0" * 64,
        "trove_version": "26.0.0",
        "apt": {
            "indexes": [{"url": f"{base_url}/dists/bookworm/main/binary-amd64/Packages.xz", "sha256": sha(INDEX),
                         "size": len(INDEX)}],
            "packages": [{"name": "libfoo1", "arch": "amd64", "version": "1.2+deb12u1", "sha256": sha(DEB),
                          "size": len(DEB), "url": f"{base_url}/pool/main/f/foo/libfoo1_1.2+deb12u1_amd64.deb"}],
        },
        "python": {"index_url": "https://pypi.org/simple",
                   "files": [{"name": "pip", "version": "25.0", "filename": "pip-25.0-py3-none-any.whl",
                              "sha256": sha(WHEEL), "url": f"{base_url}/pip-25.0-py3-none-any.whl"}]},
    }


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "guest.lock.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_a_valid_lock_loads_and_names_every_file(tmp_path):
    lock = Lock.load(write(tmp_path, lock_data()))
    labels = [a.label for a in lock.artifacts()]
    assert "package libfoo1 1.2+deb12u1 (amd64)" in labels
    assert any(label.startswith("python package pip 25.0") for label in labels)
    assert len(lock.digest) == 64


@pytest.mark.parametrize("mutate, message", [
    (lambda d: "not json {", "is not valid JSON"),
    (lambda d: d | {"trove_builder_lock": 99}, "not a trove-builder lock"),
    (lambda d: {k: v for k, v in d.items() if k != "target"}, "'target' section"),
    (lambda d: d | {"source_date_epoch": "soon"}, "source_date_epoch"),
    (lambda d: d | {"apt": {"indexes": [], "packages": []}}, "locks no packages"),
    (lambda d: d | {"apt": {"indexes": [], "packages": [{"name": "x"}]}}, "lacks a field"),
])
def test_a_bad_lock_is_one_usage_error_naming_the_file(tmp_path, mutate, message):
    path = write(tmp_path, mutate(lock_data()))
    with pytest.raises(UsageError, match=message) as info:
        Lock.load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_sha256_that_is_not_one_is_refused_by_package_name(tmp_path):
    data = lock_data()
    data["apt"]["packages"][0]["sha256"] = "abc"
    with pytest.raises(UsageError, match="package libfoo1 1.2.deb12u1 \\(amd64\\): 'abc' is not a sha256"):
        Lock.load(write(tmp_path, data))


def test_a_missing_lock_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="is not a readable file"):
        Lock.load(tmp_path / "nope.json")


def test_the_store_keeps_only_files_whose_hash_matches(tmp_path):
    store = ContentStore(tmp_path)
    src = tmp_path / "f"
    src.write_bytes(DEB)
    with pytest.raises(HashMismatch):
        store.add_file(src, sha(b"something else"))
    assert not store.has(sha(b"something else"))
    store.add_file(src, sha(DEB))
    assert store.path(sha(DEB)).read_bytes() == DEB
    store.path(sha(DEB)).chmod(0o644)
    store.path(sha(DEB)).unlink()
    store.add_bytes(DEB)
    store.path(sha(DEB)).write_bytes(b"damaged")  # a damaged file is found and dropped
    assert not store.verify(sha(DEB)) and not store.has(sha(DEB))


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP server standing in for the archive and the package index."""
    root = tmp_path / "mirror"
    (root / "pool/main/f/foo").mkdir(parents=True)
    (root / "dists/bookworm/main/binary-amd64").mkdir(parents=True)
    (root / "pool/main/f/foo/libfoo1_1.2+deb12u1_amd64.deb").write_bytes(DEB)
    (root / "dists/bookworm/main/binary-amd64/Packages.xz").write_bytes(INDEX)
    (root / "pip-25.0-py3-none-any.whl").write_bytes(WHEEL)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_fills_the_store_and_a_second_fetch_downloads_nothing(tmp_path, mirror):
    root, url = mirror
    lock = Lock.load(write(tmp_path, lock_data(url)))
    store = ContentStore(tmp_path / "cache")
    assert fetch(lock, store, None)[0] == 3
    check_complete(lock, store, offline=True)
    assert fetch(lock, store, None) == (0, 0)


def test_fetch_names_the_package_whose_download_does_not_match_the_lock(tmp_path, mirror):
    root, url = mirror
    (root / "pool/main/f/foo/libfoo1_1.2+deb12u1_amd64.deb").write_bytes(b"a different build of libfoo1")
    lock = Lock.load(write(tmp_path, lock_data(url)))
    store = ContentStore(tmp_path / "cache")
    with pytest.raises(BuilderError, match=r"package libfoo1 1\.2\+deb12u1 \(amd64\): .* has sha256 [0-9a-f]{64}, "
                                           r"the lock says " + sha(DEB)):
        fetch(lock, store, None)
    assert not store.has(sha(b"a different build of libfoo1")) and not store.has(sha(DEB))


def test_fetch_says_when_a_locked_file_is_gone_from_the_mirror(tmp_path, mirror):
    root, url = mirror
    (root / "pool/main/f/foo/libfoo1_1.2+deb12u1_amd64.deb").unlink()
    lock = Lock.load(write(tmp_path, lock_data(url)))
    with pytest.raises(BuilderError, match="package libfoo1 .* is gone from its server \\(404\\)"):
        fetch(lock, ContentStore(tmp_path / "cache"), None)


def test_an_incomplete_store_names_the_first_missing_file(tmp_path):
    lock = Lock.load(write(tmp_path, lock_data()))
    store = ContentStore(tmp_path / "cache")
    store.add_bytes(INDEX)
    with pytest.raises(BuilderError, match=r"package libfoo1 1\.2\+deb12u1 \(amd64\) is not in the cache "
                                           r"\(sha256 [0-9a-f]{64}\) \(and 1 more\): run 'trove-builder fetch"):
        check_complete(lock, store, offline=True)


def _get(proxy: str, url: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_the_replay_proxy_serves_locked_files_by_url_and_hash_and_nothing_else(tmp_path):
    data = lock_data()
    # The same file in another pocket (Ubuntu's -security and -updates): apt may ask there instead.
    data["apt"]["packages"][0]["also_at"] = ["http://security.example/pool/main/f/foo/libfoo1_1.2+deb12u1_amd64.deb"]
    lock = Lock.load(write(tmp_path, data))
    store = ContentStore(tmp_path / "cache")
    for blob in (DEB, INDEX, WHEEL):
        store.add_bytes(blob)
    replay = Replay(lock, store, tmp_path / "work")
    replay.start()
    try:
        proxy = replay.proxy_url
        base = "http://mirror.example/debian"
        assert _get(proxy, f"{base}/pool/main/f/foo/libfoo1_1.2%2bdeb12u1_amd64.deb") == (200, DEB)
        assert _get(proxy, "http://security.example/pool/main/f/foo/libfoo1_1.2+deb12u1_amd64.deb") == (200, DEB)
        assert _get(proxy, f"{base}/dists/bookworm/main/binary-amd64/Packages.xz") == (200, INDEX)
        assert _get(proxy, f"{base}/dists/bookworm/main/binary-amd64/by-hash/SHA256/{sha(INDEX)}") == (200, INDEX)
        # A .deb is never served by hash, and nothing unlocked at all.
        assert _get(proxy, f"{base}/dists/bookworm/main/binary-amd64/by-hash/SHA256/{sha(DEB)}")[0] == 404
        assert _get(proxy, f"{base}/pool/main/b/bar/bar_1_amd64.deb")[0] == 404
        assert "Check-Valid-Until" in (replay.dir / "apt.conf").read_text()
        # pip gets the unlocked build's own requirement, from these files and versions only.
        assert (replay.dir / "constraints.txt").read_text() == "pip==25.0\n"
        assert replay.pip_source_args[:2] == ["--no-index", "--find-links"]
        assert (replay.dir / "python/pip-25.0-py3-none-any.whl").read_bytes() == WHEEL
        assert replay.chroot_env["http_proxy"] == proxy
    finally:
        replay.stop()


def test_replay_checks_name_the_package_that_differs_from_the_lock(tmp_path):
    replay = Replay(Lock.load(write(tmp_path, lock_data())), ContentStore(tmp_path), tmp_path)
    replay.check_packages({("libfoo1", "amd64", "1.2+deb12u1")})
    with pytest.raises(BuilderError, match=r"package libfoo1 \(amd64\): installed 1\.3, the lock says 1\.2\+deb12u1"):
        replay.check_packages({("libfoo1", "amd64", "1.3")})
    with pytest.raises(BuilderError, match=r"package vim \(amd64\) 9 was installed but is not in the lock"):
        replay.check_packages({("libfoo1", "amd64", "1.2+deb12u1"), ("vim", "amd64", "9")})
    replay.check_python(["pip==25.0"])
    with pytest.raises(BuilderError, match=r"python package pip: installed 24\.0, the lock says 25\.0"):
        replay.check_python(["pip==24.0"])


def test_release_hashes_read_the_sha256_section_only():
    text = ("Origin: Debian\nMD5Sum:\n 0123 10 main/binary-amd64/Packages.xz\nSHA256:\n"
            f" {'a' * 64} 1234 main/binary-amd64/Packages.xz\n {'b' * 64} 99 main/binary-amd64/Packages\n")
    assert release_hashes(text) == {"main/binary-amd64/Packages.xz": ("a" * 64, 1234),
                                    "main/binary-amd64/Packages": ("b" * 64, 99)}


def test_every_package_dpkg_installed_counts_including_upgraded_and_purged(tmp_path):
    (tmp_path / "var/log").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text("")
    (tmp_path / "var/log/dpkg.log").write_text(
        "2026-01-01 00:00:00 status installed base-files:amd64 12.4\n"
        "2026-01-01 00:00:01 status half-configured base-files:amd64 12.4+deb12u1\n"
        "2026-01-01 00:00:02 status installed base-files:amd64 12.4+deb12u1\n"
        "2026-01-01 00:00:03 status installed gcc-12:amd64 12.2.0-14\n"
        "2026-01-01 00:00:04 status not-installed gcc-12:amd64 <none>\n")
    assert installed_during_build(tmp_path) == {("base-files", "amd64", "12.4"),
                                                ("base-files", "amd64", "12.4+deb12u1"),
                                                ("gcc-12", "amd64", "12.2.0-14")}


@pytest.mark.parametrize("filename, expected", [
    ("oslo.config-9.4.0-py3-none-any.whl", ("oslo-config", "9.4.0")),
    ("Paste-3.10.1-py3-none-any.whl", ("paste", "3.10.1")),
    ("python_dateutil-2.9.0.post0-py2.py3-none-any.whl", ("python-dateutil", "2.9.0.post0")),
    ("pycrypto-2.6.1.tar.gz", ("pycrypto", "2.6.1")),
])
def test_distribution_names_are_read_from_file_names(filename, expected):
    assert _dist_of(filename) == expected
