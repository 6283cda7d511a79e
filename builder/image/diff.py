"""`trove-builder diff A B`: which files, and failing that which bytes, differ between two images.

For a build that should be reproducible but is not: compares the disk (format, size), the GPT,
then every file of each filesystem that differs (ext4 through debugfs, the FAT ESP through mtools)
and finally says where the raw disks' bytes differ: a partition's files, its filesystem metadata
(superblock, inode tables, ...), or the regions outside partitions (MBR, GPT). Nothing is mounted
and the images are never written: each is converted to a scratch raw copy first.
"""

from __future__ import annotations

import bisect
import hashlib
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from builder.errors import BuilderError, UsageError
from builder.image import qemu_img, rawdiff
from builder.image.disk import BIOS_BOOT_TYPE, ESP_TYPE, LINUX_FS_TYPE
from builder.image.ext4tree import Ext4Tree, Node
from builder.image.fattree import FatTree
from builder.image.reader import Image

PARTITION_KINDS = {BIOS_BOOT_TYPE: "BIOS boot, GRUB core.img", ESP_TYPE: "EFI system partition",
                   LINUX_FS_TYPE: "Linux filesystem"}
DISK_FACTS = {"format": ("format",), "virtual size": ("virtual-size",), "cluster size": ("cluster-size",),
              "qcow2 compat": ("format-specific", "data", "compat"),
              "compression": ("format-specific", "data", "compression-type")}
TABLE_FACTS = ("label", "id", "unit", "firstlba", "lastlba", "sectorsize")
PARTITION_FACTS = ("start", "size", "type", "uuid", "name", "attrs")
GPT_ENTRIES_END = 34  # sectors: protective MBR, GPT header, 32 sectors of partition entries
EXAMPLE_PATHS = 5
TOOLS = {"qemu-img": "qemu-utils", "sfdisk": "fdisk", "debugfs": "e2fsprogs", "dumpe2fs": "e2fsprogs",
         "blkid": "util-linux"}
