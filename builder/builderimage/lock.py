"""`make builder-lock`: resolve the builder's package list into a lock, from Debian's signed indexes.

mmdebstrap resolves and installs the list (minbase plus containerfiles/builder-packages.txt) against
the live archive; apt inside the result reads back, from the InRelease-verified indexes, the version,
pool path and sha256 of every installed package. The downloaded .debs go into the content store, so
the lock stays buildable after the archive has moved on (snapshot.debian.org does not answer here)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from builder.cache.cas import ContentStore

FORMAT = 1
SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
FIELDS = ("Package", "Version", "Architecture", "Filename", "SHA256", "Size")


def wanted(packages_file: Path) -> list[str]:
    """The package names in the list file (comments and blank lines ignored)."""
    names: list[str] = []
    for line in packages_file.read_text().splitlines():
        names += line.split("#", 1)[0].split()
    return sorted(set(names))


def parse_stanzas(text: str) -> list[dict[str, str]]:
    """apt-cache show output -> one dict per stanza, only the fields a lock keeps."""
    found = []
    for block in text.strip().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(": ")
            if sep and key in FIELDS:
                fields[key] = value.strip()
        if fields:
            found.append(fields)
    return found


def resolve(packages_file: Path, store: ContentStore, epoch: int) -> dict:
    """Install the list into a throwaway root and read back every installed package's index record."""
    names = wanted(packages_file)
    with tempfile.TemporaryDirectory(prefix="trove-builder-lock-") as tmp:
        debs, records = Path(tmp) / "debs", Path(tmp) / "records"
        debs.mkdir()
        hook_show = ('chroot "$1" sh -c "dpkg-query -W -f \'\\${Package}=\\${Version}\\n\' '
                     f'| xargs apt-cache show --no-all-versions" > {records}')
        subprocess.run(
            ["mmdebstrap", "--quiet", "--mode=root", "--variant=minbase", f"--include={','.join(names)}",
             "--skip=essential/unlink", f"--customize-hook={hook_show}",
             f'--customize-hook=sync-out /var/cache/apt/archives {debs}',
             SUITE, "/dev/null", MIRROR],
            check=True, env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)})
        packages = []
        for rec in parse_stanzas(records.read_text()):
            # apt names its downloads name_version_arch.deb with the epoch's ':' escaped as %3a
            deb = debs / f"{rec['Package']}_{rec['Version'].replace(':', '%3a')}_{rec['Architecture']}.deb"
            store.add_file(deb, rec["SHA256"])  # HashMismatch if apt kept something else
            packages.append({"name": rec["Package"], "version": rec["Version"], "arch": rec["Architecture"],
                             "filename": rec["Filename"], "sha256": rec["SHA256"], "size": int(rec["Size"])})
    return {"trove_builder_builder_lock": FORMAT, "suite": SUITE, "mirror": MIRROR, "source_date_epoch": epoch,
            "include": names, "packages": sorted(packages, key=lambda p: (p["name"], p["arch"]))}


def write(lock: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_text(json.dumps(lock, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
