"""The boot timeline read from a console: milestones, network stacks, host key types, the guest's report."""

from __future__ import annotations

import re
import socket

import yaml

from builder.verify import timeline
from builder.verify.boottest import ORDERING_CYCLE
from builder.verify.configdrive import cloud_config_user_data

# Lines as noble (systemd 255: "<unit> - <description>") and bionic (237: description only) print them.
NOBLE = """\
[    0.000000] Linux version 6.8.0-90-generic (buildd@lcy02-amd64-010)
[    2.100000] Run /init as init process
Welcome to Ubuntu 24.04.3 LTS!
[  OK  ] Reached target local-fs.target - Local File Systems.
[  OK  ] Reached target sysinit.target - System Initialization.
[   20.1] cloud-init[400]: Cloud-init v. 25.1.4 running 'init-local' at Mon, 30 Nov 2026 21:00:00 +0000.
         Starting networking.service - Raise network interfaces...
         Starting systemd-networkd.service - Network Configuration...
[  OK  ] Reached target network.target - Network.
[  OK  ] Reached target network-online.target - Network is Online.
[  OK  ] Started docker.service - Docker Application Container Engine.
[  OK  ] Started guest-agent.service - OpenStack Trove Guest Agent.
<14>Nov 30 21:01:00 cloud-init: -----BEGIN SSH HOST KEY FINGERPRINTS-----
<14>Nov 30 21:01:00 cloud-init: 3072 SHA256:abcDEF root@trove (RSA)
<14>Nov 30 21:01:00 cloud-init: 256 SHA256:ghiJKL root@trove (ED25519)
<14>Nov 30 21:01:00 cloud-init: -----END SSH HOST KEY FINGERPRINTS-----
"""
BIONIC = """\
[    0.000000] Linux version 4.15.0-213-generic
Loading, please wait...
Welcome to Ubuntu 18.04.6 LTS!
[  OK  ] Reached target Local File Systems.
[  OK  ] Reached target Network.
[  OK  ] Reached target Network is Online.
[  OK  ] Started Docker Application Container Engine.
[  OK  ] Reached target Multi-User System.
         Starting Raise network interfaces...
-----BEGIN SSH HOST KEY FINGERPRINTS-----
256 SHA256:ghiJKL root@trove (ED25519)
-----END SSH HOST KEY FINGERPRINTS-----
"""


def seen(text: str) -> set[str]:
    return {name for name, (_what, pattern) in timeline.CONSOLE_MILESTONES.items()
            if timeline.first_seen(text, pattern)}


def test_milestones_of_both_systemd_status_formats():
    assert {"kernel", "initrd", "systemd", "local_fs", "sysinit", "cloud_init_local", "network",
            "network_online", "docker", "agent_unit"} <= seen(NOBLE)
    assert {"kernel", "initrd", "systemd", "local_fs", "network", "network_online", "docker",
            "multi_user"} <= seen(BIONIC)
    assert "agent_unit" not in seen(BIONIC) and "network" in seen("[  OK  ] Reached target Network.\n")
    # "Network is Online" is not network.target.
    assert "network" not in seen("[  OK  ] Reached target network-online.target - Network is Online.\n")


def test_two_network_stacks_are_seen_and_one_is_one():
    assert timeline.network_stacks(NOBLE) == ["ifupdown", "systemd-networkd"]
    assert timeline.network_stacks(BIONIC) == ["ifupdown"]


def test_host_key_types_from_the_fingerprint_block():
    assert timeline.host_key_types(NOBLE) == ["ed25519", "rsa"]
    assert timeline.host_key_types(BIONIC) == ["ed25519"]
    assert timeline.host_key_types("no block here\n") == []


