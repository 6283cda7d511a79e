"""The boot test's glue (what it concludes from the console and the RPC answers), with fakes:
no broker, no QEMU."""

from __future__ import annotations

import time

from builder.verify import boottest, console
from builder.verify.boottest import BootTestResult, _drive_guest
from builder.verify.rpc import PingOutcome
from builder.verify.timeline import CONSOLE_MILESTONES

GOOD_CONSOLE = (
    "[    0.000000] Linux version 6.1.0-56-cloud-amd64\n"
    "Debian GNU/Linux 12 trove-boot-test ttyS0\n\n"
    "trove-boot-watch: Started docker.service - Docker Application Container Engine.\n"
    "trove-boot-net: ens3 fa:16:3e:00:00:01 mtu 1450\n"
    "trove-boot-test login: [   62.4] cloud-init[593]: 2026-11-25 - util.py[WARNING]: Running module locale "
    "(<module 'cloudinit.config.cc_locale' from "
    "'/usr/lib/python3/dist-packages/cloudinit/config/cc_locale.py'>) failed\n"
    "[   88.8] cloud-init[746]: Cloud-init v. 22.4.2 finished at Wed, 25 Nov 2026 08:32:38 +0000. Datasource "
    "DataSourceConfigDrive [net,ver=2][source=/dev/sr0].  Up 88.80 seconds\n"
)
STATS = {"block_size": 4096, "total_blocks": 508431, "free_blocks": 503000, "avail_blocks": 480000,
         "total": 1.94, "used": 0.02, "free": 2060288000, "mgr_extra_info": {}}


class FakeVM:
    def __init__(self, log, accel="tcg", exit_reason=None):
        self.t0 = time.monotonic() - 100
        self.console = console.SerialConsole(log, self.t0)
        self.accel = accel
        self._exit = exit_reason

    def exit_reason(self):
        return self._exit

    def elapsed(self):
        return time.monotonic() - self.t0


class FakeClient:
    def __init__(self, outcome: PingOutcome, stats=None):
        self.outcome, self.stats = outcome, stats
        self.stats_calls = 0

    def ping_until(self, deadline, per_call_timeout, should_stop):
        """As GuestClient's: asks should_stop before every attempt, and gives up with its reason."""
        why = should_stop()
        if why:
            return PingOutcome(False, 0, 0.0, reason=why)
        return self.outcome

    def get_filesystem_stats(self, timeout):
        self.stats_calls += 1
        if isinstance(self.stats, Exception):
            raise self.stats
        return self.stats


def _run(tmp_path, text: str, outcome: PingOutcome, stats=None, vm_kw=None, controller=None):
    log = tmp_path / "serial.log"
    log.write_text(text)
    vm = FakeVM(log, **(vm_kw or {}))
    watcher = console.ConsoleWatcher(vm.console, {
        "kernel": console.KERNEL_STARTED, "login_prompt": console.LOGIN_PROMPT,
        "cloud_init_done": console.CLOUD_INIT_DONE, "docker": CONSOLE_MILESTONES["docker"][1],
        "cloud_init_module_failure": r"Running module \S+ \(.*\) failed"})
    watcher.check()
    result = BootTestResult(image="img", data_disk_gb=2)
    client = FakeClient(outcome, stats)
    _drive_guest(result, client, vm, watcher, time.monotonic() + 5, 1.0, 2, 5.0, controller, lambda m: None)
    if not result.reason and all(c.ok for c in result.checks if c.required):
        result.passed = True
    return result, client, vm


def _ok(vm_t0_offset=0.0):
    return PingOutcome(True, 3, 20.0, answered_at=time.monotonic())


