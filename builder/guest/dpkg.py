"""What is installed in a guest root filesystem, read from its dpkg database (no chroot needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def installed(root: Path) -> list[dict[str, str]]:
    """Installed packages (status 'ii'), sorted by name, with version and architecture."""
    out = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
         "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n"],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = [line.split("\t") for line in out.splitlines() if line.startswith("ii")]
    return [{"name": n, "version": v, "arch": a} for _, n, v, a in sorted(rows, key=lambda r: r[1])]