REPORT = """\
[  120.0] random kernel line
trove-boot-report: analyze Startup finished in 3.2s (kernel) + 8.1s (initrd) + 1min 10s (userspace) = 1min 21s
trove-boot-report: analyze multi-user.target reached after 1min 5s in userspace.
trove-boot-report: chain guest-agent.service +2.1s
trove-boot-report: chain └─docker.service @50.2s +10s
trove-boot-report: blame 20.5s apparmor.service
trove-boot-report: blame 10.0s docker.service
trove-boot-report: unit Id=docker.service LoadState=loaded InactiveExitTimestampMonotonic=50200000 ActiveEnterTimestampMonotonic=60200000
trove-boot-report: unit Id=networking.service LoadState=not-found InactiveExitTimestampMonotonic=0 ActiveEnterTimestampMonotonic=0
trove-boot-report: unit Id=guest-agent.service LoadState=loaded InactiveExitTimestampMonotonic=62000000 ActiveEnterTimestampMonotonic=62500000
trove-boot-report: hostkey ssh_host_ed25519_key.pub
trove-boot-report: ciblame -- Boot Record 01 --
trove-boot-report: ciblame      03.54600s (init-local/search-ConfigDrive)
trove-boot-report: ciblame      03.22500s (modules-config/config-set_passwords)
trove-boot-report: ciblame 1 boot records analyzed
trove-boot-report: kernel 6.8.0-151-generic
trove-boot-report: aacompiled 0
trove-boot-report: aafeatures Y2FwYWJpbGl0eSB7MHhmZmZmZmYKfQpk
trove-boot-report: aafeatures b21haW4ge2NoYW5nZV9oYXQge3llcwp9Cn0K
trove-boot-report: cpu 41234567 cloud-init-main.service
trove-boot-report: cpu 9100000 docker.service
trove-boot-report: cpu 91#0 garbled.service
trove-boot-report: sudo [   88.123456] vm sudo[901]:    trove : PWD=/ ; USER=root ; COMMAND=/usr/sbin/mkfs -F -t ext3 /dev/vdb
trove-boot-report: agentlog [   60.000001] vm guest-agent[700]: guest-agent: imports done in 31.2 s; waiting for /run/x
trove-boot-report: consumed cloud-init-main.service: Consumed 1min 2.500s CPU time, 62.8M memory peak, 0B memory swap peak.
trove-boot-report: consumed modprobe@drm.service: Consumed 845ms CPU time.
trove-boot-report: consumed docker.service: Consumed 3.000s CPU time.
trove-boot-report: reloads 2
trove-boot-report: modules floppy kvm isofs
trove-boot-report: cputotal cpu  20000 10 3000 9000 1000 0 500 0 0 0
trove-boot-report: end
"""


