"""Same inputs, same bytes, whichever engine starts the container.

debian bookworm built by `--runtime podman` (hooks to export, from the session build's agent checkpoint)
under another TZ, umask, locale, work dir and output name, compared with the session's `--runtime
docker` build. (The README's one-liners, the
pipeline inside a container the operator starts, are run in test_readme_docker_run.py and
test_readme_podman_run.py.)"""

import json
import os
import subprocess
import uuid

import pytest

from tests.conftest import TB, record_hash
from tests.integration.one_liners import explain_difference

pytestmark = pytest.mark.slow


def test_bookworm_built_by_podman_gives_the_bytes_of_docker(images, podman_builder_image, tmp_path):
    """`--runtime podman`: the CLI starts the builder container through Podman's API (its caps and
    ulimits, limits.py) and the stages from hooks to export run in it, from the session build's agent
    checkpoint: a no-op hook of its own (a new uuid, so no earlier run cached it) makes every stage after
    the agent's run again. From another work dir and directory, to another output name, under TZ
    Asia/Tokyo, umask 077 and LC_ALL=C. (Every stage from scratch in Podman: test_readme_podman_run.py.)"""
    first = images.get("debian", "bookworm")
    hook = tmp_path / "hooks" / "install.d" / "10-nothing"
    hook.parent.mkdir(parents=True)
    hook.write_text(f"#!/bin/sh\n# {uuid.uuid4()}: changes nothing in the image\ntrue\n")
    hook.chmod(0o755)
    out = tmp_path / "elsewhere" / "bookworm-again.qcow2"
    out.parent.mkdir()
    result = subprocess.run(
        [*TB, "build", "debian", "bookworm", "false", "ubuntu", str(out), "--runtime", "podman", "--json",
         "--builder-image", podman_builder_image, "--hooks-dir", str(hook.parent.parent),
         "--work-dir", str(tmp_path / "work")],
        cwd=tmp_path, capture_output=True, text=True, timeout=2400, preexec_fn=lambda: os.umask(0o077),
        env={**os.environ, "TZ": "Asia/Tokyo", "LC_ALL": "C"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = json.loads(result.stdout)
    ran = [stage["name"] for stage in summary["stages"] if not stage["cached"]]
    assert ran == ["hooks", "preload", "lock", "normalize", "assemble", "export"], ran
    first_sum = record_hash("bookworm (session build, --runtime docker)", first)
    again = record_hash("bookworm, --runtime podman from the agent checkpoint, TZ Asia/Tokyo, umask 077, "
                        "LC_ALL=C, other work dir and output", out)
    assert again == first_sum, "bookworm built by podman differs:\n" + explain_difference(first, out)
