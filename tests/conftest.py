"""Shared fixtures: real images built once per session in the real builder container."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest

REPO = Path(__file__).resolve().parent.parent
TB = [str(Path(sys.executable).parent / "trove-builder")]
# This test run (shared by its xdist workers): a kept image directory (TROVE_BUILDER_TEST_IMAGES) is
# rebuilt once per run, through the stage cache, rather than trusted from an earlier run.
RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
BUILDER_IMAGE = os.environ.get("TROVE_BUILDER_IMAGE", "trove-builder:test")
ARCHIVES = {"ubuntu": "http://archive.ubuntu.com/ubuntu/dists/noble/Release",
            "debian": "http://deb.debian.org/debian/dists/bookworm/Release"}


def run_tb(*args: str, check: bool = False, timeout: int = 1800,
           env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*TB, *args], capture_output=True, text=True, timeout=timeout, check=check,
                          env={**os.environ, **(env or {})})


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def record_hash(label: str, image: Path) -> str:
    """The image's sha256, hashed from the file itself (the builder's .sha256 sidecar is what is under
    test, so it must agree); also appended to $TROVE_BUILDER_HASH_LOG when set, so that a run's
    hashes can be quoted (reproducibility is judged by them)."""
    digest = file_sha256(image)
    sidecar = image.parent / (image.name + ".sha256")
    assert sidecar.read_text().split()[0] == digest, f"{sidecar} does not match the sha256 of {image}"
    log = os.environ.get("TROVE_BUILDER_HASH_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"{digest}  {label}\n")
    return digest


def archive_answers(os_name: str, attempts: int = 4) -> str | None:
    """None when the archive serves its Release file; else why not (after `attempts` tries, 5/10/20 s apart)."""
    error = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(5 * 2 ** (attempt - 1))
        try:
            with urllib.request.urlopen(ARCHIVES[os_name], timeout=20) as resp:
                if resp.status == 200:
                    return None
                error = f"HTTP {resp.status}"
        except OSError as exc:
            error = str(exc)
    return f"{ARCHIVES[os_name]}: {error}"


def record_latency(label: str, seconds: float) -> float:
    """A measured latency, shown in the test's output and appended to $TROVE_BUILDER_LATENCY_LOG when set:
    asserted only against generous bounds (two busy cores), so the numbers are logged, not judged."""
    print(f"latency {seconds:.2f} s: {label}")
    log = os.environ.get("TROVE_BUILDER_LATENCY_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"{seconds:.2f}\t{label}\n")
    return seconds


def require_archive(os_name: str) -> None:
    """Fail the test (never skip it) when the archive a real build needs does not answer."""
    if why := archive_answers(os_name):
        pytest.fail(f"the {os_name} archive does not answer from this machine ({why})", pytrace=False)


# testcontainers' reaper (Ryuk) is an image pulled from a registry; the fixtures clean up themselves.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


def docker_available() -> bool:
    try:
        return bool(docker.from_env().ping())
    except docker.errors.DockerException:
        return False


@pytest.fixture(scope="session")
def builder_image(tmp_path_factory) -> str:
    """The builder image with this checkout's code (docker's layer cache keeps this quick), built once
    per run: two xdist workers building it at once on a cold cache would make two image IDs, and the
    tag would move under the builds of the first."""
    if not docker_available():
        pytest.fail("the Docker engine is not running: run `make setup` (scripts/setup-host.sh) first")
    built = shared_dir(tmp_path_factory, "builder-image") / "built"
    with claimed(built):
        if not done_this_run(built):
            client = docker.from_env()
            try:
                client.images.get("trove-builder-base:trixie")
                args = {"BASE": "trove-builder-base:trixie"}
            except docker.errors.ImageNotFound:
                args = {}
            client.images.build(path=str(REPO), dockerfile="containerfiles/builder.Containerfile", buildargs=args,
                                tag=BUILDER_IMAGE, rm=True)
            built.write_text(RUN)
    return BUILDER_IMAGE


@pytest.fixture(scope="session")
def podman_builder_image(builder_image) -> str:
    """The same builder image (same ID) in Podman's store, copied from Docker's; Podman's API socket is
    started on demand as `--runtime podman` does."""
    from builder.runtime.container import connect

    podman = connect("podman")
    image = docker.from_env().images.get(builder_image)
    try:
        if podman.images.get(builder_image).id == image.id:
            return builder_image
    except docker.errors.ImageNotFound:
        pass
    podman.images.load(b"".join(image.save(named=True)))
    assert podman.images.get(builder_image).id == image.id, "Podman loaded another image ID"
    return builder_image


@contextmanager
def claimed(path: Path) -> Iterator[None]:
    """Work on `path` that one xdist worker of the run does while the others wait: under an exclusive
    file lock on PATH.claim (beside it: the tests check what a build leaves in its directory)."""
    with open(f"{path}.claim", "w") as claim:
        fcntl.flock(claim, fcntl.LOCK_EX)
        yield


def done_this_run(marker: Path) -> bool:
    """Whether `marker`, whose first line names the run that wrote it, was written by this run."""
    return marker.exists() and marker.read_text().partition("\n")[0] == RUN


def shared_dir(tmp_path_factory, name: str) -> Path:
    """A directory every pytest-xdist worker of this run sees (the run's base temp; the worker's own
    base temp without xdist), so that a build or a key made by one worker is reused by the others."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path


