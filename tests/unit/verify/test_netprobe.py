"""The boot test's network probe: the guest's line per NIC, and the check read from it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from builder.verify import netprobe
from builder.verify.qemu import GUEST_MAC

MAC = GUEST_MAC


def test_the_probe_prints_what_sysfs_says_and_the_parser_reads_it_back():
    """The guest's own script, run on this host (its output to stdout, not /dev/console)."""
    (command,) = netprobe.net_probe_cloud_config()["bootcmd"]
    assert command[:2] == ["/bin/sh", "-c"]
    script = command[2].replace(">/dev/console 2>&1", "")
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True).stdout
    expected = {}
    for dev in Path("/sys/class/net").iterdir():
        if (dev / "device").exists():
            expected[(dev / "address").read_text().strip()] = (dev.name, int((dev / "mtu").read_text()))
    assert expected, "this host has no NIC with a device to compare with"
    assert netprobe.nics(out) == expected


CONSOLE = f"""[   31.2] cloud-init[456]: ci-info: |  ens3  | True | 10.0.2.15 | 255.255.255.0 | global | {MAC} |
trove-boot-net: ens3 {MAC} mtu {{mtu}}
[   31.4] systemd[1]: Started ...
"""


def test_a_nic_at_the_link_mtu_passes():
    ok, detail = netprobe.network_data_applied(CONSOLE.format(mtu=1450), MAC, 1450)
    assert ok and detail == f"ens3 ({MAC}) at MTU 1450, from network_data.json"


def test_a_nic_at_1500_fails_as_cloud_init_fallback():
    ok, detail = netprobe.network_data_applied(CONSOLE.format(mtu=1500), MAC, 1450)
    assert not ok and "MTU 1500, not network_data.json's 1450" in detail


def test_no_probe_line_for_the_mac_fails():
    ok, detail = netprobe.network_data_applied(CONSOLE.format(mtu=1450), "fa:16:3e:00:00:09", 1450)
    assert not ok and "no 'trove-boot-net:' line for fa:16:3e:00:00:09" in detail
    assert not netprobe.network_data_applied("", MAC, 1450)[0]
