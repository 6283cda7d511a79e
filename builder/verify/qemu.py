"""Booting an image under QEMU the way Nova would, without ever modifying the image.

The image under test is only a backing file: the guest writes to a throw-away qcow2 overlay.
Disk 1 = overlay (virtio-blk, /dev/vda), disk 2 = blank data disk (virtio-blk, /dev/vdb) that the
agent formats and mounts, the config drive on a CD-ROM (IDE; virtio-scsi under OVMF), so it cannot take vdb, user-mode
networking with virtio-net (host = 10.0.2.2), serial console to a file. KVM when it really works,
else TCG. QEMU runs in its own process group and is always ended, its temp dir always removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from builder.choices import Firmware, values
from builder.errors import BuilderError
from builder.verify import procs
from builder.verify.console import SerialConsole
from builder.verify.kvm import kvm_reason, kvm_usable

QEMU = os.environ.get("TROVE_BOOT_TEST_QEMU", "qemu-system-x86_64")
QEMU_IMG = "qemu-img"
FIRMWARES = values(Firmware)
MACHINES = {"pc": "ide.1", "q35": "ide.2"}  # machine type -> IDE/SATA bus of the CD-ROM
# The guest NIC's MAC, in Nova's fa:16:3e range: network_data.json on the config drive names the
# link by it, as Nova does (configdrive.network_data).
GUEST_MAC = "fa:16:3e:00:00:01"
CDROMS = ("auto", "ide", "virtio-scsi")
ACCELS = ("auto", "kvm", "tcg")
OVMF_PAIRS = (
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
    ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"),
    ("/usr/share/edk2/x64/OVMF_CODE.fd", "/usr/share/edk2/x64/OVMF_VARS.fd"),
)
GiB = 1024 ** 3


class VMError(BuilderError):
    """QEMU could not be prepared or started."""


@dataclass
class GuestFwd:
    """A guest-side TCP address whose connections QEMU hands to a host command (stdin/stdout)."""

    guest_addr: str
    guest_port: int
    command: str

    def option(self) -> str:
        # QEMU option values escape commas by doubling them.
        return f"guestfwd=tcp:{self.guest_addr}:{self.guest_port}-cmd:{self.command.replace(',', ',,')}"


@dataclass
class HostFwd:
    """A host loopback TCP port QEMU forwards to a guest port (user networking's hostfwd)."""

    host_port: int
    guest_port: int

    def option(self) -> str:
        return f"hostfwd=tcp:127.0.0.1:{self.host_port}-:{self.guest_port}"


@dataclass
class VMConfig:
    """What to boot and how. data_disk_gb=None boots without the second disk (negative test).

    machine "pc" (i440fx): its PIIX IDE is what every guest kernel drives (Debian's cloud kernel
    has ata_piix but no AHCI); "q35" has AHCI (SATA) instead.

    cdrom: "ide" (IDE on pc, SATA on q35), "virtio-scsi", or "auto": IDE with SeaBIOS;
    virtio-scsi with OVMF, because under OVMF on i440fx the guest kernel never detects the IDE
    CD-ROM (seen with Debian bookworm's cloud kernel: ata2 probes, no sr0, no cloud-init). A
    SCSI CD-ROM is /dev/sr0 all the same and cannot take vdb either.
    """

    image: Path
    config_drive: Path | None = None
    data_disk_gb: float | None = 2
    firmware: str = "bios"
    accel: str = "auto"
    cpus: int = 2
    memory_mb: int = 2048
    machine: str = "pc"
    cdrom: str = "auto"
    guestfwds: list[GuestFwd] = field(default_factory=list)
    hostfwds: list[HostFwd] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)


def image_info(path: Path) -> dict:
    """`qemu-img info` as a dict (format, virtual-size, ...)."""
    res = subprocess.run([QEMU_IMG, "info", "--output=json", str(path)], capture_output=True, text=True)
    if res.returncode != 0:
        raise VMError(f"qemu-img info {path}: {res.stderr.strip()}")
    return json.loads(res.stdout)


def find_ovmf(pairs: Sequence[tuple[str, str]] = OVMF_PAIRS) -> tuple[Path, Path]:
    """The first OVMF (code, vars template) pair present on this host."""
    for code, vars_ in pairs:
        if os.path.isfile(code) and os.path.isfile(vars_):
            return Path(code), Path(vars_)
    raise VMError("UEFI firmware not found (looked for OVMF_CODE*/OVMF_VARS*): apt-get install ovmf")


