"""The stage table: the one list the pipeline, the cache keys, the lock cut and files.yaml agree on."""

from __future__ import annotations

from builder import stages
from builder.cache import stagekeys
from builder.guest import render


def test_files_yaml_names_only_real_stages():
    assert stages.unknown_file_stages() == []
    named = {entry["stage"] for entry in render.file_table()}
    assert named <= set(stages.NAMES) and named, named


def test_a_misspelt_stage_in_files_yaml_is_reported(monkeypatch):
    table = render.file_table() + [{"path": "/etc/x", "template": "hostname", "stage": "sytem"}]
    monkeypatch.setattr(stages, "file_table", lambda: table)
    assert stages.unknown_file_stages() == ["sytem"]


def test_checkpoints_cover_every_stage_once_in_order():
    covered = [name for names, _ in stagekeys.CHECKPOINTS.values() for name in names]
    assert covered == stages.NAMES
    phases = [p for _, ps in stagekeys.CHECKPOINTS.values() for p in ps]
    assert phases == [p for s in stages.STAGES for p in s.hook_phases]


def test_a_lock_runs_the_stages_up_to_the_lock_stage_after_the_last_hooks():
    names = [s.name for s in stages.lock_stages()]
    assert names[-1] == "lock" and names == stages.NAMES[: len(names)]
    assert all(not s.hook_phases for s in stages.STAGES[len(names):])
