"""Is KVM really usable here? Detected, never assumed.

/dev/kvm existing is not enough: in some sandboxes it is backed by a software hypervisor (e.g.
`kvm_pvm`) that creates VMs and even runs firmware, yet hangs a stock Linux kernel. KVM counts
as usable only if (1) a hardware vendor module (kvm_intel/kvm_amd) is loaded, and (2) a tiny
64-bit guest created through the KVM ioctls runs to `hlt` with the expected port output. The
guest probe runs in a child process with a timeout, so a wedged KVM_RUN cannot hang the caller.

Self-contained (no package imports) because it is also run as a script for that child.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import subprocess
import sys
from pathlib import Path

KVM_DEVICE = "/dev/kvm"
VENDOR_MODULES = ("kvm_intel", "kvm_amd")

_KVM_GET_API_VERSION = 0xAE00
_KVM_CREATE_VM = 0xAE01
_KVM_GET_VCPU_MMAP_SIZE = 0xAE04
_KVM_CREATE_VCPU = 0xAE41
_KVM_SET_USER_MEMORY_REGION = 0x4020AE46
_KVM_SET_TSS_ADDR = 0xAE47
_KVM_RUN = 0xAE80
_KVM_SET_REGS = 0x4090AE82
_KVM_GET_SREGS = 0x8138AE83
_KVM_SET_SREGS = 0x4138AE84
_KVM_EXIT_IO = 2
_KVM_EXIT_HLT = 5


class _Segment(ctypes.Structure):
    _fields_ = [("base", ctypes.c_uint64), ("limit", ctypes.c_uint32), ("selector", ctypes.c_uint16),
                ("type", ctypes.c_uint8), ("present", ctypes.c_uint8), ("dpl", ctypes.c_uint8),
                ("db", ctypes.c_uint8), ("s", ctypes.c_uint8), ("l", ctypes.c_uint8), ("g", ctypes.c_uint8),
                ("avl", ctypes.c_uint8), ("unusable", ctypes.c_uint8), ("padding", ctypes.c_uint8)]


class _DTable(ctypes.Structure):
    _fields_ = [("base", ctypes.c_uint64), ("limit", ctypes.c_uint16), ("padding", ctypes.c_uint16 * 3)]


class _SRegs(ctypes.Structure):
    _fields_ = ([(n, _Segment) for n in ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")]
                + [("gdt", _DTable), ("idt", _DTable)]
                + [(n, ctypes.c_uint64) for n in ("cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base")]
                + [("interrupt_bitmap", ctypes.c_uint64 * 4)])


class _Regs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12", "r13",
        "r14", "r15", "rip", "rflags")]


class _Region(ctypes.Structure):
    _fields_ = [("slot", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("guest_phys_addr", ctypes.c_uint64),
                ("memory_size", ctypes.c_uint64), ("userspace_addr", ctypes.c_uint64)]


def _ioctl(libc, fd: int, request: int, arg=0) -> int:
    if isinstance(arg, ctypes.Structure):
        arg = ctypes.addressof(arg)
    ret = libc.ioctl(fd, request, ctypes.c_void_p(arg))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def run_guest_probe() -> str:
    """Create a VM with one vCPU in 64-bit long mode running `mov al,42; out 0x10,al; hlt`.

    Returns "" when it behaved, else what went wrong. Can block forever on a broken KVM: call it
    through probe_in_child().
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
    kvm = os.open(KVM_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    if _ioctl(libc, kvm, _KVM_GET_API_VERSION) != 12:
        return "unexpected KVM API version"
    vm = _ioctl(libc, kvm, _KVM_CREATE_VM)
    _ioctl(libc, vm, _KVM_SET_TSS_ADDR, 0xFFFBD000)
    size = 0x200000
    mem = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, mmap.PROT_READ | mmap.PROT_WRITE)
    region = _Region(0, 0, 0, size, ctypes.addressof(ctypes.c_char.from_buffer(mem)))
    _ioctl(libc, vm, _KVM_SET_USER_MEMORY_REGION, region)
    vcpu = _ioctl(libc, vm, _KVM_CREATE_VCPU, 0)
    run = mmap.mmap(vcpu, _ioctl(libc, kvm, _KVM_GET_VCPU_MMAP_SIZE), mmap.MAP_SHARED,
                    mmap.PROT_READ | mmap.PROT_WRITE)
    # Identity-mapped first 2 MiB: PML4 -> PDPT -> PD with one 2 MiB page.
    pml4, pdpt, pd = 0x2000, 0x3000, 0x4000
    struct.pack_into("<Q", mem, pml4, 0x7 | pdpt)
    struct.pack_into("<Q", mem, pdpt, 0x7 | pd)
    struct.pack_into("<Q", mem, pd, 0x87)
    sregs = _SRegs()
    _ioctl(libc, vcpu, _KVM_GET_SREGS, sregs)
    sregs.cr3, sregs.cr4, sregs.cr0, sregs.efer = pml4, 1 << 5, 0x80050033, 0x500  # PAE, PG|PE, LME|LMA
    sregs.cs = _Segment(base=0, limit=0xFFFFFFFF, selector=8, type=11, present=1, s=1, l=1, g=1)
    data = _Segment(base=0, limit=0xFFFFFFFF, selector=16, type=3, present=1, s=1, g=1)
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data
    _ioctl(libc, vcpu, _KVM_SET_SREGS, sregs)
    code = bytes([0xB0, 0x2A, 0xE6, 0x10, 0xF4])  # mov al,42; out 0x10,al; hlt
    mem[0x10000:0x10000 + len(code)] = code
    regs = _Regs(rip=0x10000, rsp=0x100000, rflags=2)
    _ioctl(libc, vcpu, _KVM_SET_REGS, regs)
    seen = []
    for _ in range(8):
        _ioctl(libc, vcpu, _KVM_RUN)
        reason = struct.unpack_from("<I", run, 8)[0]
        if reason == _KVM_EXIT_IO:
            _direction, _size, port, _count, offset = struct.unpack_from("<BBHIQ", run, 32)
            seen.append((port, run[offset]))
            continue
        if reason == _KVM_EXIT_HLT and seen == [(0x10, 42)]:
            return ""
        return f"probe guest exited with reason {reason} after port writes {seen}"
    return "probe guest never halted"


