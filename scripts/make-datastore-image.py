#!/usr/bin/env python3
"""Build a datastore image from Debian's own packages, as a `docker save` archive (no registry, no engine).

    scripts/make-datastore-image.py containerfiles/datastore/mariadb OUTPUT.tar

mmdebstrap writes the root file system as one tar (reproducible under SOURCE_DATE_EPOCH for the same
package versions); builder.preload.archive wraps it as a one-layer image named by image.yaml.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from builder.defaults import SOURCE_DATE_EPOCH as DEFAULT_SOURCE_DATE_EPOCH  # noqa: E402
from builder.preload.archive import read_archive, write_archive  # noqa: E402

# Left out of the image: documentation and translations (copyright files stay).
DPKG_EXCLUDES = ["path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright",
                 "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*",
                 "path-exclude=/usr/share/locale/*", "path-exclude=/usr/share/lintian/*"]
# The system account the entrypoint drops to when started as root (mariadb-server's postinst is not run).
ACCOUNTS = ("echo 'mysql:x:999:999:MariaDB Server:/nonexistent:/usr/sbin/nologin' >> \"$1/etc/passwd\"; "
            "echo 'mysql:x:999:' >> \"$1/etc/group\"")


def build(source: Path, output: Path) -> None:
    image = yaml.safe_load((source / "image.yaml").read_text())
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_SOURCE_DATE_EPOCH))
    entrypoint = source / "docker-entrypoint.sh"
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        cmd = ["mmdebstrap", "--quiet", "--mode=root", "--variant=essential", "--format=tar",
               f"--include={','.join(image['packages'])}",
               *(f"--dpkgopt={opt}" for opt in DPKG_EXCLUDES),
               f"--customize-hook={ACCOUNTS}",
               "--customize-hook=mkdir -p \"$1/usr/local/bin\" \"$1/var/lib/mysql\" \"$1/run/mysqld\"",
               f"--customize-hook=upload {entrypoint} /usr/local/bin/docker-entrypoint.sh",
               "--customize-hook=chmod 0755 \"$1/usr/local/bin/docker-entrypoint.sh\"",
               "--customize-hook=rm -rf \"$1/var/cache/apt\" \"$1/var/lib/apt/lists\" \"$1/var/log\"/*.log",
               image["suite"], str(rootfs), image["mirror"]]
        subprocess.run(cmd, check=True, env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)})
        partial = output.with_name(f".{output.name}.partial")
        image_id = write_archive(rootfs, image, partial, epoch)
        partial.replace(output)
    archive = read_archive(output)
    print(f"{output}: {', '.join(archive.repo_tags)} image sha256:{image_id[:12]}, "
          f"archive sha256 {archive.sha256}, {archive.bytes / 2**20:.1f} MiB")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    build(Path(sys.argv[1]), Path(sys.argv[2]).resolve())