def test_a_good_boot_passes_with_timings_and_a_warning(tmp_path):
    result, client, _ = _run(tmp_path, GOOD_CONSOLE, _ok(), dict(STATS))
    assert result.passed, result.reason
    assert result.timings["first_rpc_ping"] is not None and result.timings["first_rpc_ping"] >= 99
    assert result.timings["login_prompt"] is not None
    assert result.timings["cloud_init_done"] is not None
    assert client.stats_calls == 1
    warn = result.warnings
    assert [c.name for c in warn] == ["cloud-init modules"]
    assert warn[0].detail.startswith("Running module locale") and "<module" not in warn[0].detail


def test_an_older_agent_without_avail_blocks_passes_with_a_warning(tmp_path):
    stats = {k: v for k, v in STATS.items() if k != "avail_blocks"}  # trove 17 (bionic) reports no avail_blocks
    result, _, _ = _run(tmp_path, GOOD_CONSOLE, _ok(), stats)
    assert result.passed, result.reason
    assert "get_filesystem_stats newer keys" in [c.name for c in result.warnings]


def test_stats_missing_a_key_every_agent_has_fail(tmp_path):
    stats = {k: v for k, v in STATS.items() if k != "free_blocks"}
    result, _, _ = _run(tmp_path, GOOD_CONSOLE, _ok(), stats)
    assert not result.passed


def test_root_filesystem_stats_fail(tmp_path):
    result, _, _ = _run(tmp_path, GOOD_CONSOLE, _ok(), {**STATS, "total": 4.8})
    assert not result.passed and "/dev/vdb was not mounted" in result.reason


def test_stats_call_failing_is_the_reason(tmp_path):
    result, _, _ = _run(tmp_path, GOOD_CONSOLE, _ok(), RuntimeError("NoSuchMethod"))
    assert not result.passed and "get_filesystem_stats failed" in result.reason


def test_config_drive_not_used_fails(tmp_path):
    text = GOOD_CONSOLE.replace("DataSourceConfigDrive [net,ver=2][source=/dev/sr0]", "DataSourceNone")
    result, _, _ = _run(tmp_path, text, _ok(), dict(STATS))
    assert not result.passed and "cloud-init from config drive" in result.reason


def test_a_guest_that_ignored_network_data_json_fails(tmp_path):
    """cloud-init's fallback (DHCP on the first NIC) answers too, but at MTU 1500, not the network's."""
    text = GOOD_CONSOLE.replace("fa:16:3e:00:00:01 mtu 1450", "fa:16:3e:00:00:01 mtu 1500")
    result, _, _ = _run(tmp_path, text, _ok(), dict(STATS))
    assert not result.passed and result.reason.startswith("network from network_data.json: ens3")


def test_no_answer_after_a_normal_boot_names_the_rpc(tmp_path):
    outcome = PingOutcome(False, 40, 900, reason="rpc_ping got no answer on topic guestagent.x")
    result, client, _ = _run(tmp_path, GOOD_CONSOLE, outcome)
    assert not result.passed and result.reason.startswith("rpc_ping got no answer")
    assert client.stats_calls == 0


def test_no_answer_and_no_login_prompt(tmp_path):
    outcome = PingOutcome(False, 40, 900, reason="rpc_ping got no answer")
    result, _, _ = _run(tmp_path, "[    0.000000] Linux version 6.1\n", outcome)
    assert result.reason.startswith("no login prompt")


def test_no_kernel_output_under_kvm_suggests_tcg(tmp_path):
    outcome = PingOutcome(False, 0, 240, reason="no kernel output")
    result, _, _ = _run(tmp_path, "  Booting `Debian bookworm (Trove guest)'\n", outcome, vm_kw={"accel": "kvm"})
    assert "no kernel output" in result.reason and "accel='tcg'" in result.reason


def test_emergency_shell_is_the_reason(tmp_path):
    outcome = PingOutcome(False, 2, 30, reason="the guest console shows emergency shell")
    text = GOOD_CONSOLE + "You are in emergency mode. After logging in, type \"journalctl -xb\"\n"
    result, _, _ = _run(tmp_path, text, outcome)
    assert result.reason.startswith("the guest console shows emergency shell")