DIFFOSCOPE_MAX_FILES = 20
DIFFOSCOPE_TIMEOUT = 120
DIFFOSCOPE_MAX_BYTES = 64 * 1024  # of text per file


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _dig(data: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _pairs(a: dict, b: dict, keys) -> list[dict]:
    return [{"what": k, "a": a.get(k), "b": b.get(k)} for k in keys if a.get(k) != b.get(k)]


def _fs_type(raw: Path, offset: int, size: int) -> str | None:
    out = subprocess.run(["blkid", "-p", "-O", str(offset), "-S", str(size), "-o", "export", str(raw)],
                         capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("TYPE="):
            return line[5:]
    return None


def _has_partitions(raw: Path) -> bool:
    out = subprocess.run(["sfdisk", "--json", str(raw)], capture_output=True, text=True)
    return out.returncode == 0 and '"partitions"' in out.stdout


def compare_nodes(a: dict[str, Node], b: dict[str, Node]) -> list[dict]:
    """Added, removed and changed paths, each changed one with {fact: [a, b]}."""
    files: list[dict[str, Any]] = []
    for path in sorted(a.keys() | b.keys()):
        if path not in a:
            files.append({"path": path, "status": "added", "type": b[path].kind, "size": b[path].size})
        elif path not in b:
            files.append({"path": path, "status": "removed", "type": a[path].kind, "size": a[path].size})
        else:
            fa, fb = a[path].facts(), b[path].facts()
            changes = {k: [fa.get(k), fb.get(k)] for k in dict.fromkeys([*fa, *fb]) if fa.get(k) != fb.get(k)}
            if changes:
                files.append({"path": path, "status": "changed", "type": b[path].kind, "changes": changes})
    return files


class _Owners:
    """Which structure or file a filesystem block (or FAT sector) belongs to: looked up in each
    side's runs in turn (within one side the runs do not overlap)."""

    def __init__(self, *sides: list[tuple[int, int, str, str | None]]):
        self.sides = [sorted(runs) for runs in sides]
        self.starts = [[r[0] for r in runs] for runs in self.sides]

    def find(self, unit: int) -> tuple[str, str | None] | None:
        for runs, starts in zip(self.sides, self.starts, strict=True):
            i = bisect.bisect_right(starts, unit) - 1
            if i >= 0 and runs[i][0] <= unit <= runs[i][1]:
                return runs[i][2], runs[i][3]
        return None


def _ext4_owners(tree: Ext4Tree) -> list[tuple[int, int, str, str | None]]:
    runs: list[tuple[int, int, str, str | None]] = [(a, b, what, None) for a, b, what in tree.layout()]
    labels = {"regular": "file data", "directory": "directory blocks", "symlink": "symlink targets"}
    for node in tree.nodes.values():
        what = labels.get(node.kind, "other inode blocks")
        runs += [(a, b, what, node.path) for a, b in node.blocks]
    return runs


def _where(runs: list[tuple[int, int]], start: int, unit: int, owners: _Owners | None, rest: str) -> list[dict]:
    """Differing bytes of one partition summed by what holds them, with a few example paths."""
    if owners is None:
        return [{"what": rest, "bytes": sum(e - s for s, e in runs), "paths": []}]
    found: dict[str, dict] = {}
    for s, e in runs:
        first, last = (s - start) // unit, (e - 1 - start) // unit
        for u in range(first, last + 1):
            nbytes = min(e, start + (u + 1) * unit) - max(s, start + u * unit)
            what, path = owners.find(u) or (rest, None)
            entry = found.setdefault(what, {"what": what, "bytes": 0, "paths": []})
            entry["bytes"] += nbytes
            if path and len(entry["paths"]) < EXAMPLE_PATHS and path not in entry["paths"]:
                entry["paths"].append(path)
    return sorted(found.values(), key=lambda x: -x["bytes"])


def _outside_areas(table: dict, disk_size: int) -> list[tuple[int, int, str]]:
    """Named byte ranges of a GPT disk that no partition covers."""
    sector = table.get("sectorsize", 512)
    first_lba = table.get("firstlba", GPT_ENTRIES_END)
    areas = [(0, sector, "MBR (boot code, protective partition table)"),
             (sector, 2 * sector, "GPT header"),
             (2 * sector, GPT_ENTRIES_END * sector, "GPT partition entries"),
             (GPT_ENTRIES_END * sector, first_lba * sector, "gap before the first partition"),
             (disk_size - (GPT_ENTRIES_END - 1) * sector, disk_size, "backup GPT")]
    parts = sorted((p["start"] * sector, (p["start"] + p["size"]) * sector) for p in table["partitions"])
    pos = first_lba * sector
    for s, e in parts + [(disk_size - (GPT_ENTRIES_END - 1) * sector, None)]:
        if s > pos:
            areas.append((pos, s, "space outside partitions"))
        pos = max(pos, e or pos)
    return [a for a in areas if a[0] < a[1]]


class ImageDiff:
    """Compares two images; `report` is the whole result as plain data (what --json prints)."""

    def __init__(self, a: Path, b: Path, scratch: Path):
        self.paths = (Path(a), Path(b))
        self.scratch = scratch
        self.images: tuple[Image, ...] = ()  # both, once _open() has run
        self.trees: dict[int, tuple] = {}
        self.report: dict = {}
        self._stack = ExitStack()  # the raw copies, kept until close() for diffoscope

    # -- steps -------------------------------------------------------------------------------

    def _describe(self) -> None:
        sides = []
        for path in self.paths:
            try:
                info = qemu_img.info(path)
            except BuilderError as exc:
                raise UsageError(str(exc)) from None
            if info.get("format") == "raw" and not _has_partitions(path):
                raise UsageError(f"{path} has no partition table: not a disk image")
            sides.append({"path": str(path), "format": info.get("format"), "virtual_size": info.get("virtual-size"),
                          "file_size": path.stat().st_size, "info": info})
        same_size = sides[0]["file_size"] == sides[1]["file_size"]
        for side, path in zip(sides, self.paths, strict=True):  # files of different sizes differ: skip reading them
            side["sha256"] = _sha256(path) if same_size else None
        self.report["a"], self.report["b"] = sides
        self.report["disk"] = [{"what": name, "a": _dig(sides[0]["info"], keys), "b": _dig(sides[1]["info"], keys)}
                               for name, keys in DISK_FACTS.items()
                               if _dig(sides[0]["info"], keys) != _dig(sides[1]["info"], keys)]
        for side in sides:
            del side["info"]

    def _open(self) -> None:
        """Convert both images to raw at once (the slow part: qemu-img decompressing)."""
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(Image(p).__enter__) for p in self.paths]
        opened, error = [], None
        for future in futures:
            try:
                opened.append(self._stack.enter_context(_Entered(future.result())))
            except Exception as exc:  # the other copy is still cleaned up by close()
                error = error or exc
        if error:
            raise error
        self.images = tuple(opened)

    def _table(self) -> None:
        ta, tb = (img.table for img in self.images)
        diffs = _pairs(ta, tb, TABLE_FACTS)
        pa, pb = ta["partitions"], tb["partitions"]
        for i in range(max(len(pa), len(pb))):
            if i >= len(pa) or i >= len(pb):
                side = "b" if i >= len(pa) else "a"
                diffs.append({"what": f"partition {i + 1}", "a": None if side == "b" else pa[i].get("name", "present"),
                              "b": None if side == "a" else pb[i].get("name", "present")})
                continue
            diffs += [{"what": f"partition {i + 1} {d['what']}", "a": d["a"], "b": d["b"]}
                      for d in _pairs(pa[i], pb[i], PARTITION_FACTS)]
        self.report["partition_table"] = diffs

    def _partition(self, index: int, runs: list[tuple[int, int]]) -> dict:
        ia, ib = self.images
        pa, pb = ia.table["partitions"][index], ib.table["partitions"][index]
        sector = ia.table.get("sectorsize", 512)
        offsets = (pa["start"] * sector, pb["start"] * sector)
        sizes = (pa["size"] * sector, pb["size"] * sector)
        mine = rawdiff.overlap(runs, offsets[0], offsets[0] + sizes[0])
        part = {"number": index + 1, "name": pa.get("name", ""), "kind": PARTITION_KINDS.get(pa["type"], pa["type"]),
                "offset": offsets[0], "size": sizes[0], "bytes_differ": sum(e - s for s, e in mine)}
        moved = offsets[0] != offsets[1] or sizes[0] != sizes[1]
        if not mine and not moved:
            return part
        types = [_fs_type(img.raw, off, size) for img, off, size in zip(self.images, offsets, sizes, strict=True)]
        part["filesystem"] = types[0] if types[0] == types[1] else f"{types[0]} -> {types[1]}"
        owners, unit, rest = None, sector, "raw bytes (no filesystem read)"
        trees: list[Any] | None
        if types[0] == types[1] == "ext4":
            with ThreadPoolExecutor(2) as pool:
                trees = list(pool.map(lambda x: Ext4Tree(x[0].raw, x[1]).scan(),
                                      zip(self.images, offsets, strict=True)))
            supers = [img.superblock(off) for img, off in zip(self.images, offsets, strict=True)]
            part["superblock"] = _pairs(supers[0], supers[1], dict.fromkeys([*supers[0], *supers[1]]))
            unit = int(supers[0].get("Block size", "4096"))
            owners = _Owners(*(_ext4_owners(t) for t in trees))
            rest = "blocks no file uses (free space)"
        elif types[0] == types[1] == "vfat":
            trees = [FatTree(img.raw, off, self.scratch / f"{side}-p{index + 1}").scan()
                     for img, off, side in zip(self.images, offsets, "ab", strict=True)]
            boots = [t.boot_sector() for t in trees]
            part["boot_sector"] = _pairs(boots[0], boots[1], dict.fromkeys([*boots[0], *boots[1]]))
            owners = _Owners(*(t.layout() for t in trees))
            rest = "unused clusters (free space)"
        else:
            trees = None
        if trees:
            self.trees[index] = tuple(trees)
            part["files"] = compare_nodes(trees[0].nodes, trees[1].nodes)
            part["file_counts"] = {s: sum(f["status"] == s for f in part["files"])
                                   for s in ("added", "removed", "changed")}
        if mine:
            part["where"] = _where(mine, offsets[0], unit, owners, rest)
        return part

    def _outside(self, runs: list[tuple[int, int]]) -> list[dict]:
        img = self.images[0]
        size = max(self.report["a"]["virtual_size"] or 0, self.report["b"]["virtual_size"] or 0)
        found = []
        for start, end, what in _outside_areas(img.table, img.raw.stat().st_size):
            mine = rawdiff.overlap(runs, start, end)
            if mine:
                found.append({"what": what, "offset": start, "bytes": sum(e - s for s, e in mine)})
        end_a = img.raw.stat().st_size
        beyond = rawdiff.overlap(runs, end_a, size)
        if beyond:
            found.append({"what": "beyond the end of disk a", "offset": end_a, "bytes": sum(e - s for s, e in beyond)})
        return found

    def run(self) -> dict:
        for path in self.paths:
            if not path.is_file():
                raise UsageError(f"no image at {path}")
        for tool, package in TOOLS.items():
            if shutil.which(tool) is None:
                raise BuilderError(f"diff needs {tool} (Debian package {package})")
        self._describe()
        a, b = self.report["a"], self.report["b"]
        if a["sha256"] and a["sha256"] == b["sha256"]:
            self.report.update(identical=True, identical_files=True, partition_table=[], partitions=[],
                               outside_partitions=[], differing_bytes=0, differing_runs=0)
            return self.report
        self._open()
        runs = rawdiff.differing_runs(self.images[0].raw, self.images[1].raw)
        self._table()
        count = min(len(img.table["partitions"]) for img in self.images)
        self.report["partitions"] = [self._partition(i, runs) for i in range(count)]
        self.report["outside_partitions"] = self._outside(runs)
        self.report["differing_bytes"] = sum(e - s for s, e in runs)
        self.report["differing_runs"] = len(runs)
        self.report["identical"] = not runs and a["virtual_size"] == b["virtual_size"]
        self.report["identical_files"] = False
        return self.report

    def close(self) -> None:
        self._stack.close()

    # -- diffoscope --------------------------------------------------------------------------

    def content_changes(self) -> list[tuple[int, str]]:
        """(partition index, path) of files whose bytes differ, both sides regular files."""
        found = []
        for part in self.report.get("partitions", []):
            for f in part.get("files", []):
                if f["status"] == "changed" and "content" in f["changes"] and "type" not in f["changes"]:
                    found.append((part["number"] - 1, f["path"]))
        return found

    def _copy_out(self, index: int, side: int, path: str, dest: Path) -> Path:
        tree = self.trees[index][side]
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(tree, Ext4Tree):
            return tree.dump(tree.nodes[path].inode, dest)
        shutil.copyfile(tree.local(path), dest)
        return dest

    def diffoscope(self, limit: int = DIFFOSCOPE_MAX_FILES) -> dict:
        """diffoscope's text report for each content change (at most `limit` files)."""
        changed = self.content_changes()
        reports = {}
        for n, (index, path) in enumerate(changed[:limit]):
            base = self.scratch / "diffoscope" / str(n)
            files = [self._copy_out(index, side, path, base / name / path.lstrip("/"))
                     for side, name in enumerate("ab")]
            out = subprocess.run(["diffoscope", "--no-progress", "--text", "-", "--timeout", str(DIFFOSCOPE_TIMEOUT),
                                  "--max-text-report-size", str(DIFFOSCOPE_MAX_BYTES), str(files[0]), str(files[1])],
                                 capture_output=True, text=True, errors="replace")
            reports[f"partition {index + 1}:{path}"] = out.stdout.replace(str(base) + "/", "") or out.stderr.strip()
        return {"files": reports, "skipped": max(0, len(changed) - limit)}


class _Entered:
    """An already-entered Image as a context manager (so ExitStack cleans it up)."""

    def __init__(self, image: Image):
        self.image = image

    def __enter__(self) -> Image:
        return self.image

    def __exit__(self, *exc) -> None:
        self.image.__exit__(*exc)


def diff_images(a: Path, b: Path, with_diffoscope: bool = False) -> dict:
    """The whole comparison as plain data; scratch copies are removed before returning."""
    with tempfile.TemporaryDirectory(prefix="trove-builder-diff-") as tmp:
        diff = ImageDiff(a, b, Path(tmp))
        try:
            report = diff.run()
            if with_diffoscope and shutil.which("diffoscope"):
                report["diffoscope"] = diff.diffoscope()
        finally:
            diff.close()
    return report
