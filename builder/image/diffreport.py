"""The human text of a `trove-builder diff` report: a summary, then capped lists."""

from __future__ import annotations

FILE_LINES = 40       # file lines shown in all; --json has every one
FIELD_LINES = 8       # superblock / table differences shown per section
# Changes named without their two values (hashes and attribute dumps are noise in a list).
NAMED_ONLY = {"content", "xattrs"}


def size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _value(v) -> str:
    return "-" if v is None else str(v)


def _changes(changes: dict) -> str:
    return ", ".join(k if k in NAMED_ONLY else f"{k} {_value(a)} -> {_value(b)}" for k, (a, b) in changes.items())


def _file_line(f: dict) -> str:
    if f["status"] == "changed":
        return f"  changed  {f['path']}  {_changes(f['changes'])}"
    extra = f"{f['type']}" + (f", {f['size']} bytes" if f.get("size") is not None and f["type"] == "regular" else "")
    return f"  {f['status']:<8} {f['path']}  ({extra})"


def _fields(title: str, diffs: list[dict], indent: str = "  ") -> list[str]:
    lines = [f"{indent}{title}: {d['what']} {_value(d['a'])} -> {_value(d['b'])}" for d in diffs[:FIELD_LINES]]
    if len(diffs) > FIELD_LINES:
        lines.append(f"{indent}{title}: ... and {len(diffs) - FIELD_LINES} more (--json lists them)")
    return lines


def _counts(counts: dict) -> str:
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    return ", ".join(parts) if parts else "no file differs"


def _places(report: dict) -> list[str]:
    """Where bytes differ when no file does, most telling first."""
    places = []
    for part in report["partitions"]:
        if part.get("where"):
            name = f"partition {part['number']} {part['name']}"
            fs = part.get("filesystem")
            kinds = ", ".join(w["what"] for w in part["where"])
            places.append(f"{fs} metadata of {name} ({kinds})" if fs in ("ext4", "vfat")
                          else f"{name} ({part['kind']})")
    places += [area["what"] for area in report["outside_partitions"]]
    return places


def render(report: dict) -> str:
    lines = []
    for side in ("a", "b"):
        d = report[side]
        digest = f", sha256 {d['sha256'][:16]}" if d["sha256"] else ""
        lines.append(f"{side}  {d['path']}  {d['format']}, {size(d['virtual_size'])}, "
                     f"file {size(d['file_size'])}{digest}")
    if report.get("identical_files"):
        lines.append("identical: the two image files are the same bytes")
        return "\n".join(lines)
    lines += _fields("disk", report["disk"], indent="")
    lines += _fields("partition table", report["partition_table"], indent="") or ["partition table: same"]
    budget = FILE_LINES
    hidden = 0
    for part in report["partitions"]:
        head = f"partition {part['number']} {part['name']} ({part.get('filesystem') or part['kind']})"
        if "files" not in part:
            state = "same bytes" if not part["bytes_differ"] else f"{size(part['bytes_differ'])} differ"
            lines.append(f"{head}: {state}")
            continue
        lines.append(f"{head}: {_counts(part['file_counts'])}")
        lines += _fields("superblock", part.get("superblock", []))
        lines += _fields("boot sector", part.get("boot_sector", []))
        for f in part["files"]:
            if budget:
                lines.append(_file_line(f))
                budget -= 1
            else:
                hidden += 1
    if hidden:
        lines.append(f"  ... and {hidden} more (--json lists every file)")
    if report["differing_bytes"]:
        lines.append(f"where the bytes differ: {size(report['differing_bytes'])} in {report['differing_runs']} runs")
        for area in report["outside_partitions"]:
            lines.append(f"  {area['what']}: {size(area['bytes'])}")
        for part in report["partitions"]:
            if not part.get("where"):
                continue
            what = ", ".join(f"{w['what']} {size(w['bytes'])}" + (f" ({', '.join(w['paths'])})" if w["paths"] else "")
                             for w in part["where"])
            lines.append(f"  partition {part['number']} {part['name']}: {what}")
    files = {"added": 0, "removed": 0, "changed": 0}
    for part in report["partitions"]:
        for status, n in part.get("file_counts", {}).items():
            files[status] += n
    if report["identical"]:
        lines.append("identical: the disks hold the same bytes (the image files differ only in how they encode them)")
    elif any(files.values()):
        lines.append(f"different: {_counts(files)} files")
    else:
        lines.append(f"different: no file differs; the bytes differ in {', '.join(_places(report))}")
    return "\n".join(lines)


def render_diffoscope(result: dict) -> str:
    out = []
    for name, text in result["files"].items():
        out.append(f"=== diffoscope {name}")
        out.append(text.rstrip())
    if result["skipped"]:
        out.append(f"=== diffoscope: {result['skipped']} more changed files not compared")
    return "\n".join(out)