class ImageBuilds:
    """Builds each (os, release, dev_mode, extra args) at most once per test run, whichever xdist worker
    asks first: the others wait on its file lock and reuse the image, or its failure (remembered on disk)."""

    def __init__(self, root: Path, builder_image: str):
        self.root = root
        self.builder_image = builder_image

    def get(self, os_name: str, release: str, dev_mode: bool = False, *extra: str) -> Path:
        suffix = "-dev" if dev_mode else ""
        key = hashlib.sha256("\0".join([os_name, release, str(dev_mode), *extra]).encode()).hexdigest()[:12]
        name = f"{os_name}-{release}{suffix}-{key}"
        out = self.root / name / f"trove-guest-{os_name}-{release}{suffix}.qcow2"
        out.parent.mkdir(parents=True, exist_ok=True)
        # beside the output directory, not in it: the tests check what a build leaves there
        outcome = self.root / f"{name}.outcome"
        with claimed(self.root / name):
            if not done_this_run(outcome):
                if os_name == "ubuntu":
                    require_archive("ubuntu")
                result = run_tb("build", os_name, release, str(dev_mode).lower(), "ubuntu", str(out),
                                "--builder-image", self.builder_image, *extra)
                outcome.write_text(f"{RUN}\n{result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        returncode, _, output = outcome.read_text().partition("\n")[2].partition("\n")
        assert returncode == "0", f"build failed:\n{output}"
        return out


@pytest.fixture(scope="session")
def images(builder_image, tmp_path_factory) -> ImageBuilds:
    keep = os.environ.get("TROVE_BUILDER_TEST_IMAGES")
    root = Path(keep) if keep else shared_dir(tmp_path_factory, "images")
    return ImageBuilds(root, builder_image)


@pytest.fixture(scope="session")
def dev_key(tmp_path_factory):
    """One deploy key for the whole run: the dev image is built with it by whichever worker comes first."""
    key = shared_dir(tmp_path_factory, "devkey") / "id_deploy"
    with claimed(key):
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "trove-dev-deploy",
                            "-f", str(key)], check=True)
    return key


@pytest.fixture(scope="session")
def dev_image(images, dev_key):
    return images.get("debian", "bookworm", True, "--dev-ssh-key", str(dev_key),
                      "--controller-user", "stack", "--controller-path", "/opt/stack/trove")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With TROVE_BUILDER_NO_SKIPS=1 (CI: .ci/run sets it) a skipped test is a failed test: a skip is not a pass."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("TROVE_BUILDER_NO_SKIPS") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and TROVE_BUILDER_NO_SKIPS=1 forbids skips: {reason}"


# The slow suite's files that take longest (boots, and the builds they wait for), first: the Makefile's
# --no-loadscope-reorder keeps this order, where pytest-xdist would start the files with the most tests
# (short checks) and leave single long boots for the end, one worker idle while the other boots.
LONG_FIRST = ("test_boot_prepare.py", "test_boot_broken_agent.py", "test_readme_docker_run.py",
              "test_readme_podman_run.py", "test_build.py", "test_interrupt.py",
              "test_boot.py", "test_boot_oldest_release.py", "test_boot_dev.py",
              "test_boot_newest_debian.py")  # the last four: extended


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the others keep their order


def pytest_collection_finish(session):
    """The test cloud's venv takes minutes on a fresh machine: when registration tests are to run,
    install it in the background from the start, so that it overlaps the builds that come first."""
    if any(item.path.name == "test_register.py" for item in session.items):
        from tests.integration.cloud.venvs import prefetch

        prefetch()
