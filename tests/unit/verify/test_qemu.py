"""KVM detection and the QEMU command line (no VM is started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.verify import kvm, qemu


def test_kvm_usable_returns_a_bool_and_a_reason():
    usable, why = kvm.kvm_status()
    assert isinstance(usable, bool)
    assert isinstance(why, str) and why
    assert kvm.kvm_usable() is usable


def test_kvm_status_without_device(tmp_path):
    usable, why = kvm.kvm_status(device=str(tmp_path / "kvm"))
    assert usable is False
    assert "does not exist" in why


def test_kvm_status_rejects_kvm_without_a_hardware_vendor_module(tmp_path):
    """A /dev/kvm backed by a software hypervisor (kvm_pvm) is not usable for stock kernels."""
    dev = tmp_path / "kvm"
    dev.write_bytes(b"")
    modules = tmp_path / "module"
    (modules / "kvm").mkdir(parents=True)
    (modules / "kvm_pvm").mkdir()
    usable, why = kvm.kvm_status(device=str(dev), sys_module=modules)
    assert usable is False
    assert "kvm_pvm" in why


def test_kvm_status_accepts_a_vendor_module(tmp_path):
    dev = tmp_path / "kvm"
    dev.write_bytes(b"")
    modules = tmp_path / "module"
    (modules / "kvm_intel").mkdir(parents=True)
    usable, why = kvm.kvm_status(device=str(dev), sys_module=modules)
    assert usable is True
    assert "kvm_intel" in why


def _cmd(tmp_path, monkeypatch, usable: bool, **cfg_kw) -> tuple[list[str], str]:
    monkeypatch.setattr(qemu, "kvm_usable", lambda: usable)
    monkeypatch.setattr(qemu, "kvm_reason", lambda: "test says so")
    accel, _why = qemu.choose_accel("auto")
    cfg = qemu.VMConfig(image=tmp_path / "img.qcow2", config_drive=tmp_path / "cd.iso", **cfg_kw)
    ovmf = (Path("/fw/CODE.fd"), tmp_path / "VARS.fd") if cfg.firmware == "uefi" else None
    argv = qemu.qemu_command(cfg, accel=accel, root_disk=tmp_path / "root.qcow2", data_disk=tmp_path / "data.qcow2",
                             serial_log=tmp_path / "serial.log", ovmf=ovmf)
    return argv, accel


def _opt_values(argv: list[str], opt: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == opt]


def test_tcg_when_kvm_is_unusable(tmp_path, monkeypatch):
    argv, accel = _cmd(tmp_path, monkeypatch, usable=False)
    assert accel == "tcg"
    assert "pc,accel=tcg,graphics=off" in _opt_values(argv, "-machine")
    assert "host" not in _opt_values(argv, "-cpu")


def test_kvm_when_usable(tmp_path, monkeypatch):
    argv, accel = _cmd(tmp_path, monkeypatch, usable=True)
    assert accel == "kvm"
    assert "pc,accel=kvm,graphics=off" in _opt_values(argv, "-machine")


def test_explicit_kvm_request_fails_clearly_when_unusable(monkeypatch):
    monkeypatch.setattr(qemu, "kvm_usable", lambda: False)
    monkeypatch.setattr(qemu, "kvm_reason", lambda: "no vendor module")
    with pytest.raises(qemu.VMError, match="no vendor module"):
        qemu.choose_accel("kvm")
    assert qemu.choose_accel("tcg")[0] == "tcg"


def test_disks_cdrom_network_and_console(tmp_path, monkeypatch):
    argv, _ = _cmd(tmp_path, monkeypatch, usable=False)
    drives = _opt_values(argv, "-drive")
    devices = _opt_values(argv, "-device")
    # root overlay first (vda), blank data disk second (vdb), both virtio-blk in fixed slots
    assert drives[0].startswith(f"if=none,id=root,file={tmp_path / 'root.qcow2'},format=qcow2")
    assert drives[1].startswith(f"if=none,id=data,file={tmp_path / 'data.qcow2'},format=qcow2")
    assert "virtio-blk-pci,drive=root,bootindex=1,addr=0x4" in devices
    assert "virtio-blk-pci,drive=data,addr=0x5" in devices
    # config drive: a CD-ROM on the SATA/IDE bus, never virtio (it must not take vdb)
    assert any("id=cd0" in d and "media=cdrom" in d for d in drives)
    assert "ide-cd,drive=cd0,bus=ide.1,unit=0" in devices  # PIIX IDE: every guest kernel has ata_piix
    assert _opt_values(argv, "-netdev") == ["user,id=n0"]
    # the MAC network_data.json names the guest's link by (Nova's fa:16:3e range)
    assert f"virtio-net-pci,netdev=n0,addr=0x3,mac={qemu.GUEST_MAC}" in devices
    assert qemu.GUEST_MAC.startswith("fa:16:3e:")
    assert any(d.startswith("virtio-rng-pci") for d in devices)
    assert _opt_values(argv, "-smp") == ["2"] and _opt_values(argv, "-m") == ["2048"]
    assert _opt_values(argv, "-serial") == [f"file:{tmp_path / 'serial.log'}"]
    assert "-no-reboot" in argv and _opt_values(argv, "-display") == ["none"]
    assert not any(d.startswith("if=pflash") for d in drives)  # SeaBIOS by default


def test_uefi_uses_a_pflash_pair_with_a_private_vars_copy(tmp_path, monkeypatch):
    argv, _ = _cmd(tmp_path, monkeypatch, usable=False, firmware="uefi")
    pflash = [d for d in _opt_values(argv, "-drive") if d.startswith("if=pflash")]
    assert pflash == ["if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd",
                      f"if=pflash,format=raw,unit=1,file={tmp_path / 'VARS.fd'}"]
    # Under OVMF the guest kernel does not see an IDE CD-ROM on i440fx: SCSI CD-ROM instead.
    devices = _opt_values(argv, "-device")
    assert "scsi-cd,drive=cd0,bus=scsi0.0" in devices
    assert not any(d.startswith("ide-cd") for d in devices)


def test_cdrom_bus_can_be_forced(tmp_path, monkeypatch):
    argv, _ = _cmd(tmp_path, monkeypatch, usable=False, firmware="uefi", cdrom="ide")
    assert "ide-cd,drive=cd0,bus=ide.1,unit=0" in _opt_values(argv, "-device")
    argv, _ = _cmd(tmp_path, monkeypatch, usable=False, cdrom="virtio-scsi")
    assert "scsi-cd,drive=cd0,bus=scsi0.0" in _opt_values(argv, "-device")
    with pytest.raises(qemu.VMError, match="unknown cdrom"):
        _cmd(tmp_path, monkeypatch, usable=False, cdrom="floppy")


def test_no_data_disk_for_the_negative_test(tmp_path, monkeypatch):
    monkeypatch.setattr(qemu, "kvm_usable", lambda: False)
    cfg = qemu.VMConfig(image=tmp_path / "img.qcow2", data_disk_gb=None)
    argv = qemu.qemu_command(cfg, accel="tcg", root_disk=tmp_path / "root.qcow2", serial_log=tmp_path / "s.log")
    assert not any("id=data" in d for d in _opt_values(argv, "-drive"))
    assert not any("id=cd0" in d for d in _opt_values(argv, "-drive"))


def test_guestfwd_escapes_commas(tmp_path):
    fwd = qemu.GuestFwd("10.0.2.100", 22, "/usr/bin/python3 /t/relay.py 127.0.0.1 2222,x")
    cfg = qemu.VMConfig(image=tmp_path / "i", guestfwds=[fwd])
    argv = qemu.qemu_command(cfg, accel="tcg", root_disk=tmp_path / "r", serial_log=tmp_path / "s")
    assert _opt_values(argv, "-netdev") == [
        "user,id=n0,guestfwd=tcp:10.0.2.100:22-cmd:/usr/bin/python3 /t/relay.py 127.0.0.1 2222,,x"]


def test_bad_firmware_is_refused(tmp_path):
    cfg = qemu.VMConfig(image=tmp_path / "i", firmware="coreboot")
    with pytest.raises(qemu.VMError, match="unknown firmware"):
        qemu.qemu_command(cfg, accel="tcg", root_disk=tmp_path / "r", serial_log=tmp_path / "s")


def test_find_ovmf_prefers_the_first_existing_pair(tmp_path):
    (tmp_path / "C4.fd").write_bytes(b"c")
    (tmp_path / "V4.fd").write_bytes(b"v")
    (tmp_path / "C.fd").write_bytes(b"c")
    (tmp_path / "V.fd").write_bytes(b"v")
    pairs = [(str(tmp_path / "missing"), str(tmp_path / "V4.fd")),
             (str(tmp_path / "C4.fd"), str(tmp_path / "V4.fd")),
             (str(tmp_path / "C.fd"), str(tmp_path / "V.fd"))]
    assert qemu.find_ovmf(pairs) == (tmp_path / "C4.fd", tmp_path / "V4.fd")
    with pytest.raises(qemu.VMError, match="ovmf"):
        qemu.find_ovmf([(str(tmp_path / "nope"), str(tmp_path / "nope2"))])


def test_q35_puts_the_cdrom_on_ahci(tmp_path, monkeypatch):
    argv, _ = _cmd(tmp_path, monkeypatch, usable=False, machine="q35")
    assert "q35,accel=tcg,graphics=off" in _opt_values(argv, "-machine")
    assert "ide-cd,drive=cd0,bus=ide.2,unit=0" in _opt_values(argv, "-device")
