"""preload: the --preload-image archives into the guest, loaded by its own dockerd before the agent starts.

Why archives and a oneshot unit, not a /var/lib/docker filled at build time: the build host needs no
Docker engine and the guest's bytes are the archives' bytes (reproducible by construction), whereas
docker's on-disk store carries random layer cache IDs and timestamps and is docker-version specific.
The price is `docker load` at first boot (bench/preload.md measures it).
"""

from __future__ import annotations

import os
import shutil

from builder.cache.cas import sha256_file
from builder.context import PRELOAD_DIR, BuildContext
from builder.errors import BuilderError
from builder.guest.render import install_stage_files

DESCRIPTION = "copy the datastore image archives into the guest and enable their loader"

UNIT = "trove-preload-images.service"


def run_stage(ctx: BuildContext) -> None:
    archives = ctx.spec.preload_archives
    ctx.results["preload_images"] = [a.describe(PRELOAD_DIR) for a in archives]
    if not archives:
        return
    target = ctx.rootfs / PRELOAD_DIR.lstrip("/")
    target.mkdir(parents=True, exist_ok=True)
    for archive in archives:
        inside = target / archive.guest_name
        shutil.copyfile(archive.path, inside)
        if sha256_file(inside) != archive.sha256:  # changed since it was checked: not what the key names
            raise BuilderError(f"preload image {archive.path} changed during the build")
        os.chmod(inside, 0o600)
        tags = inside.with_suffix(".tags")
        tags.write_text("".join(f"{tag}\n" for tag in archive.repo_tags))
        os.chmod(tags, 0o644)
        ctx.log.write(f"preload: {archive.path.name} ({', '.join(archive.repo_tags)}) -> {PRELOAD_DIR}/{inside.name}\n")
    install_stage_files(ctx.rootfs, "preload", ctx.template_context())
    wants = ctx.rootfs / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / UNIT
    link.unlink(missing_ok=True)
    link.symlink_to(f"/etc/systemd/system/{UNIT}")
