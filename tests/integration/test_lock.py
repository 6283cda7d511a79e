"""Issue 4 items 2-3: lock a build, fetch its files into an empty cache, build offline, same bytes.

One lock of debian bookworm (the stage cache of the session's bookworm build makes it quick), then
two real builds from it without checkpoints: online from the cache the lock filled, and with no
network at all from a cache that `fetch` alone filled. They must give the same sha256.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TB, record_hash, run_tb

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def locked(images, builder_image, tmp_path_factory):
    """(lock file, its data, the cache `lock` filled). Built after the session's bookworm image."""
    images.get("debian", "bookworm")  # its checkpoints make `lock` re-run only the hooks stage
    root = tmp_path_factory.mktemp("lock")
    path = root / "bookworm.lock.json"
    result = run_tb("lock", "debian", "bookworm", "-o", str(path), "--builder-image", builder_image)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"lock written: {path}" in result.stdout
    return path, json.loads(path.read_text())


def test_the_lock_names_every_package_python_file_and_input(locked, builder_image):
    path, data = locked
    names = {p["name"] for p in data["apt"]["packages"]}
    assert {"linux-image-cloud-amd64", "docker.io", "cloud-init", "python3-venv"} <= names
    python = {f["name"]: f for f in data["python"]["files"]}
    assert python["trove"]["version"] == data["trove_version"] == data["target"]["agent_version"]
    assert all(f["url"].startswith("https://") and len(f["sha256"]) == 64 for f in python.values())
    assert any(i["url"].endswith("/dists/bookworm/InRelease") for i in data["apt"]["indexes"])
    assert data["source_date_epoch"] == 1767225600
    image_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", builder_image],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert data["builder_image"] == image_id


def test_an_offline_build_from_a_fetched_cache_equals_the_online_build(locked, builder_image, tmp_path):
    """The offline build also runs under another TZ, umask, locale, work dir and output name, with a
    cache that held nothing but what `fetch` put there (no .debs, no wheels, no checkpoints)."""
    path, data = locked
    online = tmp_path / "online" / "guest.qcow2"
    online.parent.mkdir()
    result = run_tb("build", "--lock", str(path), "-o", str(online), "--builder-image", builder_image, "--no-cache")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    cold = tmp_path / "fetched-cache"
    fetched = run_tb("fetch", "--lock", str(path), "--cache-dir", str(cold))
    assert fetched.returncode == 0, fetched.stdout[-2000:] + fetched.stderr[-2000:]
    assert not (cold / "apt").exists(), "fetch fills the content-addressed store only"

    offline = tmp_path / "elsewhere" / "other-name.qcow2"
    offline.parent.mkdir()
    env = {**os.environ, "TZ": "Asia/Tokyo", "LC_ALL": "C", "LANG": "C"}
    result = subprocess.run(
        ["sh", "-c", 'umask 077 && exec "$@"', "sh", *TB, "build", "--lock", str(path), "-o", str(offline),
         "--offline", "--builder-image", builder_image, "--cache-dir", str(cold), "--no-cache",
         "--work-dir", str(tmp_path / "scratch")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "offline: no network but the loopback" in result.stdout
    scratch = tmp_path / "scratch"
    assert not scratch.exists() or not any(scratch.iterdir()), "the work dir was left behind"
    online_sum = record_hash("bookworm locked, online, cache filled by `lock`, no stage cache", online)
    assert record_hash("bookworm locked, offline (no network), cache filled by `fetch` only, TZ Asia/Tokyo, "
                       "umask 077, LC_ALL=C, other work dir and output name, no stage cache", offline) == online_sum, \
        "an offline build under another TZ/umask/locale/work dir must give the online build's bytes"
    manifest = json.loads((offline.parent / "other-name.qcow2.manifest.json").read_text())
    installed = {(p["name"], p["version"]) for p in manifest["packages"]}
    locked_set = {(p["name"], p["version"]) for p in data["apt"]["packages"]}
    assert installed <= locked_set


def _tampered(path: Path, tmp_path: Path, package: str) -> tuple[Path, dict]:
    data = json.loads(path.read_text())
    entry = next(p for p in data["apt"]["packages"] if p["name"] == package)
    entry["sha256"] = "0" * 64
    bad = tmp_path / "tampered.lock.json"
    bad.write_text(json.dumps(data))
    return bad, entry


def test_a_tampered_hash_offline_names_the_package_missing_from_the_cache(locked, builder_image, tmp_path):
    path, _ = locked
    bad, entry = _tampered(path, tmp_path, "bash")
    out = tmp_path / "guest.qcow2"
    result = run_tb("build", "--lock", str(bad), "-o", str(out), "--offline", "--builder-image", builder_image)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"package bash {entry['version']} (amd64) is not in the cache (sha256 {'0' * 64})" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_a_tampered_hash_online_names_the_package_whose_download_differs(locked, builder_image, tmp_path):
    path, _ = locked
    bad, entry = _tampered(path, tmp_path, "bash")
    result = run_tb("fetch", "--lock", str(bad))
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"package bash {entry['version']} (amd64): {entry['url']} has sha256 " in result.stderr
    assert f"the lock says {'0' * 64}" in result.stderr
