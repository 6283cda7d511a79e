"""Real QEMU, quick: firmware on a blank disk (no guest OS), and that nothing outlives the VM.

Seconds each under TCG. The full boot of a built image is the slow boot test, not this.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import pytest

from builder.verify import procs
from builder.verify.qemu import VMConfig, VMError, boot_vm
from tests.helpers import pid_alive

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                reason="qemu-system-x86 is not installed (scripts/setup-host.sh installs it)")


@pytest.fixture
def blank(tmp_path):
    img = tmp_path / "blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "1G"], check=True)
    return img


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()




def test_uefi_firmware_boots_and_everything_is_removed(blank, tmp_path):
    before = _sha(blank)
    serial = tmp_path / "console.log"
    with boot_vm(VMConfig(image=blank, firmware="uefi", accel="tcg"), serial_log=serial) as vm:
        assert vm.alive()
        elapsed, _ = vm.console.wait_for(r"BdsDxe|UEFI Interactive Shell", timeout=180,
                                         abort=vm.exit_reason)
        assert elapsed > 0
        overlay = json.loads(subprocess.run(
            ["qemu-img", "info", "-U", "--output=json", str(vm.workdir / "root-overlay.qcow2")],
            capture_output=True, text=True, check=True).stdout)
        assert overlay["format"] == "qcow2"
        assert overlay["backing-filename"] == str(blank.resolve())
        data = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(vm.workdir / "data.qcow2")],
                                         capture_output=True, text=True, check=True).stdout)
        assert data["virtual-size"] == 2 * 1024 ** 3
        assert (vm.workdir / "OVMF_VARS.fd").is_file()
        pid, workdir, marker = vm.proc.pid, vm.workdir, vm.marker
    assert not pid_alive(pid)
    assert not workdir.exists()
    assert [p for p in procs.marked_pids(marker) if pid_alive(p)] == []
    assert _sha(blank) == before  # the image under test is never written
    assert serial.exists()  # an explicit console log is kept


def test_qemu_is_ended_on_keyboard_interrupt(blank):
    seen = {}
    with pytest.raises(KeyboardInterrupt):
        with boot_vm(VMConfig(image=blank, accel="tcg", data_disk_gb=None)) as vm:
            seen.update(pid=vm.proc.pid, workdir=vm.workdir)
            assert vm.alive()
            raise KeyboardInterrupt
    assert not pid_alive(seen["pid"])
    assert not seen["workdir"].exists()


def test_qemu_is_ended_when_the_harness_gets_sigterm(blank, tmp_path):
    script = tmp_path / "hold.py"
    script.write_text(
        "import sys, time\n"
        "from builder.verify.qemu import VMConfig, boot_vm\n"
        f"with boot_vm(VMConfig(image={str(blank)!r}, accel='tcg')) as vm:\n"
        "    print(vm.proc.pid, vm.workdir, flush=True)\n"
        "    time.sleep(600)\n")
    import sys
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        line = proc.stdout.readline().split()
        assert line, "QEMU did not start in the child"
        pid, workdir = int(line[0]), line[1]
        assert pid_alive(pid)
        proc.terminate()
        assert proc.wait(timeout=60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not pid_alive(pid)
    assert not os.path.exists(workdir)


def test_a_qemu_that_dies_is_reported(blank):
    with boot_vm(VMConfig(image=blank, accel="tcg", extra_args=["-no-such-option"])) as vm:
        vm.proc.wait(timeout=30)
        reason = vm.exit_reason()
    assert reason and "QEMU exited with status" in reason and "no-such-option" in reason


def test_data_disk_must_differ_from_the_root_disk(blank):
    with pytest.raises(VMError, match="must differ"):
        with boot_vm(VMConfig(image=blank, accel="tcg", data_disk_gb=1)):
            pass


def test_missing_image_is_a_clear_error(tmp_path):
    with pytest.raises(VMError, match="does not exist"):
        with boot_vm(VMConfig(image=tmp_path / "nope.qcow2", accel="tcg")):
            pass
