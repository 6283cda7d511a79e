"""Issue 4: `trove-builder lock` names every input, and a tampered lock is refused by file and hash.

One lock of debian bookworm (the stage cache of the session's bookworm build makes it quick: the
hooks and lock stages run again). The rebuild from a lock, offline from a cache `fetch` alone filled,
under another TZ, umask and locale, is test_image_lock.py's `verify` of the session's own image: it
proves what this file's two locked builds (online, offline) proved, and that they equal the unlocked
build.
"""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from tests.conftest import run_tb

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
    image_id = docker.from_env().images.get(builder_image).id
    assert data["builder_image"] == image_id


def test_the_lock_command_gives_the_lock_the_build_wrote_beside_its_image(locked, images):
    """`trove-builder lock` and the lock stage of a build are one code path: same content, no image section."""
    path, data = locked
    image = images.get("debian", "bookworm")
    written = json.loads(image.with_name(image.name + ".lock.json").read_text())
    assert "image" not in data and written.pop("image") == {"format": "qcow2", "compression": "zstd", "size_gb": 5}
    assert data == written


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
