"""Disk layout and GRUB's BIOS embedding, computed in Python so a disk is built from files alone."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

# The GRUB platform directories (i386-pc, x86_64-efi) the GRUB images are made from.
GRUB_DIR = Path(os.environ.get("TROVE_BUILDER_GRUB_DIR", "/usr/lib/grub"))

SECTOR = 512
MIB = 1024 * 1024
BIOS_BOOT_TYPE = "21686148-6449-6E6F-744E-656564454649"
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_FS_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
GPT_BACKUP_SECTORS = 33  # backup partition entries (32) + backup header (1)

# Offsets in GRUB's i386-pc boot.img (grub/i386/pc/boot.h).
BPB_START, BPB_END = 0x03, 0x5A
KERNEL_SECTOR = 0x5C
BOOT_DRIVE = 0x64
DRIVE_CHECK = 0x66
WINDOWS_NT_MAGIC, PART_END = 0x1B8, 0x1FE
# core.img's first blocklist sits at the end of its first sector: start u64, len u16, segment u16.
BLOCKLIST = struct.Struct("<QHH")
KERNEL_SEGMENT = 0x800 + (SECTOR >> 4)


@dataclass(frozen=True)
class Partition:
    name: str
    start: int  # sectors
    size: int   # sectors
    type: str

    @property
    def offset(self) -> int:
        return self.start * SECTOR

    @property
    def bytes(self) -> int:
        return self.size * SECTOR


@dataclass(frozen=True)
class Layout:
    """GPT: BIOS boot (GRUB core), ESP (GRUB EFI), root last so growroot can extend it."""

    total_bytes: int
    bios: Partition
    esp: Partition
    root: Partition

    @classmethod
    def for_size(cls, size_gb: int, esp_mib: int = 64) -> Layout:
        total = size_gb * 1024 * MIB
        sectors = total // SECTOR
        bios = Partition("bios", 2048, 2048, BIOS_BOOT_TYPE)
        esp = Partition("esp", bios.start + bios.size, esp_mib * MIB // SECTOR, ESP_TYPE)
        root_start = esp.start + esp.size
        last_usable = sectors - GPT_BACKUP_SECTORS - 1
        root_size = last_usable - root_start + 1
        root_size -= root_size % 8  # whole 4 KiB filesystem blocks
        return cls(total, bios, esp, Partition("root", root_start, root_size, LINUX_FS_TYPE))

    def sfdisk_script(self, label_id: str, part_uuids: dict[str, str]) -> str:
        lines = ["label: gpt", f"label-id: {label_id}", "unit: sectors", "first-lba: 2048", ""]
        for part in (self.bios, self.esp, self.root):
            lines.append(
                f"start={part.start}, size={part.size}, type={part.type}, "
                f"uuid={part_uuids[part.name]}, name=\"{part.name}\""
            )
        return "\n".join(lines) + "\n"


def embed_grub_bios(disk: Path, boot_img: bytes, core_img: bytes, bios: Partition) -> None:
    """Do what grub-bios-setup does for a GPT disk, on a file: boot.img in the MBR, core.img in
    the BIOS boot partition, the MBR's partition table and signature kept."""
    if len(boot_img) != SECTOR or boot_img[-2:] != b"\x55\xaa":
        raise ValueError("boot.img must be one boot sector (512 bytes ending in 55 AA)")
    core_sectors = -(-len(core_img) // SECTOR)
    if core_sectors > bios.size:
        raise ValueError(f"core.img needs {core_sectors} sectors, BIOS boot partition has {bios.size}")
    core = bytearray(core_img.ljust(core_sectors * SECTOR, b"\0"))
    # Clear the blocklists (they run backwards from the end of the first sector), then
    # point the first at the rest of core.img, right after its first sector.
    pos = SECTOR - BLOCKLIST.size
    while pos > 0 and BLOCKLIST.unpack_from(core, pos)[1] != 0:
        BLOCKLIST.pack_into(core, pos, 0, 0, 0)
        pos -= BLOCKLIST.size
    first = SECTOR - BLOCKLIST.size
    BLOCKLIST.pack_into(core, first, bios.start + 1, core_sectors - 1, KERNEL_SEGMENT)
    BLOCKLIST.pack_into(core, first - BLOCKLIST.size, 0, 0, 0)

    with open(disk, "r+b") as fh:
        mbr = bytearray(fh.read(SECTOR))
        boot = bytearray(boot_img)
        boot[BPB_START:BPB_END] = mbr[BPB_START:BPB_END]
        boot[DRIVE_CHECK:DRIVE_CHECK + 2] = b"\x90\x90"  # a hard disk: no floppy probe
        boot[WINDOWS_NT_MAGIC:PART_END] = mbr[WINDOWS_NT_MAGIC:PART_END]
        boot[BOOT_DRIVE] = 0xFF
        struct.pack_into("<Q", boot, KERNEL_SECTOR, bios.start)
        fh.seek(bios.offset)
        fh.write(core)
        fh.seek(0)
        fh.write(boot)