def test_guest_report_parsed_and_placed_on_the_host_clock():
    assert timeline.parse_guest_report(REPORT.replace("trove-boot-report: end", "")) is None  # not finished yet
    # The script's own text on the console (a unit description) is not the end of the report.
    assert timeline.parse_guest_report('[  OK  ] Started x\necho "trove-boot-report: end"\n') is None
    report = timeline.parse_guest_report(REPORT)
    assert report.analyze.startswith("Startup finished in 3.2s (kernel)")
    assert report.blame == ["20.5s apparmor.service", "10.0s docker.service"]
    assert report.critical_chain[0] == "guest-agent.service +2.1s"
    assert report.units == {"docker.service": {"started": 50.2, "active": 60.2},
                            "guest-agent.service": {"started": 62.0, "active": 62.5}}
    assert report.host_key_files == ["ssh_host_ed25519_key.pub"]
    assert report.cloud_init_blame == ["03.54600s (init-local/search-ConfigDrive)",
                                       "03.22500s (modules-config/config-set_passwords)"]
    assert report.kernel_release == "6.8.0-151-generic" and report.apparmor_compiled == 0
    # base64's lines joined again: the feature set byte for byte (apparmor_parser hashes it)
    assert report.apparmor_features == "capability {0xffffff\n}\ndomain {change_hat {yes\n}\n}\n"
    # the garbled line dropped; a stopped unit's time from the journal; a cgroup's (running) before the journal's
    assert report.cpu_seconds == {"cloud-init-main.service": 41.2, "docker.service": 9.1, "modprobe@drm.service": 0.8}
    assert report.reloads == 2 and report.modules == ["floppy", "kvm", "isofs"]
    stopped = timeline.parse_guest_report(REPORT.replace("trove-boot-report: cpu 41234567 cloud-init-main.service\n", ""))
    assert list(stopped.cpu_seconds.items())[0] == ("cloud-init-main.service", 62.5)
    assert report.sudo_log[0].endswith("COMMAND=/usr/sbin/mkfs -F -t ext3 /dev/vdb") and len(report.sudo_log) == 1
    assert report.agent_log == ["[   60.000001] vm guest-agent[700]: guest-agent: imports done in 31.2 s; waiting for /run/x"]
    assert (report.cpu_busy, report.cpu_idle) == (235.1, 100.0)  # ticks: busy = all but idle and iowait
    events = timeline.build_timeline({"kernel": 10.0, "login_prompt": 80.0}, {"first_rpc_ping": 95.0}, report)
    assert [(e.name, e.seconds, e.source) for e in events] == [
        ("kernel", 10.0, "console"), ("unit:docker.service", 70.2, "guest"),
        ("unit:guest-agent.service", 72.5, "guest"), ("login_prompt", 80.0, "console"),
        ("first_rpc_ping", 95.0, "host")]
    lines = timeline.render_timeline(events)
    assert re.search(r"70\.2 s\s+\(\+ 60\.2\)\s+guest\s+docker\.service active", lines[1]), lines[1]


def test_a_garbled_feature_set_is_dropped_not_raised():
    garbled = REPORT.replace("aafeatures b21haW4ge2NoYW5nZV9oYXQge3llcwp9Cn0K", "aafeatures b21h#@!")
    report = timeline.parse_guest_report(garbled)
    assert report.apparmor_features == "" and report.kernel_release == "6.8.0-151-generic"
    old_image = timeline.parse_guest_report(REPORT.replace("trove-boot-report: aacompiled 0\n", ""))
    assert old_image.apparmor_compiled is None


def test_guest_report_toggle_is_cloud_config_a_guest_runs():
    extra = timeline.guest_report_cloud_config()
    doc = yaml.safe_load(cloud_config_user_data([("/etc/x", "y")], owner="ubuntu:root", extra=extra))
    command = doc["bootcmd"][0]
    assert command[:4] == ["systemd-run", "--no-block", "--unit=trove-boot-report", "--description=Trove boot report"]
    script = command[-1]
    assert timeline.REPORT_END not in script and "systemd-analyze blame" in script
    assert "guest-agent.service" in script and "{" + "units}" not in script
    # systemd replaces "${name...}" in a unit's command line with its own environment (empty), before sh sees it
    assert "${" not in script


def test_broker_connection_read_from_proc(tmp_path):
    """A process of ours connected to a listening port is seen; one without such a socket is not."""
    import os
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not timeline.qemu_connected_to(os.getpid(), port)
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = server.accept()
            with accepted:
                assert timeline.qemu_connected_to(os.getpid(), port)


# Real lines of the e2e production boot of bookworm under SeaBIOS (graphics=off: GRUB's greeting
# reaches the serial console too), cleaned as the console watcher cleans them.
SEABIOS_BOOKWORM = """\
Welcome to GRUB!

[    0.000000] Linux version 6.1.0-41-cloud-amd64 (debian-kernel@lists.debian.org)
Welcome to Debian GNU/Linux 12 (bookworm)!
"""


