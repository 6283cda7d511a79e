"""The venv the test cloud's services run from, installed from a pinned requirement list and cached.

One venv for Keystone, Glance and Trove: their `pip freeze` lists agree on every shared package, and
installing 154 packages once costs a third of installing 339 into three venvs (CI pays it on every
fresh machine). `--no-compile`: the services import a fraction of what is installed, so byte-compiling
everything up front is most of the install's CPU time for nothing. The cache key is the requirement
list plus the Python version; every install and reuse is timed into install-times.log beside the venv.
`prefetch()` starts the install in the background when the run begins, so that it overlaps the builds
that come before the registration tests.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("TROVE_BUILDER_TEST_CACHE", "~/.cache/trove-builder-test")).expanduser()
REQUIREMENTS = HERE / "cloud.txt"
DONE = ".installed"
_prefetch: threading.Thread | None = None


def venv_key() -> str:
    text = REQUIREMENTS.read_text()
    return hashlib.sha256(f"{sys.version_info[0]}.{sys.version_info[1]}\n{text}".encode()).hexdigest()[:16]


def _log(line: str) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "install-times.log", "a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


def prefetch() -> None:
    """Start installing the venv in a background thread (idempotent); `cloud_venv()` joins it."""
    global _prefetch
    if _prefetch is None:
        _prefetch = threading.Thread(target=_install_quietly, name="cloud-venv", daemon=True)
        _prefetch.start()


def _install_quietly() -> None:
    try:
        cloud_venv()
    except Exception as exc:  # noqa: BLE001 - the test that needs the venv installs again and fails loudly
        _log(f"background install failed: {exc}")


def cloud_venv() -> Path:
    """The services' venv, installed now unless an identical one is cached (a parallel install is waited for)."""
    venv = CACHE / "venvs" / f"cloud-{venv_key()}"
    venv.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the background install, or a parallel session, holds it
        if (venv / DONE).exists():
            _log(f"reused {venv.name} in {time.monotonic() - start:.1f} s")
            return venv
        shutil.rmtree(venv, ignore_errors=True)  # a half-made venv of an interrupted install
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        # The list is a complete `pip freeze` output: no resolver run, exactly these versions.
        result = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-deps", "--no-compile",
                                 "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise RuntimeError(f"installing the test cloud's venv failed:\n{result.stderr[-3000:]}")
        (venv / DONE).write_text(REQUIREMENTS.read_text())
    _log(f"installed {venv.name} in {time.monotonic() - start:.1f} s")
    return venv