def probe_in_child(timeout: float = 20.0) -> str:
    """run_guest_probe() in a child Python with a timeout; "" when KVM ran the guest correctly."""
    try:
        res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--probe"], capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"the KVM probe guest did not finish in {timeout:.0f} s"
    if res.returncode == 0 and res.stdout.strip() == "ok":
        return ""
    lines = (res.stdout.strip() or res.stderr.strip()).splitlines()
    return lines[-1] if lines else f"probe exited {res.returncode}"


def kvm_status(device: str = KVM_DEVICE, sys_module: Path = Path("/sys/module")) -> tuple[bool, str]:
    """(usable, why): whether QEMU can use `-accel kvm` for a stock guest kernel."""
    if not os.path.exists(device):
        return False, f"{device} does not exist"
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
        os.close(fd)
    except OSError as exc:
        return False, f"cannot open {device}: {exc.strerror}"
    vendor = [m for m in VENDOR_MODULES if (sys_module / m).exists()]
    if not vendor:
        others = sorted(p.name for p in sys_module.glob("kvm*")) if sys_module.is_dir() else []
        return False, (f"{device} is not hardware KVM (no {'/'.join(VENDOR_MODULES)} module; "
                       f"loaded: {', '.join(others) or 'none'})")
    problem = probe_in_child() if device == KVM_DEVICE else ""
    if problem:
        return False, f"KVM probe guest failed: {problem}"
    return True, f"hardware KVM ({vendor[0]}) ran a probe guest"


_cached: tuple[bool, str] | None = None


def kvm_usable() -> bool:
    """kvm_status()[0], computed once per process."""
    global _cached
    if _cached is None:
        _cached = kvm_status()
    return _cached[0]


def kvm_reason() -> str:
    kvm_usable()
    assert _cached is not None
    return _cached[1]


if __name__ == "__main__" and sys.argv[1:] == ["--probe"]:
    try:
        problem = run_guest_probe()
    except OSError as exc:
        problem = f"{exc.strerror or exc}"
    print(problem or "ok")
    sys.exit(0 if not problem else 1)
