"""export: the image, its manifest, .sha256 and lock under temporary names, then renamed into place."""

from __future__ import annotations

from builder.context import BuildContext
from builder.image import qemu_img
from builder.publish import publish, temp_name

DESCRIPTION = "convert to the output format; write manifest, checksum and lock"

def run_stage(ctx: BuildContext) -> None:
    tmp = temp_name(ctx.spec.output)
    try:
        qemu_img.convert(ctx.disk_path, tmp, ctx.spec.fmt, ctx.log, compression=ctx.spec.resolved_compression)
        publish(ctx, tmp)
    finally:
        tmp.unlink(missing_ok=True)
