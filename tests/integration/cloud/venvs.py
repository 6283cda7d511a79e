"""One venv per OpenStack service, installed from a pinned requirement list and cached across runs.

The cache key is the requirement list plus the Python version, so changing a pin builds a new venv
and an unchanged list reuses the old one (CI pays the install once per machine). Every install and
reuse is timed into install-times.log beside the venvs: that is where the cold/warm numbers come from.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("TROVE_BUILDER_TEST_CACHE", "~/.cache/trove-builder-test")).expanduser()
DONE = ".installed"


def requirements(name: str) -> Path:
    return HERE / f"{name}.txt"


def venv_key(name: str) -> str:
    text = requirements(name).read_text()
    return hashlib.sha256(f"{sys.version_info[0]}.{sys.version_info[1]}\n{text}".encode()).hexdigest()[:16]


def _log(line: str) -> None:
    with open(CACHE / "install-times.log", "a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


def service_venvs(names: tuple[str, ...] = ("keystone", "glance", "trove")) -> dict[str, Path]:
    """All venvs at once: pip mostly waits on the network, so three installs overlap well."""
    from concurrent.futures import ThreadPoolExecutor

    start = time.monotonic()
    with ThreadPoolExecutor(len(names)) as pool:
        venvs = dict(zip(names, pool.map(service_venv, names), strict=True))
    CACHE.mkdir(parents=True, exist_ok=True)
    _log(f"all: {', '.join(names)} ready in {time.monotonic() - start:.1f} s")
    return venvs


def service_venv(name: str) -> Path:
    """The venv for `name` (keystone, glance, trove), installed now unless an identical one is cached."""
    venv = CACHE / "venvs" / f"{name}-{venv_key(name)}"
    venv.parent.mkdir(parents=True, exist_ok=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel session waits for the same install
        if (venv / DONE).exists():
            _log(f"{name}: reused {venv.name} in {time.monotonic() - start:.1f} s")
            return venv
        shutil.rmtree(venv, ignore_errors=True)  # a half-made venv of an interrupted install
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        # The lists are complete `pip freeze` outputs: no resolver run, exactly these versions.
        result = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-deps",
                                 "--disable-pip-version-check", "-r", str(requirements(name))],
                                capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise RuntimeError(f"installing {name} failed:\n{result.stderr[-3000:]}")
        (venv / DONE).write_text(requirements(name).read_text())
    _log(f"{name}: installed {venv.name} in {time.monotonic() - start:.1f} s")
    return venv
