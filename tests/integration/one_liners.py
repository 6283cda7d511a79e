"""The README's `docker run` and `podman run` one-liners, as a user pastes them, for the tests that run them."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import docker

from tests.conftest import REPO, TB

IMAGE_IN_README = "trove-builder:latest"
VOLUME_IN_README = "trove-builder-cache:"
OTHER_OWNER = 4321  # the output directory's owner: the image must be theirs, not root's


def readme_one_liner(engine: str) -> str:
    """The shell block after <!-- ENGINE-run-one-liner --> in the README."""
    text = (REPO / "README.md").read_text()
    found = re.search(rf"<!-- {engine}-run-one-liner -->\n```sh\n(.*?)\n```", text, re.S)
    assert found, f"no {engine} run one-liner in the README"
    return found.group(1)


def run_one_liner(engine: str, client: docker.DockerClient, builder_image: str, cwd: Path,
                  runs: int = 1) -> list[subprocess.CompletedProcess]:
    """Run as written, but for two names: this session's builder image instead of trove-builder:latest
    and a volume of its own (cold, and not the operator's), removed afterwards. `cwd/images` belongs to
    another user, as an operator's directory would."""
    volume = f"trove-builder-test-{uuid.uuid4().hex[:8]}"
    command = readme_one_liner(engine)
    assert command.count(IMAGE_IN_README) == 1 and command.count(VOLUME_IN_README) == 1, command
    command = command.replace(IMAGE_IN_README, builder_image).replace(VOLUME_IN_README, f"{volume}:")
    (cwd / "images").mkdir()
    os.chown(cwd / "images", OTHER_OWNER, OTHER_OWNER)
    try:
        return [subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=2400,
                               env={**os.environ, "TZ": "America/New_York"}) for _ in range(runs)]
    finally:
        try:
            client.volumes.get(volume).remove(force=True)
        except docker.errors.NotFound:
            pass


def explain_difference(a: Path, b: Path) -> str:
    """What `trove-builder diff` says, for a failure message."""
    out = subprocess.run([*TB, "diff", str(a), str(b)], capture_output=True, text=True, timeout=900)
    return out.stdout[-3000:] + out.stderr[-1000:]
