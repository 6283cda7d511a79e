"""`trove-builder boot-test` as a user runs it: exit codes, the one-line reason, --json, --console-log.

A blank disk is the cheap real negative: SeaBIOS says "No bootable device" on the serial console and
the boot test stops there, long before its no-kernel watchdog, with that as the reason."""

from __future__ import annotations

import json
import subprocess

import pytest

from builder.verify.boottest import KERNEL_WATCHDOG
from tests.conftest import TB, record_latency, run_tb
from tests.integration.test_cli_errors import assert_one_line_error

pytestmark = pytest.mark.slow


def test_a_blank_disk_fails_early_saying_it_is_not_bootable(tmp_path):
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp_path / "blank.qcow2"), "3G"], check=True)
    # a relative --console-log: QEMU runs in a work dir of its own, the user's path must hold;
    # --json: the result on stdout, the progress and the table on stderr (as build --json and diff --json)
    result = subprocess.run([*TB, "boot-test", "blank.qcow2", "--json", "--console-log", "console.log"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=900)
    reason = "the guest console shows no bootable device: Boot failed: not a bootable disk"
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Reason: {reason}" in result.stderr
    assert result.stderr.endswith(f"trove-builder: boot test failed: {reason}\n")
    report = json.loads(result.stdout)
    assert report["passed"] is False and report["reason"] == reason
    assert {c["name"]: c["ok"] for c in report["checks"]}["rpc_ping"] is False
    assert "No bootable device" in (tmp_path / "console.log").read_text()
    assert record_latency("boot-test of a blank disk: failed after", report["total_seconds"]) < KERNEL_WATCHDOG


@pytest.mark.parametrize("args,code,fragment", [
    (["no-such.qcow2"], 2, "no image at no-such.qcow2"),
    (["{image}", "--firmware", "coreboot"], 2, "'coreboot' is not one of 'bios', 'uefi'"),
    (["{image}", "--controller-source", "{tmp}"], 2, "--controller-source needs --controller-key"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, args, code, fragment):
    image = tmp_path / "x.qcow2"
    image.write_bytes(b"")
    result = run_tb("boot-test", *[a.format(image=image, tmp=tmp_path) for a in args], timeout=60)
    assert_one_line_error(result, code, fragment)
