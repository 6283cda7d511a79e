"""Same inputs, same bytes, whichever engine starts the container.

debian bookworm rebuilt from scratch by `--runtime podman` under another TZ, umask, locale, work dir
and output name, compared with the session's `--runtime docker` build. (The README's one-liners, the
pipeline inside a container the operator starts, are run in test_readme_docker_run.py and
test_readme_podman_run.py.)"""

import os
import subprocess

import pytest

from tests.conftest import TB, record_hash
from tests.integration.one_liners import explain_difference

pytestmark = pytest.mark.slow


def test_bookworm_rebuilt_from_scratch_by_podman_gives_the_bytes_of_docker(images, podman_builder_image, tmp_path):
    """Every stage run again (no stage cache) in Podman's container, from another work dir and directory,
    to another output name, under TZ Asia/Tokyo, umask 077 and LC_ALL=C."""
    first = images.get("debian", "bookworm")
    out = tmp_path / "elsewhere" / "bookworm-again.qcow2"
    out.parent.mkdir()
    result = subprocess.run(
        [*TB, "build", "debian", "bookworm", "false", "ubuntu", str(out), "--runtime", "podman",
         "--builder-image", podman_builder_image, "--no-cache", "--work-dir", str(tmp_path / "work")],
        cwd=tmp_path, capture_output=True, text=True, timeout=2400, preexec_fn=lambda: os.umask(0o077),
        env={**os.environ, "TZ": "Asia/Tokyo", "LC_ALL": "C"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    first_sum = record_hash("bookworm (session build, --runtime docker)", first)
    again = record_hash("bookworm, --runtime podman, no stage cache, TZ Asia/Tokyo, umask 077, LC_ALL=C, "
                        "other work dir and output", out)
    assert again == first_sum, "bookworm rebuilt by podman differs:\n" + explain_difference(first, out)