def test_grub_greeting_is_not_systemd_starting():
    found = timeline.first_seen(SEABIOS_BOOKWORM, timeline.CONSOLE_MILESTONES["systemd"][1])
    assert found and found.group(0) == "Welcome to Debian GNU/Linux 12 (bookworm)!"
    assert timeline.first_seen("Welcome to GRUB!\n", timeline.CONSOLE_MILESTONES["systemd"][1]) is None


# The end of the real console of the broken-agent e2e boot (bookworm): after the getty owns the
# console systemd prints no unit status at all, so neither docker's nor the agent's start (nor the
# agent's failures) appear without the boot test's unit watch.
AFTER_GETTY = """\
[  OK  ] Started ssh.service - OpenBSD Secure Shell server.

Debian GNU/Linux 12 trove-boot-test-cb3e1a86 ttyS0

trove-boot-test-cb3e1a86 login: [  172.317087] cloud-init[594]: Cloud-init v. 22.4.2 running 'modules:config' at Tue, 01 Dec 2026 01:24:37 +0000. Up 170.14 seconds.
[  175.073425] audit: type=1400 audit(1796088282.425:10): apparmor="STATUS" operation="profile_load" profile="unconfined" name="docker-default" pid=598 comm="apparmor_parser"
[  185.370968] Initializing XFRM netlink socket
[  207.370914] cloud-init[752]: Cloud-init v. 22.4.2 running 'modules:final' at Tue, 01 Dec 2026 01:25:13 +0000. Up 205.69 seconds.
[  212.799375] cloud-init[752]: Cloud-init v. 22.4.2 finished at Tue, 01 Dec 2026 01:25:19 +0000. Datasource DataSourceConfigDrive [net,ver=2][source=/dev/sr0].  Up 212.60 seconds
"""


# The unit watch's lines of a real noble boot (systemd 255) on a machine at load 12: docker's first
# start failed, and the agent's start-pre step (the docker-hostnic plugin call) timed out waiting.
WATCH_NOBLE_SLOW = """\
trove-boot-watch: Starting docker.service - Docker Application Container Engine...
trove-boot-watch: docker.service: Main process exited, code=exited, status=1/FAILURE
trove-boot-watch: docker.service: Failed with result 'exit-code'.
trove-boot-watch: Failed to start docker.service - Docker Application Container Engine.
trove-boot-watch: docker.service: Consumed 1min 7.069s CPU time.
trove-boot-watch: Starting guest-agent.service - OpenStack Trove Guest Agent...
trove-boot-watch: docker.service: Scheduled restart job, restart counter is at 1.
trove-boot-watch: Starting docker.service - Docker Application Container Engine...
trove-boot-watch: guest-agent.service: start-pre operation timed out. Terminating.
trove-boot-watch: guest-agent.service: Control process exited, code=killed, status=15/TERM
trove-boot-watch: guest-agent.service: Failed with result 'timeout'.
trove-boot-watch: Failed to start guest-agent.service - OpenStack Trove Guest Agent.
trove-boot-watch: guest-agent.service: Consumed 11.178s CPU time.
trove-boot-watch: guest-agent.service: Scheduled restart job, restart counter is at 1.
"""
# The watch's lines once they did start (the same image's next boot on that machine).
WATCH_STARTED = """\
trove-boot-watch: Starting docker.service - Docker Application Container Engine...
trove-boot-watch: Started docker.service - Docker Application Container Engine.
trove-boot-watch: Starting guest-agent.service - OpenStack Trove Guest Agent...
trove-boot-watch: guest-agent.service: start-pre operation timed out. Terminating.
trove-boot-watch: guest-agent.service: Control process exited, code=killed, status=15/TERM
trove-boot-watch: guest-agent.service: Failed with result 'timeout'.
trove-boot-watch: Failed to start guest-agent.service - OpenStack Trove Guest Agent.
trove-boot-watch: guest-agent.service: Consumed 8.213s CPU time.
trove-boot-watch: guest-agent.service: Scheduled restart job, restart counter is at 1.
trove-boot-watch: Starting guest-agent.service - OpenStack Trove Guest Agent...
trove-boot-watch: Started guest-agent.service - OpenStack Trove Guest Agent.
"""


