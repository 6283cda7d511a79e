"""The builder image's lock and assembly, the parts that need no mmdebstrap run: reading apt's
records, fetching locked .debs (missing upstream, tampered), and the image config."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from builder.builderimage import assemble, lock
from builder.cache.cas import ContentStore, HashMismatch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def mirror(tmp_path):
    """A tiny archive on the loopback: pool/main/f/foo/foo_1.0_all.deb."""
    root = tmp_path / "mirror"
    (root / "pool/main/f/foo").mkdir(parents=True)
    (root / "pool/main/f/foo/foo_1.0_all.deb").write_bytes(b"not really a deb")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def locked(mirror: str, filename: str, sha256: str) -> dict:
    return {"mirror": mirror, "packages": [{"name": "foo", "version": "1.0", "arch": "all",
                                            "filename": filename, "sha256": sha256, "size": 16}]}


def test_a_locked_deb_is_fetched_into_the_store_by_its_hash(mirror, tmp_path):
    digest = hashlib.sha256(b"not really a deb").hexdigest()
    store = ContentStore(tmp_path / "cache")
    assemble.fetch_debs(locked(mirror, "pool/main/f/foo/foo_1.0_all.deb", digest), store)
    assert store.path(digest).read_bytes() == b"not really a deb"


def test_a_deb_the_archive_no_longer_has_says_how_to_refresh(mirror, tmp_path):
    with pytest.raises(OSError, match="not in the cache .* 404.*`make builder-lock`"):
        assemble.fetch_debs(locked(mirror, "pool/main/f/foo/foo_0.9_all.deb", "a" * 64), ContentStore(tmp_path))


def test_a_deb_that_is_not_the_locked_file_is_refused(mirror, tmp_path):
    store = ContentStore(tmp_path / "cache")
    with pytest.raises(HashMismatch):
        assemble.fetch_debs(locked(mirror, "pool/main/f/foo/foo_1.0_all.deb", "b" * 64), store)
    assert not store.has("b" * 64)


def test_apt_records_become_lock_entries():
    text = ("Package: bsdutils\nVersion: 1:2.41-5\nArchitecture: amd64\nDepends: libc6\n"
            "Filename: pool/main/u/util-linux/bsdutils_2.41-5_amd64.deb\nSize: 100\nSHA256: " + "c" * 64 + "\n\n"
            "Package: zstd\nVersion: 1.5.7+dfsg-1\nArchitecture: amd64\nFilename: pool/main/z/zstd/z.deb\n"
            "Size: 5\nSHA256: " + "d" * 64 + "\n")
    first, second = lock.parse_stanzas(text)
    assert first == {"Package": "bsdutils", "Version": "1:2.41-5", "Architecture": "amd64",
                     "Filename": "pool/main/u/util-linux/bsdutils_2.41-5_amd64.deb", "Size": "100", "SHA256": "c" * 64}
    assert second["Package"] == "zstd"


def test_the_committed_lock_names_every_listed_package_with_a_hash():
    data = json.loads((REPO / "containerfiles" / "builder.lock.json").read_text())
    names = {p["name"] for p in data["packages"]}
    assert set(lock.wanted(REPO / "containerfiles" / "builder-packages.txt")) <= names
    assert all(len(p["sha256"]) == 64 and p["filename"].startswith("pool/") for p in data["packages"])


def test_the_image_config_depends_only_on_lock_and_layer():
    one = assemble.config("a" * 64, "b" * 64, 1767225600)
    assert one == assemble.config("a" * 64, "b" * 64, 1767225600)
    assert one != assemble.config("a" * 64, "c" * 64, 1767225600)
    conf = json.loads(one)
    assert conf["created"] == "2026-01-01T00:00:00Z" and conf["rootfs"]["diff_ids"] == ["sha256:" + "b" * 64]
