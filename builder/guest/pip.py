"""The guest agent venv's pip: the build's index, shared download cache and the host's CA lent while it runs.

Used by the agent stage to install the agent and by the lock collector to download what it installed."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from builder.context import GUEST_CA_PATH, VENV, BuildContext
from builder.errors import BuilderError
from builder.guest import dpkg
from builder.guest.chroot import Chroot
from builder.spec import host_ca_bundle_path

PIP_CACHE = "/var/cache/trove-builder-pip"


def agent_requirement(ctx: BuildContext) -> str:
    """What pip installs: an explicit source (requirement or path) or trove==<version>."""
    return ctx.spec.agent_source or f"trove=={ctx.spec.resolved_agent_version}"


@contextmanager
def lend_host_ca(ctx: BuildContext) -> Iterator[None]:
    """The build host's CA bundle inside the guest while pip runs (HTTPS may be intercepted); never kept."""
    ca = host_ca_bundle_path(ctx.spec.ca_bundle)
    inside = ctx.rootfs / GUEST_CA_PATH.lstrip("/")
    if ca:
        shutil.copyfile(ca, inside)
    try:
        yield
    finally:
        inside.unlink(missing_ok=True)


def run_pip(ctx: BuildContext, chroot: Chroot, *args: str, check: bool = True,
            capture: bool = False) -> subprocess.CompletedProcess:
    """The venv's pip with the build's index, shared cache and (when lent) the host's CA."""
    # Explicit index: old guests' bundled pip (bionic: 9.0.1) still defaults to pypi.python.org.
    # CFLAGS: a requirement built from source carries no debug info, which would name pip's
    # random build directory (and the guest has no use for it). SOURCE_DATE_EPOCH and the hash
    # seed come with the chroot (ctx.reproducible_env).
    env = {"PIP_INDEX_URL": ctx.spec.pip_index_url, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
           "CFLAGS": "-g0"}
    if (ctx.rootfs / GUEST_CA_PATH.lstrip("/")).exists():
        env["PIP_CERT"] = GUEST_CA_PATH
    if not (ctx.rootfs / VENV.lstrip("/") / "bin/pip").exists():  # else chroot's bare "exited with 127"
        raise BuilderError(f"{VENV}/bin/pip is gone: the agent venv was removed (by a hook?), and the "
                           "build runs pip from it")
    return chroot.run([f"{VENV}/bin/pip", "--cache-dir", PIP_CACHE, *args], env=env, check=check, capture=capture)


def freeze(ctx: BuildContext) -> list[str]:
    """name==version of every distribution in the venv, read from its metadata (no guest python run)."""
    found = []
    for meta in sorted((ctx.rootfs / VENV.lstrip("/")).glob("lib/python3*/site-packages/*.dist-info/METADATA")):
        name = version = None
        for line in meta.read_text(errors="replace").splitlines():
            if line.startswith("Name: "):
                name = line[6:].strip()
            elif line.startswith("Version: "):
                version = line[9:].strip()
            if name and version:
                break
        if name and version:
            found.append(f"{name}=={version}")
    return sorted(found, key=str.lower)


def downloaded(ctx: BuildContext, freeze: list[str]) -> list[str]:
    """The venv's distributions that came from the index (not bundled by python3-venv unchanged)."""
    bundled = set(ctx.results.get("venv_bundled", []))
    return [line for line in freeze if line not in bundled]


def installed_packages(ctx: BuildContext) -> set[str]:
    return {p["name"] for p in dpkg.installed(ctx.rootfs)}