def test_units_started_after_the_getty_are_read_from_the_watch_lines():
    assert not {"docker", "agent_unit"} & seen(AFTER_GETTY)
    assert not {"docker", "agent_unit"} & seen(AFTER_GETTY + WATCH_NOBLE_SLOW)  # starting is not started
    assert {"docker", "agent_unit"} <= seen(AFTER_GETTY + WATCH_NOBLE_SLOW + WATCH_STARTED)


def test_unit_watch_is_cloud_config_merged_with_the_report():
    extra = timeline.merge_cloud_configs({"bootcmd": [["true"]], "runcmd": [["x"]]},
                                         timeline.unit_watch_cloud_config(), timeline.guest_report_cloud_config())
    doc = yaml.safe_load(cloud_config_user_data([("/etc/x", "y")], owner="ubuntu:root", extra=extra))
    units = [command[2] for command in doc["bootcmd"][1:]]
    assert doc["bootcmd"][0] == ["true"] and doc["runcmd"] == [["x"]]
    assert units == ["--unit=trove-boot-watch", "--unit=trove-boot-report"]
    script = doc["bootcmd"][1][-1]
    assert "_PID=1 UNIT=docker.service + _PID=1 UNIT=guest-agent.service" in script
    assert timeline.WATCH_TAG in script and "{" not in script


def test_an_agent_that_keeps_failing_is_named_with_its_exit():
    # A start-pre step timing out while docker is slow heals on a later restart: never fatal.
    assert timeline.agent_unit_failure(WATCH_NOBLE_SLOW * 5) is None
    # The agent's own process ending (systemd's messages as for docker above): fatal the third time.
    exited = ("trove-boot-watch: guest-agent.service: Main process exited, code=exited, status=203/EXEC\n"
              "trove-boot-watch: guest-agent.service: Failed with result 'exit-code'.\n")
    assert timeline.agent_unit_failure(WATCH_NOBLE_SLOW + exited * 2) is None
    assert timeline.agent_unit_failure(WATCH_NOBLE_SLOW + exited * 3) == (
        "guest-agent.service failed 3 times at boot (Main process exited, code=exited, status=203/EXEC)")
    # A start-pre step failing (the docker-hostnic plugin cannot start) counts as well.
    pre = exited.replace("Main process exited, code=exited, status=203/EXEC", "Control process exited, "
                         "code=exited, status=56/n/a")
    assert timeline.agent_unit_failure(pre * 3) == (
        "guest-agent.service failed 3 times at boot (Control process exited, code=exited, status=56/n/a)")
    # systemd's lines on the console without the watch's tag are not counted
    assert timeline.agent_unit_failure(exited.replace("trove-boot-watch: ", "") * 3) is None


def test_the_e2e_lean_boot_check_fails_on_a_second_stack_or_another_key_type():
    """tests/e2e/boots.py's assert_boots_lean, shown failing on consoles as main printed them before
    issue 10 (two stacks; RSA beside ed25519; no fingerprint block) and passing on a lean one."""
    import types

    import pytest

    from tests.e2e.boots import assert_boots_lean

    def result(text: str):
        return types.SimpleNamespace(network_stacks=timeline.network_stacks(text),
                                     host_key_types=timeline.host_key_types(text))

    with pytest.raises(AssertionError, match="network stacks started"):
        assert_boots_lean(result(NOBLE), "ubuntu", "noble")
    one_stack_rsa = NOBLE.replace("         Starting networking.service - Raise network interfaces...\n", "")
    with pytest.raises(AssertionError, match="host keys"):
        assert_boots_lean(result(one_stack_rsa), "ubuntu", "noble")
    with pytest.raises(AssertionError, match="no host key fingerprints"):
        assert_boots_lean(result(BIONIC.split("-----BEGIN")[0]), "ubuntu", "bionic")
    assert_boots_lean(result(BIONIC), "ubuntu", "bionic")  # ifupdown alone, ed25519: lean


