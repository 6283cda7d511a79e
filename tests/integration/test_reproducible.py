"""Same inputs, same bytes: a second build under a different host setup gives the same image.

Another TZ, umask, locale, work dir, output path and a cold cache, without the stage cache, are
tried on the offline locked build in test_lock.py (it equals the online build from the same lock);
here `--runtime none` in an operator's container (another host name and TZ, a cold cache) against
the CLI's own container, and ubuntu bionic, whose own tools are not reproducible (Python 3.6 .pyc
stamps, mkinitramfs 0.130, systemd 237's catalog), rebuilt from scratch elsewhere."""

import os
import subprocess

import pytest

from tests.conftest import TB, record_hash

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


def _explain(a, b) -> str:
    """What `trove-builder diff` says, for the failure message."""
    out = subprocess.run([*TB, "diff", str(a), str(b)], capture_output=True, text=True, timeout=900)
    return out.stdout[-3000:] + out.stderr[-1000:]


def test_bionic_rebuilt_from_scratch_elsewhere_gives_the_same_bytes(images, builder_image, tmp_path):
    """Every stage run again (no stage cache) from another work dir and directory, to another output
    name, under TZ Asia/Tokyo, umask 077 and LC_ALL=C (and, as every build, another container host name)."""
    first = images.get("ubuntu", "bionic")
    out = tmp_path / "elsewhere" / "bionic-again.qcow2"
    out.parent.mkdir()
    result = subprocess.run(
        [*TB, "build", "ubuntu", "bionic", "false", "ubuntu", str(out), "--builder-image", builder_image,
         "--no-cache", "--work-dir", str(tmp_path / "work")],
        cwd=tmp_path, capture_output=True, text=True, timeout=1800, preexec_fn=lambda: os.umask(0o077),
        env={**os.environ, "TZ": "Asia/Tokyo", "LC_ALL": "C"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    first_sum = record_hash("bionic (session build)", first)
    again = record_hash("bionic, no stage cache, TZ Asia/Tokyo, umask 077, LC_ALL=C, other work dir and output",
                        out)
    assert again == first_sum, "bionic rebuilt elsewhere differs:\n" + _explain(first, out)
