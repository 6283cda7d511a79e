"""What network the guest's NICs came up with, told on the console (the boot test's check that
cloud-init configured them from the config drive's network_data.json, as Nova's guests are).

cloud-init's own "Net device info" table has each NIC's address and MAC but not its MTU, the one
setting network_data.json gives that DHCP on the emulator's network does not: a NIC at the link's
MTU was configured from network_data.json; one at 1500 from cloud-init's fallback.
"""

from __future__ import annotations

import re

NET_TAG = "trove-boot-net:"
# Runs in cloud-init's network stage (bootcmd), once the network is configured.
_PROBE_SCRIPT = (
    'for d in /sys/class/net/*; do [ -e "$d/device" ] || continue; '
    'echo "{tag} ${d##*/} $(cat "$d/address") mtu $(cat "$d/mtu")"; done >/dev/console 2>&1'
)
_NIC_LINE = re.compile(rf"{re.escape(NET_TAG)} (\S+) ([0-9a-f:]{{17}}) mtu (\d+)\s*$", re.MULTILINE)


def net_probe_cloud_config() -> dict:
    """Cloud-config (part of every boot test's user data) that prints each NIC's name, MAC and MTU."""
    return {"bootcmd": [["/bin/sh", "-c", _PROBE_SCRIPT.replace("{tag}", NET_TAG)]]}


def nics(console_text: str) -> dict[str, tuple[str, int]]:
    """MAC -> (interface name, MTU), as the guest printed them (the last line per MAC wins)."""
    return {mac: (name, int(mtu)) for name, mac, mtu in _NIC_LINE.findall(console_text)}


def network_data_applied(console_text: str, mac: str, mtu: int) -> tuple[bool, str]:
    """Whether the NIC with `mac` came up at network_data.json's MTU, and what was seen."""
    seen = nics(console_text)
    if mac not in seen:
        return False, (f"the guest printed no '{NET_TAG}' line for {mac} (cloud-init's bootcmd did not run, "
                       f"or no NIC has that MAC; seen: {sorted(seen) or 'none'})")
    name, got = seen[mac]
    if got != mtu:
        return False, (f"{name} ({mac}) has MTU {got}, not network_data.json's {mtu}: cloud-init did not "
                       "configure it from the config drive's network_data.json")
    return True, f"{name} ({mac}) at MTU {got}, from network_data.json"
