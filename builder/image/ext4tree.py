"""Every file of an ext4 filesystem inside a disk file, read with a few batched debugfs runs.

No mount and no extraction: directories are listed level by level (`ls -p <ino>`), every inode is
`stat`ed in one run, and file contents are streamed through sha256 from one `cat` run. Inodes are
named by number (`<ino>`), so no path ever needs quoting.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import BuilderError

ROOT_INODE = 2
JOURNAL_INODE = 8
READ_CHUNK = 1 << 20

_LS_LINE = re.compile(r"^/(\d+)/([0-7]+)/(\d+)/(\d+)/(.*)/(\d*)/$")
_TYPE = re.compile(r"Type: (.+?)\s+Mode:\s+([0-7]+)\s+Flags: (0x[0-9a-fA-F]+)")
_OWNER = re.compile(r"User:\s+(\d+)\s+Group:\s+(\d+).*?Size: (\d+)")
_LINKS = re.compile(r"Links: (\d+)")
_XATTR_BLOCK = re.compile(r"File ACL: (\d+)")
_TIME = re.compile(r"^\s*(ctime|atime|mtime|crtime): 0x([0-9a-f]+)(?::([0-9a-f]+))?", re.M)
_FAST_LINK = re.compile(r'Fast link dest: "(.*)"')
_DEVICE = re.compile(r"Device major/minor number: (\S+)")
_EXTENT = re.compile(r"\(([^)]*)\):(\d+)(?:-(\d+))?")


@dataclass
class Node:
    """One path and the facts about it that a diff compares (inode and blocks are not compared)."""

    path: str
    inode: int
    kind: str
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    links: int | None = None
    flags: str = ""
    times: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    device: str | None = None
    xattrs: tuple[str, ...] = ()
    sha256: str | None = None
    blocks: list[tuple[int, int]] = field(default_factory=list)  # physical (first, last) runs

    def facts(self) -> dict[str, object]:
        """What a diff compares, in the order it reports it; absent facts are left out."""
        facts = {"content": self.sha256, "type": self.kind,
                 "mode": None if self.mode is None else f"{self.mode:04o}", "uid": self.uid, "gid": self.gid,
                 "size": self.size, "target": self.target, "device": self.device,
                 "mtime": self.times.get("mtime"), "ctime": self.times.get("ctime"),
                 "atime": self.times.get("atime"), "crtime": self.times.get("crtime"),
                 "links": self.links, "flags": self.flags, "xattrs": list(self.xattrs)}
        return {k: v for k, v in facts.items() if v not in (None, [], "")}


class Ext4Tree:
    """The files of the ext4 filesystem at byte `offset` of the raw disk `raw`."""

    def __init__(self, raw: Path, offset: int):
        self.device = f"{raw}?offset={offset}"
        self.nodes: dict[str, Node] = {}
        self.journal: list[tuple[int, int]] = []

    # -- debugfs in batches ------------------------------------------------------------------

    def _batch(self, commands: list[str]) -> list[str]:
        """Run commands in one debugfs and return each command's output, in order."""
        if not commands:
            return []
        with tempfile.NamedTemporaryFile("w", prefix="trove-builder-debugfs-", suffix=".cmds") as fh:
            fh.write("\n".join(commands) + "\n")
            fh.flush()
            out = subprocess.run(["debugfs", "-f", fh.name, self.device], capture_output=True)
        if out.returncode != 0:
            raise BuilderError(f"debugfs cannot read {self.device}: {out.stderr.decode(errors='replace').strip()}")
        data, sections, pos = out.stdout, [], 0
        headers = [f"debugfs: {cmd}\n".encode() for cmd in commands]
        starts = []
        for header in headers:
            at = data.find(header, pos)
            if at < 0:
                raise BuilderError(f"debugfs output for {header.decode().strip()!r} is missing ({self.device})")
            starts.append((at, at + len(header)))
            pos = at + len(header)
        for i, (_, body) in enumerate(starts):
            end = starts[i + 1][0] if i + 1 < len(starts) else len(data)
            sections.append(data[body:end].decode(errors="backslashreplace"))
        return sections

    def _list(self) -> dict[str, int]:
        """Path -> inode for every entry, one debugfs run per directory depth."""
        paths = {"/": ROOT_INODE}
        level = [("/", ROOT_INODE)]
        while level:
            outputs = self._batch([f"ls -p <{ino}>" for _, ino in level])
            next_level = []
            for (parent, _), text in zip(level, outputs, strict=True):
                for line in text.splitlines():
                    m = _LS_LINE.match(line)
                    if not m or m.group(1) == "0" or m.group(5) in ("", ".", ".."):
                        continue  # unused slots (lost+found) and the directory's own links
                    path = f"{parent.rstrip('/')}/{m.group(5)}"
                    ino = int(m.group(1))
                    paths[path] = ino
                    if int(m.group(2), 8) & 0o170000 == 0o040000:
                        next_level.append((path, ino))
            level = next_level
        return paths

    @staticmethod
    def _parse_stat(path: str, ino: int, text: str) -> Node:
        kind = _TYPE.search(text)
        if not kind:
            raise BuilderError(f"debugfs could not stat {path} (inode {ino})")
        owner, links = _OWNER.search(text), _LINKS.search(text)
        assert owner and links, f"debugfs gave no owner or link count for {path}"
        node = Node(path, ino, kind.group(1), int(kind.group(2), 8), int(owner.group(1)), int(owner.group(2)),
                    int(owner.group(3)), int(links.group(1)), kind.group(3))
        for name, secs, extra in _TIME.findall(text):
            seconds = int(secs, 16)
            seconds -= (seconds & 0x80000000) << 1  # signed 32 bits
            if extra:
                seconds += (int(extra, 16) & 3) << 32
                nanos = int(extra, 16) >> 2
            else:
                nanos = 0
            node.times[name] = f"{seconds}.{nanos:09d}" if nanos else str(seconds)
        if m := _FAST_LINK.search(text):
            node.target = m.group(1)
        if m := _DEVICE.search(text):
            node.device = m.group(1)
        lines = text.splitlines()
        if "Extended attributes:" in lines:
            attrs = []
            for line in lines[lines.index("Extended attributes:") + 1:]:
                if not line.startswith("  "):
                    break
                attrs.append(line.strip())
            node.xattrs = tuple(sorted(attrs))
        for marker in ("EXTENTS:", "BLOCKS:"):
            if marker in lines:
                listing = " ".join(lines[lines.index(marker) + 1:])
                node.blocks = [(int(a), int(b or a)) for _, a, b in _EXTENT.findall(listing)]
        if (m := _XATTR_BLOCK.search(text)) and m.group(1) != "0":
            node.blocks.append((int(m.group(1)), int(m.group(1))))
        return node

    def _stream_contents(self, nodes: list[Node]) -> None:
        """sha256 of each node's bytes, from one `cat` run read in step with the known sizes."""
        if not nodes:
            return
        with tempfile.NamedTemporaryFile("w", prefix="trove-builder-debugfs-", suffix=".cmds") as fh:
            fh.write("".join(f"cat <{n.inode}>\n" for n in nodes))
            fh.flush()
            proc = subprocess.Popen(["debugfs", "-f", fh.name, self.device],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            assert proc.stdout is not None  # stdout=PIPE
            try:
                for node in nodes:
                    header = proc.stdout.readline()
                    if header != f"debugfs: cat <{node.inode}>\n".encode():
                        raise BuilderError(f"debugfs output out of step at {node.path} ({self.device})")
                    digest, left = hashlib.sha256(), node.size
                    while left:
                        chunk = proc.stdout.read(min(left, READ_CHUNK))
                        if not chunk:
                            raise BuilderError(f"debugfs stopped while reading {node.path} ({self.device})")
                        digest.update(chunk)
                        left -= len(chunk)
                    node.sha256 = digest.hexdigest()
            finally:
                proc.stdout.close()
                proc.kill()
                proc.wait()

    def scan(self) -> Ext4Tree:
        paths = self._list()
        inodes = sorted(set(paths.values()))
        stats = dict(zip(inodes, self._batch([f"stat <{ino}>" for ino in inodes]), strict=True))
        first: dict[int, Node] = {}
        for path in sorted(paths):
            ino = paths[path]
            node = self._parse_stat(path, ino, stats[ino])
            self.nodes[path] = node
            first.setdefault(ino, node)
        journal = self._batch([f"stat <{JOURNAL_INODE}>"])[0]
        if _TYPE.search(journal):
            self.journal = self._parse_stat("<journal>", JOURNAL_INODE, journal).blocks
        # Symlinks too long to sit in the inode keep their target in a data block.
        slow = [n for n in first.values() if n.kind == "symlink" and n.target is None]
        for node, target in zip(slow, self._batch([f"cat <{n.inode}>" for n in slow]), strict=True):
            node.target = target
        self._stream_contents([n for n in first.values() if n.kind == "regular" and n.size])
        empty = hashlib.sha256(b"").hexdigest()
        for node in self.nodes.values():
            src = first[node.inode]
            node.target, node.sha256 = src.target, src.sha256
            if node.kind == "regular" and node.size == 0:
                node.sha256 = empty
        return self

    def dump(self, inode: int, dest: Path) -> Path:
        """One file's bytes copied out (for diffoscope)."""
        subprocess.run(["debugfs", "-R", f'dump <{inode}> "{dest}"', self.device], capture_output=True)
        if not dest.is_file():
            raise BuilderError(f"debugfs could not copy inode {inode} out of {self.device}")
        return dest

    def layout(self) -> list[tuple[int, int, str]]:
        """(first, last, what) block runs of the filesystem's own structures, from dumpe2fs."""
        out = subprocess.run(["dumpe2fs", self.device], capture_output=True, text=True)
        runs = []
        patterns = {
            "superblock": r"superblock at (\d+)()",
            "group descriptors": r"Group descriptors at (\d+)-(\d+)",
            "reserved group descriptors": r"Reserved GDT blocks at (\d+)-(\d+)",
            "block bitmaps": r"Block bitmap at (\d+)()",
            "inode bitmaps": r"Inode bitmap at (\d+)()",
            "inode tables": r"Inode table at (\d+)-(\d+)",
        }
        for what, pattern in patterns.items():
            for a, b in re.findall(pattern, out.stdout):
                runs.append((int(a), int(b or a), what))
        runs += [(a, b, "journal") for a, b in self.journal]
        return runs
