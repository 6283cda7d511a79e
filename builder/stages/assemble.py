"""assemble: a partitioned, bootable raw disk made from files: no loop device, no mount."""

from __future__ import annotations

from pathlib import Path

from builder.context import ROOT_LABEL, BuildContext
from builder.errors import BuilderError
from builder.image.disk import GRUB_DIR, Layout, embed_grub_bios
from builder.proc import run

DESCRIPTION = "build the GPT disk: ext4 root, ESP, GRUB for BIOS and UEFI"

# Everything grub.cfg uses is built into the GRUB images: the root filesystem
# carries no GRUB modules, so the guest's own GRUB packages are not needed.
GRUB_MODULES = ["part_gpt", "part_msdos", "ext2", "normal", "search", "search_fs_uuid",
                "search_label", "linux", "serial", "terminal", "boot", "echo", "test",
                "gzio", "configfile"]
GRUB_TARGETS = {
    "i386-pc": GRUB_MODULES + ["biosdisk"],
    "x86_64-efi": GRUB_MODULES + ["fat", "efi_gop"],
}


def _grub_images(ctx: BuildContext, root_uuid: str) -> dict[str, Path]:
    early = ctx.work_dir / "grub-early.cfg"
    early.write_text(
        f"search --no-floppy --fs-uuid --set=root {root_uuid}\n"
        "set prefix=($root)/boot/grub\n"
    )
    images = {}
    for target, modules in GRUB_TARGETS.items():
        out = ctx.work_dir / f"grub-{target}.img"
        run(["grub-mkimage", "-O", target, "-d", GRUB_DIR / target, "-c", early,
             "-p", "/boot/grub", "-o", out, *modules], ctx.log)
        images[target] = out
    return images


def run_stage(ctx: BuildContext) -> None:
    spec = ctx.spec
    layout = Layout.for_size(spec.size_gb)
    disk = ctx.disk_path
    disk.unlink(missing_ok=True)
    env = {"SOURCE_DATE_EPOCH": str(spec.source_date_epoch), "E2FSPROGS_FAKE_TIME": str(spec.source_date_epoch),
           "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"}
    with open(disk, "wb") as fh:
        fh.truncate(layout.total_bytes)
    uuids = {name: ctx.stable_uuid(f"part-{name}") for name in ("bios", "esp", "root")}
    run(["sfdisk", "--no-reread", "--no-tell-kernel", "--quiet", disk], ctx.log,
        input=layout.sfdisk_script(ctx.stable_uuid("gpt-label"), uuids))

    root_uuid = ctx.stable_uuid("rootfs")
    features = ",".join(f"^{f}" for f in ctx.profile.ext4_disable_features)
    run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-L", ROOT_LABEL, "-U", root_uuid,
         "-E", f"hash_seed={root_uuid},offset={layout.root.offset},root_owner=0:0",
         *(["-O", features] if features else []),
         "-d", ctx.rootfs, disk, str(layout.root.bytes // 4096)], ctx.log, env=env)

    esp_id = ctx.stable_uuid("esp")[:8]
    # One sector per cluster: a 64 MiB FAT32 needs >= 65525 clusters, or UEFI reads it as FAT16.
    run(["mkfs.fat", "-F", "32", "-S", "512", "-s", "1", "-i", esp_id, "-n", "ESP", "--offset", str(layout.esp.start),
         disk, str(layout.esp.bytes // 1024)], ctx.log, env=env)
    images = _grub_images(ctx, root_uuid)
    esp = f"{disk}@@{layout.esp.offset}"
    run(["mmd", "-i", esp, "::/EFI", "::/EFI/BOOT"], ctx.log, env=env)
    run(["mcopy", "-i", esp, images["x86_64-efi"], "::/EFI/BOOT/BOOTX64.EFI"], ctx.log, env=env)
    listing = run(["mdir", "-b", "-i", esp, "::/EFI/BOOT"], ctx.log, env=env, capture=True).stdout
    if "BOOTX64.EFI" not in listing.upper():
        raise BuilderError("the ESP does not hold EFI/BOOT/BOOTX64.EFI after copying it there")
    embed_grub_bios(disk, (GRUB_DIR / "i386-pc/boot.img").read_bytes(),
                    images["i386-pc"].read_bytes(), layout.bios)
    ctx.results["layout"] = {
        "table": "gpt",
        "partitions": [
            {"name": p.name, "start_sector": p.start, "sectors": p.size, "type": p.type, "uuid": uuids[p.name]}
            for p in (layout.bios, layout.esp, layout.root)
        ],
        "root_fs_uuid": root_uuid,
        "root_label": ROOT_LABEL,
    }
