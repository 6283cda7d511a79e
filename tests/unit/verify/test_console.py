"""Serial console markers and timings, the dev-mode controller's command filter, SIGTERM handling."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from builder.verify import console, procs
from builder.verify.controller import ControllerError, FakeController

CLOUD_INIT_LINE = ("[   95.1] cloud-init[612]: Cloud-init v. 22.4.2 finished at Tue, 25 Nov 2025 08:00:00 +0000. "
                   "Datasource DataSourceConfigDrive [net,ver=2][source=/dev/sr0].  Up 95.39 seconds")


def test_clean_strips_terminal_escapes():
    raw = "\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mssh.service\x1b[0m\r\ndebian login: "
    assert console.clean(raw) == "  OK  ] Started ssh.service\ndebian login: "


def test_markers_match_real_console_lines():
    text = console.clean("\x1b[?25h[H\r\nDebian GNU/Linux 12 trove-boot-test ttyS0\r\n\r\ntrove-boot-test login: "
                         "[   36.1] audit: foo\r\n" + CLOUD_INIT_LINE + "\r\n")
    import re
    assert re.search(console.LOGIN_PROMPT, text, re.M)
    found = re.search(console.CLOUD_INIT_DONE, text, re.M)
    assert found and "DataSourceConfigDrive" in found.group(0)
    assert not re.search(console.LOGIN_PROMPT, "Last login: never\nlogin: \n", re.M)


def test_wait_for_reports_elapsed_time(tmp_path):
    log = tmp_path / "serial.log"
    log.write_bytes(b"booting\n")
    con = console.SerialConsole(log, t0=time.monotonic())

    def later():
        time.sleep(0.6)
        with open(log, "ab") as fh:
            fh.write(b"\x1b[1mdebian login: \x1b[0m")

    threading.Thread(target=later).start()
    elapsed, match = con.wait_for(console.LOGIN_PROMPT, timeout=10, poll=0.05)
    assert 0.5 <= elapsed < 5
    assert match.group(0) == "debian login:"


def test_wait_for_times_out_and_aborts(tmp_path):
    log = tmp_path / "serial.log"
    log.write_bytes(b"nothing here\n")
    con = console.SerialConsole(log)
    with pytest.raises(console.ConsoleTimeout, match="within 0 s"):
        con.wait_for("login:", timeout=0.2, poll=0.05)
    with pytest.raises(console.ConsoleTimeout, match="QEMU died"):
        con.wait_for("login:", timeout=10, poll=0.05, abort=lambda: "QEMU died")


def test_tail_is_the_last_lines(tmp_path):
    log = tmp_path / "serial.log"
    log.write_text("".join(f"line {i}\r\n" for i in range(100)))
    assert console.SerialConsole(log).tail(40) == [f"line {i}" for i in range(60, 100)]


def test_watcher_records_markers_and_fatal_lines(tmp_path):
    log = tmp_path / "serial.log"
    log.write_bytes(b"")
    con = console.SerialConsole(log)
    with console.ConsoleWatcher(con, {"login": console.LOGIN_PROMPT}, poll=0.05) as watcher:
        with open(log, "ab") as fh:
            fh.write(b"host login: \nKernel panic - not syncing: VFS: Unable to mount root fs\n")
        assert watcher.wait_for("login", timeout=5) is not None
        deadline = time.monotonic() + 5
        while watcher.fatal_seen is None and time.monotonic() < deadline:
            time.sleep(0.05)
    assert watcher.fatal_seen.startswith("kernel panic")
    assert watcher.wait_for("never", timeout=0.1) is None


@pytest.fixture
def controller(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    c = FakeController(src, tmp_path / "unused-key", user="stack", path="/opt/stack/trove/")
    return c


def test_controller_maps_the_checkout_path(controller):
    argv = controller.map_command("rsync --server --sender -logDtpre.iLsfxCIvu . /opt/stack/trove/")
    assert argv == ["rsync", "--server", "--sender", "-logDtpre.iLsfxCIvu", ".", f"{controller.source}/"]


@pytest.mark.parametrize("command", [
    "cat /etc/shadow",
    "rsync --server -logDtpre.iLsfxCIvu . /opt/stack/trove/",   # a receiver: would write here
    "rsync --server --sender -logDtpre.iLsfxCIvu . /etc/",
    "rsync --server --sender -logDtpre.iLsfxCIvu . /opt/stack/trove/../../../etc/",
    "rsync --server --sender -logDtpre.iLsfxCIvu . /opt/stack/trovex/",
    "",
])
def test_controller_refuses_anything_else(controller, command):
    with pytest.raises(ControllerError):
        controller.map_command(command)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs the main thread")
def test_sigterm_becomes_systemexit_and_cleanup_runs():
    cleaned = []
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as info:
        with procs.sigterm_raises():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # interrupted by the handler
            finally:
                cleaned.append(True)
    assert info.value.code == 143
    assert cleaned == [True]
    assert signal.getsignal(signal.SIGTERM) == before