# cloud-init's interface table as a noble guest printed it with systemd-networkd's files rendered
# but networkd never started (its NIC down), and as a healthy one printed it.
NIC_DOWN = """\
[   49.142988] cloud-init[456]: ci-info: +++++++++++++++++++++++++++Net device info++++++++++++++++++++++++++++
[   49.145351] cloud-init[456]: ci-info: +--------+-------+-----------+-----------+-------+-------------------+
[   49.146588] cloud-init[456]: ci-info: | Device |   Up  |  Address  |    Mask   | Scope |     Hw-Address    |
[   49.147690] cloud-init[456]: ci-info: +--------+-------+-----------+-----------+-------+-------------------+
[   49.148661] cloud-init[456]: ci-info: |  ens3  | False |     .     |     .     |   .   | 52:54:00:12:34:56 |
[   49.149852] cloud-init[456]: ci-info: |   lo   |  True | 127.0.0.1 | 255.0.0.0 |  host |         .         |
[   49.150998] cloud-init[456]: ci-info: |   lo   |  True |  ::1/128  |     .     |  host |         .         |
[   49.152173] cloud-init[456]: ci-info: +--------+-------+-----------+-----------+-------+-------------------+
[   49.152967] cloud-init[456]: ci-info: +++++++++++++++++++Route IPv6 info+++++++++++++++++++
"""
NIC_UP = """\
[  103.539188] cloud-init[500]: ci-info: ++++++++++++++++++++++++++++++Net device info++++++++++++++++++++++++++
[  103.556975] cloud-init[500]: ci-info: | Device |  Up  |          Address           |      Mask     | Scope  |
[  103.573811] cloud-init[500]: ci-info: |  ens3  | True |         10.0.2.15          | 255.255.255.0 | global |
[  103.586707] cloud-init[500]: ci-info: |  ens3  | True | fe80::5054:ff:fe12:3456/64 |       .       |  link  |
[  103.596835] cloud-init[500]: ci-info: |   lo   | True |         127.0.0.1          |   255.0.0.0   |  host  |
[  103.613672] cloud-init[500]: ci-info: ++++++++++++++++++++++++++++Route IPv4 info+++++++++++++++++++++++++
"""


def test_a_guest_whose_network_never_came_up_is_named_at_once():
    assert timeline.network_down(NIC_DOWN) == (
        "the guest's network did not come up: cloud-init found no address on ens3 (its Net device info)")
    assert timeline.network_down(NIC_UP) is None
    assert timeline.network_down(NIC_DOWN.split("Route IPv6")[0]) is None  # table not finished yet: wait
    assert timeline.network_down("") is None


def test_an_ordering_cycle_on_the_console_is_found_and_a_clean_boot_is_not():
    cycle = ("[    9.161351] systemd[1]: docker.service: Found ordering cycle on docker-hostnic.service/start\n"
             "[    9.162217] systemd[1]: docker.service: Found dependency on trove-preload-images.service/start\n")
    found = re.search(ORDERING_CYCLE, cycle, re.MULTILINE)
    assert found and found.group(0) == "Found ordering cycle on docker-hostnic.service/start"
    clean = "[  OK  ] Started docker-hostnic.service - Trove docker-hostnic network plugin.\n"
    assert re.search(ORDERING_CYCLE, clean, re.MULTILINE) is None


