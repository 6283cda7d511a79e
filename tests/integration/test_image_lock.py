"""Issue 16: every image carries the lock that rebuilds it bit for bit, and `verify` proves it.

The session's unlocked bookworm build wrote IMAGE.lock.json. `fetch` alone fills an empty cache
from it; `verify` rebuilds from it with no network and no checkpoint, under another TZ, umask and
locale, and must find the same sha256 (the rebuilt file is kept and hashed here too, not just its
sidecar). This is the one full rebuild of this file (it replaces test_lock.py's two locked builds).

The negative: the same lock with another agent release (trove 26.0.0.0rc1, whose requirements are
26.0.0's). `verify --reuse-checkpoints` restores the bootstrap and system checkpoints the first
verify stored (their keys hold only the lock's apt part, which did not change), so only the agent
stage and the ones after it run again; the image differs and `diff`'s summary says where.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request

import docker
import pytest

from builder.cache.cas import ContentStore
from builder.lock.lockfile import Lock
from builder.spec import default_cache_dir
from tests.conftest import TB, file_sha256, record_hash, record_latency

pytestmark = pytest.mark.slow

OTHER_AGENT = "26.0.0.0rc1"


@pytest.fixture(scope="module")
def bookworm(images):
    image = images.get("debian", "bookworm")
    return image, image.with_name(image.name + ".lock.json")


@pytest.fixture(scope="module")
def fetched_cache(bookworm, tmp_path_factory):
    """A cache that holds nothing but what `fetch` put there: no .debs, no wheels, no checkpoints."""
    _, lock_file = bookworm
    cache = tmp_path_factory.mktemp("fetched-cache")
    result = subprocess.run([*TB, "fetch", "--lock", str(lock_file), "--cache-dir", str(cache)],
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert not (cache / "apt").exists(), "fetch fills the content-addressed store only"
    return cache


def verify(*args: str, cwd, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", 'umask 077 && exec "$@"', "sh", *TB, "verify", *args], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=3600)


def test_the_build_wrote_the_lock_of_what_it_installed(bookworm, builder_image):
    image, lock_file = bookworm
    lock = Lock.load(lock_file)
    manifest = json.loads(image.with_name(image.name + ".manifest.json").read_text())
    installed = {(p["name"], p["arch"], p["version"]) for p in manifest["packages"]}
    assert installed <= {(p["name"], p["arch"], p["version"]) for p in lock.packages}
    python = {f["name"]: f for f in lock.python_files}
    assert python["trove"]["version"] == lock.data["trove_version"] == manifest["agent"]["version"]
    assert all(f["url"].startswith("https://") for f in python.values())
    assert lock.image == {"format": "qcow2", "compression": "zstd", "size_gb": 5}
    image_id = docker.from_env().images.get(builder_image).id
    assert lock.data["builder_image"] == image_id
    store = ContentStore(default_cache_dir())
    absent = [a.label for a in lock.artifacts() if not store.has(a.sha256)]
    assert not absent, f"the build left locked files out of the content store: {absent[:5]}"


def test_verify_rebuilds_the_image_offline_from_its_lock_with_the_same_bytes(bookworm, fetched_cache, tmp_path):
    """Also under another TZ, umask and locale, from a cache `fetch` alone filled, in another work dir."""
    image, _ = bookworm
    kept = tmp_path / "rebuilt.qcow2"
    started = time.monotonic()
    result = verify(str(image), "--keep", str(kept), "--cache-dir", str(fetched_cache), cwd=tmp_path,
                    env={"TZ": "Asia/Tokyo", "LC_ALL": "C", "LANG": "C"})
    record_latency("verify: offline rebuild of bookworm from its lock, no checkpoints", time.monotonic() - started)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "offline: no network but the loopback" in result.stderr
    assert f"reproduced: {image} sha256 " in result.stdout
    rebuilt = file_sha256(kept)
    kept.with_name(kept.name + ".sha256").write_text(f"{rebuilt}  {kept.name}\n")  # for the hash log
    assert record_hash("bookworm unlocked (session build, wrote its lock)", image) == \
        record_hash("bookworm rebuilt by `verify` from that lock, offline, no checkpoint, fetched cache, "
                    "TZ Asia/Tokyo, umask 077, LC_ALL=C", kept), "the rebuild from the image's own lock differs"
    assert not list(fetched_cache.glob("verify-*")), "verify left its scratch directory behind"
    assert not list((fetched_cache / "work").glob("*")), "verify left a work dir behind"


def _wheel(name: str, version: str) -> dict:
    """A release's wheel on PyPI: its file name, URL and sha256, from the simple API (PEP 691)."""
    request = urllib.request.Request(f"https://pypi.org/simple/{name}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        files = json.load(resp)["files"]
    found = next(f for f in files if f["filename"] == f"{name}-{version}-py3-none-any.whl")
    return {"filename": found["filename"], "url": found["url"], "sha256": found["hashes"]["sha256"]}


def test_a_lock_with_another_agent_version_is_not_reproduced_and_diff_says_where(bookworm, fetched_cache, tmp_path):
    image, lock_file = bookworm
    data = json.loads(lock_file.read_text())
    data["target"]["agent_version"] = data["trove_version"] = OTHER_AGENT
    trove = next(f for f in data["python"]["files"] if f["name"] == "trove")
    trove.update(version=OTHER_AGENT, **_wheel("trove", OTHER_AGENT))
    other = tmp_path / "other-agent.lock.json"
    other.write_text(json.dumps(data))
    started = time.monotonic()
    result = verify(str(image), "--lock", str(other), "--cache-dir", str(fetched_cache), "--reuse-checkpoints",
                    cwd=tmp_path)
    record_latency("verify: a lock with another agent version, checkpoints up to system reused",
                   time.monotonic() - started)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "rebuild from" not in result.stdout, "the rebuild itself must succeed: the bytes must differ"
    assert f"not reproduced: {image} sha256 {file_sha256(image)}, rebuilt from {other}: " in result.stdout
    assert re.search(r"^different: \d+ added, \d+ removed", result.stdout, re.M), result.stdout[-3000:]
    assert "stage cache: reusing 'system'" in result.stderr, "only the agent stage and later run again"
