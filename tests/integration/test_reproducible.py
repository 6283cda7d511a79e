"""Same inputs, same bytes, whichever engine and whoever starts the container.

Another TZ, umask, locale, work dir, output path and a cold cache, without the stage cache, are
tried on the offline locked build in test_lock.py (it equals the online build from the same lock).
Here two full builds, each compared with the session's `--runtime docker` build of the same release:
ubuntu bionic (whose own tools are not reproducible: Python 3.6 .pyc stamps, mkinitramfs 0.130,
systemd 237's catalog) rebuilt from scratch by `--runtime podman` under another TZ, umask, locale,
work dir and output name; and debian bookworm by the README's `docker run` one-liner, run as written
(the pipeline straight in a container the operator started, `--runtime none` by the image's default,
a cold named cache volume), then again to show the volume makes it warm."""

import os
import re
import subprocess
import uuid

import docker
import pytest

from tests.conftest import REPO, TB, record_hash

pytestmark = pytest.mark.slow


def _explain(a, b) -> str:
    """What `trove-builder diff` says, for the failure message."""
    out = subprocess.run([*TB, "diff", str(a), str(b)], capture_output=True, text=True, timeout=900)
    return out.stdout[-3000:] + out.stderr[-1000:]


def test_bionic_rebuilt_from_scratch_by_podman_gives_the_bytes_of_docker(images, podman_builder_image, tmp_path):
    """Every stage run again (no stage cache) in Podman's container, from another work dir and directory,
    to another output name, under TZ Asia/Tokyo, umask 077 and LC_ALL=C."""
    first = images.get("ubuntu", "bionic")
    out = tmp_path / "elsewhere" / "bionic-again.qcow2"
    out.parent.mkdir()
    result = subprocess.run(
        [*TB, "build", "ubuntu", "bionic", "false", "ubuntu", str(out), "--runtime", "podman",
         "--builder-image", podman_builder_image, "--no-cache", "--work-dir", str(tmp_path / "work")],
        cwd=tmp_path, capture_output=True, text=True, timeout=2400, preexec_fn=lambda: os.umask(0o077),
        env={**os.environ, "TZ": "Asia/Tokyo", "LC_ALL": "C"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    first_sum = record_hash("bionic (session build, --runtime docker)", first)
    again = record_hash("bionic, --runtime podman, no stage cache, TZ Asia/Tokyo, umask 077, LC_ALL=C, "
                        "other work dir and output", out)
    assert again == first_sum, "bionic rebuilt by podman differs:\n" + _explain(first, out)


def readme_one_liner(engine: str) -> str:
    """The shell block after <!-- ENGINE-run-one-liner --> in the README, as a user would paste it."""
    text = (REPO / "README.md").read_text()
    found = re.search(rf"<!-- {engine}-run-one-liner -->\n```sh\n(.*?)\n```", text, re.S)
    assert found, f"no {engine} run one-liner in the README"
    return found.group(1)


def test_the_readme_docker_run_one_liner_gives_the_bytes_of_the_cli(images, builder_image, tmp_path):
    """Run as written, but for two names: this session's builder image instead of trove-builder:latest
    and a volume of its own (cold, and not the operator's). The output directory belongs to another
    user: the image must too. A second run is warm (every stage cached) through the volume."""
    first = images.get("debian", "bookworm")
    volume = f"trove-builder-test-{uuid.uuid4().hex[:8]}"
    command = readme_one_liner("docker")
    assert command.count("trove-builder:latest") == 1 and command.count("trove-builder-cache:") == 1
    command = command.replace("trove-builder:latest", builder_image).replace("trove-builder-cache:", f"{volume}:")
    (tmp_path / "images").mkdir()
    os.chown(tmp_path / "images", 4321, 4321)
    out = tmp_path / "images" / first.name
    try:
        runs = [subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=2400,
                               env={**os.environ, "TZ": "America/New_York"}) for _ in range(2)]
        cold, warm = runs
        assert cold.returncode == 0, cold.stdout[-2000:] + cold.stderr[-2000:]
        first_sum = record_hash("bookworm, --runtime docker (session build)", first)
        assert record_hash("bookworm, the README's docker run one-liner (runtime none in the image, cold volume)",
                           out) == first_sum, "docker run and the CLI differ:\n" + _explain(first, out)
        assert (out.stat().st_uid, out.stat().st_gid) == (4321, 4321), "not owned by the output directory's owner"
        assert warm.returncode == 0, warm.stdout[-2000:] + warm.stderr[-2000:]
        assert not re.search(r"^\s+\w+ done in ", warm.stdout, re.M), "the second run was not warm:\n" + warm.stdout
        assert record_hash("bookworm, the one-liner again (warm volume)", out) == first_sum
    finally:
        try:
            docker.from_env().volumes.get(volume).remove(force=True)
        except docker.errors.NotFound:
            pass
