"""Cache keys change exactly where a build's inputs change: later checkpoints only."""

import os
from pathlib import Path

import pytest

from builder.cache import stagekeys
from builder.context import BuildContext
from builder.proc import Log
from builder.spec import BuildSpec

ORDER = list(stagekeys.CHECKPOINTS)


def keys(tmp_path: Path, **kw) -> dict[str, str]:
    spec = BuildSpec(os="debian", release="bookworm", output=tmp_path / "x.qcow2", cache_dir=tmp_path / "c", **kw)
    ctx = BuildContext(spec=spec, profile=spec.profile, work_dir=tmp_path / "work", log=Log(None))
    return stagekeys.checkpoint_keys(ctx)


def hook_dir(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    root = tmp_path / name
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)
    return root


def changed(a: dict, b: dict) -> list[str]:
    return [name for name in ORDER if a[name] != b[name]]


def test_same_inputs_same_keys_wherever_the_build_runs(tmp_path):
    a = keys(tmp_path / "one")
    b = keys(tmp_path / "two", work_dir=tmp_path / "scratch", keep_work_dir=True, verbose=True)
    assert a == b
    assert len(set(a.values())) == len(a), "each checkpoint has its own key"


@pytest.mark.parametrize("change, first_changed", [
    ({"size_gb": 9}, "image"),
    ({"compression": "zlib"}, "image"),
    ({"agent_version": "25.0.0"}, "agent"),
    ({"pip_index_url": "https://mirror.example/simple"}, "agent"),
    ({"guest_user": "trove"}, "system"),
    ({"docker_source": "docker-ce"}, "system"),
    ({"mirror": "http://mirror.example/debian"}, "bootstrap"),
    ({"source_date_epoch": 1700000000}, "bootstrap"),
])
def test_a_change_invalidates_its_checkpoint_and_every_later_one(tmp_path, change, first_changed):
    base, other = keys(tmp_path), keys(tmp_path, **change)
    assert changed(base, other) == ORDER[ORDER.index(first_changed):]


@pytest.mark.parametrize("phase, first_changed", [
    ("install.d", "image"), ("post-install.d", "image"), ("finalise.d", "image"),
    ("pre-install.d", "system"), ("extra-data.d", "system"),
])
def test_a_hook_change_invalidates_only_the_stages_from_its_phase_on(tmp_path, phase, first_changed):
    one = hook_dir(tmp_path, "one", {f"{phase}/10-a": "#!/bin/sh\necho one\n"})
    two = hook_dir(tmp_path, "two", {f"{phase}/10-a": "#!/bin/sh\necho two\n"})
    assert changed(keys(tmp_path, hooks_dir=one), keys(tmp_path, hooks_dir=two)) == ORDER[ORDER.index(first_changed):]


def test_an_install_hook_change_leaves_a_host_side_hook_key_alone(tmp_path):
    """extra-data.d hooks may read files beside them, but not other phases' hooks."""
    common = {"extra-data.d/10-x": "#!/bin/sh\ntrue\n", "files/motd": "hi\n"}
    one = hook_dir(tmp_path, "one", {**common, "install.d/20-a": "#!/bin/sh\necho one\n"})
    two = hook_dir(tmp_path, "two", {**common, "install.d/20-a": "#!/bin/sh\necho two\n"})
    three = hook_dir(tmp_path, "three",
                     {**common, "files/motd": "changed\n", "install.d/20-a": "#!/bin/sh\necho one\n"})
    assert changed(keys(tmp_path, hooks_dir=one), keys(tmp_path, hooks_dir=two)) == ["image"]
    assert changed(keys(tmp_path, hooks_dir=one), keys(tmp_path, hooks_dir=three)) == ["system", "agent", "image"]


def test_an_empty_hooks_dir_is_no_change(tmp_path):
    empty = tmp_path / "hooks"
    (empty / "install.d").mkdir(parents=True)
    assert keys(tmp_path, hooks_dir=empty) == keys(tmp_path)


def test_making_a_hook_executable_is_a_change(tmp_path):
    hooks = hook_dir(tmp_path, "h", {"install.d/10-a": "#!/bin/sh\n"})
    before = keys(tmp_path, hooks_dir=hooks)
    os.chmod(hooks / "install.d/10-a", 0o644)
    assert changed(before, keys(tmp_path, hooks_dir=hooks)) == ["image"]


def test_a_local_agent_source_counts_by_content(tmp_path):
    sdist = tmp_path / "trove.tar.gz"
    sdist.write_bytes(b"one")
    before = keys(tmp_path, agent_source=str(sdist))
    sdist.write_bytes(b"two")
    assert changed(before, keys(tmp_path, agent_source=str(sdist))) == ["agent", "image"]


def test_another_builder_image_is_another_cache(tmp_path, monkeypatch):
    stagekeys.toolchain_id.cache_clear()
    monkeypatch.setenv("TROVE_BUILDER_IMAGE_ID", "sha256:one")
    one = keys(tmp_path)
    stagekeys.toolchain_id.cache_clear()
    monkeypatch.setenv("TROVE_BUILDER_IMAGE_ID", "sha256:two")
    two = keys(tmp_path)
    stagekeys.toolchain_id.cache_clear()
    assert changed(one, two) == ORDER
