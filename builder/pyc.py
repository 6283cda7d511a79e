"""Byte-compile the guest's packaged Python modules again, with a fixed hash seed.

Debian's py3compile (run by dpkg for every Python package) starts `python -E`, so no
PYTHONHASHSEED reaches it, and older Pythons (bionic's 3.6) write a set constant (`x in {'a', 'b'}`)
in hash order: the same source gives other .pyc bytes in every build. Each .pyc that is already
there is written again from its source by the guest's own interpreter, in one process, in name
order, with the chroot's fixed seed; the header keeps the packaged source's time as before.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .context import BuildContext

PYC_NAME = re.compile(r"^(?P<module>[^.]+)\.cpython-(?P<major>\d)(?P<minor>\d+)(?:\.opt-(?P<opt>[12]))?\.pyc$")
COMPILE = r"""
import py_compile, sys
for line in sys.stdin:
    source, cfile, optimize = line.rstrip("\n").split("\t")
    try:
        py_compile.compile(source, cfile=cfile, doraise=True, optimize=int(optimize))
    except py_compile.PyCompileError as exc:
        print("left as it was:", cfile, exc.msg.splitlines()[-1])
"""


def packaged_pycs(root: Path) -> dict[str, list[tuple[str, str, int]]]:
    """Interpreter -> sorted (source, pyc, optimization) in guest paths, for every .pyc under
    /usr/lib/python3* whose source is beside it."""
    jobs: dict[str, list[tuple[str, str, int]]] = {}
    for top in sorted((root / "usr/lib").glob("python3*")):
        for dirpath, dirs, files in os.walk(top):
            dirs.sort()
            if os.path.basename(dirpath) != "__pycache__":
                continue
            for name in sorted(files):
                match = PYC_NAME.match(name)
                if not match:
                    continue
                source = Path(dirpath).parent / f"{match['module']}.py"
                if not source.is_file():
                    continue
                interpreter = f"/usr/bin/python{match['major']}.{match['minor']}"
                guest = "/" + str(source.relative_to(root))
                pyc = "/" + str(Path(dirpath, name).relative_to(root))
                jobs.setdefault(interpreter, []).append((guest, pyc, int(match["opt"] or 0)))
    return jobs


def recompile_packaged(ctx: BuildContext) -> int:
    """Write every packaged .pyc again reproducibly; the number written."""
    chroot = ctx.chroot()
    count = 0
    for interpreter, jobs in sorted(packaged_pycs(ctx.rootfs).items()):
        if not (ctx.rootfs / interpreter.lstrip("/")).exists():
            continue
        listing = "".join(f"{source}\t{pyc}\t{opt}\n" for source, pyc, opt in jobs)
        chroot.run([interpreter, "-c", COMPILE], input=listing)
        count += len(jobs)
    return count