def test_qemu_exit_is_the_reason(tmp_path):
    outcome = PingOutcome(False, 1, 3, reason="QEMU exited")
    result, _, _ = _run(tmp_path, "", outcome, vm_kw={"exit_reason": "QEMU exited with status 1 after 2 s: boom"})
    assert result.reason == "QEMU exited with status 1 after 2 s: boom"


def test_dev_mode_records_whether_code_was_served(tmp_path):
    class Ctl:
        served = ["rsync --server --sender -logDtpre.iLsfxC . /opt/stack/trove/"]
        refused: list = []
        exit_codes = [0]

    result, _, _ = _run(tmp_path, GOOD_CONSOLE, _ok(), dict(STATS), controller=Ctl())
    assert result.passed
    assert any(c.name == "code synced from controller" and c.ok for c in result.checks)

    Ctl.served, Ctl.refused = [], ["path '/etc/' is outside /opt/stack/trove"]
    outcome = PingOutcome(False, 40, 900, reason="rpc_ping got no answer")
    result, _, _ = _run(tmp_path, GOOD_CONSOLE, outcome, controller=Ctl())
    check = [c for c in result.checks if c.name == "code synced from controller"][0]
    assert not check.ok and "outside" in check.detail


def test_no_kernel_line_past_the_watchdog_stops_the_wait(tmp_path):
    """The abort runs: with no kernel line KERNEL_WATCHDOG seconds in, pings stop (the agent is not awaited)."""
    answer = PingOutcome(True, 1, 1.0, answered_at=time.monotonic())  # what a wait that ignored it would get
    before, _, _ = _run(tmp_path, "SeaBIOS (version 1.16.2)\n", answer, dict(STATS))
    assert before.rpc_ping_attempts == 1  # 100 s in: still within the watchdog, so the wait goes on
    log = tmp_path / "serial.log"
    vm = FakeVM(log)
    vm.t0 = time.monotonic() - boottest.KERNEL_WATCHDOG - 1
    watcher = console.ConsoleWatcher(vm.console, {"kernel": console.KERNEL_STARTED})
    watcher.check()
    result = BootTestResult(image="img", data_disk_gb=2)
    client = FakeClient(answer, dict(STATS))
    _drive_guest(result, client, vm, watcher, time.monotonic() + 5, 1.0, 2, 5.0, None, lambda m: None)
    seconds = boottest.KERNEL_WATCHDOG + 1
    assert result.reason.startswith(f"no kernel output on the serial console after {seconds:.0f} s")
    assert result.rpc_ping_attempts == 0 and client.stats_calls == 0


def test_a_fatal_console_line_stops_the_wait(tmp_path):
    never = PingOutcome(True, 1, 1.0, answered_at=time.monotonic())
    text = "SeaBIOS (version 1.16.2)\nBooting from Hard Disk...\nBoot failed: not a bootable disk\n"
    result, client, _ = _run(tmp_path, text, never, dict(STATS))
    assert not result.passed
    assert result.reason == "the guest console shows no bootable device: Boot failed: not a bootable disk"
    assert result.rpc_ping_attempts == 0 and client.stats_calls == 0


def test_a_guest_whose_dockerd_never_started_fails_though_the_agent_answered(tmp_path):
    # the agent answers before dockerd is up (the launcher gives the SDK its API version): the boot
    # test, not rpc_ping, says whether dockerd came
    text = GOOD_CONSOLE.replace("trove-boot-watch: Started docker.service - Docker Application Container Engine.\n", "")
    result, _, _ = _run(tmp_path, text, _ok(), dict(STATS))
    assert not result.passed
    failed = [c for c in result.checks if not c.ok and c.required]
    assert [c.name for c in failed] == ["dockerd started"], result.checks
    assert "no 'Started ... Docker Application Container Engine'" in failed[0].detail
