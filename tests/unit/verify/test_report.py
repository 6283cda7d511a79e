"""The boot test's verdict: result table, JSON, and the checks on get_filesystem_stats."""

from __future__ import annotations

import json
import re

from builder.verify.boottest import BootTestResult, _check_fs_stats, render_result_table


def _passed() -> BootTestResult:
    r = BootTestResult(image="images/x.qcow2", guest_id="g-1", datastore="mysql", datastore_version="8.4",
                       firmware="bios", accel="tcg", data_disk_gb=2)
    r.timings.update(login_prompt=41.2, cloud_init_done=77.0, first_rpc_ping=130.44)
    r.total_seconds = 150.0
    r.check("rpc_ping", True, "True after 3 attempt(s)")
    r.check("data disk mounted", True, "total 1.94 GB")
    r.passed = True
    return r


def test_table_of_a_pass():
    r = _passed()
    r.serial_tail = ["should not be shown"]
    text = render_result_table(r)
    assert "PASSED" in text and "FAILED" not in text
    assert "41.2 s" in text and "77.0 s" in text and "130.4 s" in text
    assert "bios / tcg" in text
    assert "PASS  rpc_ping" in text
    assert "should not be shown" not in text
    assert "Reason" not in text


def test_table_of_a_failure_has_reason_and_console_tail():
    r = BootTestResult(image="img", firmware="uefi", accel="tcg")
    r.check("rpc_ping", False, "no answer")
    r.fail("rpc_ping got no answer\n   after 900 s")
    r.serial_tail = [f"line {i}" for i in range(40)]
    text = render_result_table(r)
    assert "FAILED" in text
    assert "Reason: rpc_ping got no answer after 900 s" in text  # one line
    assert "FAIL  rpc_ping" in text
    assert "| line 0" in text and "| line 39" in text
    import re
    assert re.search(r"^  login prompt +-$", text, re.M)  # never seen: shown as "-"


def test_first_failure_is_the_reason():
    r = BootTestResult(image="img")
    r.fail("first")
    r.fail("second")
    assert r.reason == "first" and r.passed is False


def test_to_json_round_trips():
    r = _passed()
    data = json.loads(r.to_json())
    assert data["passed"] is True
    assert data["timings"] == {"login_prompt": 41.2, "cloud_init_done": 77.0, "first_rpc_ping": 130.44}
    assert data["checks"][0] == {"name": "rpc_ping", "ok": True, "detail": "True after 3 attempt(s)", "required": True}
    assert data["guest_id"] == "g-1"


STATS = {"block_size": 4096, "total_blocks": 508431, "free_blocks": 503000, "avail_blocks": 480000,
         "total": 1.94, "used": 0.02, "free": 2060288000, "mgr_extra_info": {}}


def test_fs_stats_of_the_data_disk_pass():
    r = BootTestResult(image="img")
    _check_fs_stats(r, dict(STATS), data_gb=2, root_gb=5)
    assert r.reason == ""
    assert all(c.ok for c in r.checks)


def test_fs_stats_of_the_root_disk_fail_and_say_so():
    r = BootTestResult(image="img")
    _check_fs_stats(r, {**STATS, "total": 4.78}, data_gb=2, root_gb=5)
    assert "root filesystem" in r.reason
    assert not r.passed


def test_fs_stats_missing_keys_fail():
    r = BootTestResult(image="img")
    stats = {k: v for k, v in STATS.items() if k != "total_blocks"}
    _check_fs_stats(r, stats, data_gb=2, root_gb=5)
    assert "total_blocks" in r.reason


def test_fs_stats_not_a_dict_fail():
    r = BootTestResult(image="img")
    _check_fs_stats(r, None, data_gb=2, root_gb=5)
    assert "not a dict" in r.reason


def test_a_failed_optional_check_is_a_warning_not_a_failure():
    r = _passed()
    r.check("cloud-init modules", False, "Running module locale failed", required=False)
    text = render_result_table(r)
    assert "WARN  cloud-init modules" in text
    assert "PASSED" in text
    assert [c.name for c in r.warnings] == ["cloud-init modules"]


def test_the_guest_report_shows_where_the_cpu_went():
    from dataclasses import asdict

    from builder.verify.timeline import GuestReport
    r = _passed()
    r.guest_report = asdict(GuestReport(analyze="Startup finished in 9s", cpu_busy=218.1, cpu_idle=26.1,
                                        cpu_seconds={"guest-agent.service": 50.9, "cloud-init-main.service": 29.8},
                                        modules=["floppy", "kvm"], reloads=0))
    text = render_result_table(r)
    assert "218.1 s busy, 26.1 s idle" in text
    assert re.search(r"^\s+50\.9s guest-agent\.service\n\s+29\.8s cloud-init-main\.service$", text, re.MULTILINE), text
    assert "Kernel modules loaded: 2; systemd daemon-reloads: 0" in text