def choose_accel(requested: str = "auto") -> tuple[str, str]:
    """(accel, why). 'auto' means KVM only if kvm.kvm_usable() proved it works, else TCG."""
    if requested not in ACCELS:
        raise VMError(f"unknown accelerator {requested!r} (one of {', '.join(ACCELS)})")
    if requested == "tcg":
        return "tcg", "TCG requested"
    if kvm_usable():
        return "kvm", kvm_reason()
    if requested == "kvm":
        raise VMError(f"KVM requested but not usable: {kvm_reason()}")
    return "tcg", f"TCG (software emulation): {kvm_reason()}"


def qemu_command(cfg: VMConfig, *, accel: str, root_disk: Path, serial_log: Path,
                 data_disk: Path | None = None, ovmf: tuple[Path, Path] | None = None) -> list[str]:
    """The QEMU argv for `cfg`; `ovmf` = (code, writable vars copy) when firmware is uefi."""
    if cfg.firmware not in FIRMWARES:
        raise VMError(f"unknown firmware {cfg.firmware!r} (one of {', '.join(FIRMWARES)})")
    if cfg.machine not in MACHINES:
        raise VMError(f"unknown machine type {cfg.machine!r} (one of {', '.join(MACHINES)})")
    if accel not in ("kvm", "tcg"):
        raise VMError(f"accelerator must be kvm or tcg here, not {accel!r}")
    argv = [
        QEMU, "-name", "trove-boot-test",
        # graphics=off: SeaBIOS writes to the serial console too, so a disk it cannot boot says
        # "No bootable device" there and the boot test stops at once (not after KERNEL_WATCHDOG).
        "-machine", f"{cfg.machine},accel={accel},graphics=off",
        "-cpu", "host" if accel == "kvm" else "max",
        "-smp", str(cfg.cpus), "-m", str(cfg.memory_mb),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", f"file:{serial_log}",
    ]
    if cfg.firmware == "uefi":
        if not ovmf:
            raise VMError("firmware uefi needs the OVMF code and a writable vars file")
        code, vars_copy = ovmf
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
    # Fixed PCI slots: the root disk enumerates first (vda), the data disk second (vdb).
    argv += ["-drive", f"if=none,id=root,file={root_disk},format=qcow2,cache=unsafe,discard=unmap",
             "-device", "virtio-blk-pci,drive=root,bootindex=1,addr=0x4"]
    if data_disk is not None:
        argv += ["-drive", f"if=none,id=data,file={data_disk},format=qcow2,cache=unsafe",
                 "-device", "virtio-blk-pci,drive=data,addr=0x5"]
    if cfg.config_drive is not None:
        argv += ["-drive", f"if=none,id=cd0,file={cfg.config_drive},format=raw,media=cdrom,readonly=on"]
        if cdrom_bus(cfg) == "virtio-scsi":
            argv += ["-device", "virtio-scsi-pci,id=scsi0,addr=0x7", "-device", "scsi-cd,drive=cd0,bus=scsi0.0"]
        else:
            argv += ["-device", f"ide-cd,drive=cd0,bus={MACHINES[cfg.machine]},unit=0"]
    forwards: list[GuestFwd | HostFwd] = [*cfg.guestfwds, *cfg.hostfwds]
    netdev = "user,id=n0" + "".join("," + fwd.option() for fwd in forwards)
    argv += ["-netdev", netdev, "-device", f"virtio-net-pci,netdev=n0,addr=0x3,mac={GUEST_MAC}",
             "-device", "virtio-rng-pci,addr=0x6"]
    argv += list(cfg.extra_args)
    return argv


def cdrom_bus(cfg: VMConfig) -> str:
    """Where the config drive goes: 'ide' or 'virtio-scsi' (see VMConfig)."""
    if cfg.cdrom not in CDROMS:
        raise VMError(f"unknown cdrom bus {cfg.cdrom!r} (one of {', '.join(CDROMS)})")
    if cfg.cdrom != "auto":
        return cfg.cdrom
    return "virtio-scsi" if cfg.firmware == "uefi" else "ide"


