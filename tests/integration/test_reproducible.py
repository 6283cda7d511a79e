"""Same inputs, same bytes: a second build under a different host setup gives the same image.

Another TZ, umask, locale, work dir, output path and a cold cache, without the stage cache, are
tried on the offline locked build in test_lock.py (it equals the online build from the same lock);
here `--runtime none` in an operator's container (another host name and TZ, a cold cache) against
the CLI's own container."""

import subprocess

import pytest

from tests.conftest import record_hash

pytestmark = pytest.mark.slow


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
    first_sum = record_hash("bookworm, --runtime docker (session build)", first)
    assert record_hash("bookworm, --runtime none in docker run, hostname elsewhere-builder, TZ America/New_York, "
                       "cold cache, no stage cache", out / first.name) == first_sum, \
        "--runtime none in a container and --runtime docker must give the same image"
