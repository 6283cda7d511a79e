"""The stage cache on real builds: reuse when nothing changed, rerun only what a change touches,
the same bytes either way, and a damaged checkpoint rebuilt rather than used."""

import json
import shutil
import uuid

import pytest

from builder.cache.stagecache import StageCache
from builder.image.reader import Image
from builder.spec import default_cache_dir
from tests.conftest import file_sha256, record_hash, run_tb

pytestmark = pytest.mark.slow
STAGES_BEFORE_HOOKS = ["bootstrap", "pre-hooks", "system", "agent"]


def build_json(builder_image, out, *extra):
    result = run_tb("build", "debian", "bookworm", "false", "ubuntu", str(out),
                    "--builder-image", builder_image, "--json", *extra)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(result.stdout), result.stderr


def sha_of(image):
    return file_sha256(image)


def test_an_unchanged_rebuild_reuses_the_finished_image(images, builder_image, tmp_path):
    first = images.get("debian", "bookworm")
    summary, _ = build_json(builder_image, tmp_path / "again.qcow2")
    assert summary["cached_checkpoint"] == "image"
    assert all(stage["cached"] for stage in summary["stages"])
    assert summary["sha256"] == sha_of(first) == sha_of(tmp_path / "again.qcow2")
    record_hash("bookworm rebuilt unchanged (image checkpoint reused)", tmp_path / "again.qcow2")


def test_a_changed_hook_reruns_only_the_stages_after_it(images, builder_image, tmp_path):
    images.get("debian", "bookworm")  # the checkpoints of the same build without hooks
    # A hook no earlier run has built (the cache outlives test sessions): its image checkpoint cannot exist.
    mark = f"built with hook {uuid.uuid4()}"
    hook = tmp_path / "hooks" / "install.d" / "10-mark"
    hook.parent.mkdir(parents=True)
    hook.write_text(f"#!/bin/sh\necho '{mark}' > /etc/trove-builder-hook-mark\n")
    hook.chmod(0o755)
    out = tmp_path / "hooked.qcow2"
    summary, _ = build_json(builder_image, out, "--hooks-dir", str(hook.parent.parent))
    assert summary["cached_checkpoint"] == "agent"
    ran = {s["name"]: not s["cached"] for s in summary["stages"]}
    fresh = [name for name, fresh in ran.items() if fresh]
    assert fresh == ["hooks", "preload", "lock", "normalize", "assemble", "export"]
    with Image(out) as image:
        assert image.read("/etc/trove-builder-hook-mark") == mark + "\n"


def test_a_restored_checkpoint_gives_the_same_bytes_and_a_damaged_one_is_rebuilt(images, builder_image, tmp_path):
    first = images.get("debian", "bookworm")
    probe, _ = build_json(builder_image, tmp_path / "probe.qcow2")
    entries = probe["checkpoint_entries"]
    stages = default_cache_dir() / "stages"
    shutil.rmtree(stages / entries["image"])  # evicted
    agent_payload = stages / entries["agent"] / "rootfs.tar.zst"
    with open(agent_payload, "r+b") as fh:  # and the agent checkpoint damaged on disk
        fh.seek(agent_payload.stat().st_size // 2)
        fh.write(b"\0garbage\0")
    summary, stderr = build_json(builder_image, tmp_path / "rebuilt.qcow2")
    assert "damaged (payload checksum mismatch)" in stderr
    assert summary["cached_checkpoint"] == "system", "the damaged agent checkpoint must not be used"
    assert not next(s for s in summary["stages"] if s["name"] == "agent")["cached"]
    assert summary["sha256"] == sha_of(first), "a build through restored checkpoints must give the same bytes"
    record_hash("bookworm rebuilt from the system checkpoint (image evicted, agent checkpoint damaged)",
                tmp_path / "rebuilt.qcow2")
    key = json.loads((stages / entries["agent"] / "meta.json").read_text())["key"]
    assert StageCache(default_cache_dir()).lookup("agent", key) is not None, "the agent checkpoint was stored again"