def _qemu_img(*args: str) -> None:
    res = subprocess.run([QEMU_IMG, *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise VMError(f"qemu-img {' '.join(args)}: {res.stderr.strip()}")


def create_overlay(image: Path, overlay: Path) -> None:
    """A qcow2 overlay on `image` (read-only backing file): the image itself never changes."""
    fmt = image_info(image)["format"]
    _qemu_img("create", "-q", "-f", "qcow2", "-F", fmt, "-b", str(Path(image).resolve()), str(overlay))


def create_blank_disk(path: Path, size_gb: float) -> None:
    _qemu_img("create", "-q", "-f", "qcow2", str(path), str(int(size_gb * GiB)))


@dataclass
class VM:
    """A running QEMU: its process, files and clock (t0 = time.monotonic() at start)."""

    proc: subprocess.Popen
    workdir: Path
    serial_log: Path
    qemu_log: Path
    command: list[str]
    accel: str
    accel_reason: str
    t0: float
    marker: str
    console: SerialConsole = field(init=False)

    def __post_init__(self):
        self.console = SerialConsole(self.serial_log, self.t0)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def exit_reason(self) -> str | None:
        """None while running, else a sentence with QEMU's exit status and last stderr line."""
        code = self.proc.poll()
        if code is None:
            return None
        last = ""
        with contextlib.suppress(OSError):
            lines = [ln for ln in self.qemu_log.read_text(errors="replace").splitlines() if ln.strip()]
            last = f": {lines[-1]}" if lines else ""
        return f"QEMU exited with status {code} after {time.monotonic() - self.t0:.0f} s{last}"

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def stop(self) -> None:
        procs.terminate(self.proc, marker=self.marker, grace=10)


@contextlib.contextmanager
def boot_vm(cfg: VMConfig, *, serial_log: Path | None = None) -> Iterator[VM]:
    """Start QEMU for `cfg` and yield the VM; on exit (any exception, KeyboardInterrupt, SIGTERM
    in the main thread) QEMU's process group is ended and the temp dir removed.

    `serial_log` (optional) is where the console goes, kept afterwards; else it lives in the
    temp dir and is lost with it.
    """
    image = Path(cfg.image)
    if not image.is_file():
        raise VMError(f"image {image} does not exist")
    if cfg.config_drive is not None and not Path(cfg.config_drive).is_file():
        raise VMError(f"config drive {cfg.config_drive} does not exist")
    if shutil.which(QEMU) is None:
        raise VMError(f"{QEMU} not found: apt-get install qemu-system-x86")
    accel, why = choose_accel(cfg.accel)
    workdir = Path(tempfile.mkdtemp(prefix="trove-boot-test-vm-"))
    marker = procs.new_marker("qemu")
    proc = None
    with procs.sigterm_raises():
        try:
            overlay = workdir / "root-overlay.qcow2"
            create_overlay(image, overlay)
            data = None
            if cfg.data_disk_gb:
                root_size = image_info(image).get("virtual-size", 0)
                if abs(root_size - cfg.data_disk_gb * GiB) < 0.05 * GiB:
                    raise VMError(f"the data disk ({cfg.data_disk_gb} GiB) must differ in size from the root disk")
                data = workdir / "data.qcow2"
                create_blank_disk(data, cfg.data_disk_gb)
            ovmf = None
            if cfg.firmware == "uefi":
                code, vars_template = find_ovmf()
                vars_copy = workdir / "OVMF_VARS.fd"
                shutil.copyfile(vars_template, vars_copy)
                ovmf = (code, vars_copy)
            # absolute: QEMU runs in its work dir, where a relative path would land (and be removed)
            log_path = Path(serial_log).resolve() if serial_log else workdir / "serial.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_bytes(b"")
            argv = qemu_command(cfg, accel=accel, root_disk=overlay, data_disk=data, serial_log=log_path,
                                ovmf=ovmf)
            qemu_log = workdir / "qemu.log"
            with open(qemu_log, "wb") as out:
                proc = procs.spawn(argv, marker=marker, stdout=out, cwd=workdir)
            t0 = time.monotonic()
            vm = VM(proc=proc, workdir=workdir, serial_log=log_path, qemu_log=qemu_log, command=argv,
                    accel=accel, accel_reason=why, t0=t0, marker=marker)
            yield vm
        finally:
            procs.terminate(proc, marker=marker, grace=10)
            shutil.rmtree(workdir, ignore_errors=True)