def test_guest_report_prints_the_feature_set_this_boot_wrote_not_a_stale_cache(tmp_path):
    """A build's cache dir for another kernel's set stays beside the one the boot writes: the report
    must take the newest .features, whatever the hash directories' names sort as."""
    import os
    import subprocess
    script = timeline.guest_report_cloud_config()["bootcmd"][0][-1]
    choose = next(line for line in script.splitlines() if line.startswith("f=$("))
    root = tmp_path
    for name, text, mtime in (("0000aaaa.0", "stale\n", 1_767_225_600), ("ffff0000.0", "live\n", 1_796_300_000)):
        (root / "var/cache/apparmor" / name).mkdir(parents=True)
        (root / "var/cache/apparmor" / name / ".features").write_text(text)
        os.utime(root / "var/cache/apparmor" / name / ".features", (mtime, mtime))
    choose = choose.replace("/var/cache/apparmor", f"{root}/var/cache/apparmor").replace(
        "/etc/apparmor.d", f"{root}/etc/apparmor.d")
    out = subprocess.run(["sh", "-c", f'{choose}\ncat "$f"'], capture_output=True, text=True, check=True)
    assert out.stdout == "live\n"


def test_guest_report_sums_cpu_time_per_unit_from_cgroup_v2(tmp_path):
    """The report's shell lines on a fake cgroup tree: one line per unit, most CPU first; a unit
    without cpu.stat (or a cgroup v1 guest, where none has one) prints nothing."""
    import subprocess
    script = timeline.guest_report_cloud_config()["bootcmd"][0][-1]
    lines = script.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("for s in /sys/fs/cgroup"))
    end = next(i for i in range(start, len(lines)) if "say cpu" in lines[i])
    loop = "\n".join(lines[start:end + 1]).replace("/sys/fs/cgroup", str(tmp_path))
    for unit, usec in (("docker.service", 9100000), ("cloud-init-main.service", 41234567), ("ssh.service", 700)):
        (tmp_path / "system.slice" / unit).mkdir(parents=True)
        (tmp_path / "system.slice" / unit / "cpu.stat").write_text(f"usage_usec {usec}\nuser_usec 1\nsystem_usec 2\n")
    (tmp_path / "system.slice" / "no-stat.service").mkdir()
    (tmp_path / "init.scope").mkdir()
    (tmp_path / "init.scope" / "cpu.stat").write_text("usage_usec 5000000\n")
    out = subprocess.run(["sh", "-c", 'say() { sed "s/^/T $1 /"; }\n' + loop], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["T cpu 41234567 cloud-init-main.service", "T cpu 9100000 docker.service",
                                       "T cpu 5000000 init.scope", "T cpu 700 ssh.service"]
    report = timeline.parse_guest_report(out.stdout.replace("T ", timeline.REPORT_TAG + " ") + timeline.REPORT_END + "\n")
    assert list(report.cpu_seconds) == ["cloud-init-main.service", "docker.service", "init.scope", "ssh.service"]


def test_guest_report_reads_pid1s_journal_once_for_stopped_units_and_reloads(tmp_path):
    """The report's shell lines with a fake journalctl: one read of systemd's own messages gives both
    the CPU time of units that had stopped and the number of daemon-reloads."""
    import subprocess
    script = timeline.guest_report_cloud_config()["bootcmd"][0][-1]
    lines = [line for line in script.splitlines() if "pid1" in line]
    assert sum("journalctl" in line for line in lines) == 1
    calls = tmp_path / "calls"
    fake = (f'journalctl() {{ echo called >> {calls}; printf "Reloading.\\nfoo.service: Consumed 1min 2.500s CPU time.\\n'
            'Reloading finished in 80 ms.\\nbar.service: Consumed 845ms CPU time.\\n"; }\n'
            f'say() {{ sed "s/^/{timeline.REPORT_TAG} $1 /"; }}\n')
    ran = subprocess.run(["sh", "-c", fake + "\n".join(lines)], capture_output=True, text=True, check=True)
    assert calls.read_text().count("called") == 1
    report = timeline.parse_guest_report(ran.stdout + timeline.REPORT_END + "\n")
    assert report.cpu_seconds == {"foo.service": 62.5, "bar.service": 0.8} and report.reloads == 2
