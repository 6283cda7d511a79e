"""Byte-compiling the guest's Python reproducibly.

A .pyc's bytes depend on more than its source: a set constant (`x in {'a', 'b'}`) is written in
hash order (so the hash seed counts), and marshal marks an object as shared by its reference count,
which depends on what the same process compiled before (so which files share a process, and in
what order, counts). Hence a fixed seed (the chroot's PYTHONHASHSEED=0), and a fixed split of the
sorted file list over a fixed number of processes, never a pool that hands files out by timing
(`compileall -j`) nor the host's CPU count.

The python3.X postinst of bionic and focal byte-compiles the stdlib with `python -E`, which no
PYTHONHASHSEED reaches: `recompile_packaged` writes each packaged .pyc again from its source, in
one process, in name order; the header keeps the packaged source's time as before.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from builder.context import BuildContext
from builder.guest.chroot import Chroot

COMPILE_PROCESSES = 4  # fixed: part of what decides the bytes

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


def fixed_shares(sources: list[str]) -> list[list[str]]:
    """`sources` in at most COMPILE_PROCESSES consecutive runs of (nearly) equal length."""
    share = -(-len(sources) // COMPILE_PROCESSES)
    return [sources[i:i + share] for i in range(0, len(sources), share)] if sources else []


def compile_tree(ctx: BuildContext, chroot: Chroot, python: str, tree: str, options: list[str]) -> None:
    """Byte-compile every .py below `tree` (a guest path) with `python -m compileall options`:
    COMPILE_PROCESSES processes side by side, each with its fixed share of the sorted file list."""
    root = ctx.rootfs
    sources = []
    for dirpath, dirs, files in os.walk(root / tree.lstrip("/")):  # symlinked dirs (lib64) not followed
        dirs.sort()
        sources += ["/" + str(Path(dirpath, f).relative_to(root)) for f in sorted(files) if f.endswith(".py")]
    lists = []
    for index, part in enumerate(fixed_shares(sources)):
        lists.append(f"/tmp/trove-builder-compile-{index}.txt")
        (root / lists[-1].lstrip("/")).write_text("\n".join(part) + "\n")

    def compile_list(listing: str) -> None:
        # check=False: a file that does not compile (Python 2 code in a test dir) stays without a .pyc.
        chroot.run([python, "-m", "compileall", "-q", "-f", *options, "-i", listing], check=False)

    try:
        with ThreadPoolExecutor(max(1, len(lists))) as pool:
            list(pool.map(compile_list, lists))
    finally:
        for listing in lists:
            (root / listing.lstrip("/")).unlink(missing_ok=True)
