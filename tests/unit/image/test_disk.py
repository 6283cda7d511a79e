import json
import shutil
import struct
import subprocess

import pytest

from builder.image.disk import SECTOR, Layout, embed_grub_bios

needs_sfdisk = pytest.mark.skipif(shutil.which("sfdisk") is None, reason="sfdisk (fdisk) not installed")


def test_layout_puts_root_last_and_aligned():
    layout = Layout.for_size(5)
    assert layout.bios.start == 2048 and layout.esp.start == layout.bios.start + layout.bios.size
    assert layout.root.start == layout.esp.start + layout.esp.size
    assert layout.root.size % 8 == 0
    end = layout.root.start + layout.root.size
    assert end <= layout.total_bytes // SECTOR - 34  # room for the backup GPT
    assert layout.total_bytes == 5 * 1024**3


UUIDS = {"bios": "11111111-1111-1111-1111-111111111111", "esp": "22222222-2222-2222-2222-222222222222",
         "root": "33333333-3333-3333-3333-333333333333"}


def partitioned_disk(tmp_path, layout):
    """A sparse disk file with our GPT written by the real sfdisk."""
    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as fh:
        fh.truncate(layout.total_bytes)
    script = layout.sfdisk_script("44444444-4444-4444-4444-444444444444", UUIDS)
    subprocess.run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(disk)], input=script, text=True, check=True)
    return disk


@needs_sfdisk
def test_sfdisk_reads_back_the_table_we_wrote(tmp_path):
    layout = Layout.for_size(2)
    disk = partitioned_disk(tmp_path, layout)
    uuids = UUIDS
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True).stdout)
    parts = table["partitiontable"]["partitions"]
    assert [p["uuid"] for p in parts] == [uuids["bios"].upper(), uuids["esp"].upper(), uuids["root"].upper()]
    assert [p["start"] for p in parts] == [layout.bios.start, layout.esp.start, layout.root.start]
    assert parts[2]["size"] == layout.root.size


@needs_sfdisk
def test_bios_embedding_keeps_the_partition_table(tmp_path):
    layout = Layout.for_size(2)
    disk = partitioned_disk(tmp_path, layout)
    before = disk.read_bytes()[:SECTOR]
    boot = (bytes(range(256)) * 2)[:-2] + b"\x55\xaa"
    core = bytearray(b"\xAA" * (SECTOR * 3 + 100))
    struct.pack_into("<QHH", core, SECTOR - 12, 7, 7, 7)  # a stale blocklist that must be replaced
    embed_grub_bios(disk, boot, bytes(core), layout.bios)
    data = disk.read_bytes()
    mbr = data[:SECTOR]
    assert mbr[0x1B8:0x1FE] == before[0x1B8:0x1FE]          # disk signature + protective MBR entry
    assert mbr[0x1FE:0x200] == b"\x55\xaa"
    assert mbr[:3] == boot[:3] and mbr[0x5A:0x5C] == boot[0x5A:0x5C]  # GRUB code kept
    assert struct.unpack_from("<Q", mbr, 0x5C)[0] == layout.bios.start
    assert mbr[0x64] == 0xFF and mbr[0x66:0x68] == b"\x90\x90"
    written = data[layout.bios.offset:layout.bios.offset + 4 * SECTOR]
    start, length, segment = struct.unpack_from("<QHH", written, SECTOR - 12)
    assert (start, length, segment) == (layout.bios.start + 1, 3, 0x820)
    assert written[SECTOR:SECTOR + 100] == b"\xAA" * 100
    # sfdisk still sees the same GPT
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True).stdout)
    assert len(table["partitiontable"]["partitions"]) == 3


def test_a_boot_image_without_signature_is_refused(tmp_path):
    disk = tmp_path / "d"
    disk.write_bytes(b"\0" * SECTOR * 8)
    with pytest.raises(ValueError, match="55 AA"):
        embed_grub_bios(disk, b"\0" * SECTOR, b"\0" * SECTOR, Layout.for_size(2).bios)


def test_core_too_big_for_the_bios_partition_is_refused(tmp_path):
    layout = Layout.for_size(2)
    disk = tmp_path / "d"
    disk.write_bytes(b"\0" * SECTOR * 8)
    with pytest.raises(ValueError, match="core.img needs"):
        embed_grub_bios(disk, b"\0" * 510 + b"\x55\xaa", b"\0" * SECTOR * (layout.bios.size + 1), layout.bios)
