"""Re-pack an initramfs deterministically, for guests whose mkinitramfs does not (bionic's 0.130).

That mkinitramfs archives `find .` unsorted (directory order: the filesystem's hash seed), with
the build's inode and device numbers and times, and gzips with the build time in the header. The
re-pack keeps every entry's name, mode, owner, link count, device and content, and fixes the rest:
entries sorted by name, inodes numbered in that order (hard links share one), no device of origin,
times clamped to SOURCE_DATE_EPOCH, gzip at its default level (as mkinitramfs ran it) without a
name or time. Uncompressed (early, microcode) archives stay uncompressed and first, as the kernel
needs them.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

MAGICS = (b"070701", b"070702")  # newc, and newc with a checksum
HEADER_LEN = 110
TRAILER = "TRAILER!!!"
GZIP_MAGIC = b"\x1f\x8b"
FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize",
          "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check")
S_IFMT, S_IFREG = 0o170000, 0o100000


class InitramfsError(Exception):
    """An initramfs this module cannot re-pack (left as it is by the caller)."""


@dataclass
class Entry:
    name: str
    fields: dict[str, int]
    data: bytes
    magic: bytes


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


def parse_cpio(blob: bytes, pos: int = 0) -> tuple[list[Entry], int]:
    """The entries of the newc archive at `pos` (up to its trailer) and the offset just after it."""
    entries: list[Entry] = []
    while True:
        magic = blob[pos:pos + 6]
        if magic not in MAGICS:
            raise InitramfsError(f"no cpio header at offset {pos}")
        raw = blob[pos + 6:pos + HEADER_LEN]
        fields = {name: int(raw[i * 8:i * 8 + 8], 16) for i, name in enumerate(FIELDS)}
        name_start = pos + HEADER_LEN
        name = blob[name_start:name_start + fields["namesize"] - 1].decode("utf-8", "surrogateescape")
        data_start = name_start + fields["namesize"]
        data_start += _pad4(data_start)
        data_end = data_start + fields["filesize"]
        pos = data_end + _pad4(data_end)
        if name == TRAILER:
            return entries, pos
        entries.append(Entry(name, fields, blob[data_start:data_end], magic))


def _skip_zeros(blob: bytes, pos: int) -> int:
    while pos < len(blob) and blob[pos] == 0:
        pos += 1
    return pos


def parse_archives(blob: bytes) -> list[Entry]:
    """Every entry of one or more concatenated newc archives (zero padding between them)."""
    entries: list[Entry] = []
    pos = _skip_zeros(blob, 0)
    while pos < len(blob):
        found, pos = parse_cpio(blob, pos)
        entries.extend(found)
        pos = _skip_zeros(blob, pos)
    return entries


def split_segments(blob: bytes) -> list[tuple[str, list[Entry]]]:
    """("plain" | "gzip", entries) for each part of an initramfs, in order."""
    segments = []
    pos = _skip_zeros(blob, 0)
    while pos < len(blob):
        if blob[pos:pos + 6] in MAGICS:
            entries, pos = parse_cpio(blob, pos)
            segments.append(("plain", entries))
        elif blob[pos:pos + 2] == GZIP_MAGIC:
            inflate = zlib.decompressobj(wbits=31)
            content = inflate.decompress(blob[pos:])
            if not inflate.eof:
                raise InitramfsError("truncated gzip member")
            segments.append(("gzip", parse_archives(content)))
            pos = len(blob) - len(inflate.unused_data)
        else:
            raise InitramfsError(f"unknown compression (magic {blob[pos:pos + 4].hex()}) at offset {pos}")
        pos = _skip_zeros(blob, pos)
    return segments


def _header(magic: bytes, fields: dict[str, int], name: bytes) -> bytes:
    head = magic + b"".join(b"%08X" % fields[f] for f in FIELDS) + name
    return head + b"\0" * _pad4(len(head))


def write_cpio(entries: list[Entry], epoch: int) -> bytes:
    """One newc archive of `entries`, sorted by name, numbered and clamped; padded to 512 bytes."""
    ordered = sorted(entries, key=lambda e: e.name.encode("utf-8", "surrogateescape"))
    # Hard links: same origin (device, inode), regular files with nlink > 1. The content goes with
    # the last member, as GNU cpio writes it; the others carry none.
    groups: dict[tuple[int, int, int], list[Entry]] = {}
    for entry in ordered:
        f = entry.fields
        if f["nlink"] > 1 and f["mode"] & S_IFMT == S_IFREG:
            groups.setdefault((f["devmajor"], f["devminor"], f["ino"]), []).append(entry)
    content = {id(members[-1]): next((m.data for m in members if m.data), b"") for members in groups.values()}
    in_group = {id(m): key for key, members in groups.items() for m in members}
    numbers: dict[object, int] = {}
    out = bytearray()
    for entry in ordered:
        key = in_group.get(id(entry), id(entry))
        ino = numbers.setdefault(key, len(numbers) + 1)
        data = content.get(id(entry), b"" if id(entry) in in_group else entry.data)
        name = entry.name.encode("utf-8", "surrogateescape") + b"\0"
        fields = {**entry.fields, "ino": ino, "mtime": min(entry.fields["mtime"], epoch), "filesize": len(data),
                  "devmajor": 0, "devminor": 0, "namesize": len(name),
                  "check": sum(data) & 0xFFFFFFFF if entry.magic == b"070702" else 0}
        out += _header(entry.magic, fields, name) + data + b"\0" * _pad4(len(data))
    trailer = {f: 0 for f in FIELDS} | {"nlink": 1, "namesize": len(TRAILER) + 1}
    out += _header(b"070701", trailer, TRAILER.encode() + b"\0")
    out += b"\0" * ((512 - len(out) % 512) % 512)
    return bytes(out)


def repack(blob: bytes, epoch: int) -> bytes:
    """The same initramfs, written deterministically."""
    out = bytearray()
    for kind, entries in split_segments(blob):
        archive = write_cpio(entries, epoch)
        out += archive if kind == "plain" else gzip.compress(archive, compresslevel=6, mtime=0)
    return bytes(out)


def repack_file(path: Path, epoch: int) -> bytes:
    """Re-pack `path` in place (through a temporary name; mode and times kept); the new content."""
    stat = path.stat()
    tmp = path.with_name(path.name + ".repack")
    packed = repack(path.read_bytes(), epoch)
    tmp.write_bytes(packed)
    os.chmod(tmp, stat.st_mode & 0o7777)
    os.utime(tmp, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(tmp, path)
    return packed
