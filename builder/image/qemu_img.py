"""A small wrapper around qemu-img: the one tool that writes and checks the exported image."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from builder.choices import Compression, values
from builder.errors import BuilderError
from builder.proc import Log, run

COMPRESSIONS = values(Compression)


def convert(source: Path, dest: Path, fmt: str, log: Log, compression: str = "zlib") -> None:
    """raw -> fmt. Never `-W`: out-of-order writes make the output differ run to run.

    qcow2 compression: zlib is readable by every QEMU; zstd (QEMU >= 5.1 reads it) is ~5x faster
    to write and a little smaller."""
    cmd = ["qemu-img", "convert", "-f", "raw", "-O", fmt]
    if fmt == "qcow2":
        if compression == "none":
            cmd += ["-o", "compat=1.1"]
        else:
            cmd += ["-o", f"compat=1.1,compression_type={compression}", "-c"]
    run([*cmd, source, dest], log)


def info(image: Path) -> dict:
    out = subprocess.run(["qemu-img", "info", "--output=json", str(image)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise BuilderError(f"qemu-img cannot read {image}: {out.stderr.strip()}")
    return json.loads(out.stdout)


def check(image: Path) -> None:
    out = subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True)
    if out.returncode != 0:
        raise BuilderError(f"qemu-img check failed for {image}: {(out.stdout + out.stderr).strip()}")
