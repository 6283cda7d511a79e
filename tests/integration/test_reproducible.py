"""Same inputs, same bytes, whichever engine starts the container.

ubuntu bionic (whose own tools are not reproducible: Python 3.6 .pyc stamps, mkinitramfs 0.130,
systemd 237's catalog) rebuilt from scratch by `--runtime podman` under another TZ, umask, locale,
work dir and output name, compared with the session's `--runtime docker` build. (The README's
`docker run` one-liner is not run by a test yet: a cold build that CI's time cannot take now.)"""

import os
import subprocess

import pytest

from tests.conftest import TB, record_hash

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
