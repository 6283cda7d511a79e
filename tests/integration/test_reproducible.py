"""Same inputs, same bytes: a second build under a different host setup gives the same image."""

import os
import subprocess

import pytest

from tests.conftest import TB

pytestmark = pytest.mark.slow


def test_bookworm_is_bit_identical_across_tz_umask_locale_work_dir_and_cold_cache(images, builder_image, tmp_path):
    """The second build starts from an empty cache (every .deb and wheel downloaded again) and
    stores no checkpoints, so nothing of the first build is reused."""
    first = images.get("debian", "bookworm")
    out = tmp_path / "elsewhere" / first.name
    out.parent.mkdir()
    env = {**os.environ, "TZ": "Asia/Tokyo", "LC_ALL": "C", "LANG": "C"}
    result = subprocess.run(
        ["sh", "-c", 'umask 077 && exec "$@"', "sh", *TB, "build", "debian", "bookworm", "false", "ubuntu",
         str(out), "--builder-image", builder_image, "--work-dir", str(tmp_path / "scratch"),
         "--cache-dir", str(tmp_path / "cold-cache"), "--no-cache"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    scratch = tmp_path / "scratch"
    assert not scratch.exists() or not any(scratch.iterdir()), "the work dir was left behind"
    first_sum = (first.parent / (first.name + ".sha256")).read_text().split()[0]
    second_sum = (out.parent / (out.name + ".sha256")).read_text().split()[0]
    assert second_sum == first_sum, "the image depends on the build host's TZ, umask, locale or work dir"
    assert (out.parent / (out.name + ".manifest.json")).read_text() == \
        (first.parent / (first.name + ".manifest.json")).read_text()


def test_runtime_none_in_a_plain_container_gives_the_same_bytes_as_runtime_docker(images, builder_image, tmp_path):
    """`docker run trove-builder build ... --runtime none` (the pipeline straight in a container the
    operator started, another host name, no stage cache) against the CLI's own container."""
    first = images.get("debian", "bookworm")
    out = tmp_path / "out"
    out.mkdir()
    ca = "/etc/ssl/certs/ca-certificates.crt"
    result = subprocess.run(
        ["docker", "run", "--rm", "--hostname", "elsewhere-builder", "--cap-add", "SYS_ADMIN", "--cap-add", "MKNOD",
         "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
         "-v", f"{out}:/out", "-v", f"{ca}:/run/host-ca.pem:ro", "-e", "TZ=America/New_York",
         builder_image, "build", "debian", "bookworm", "false", "ubuntu", f"/out/{first.name}",
         "--runtime", "none", "--no-cache", "--cache-dir", "/var/tmp/cache", "--ca-bundle", "/run/host-ca.pem"],
        capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    first_sum = (first.parent / (first.name + ".sha256")).read_text().split()[0]
    assert (out / (first.name + ".sha256")).read_text().split()[0] == first_sum, \
        "--runtime none in a container and --runtime docker must give the same image"
