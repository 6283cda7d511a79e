"""The boot timeline: when each step of a guest's first boot happened, in seconds since QEMU started.

Three sources, each used where it is the one that can tell:
- the serial console (kernel, initrd, systemd's targets and units, each cloud-init stage), timed by
  when the line appeared on the host, so every image is measured the same way whatever it ships.
  systemd stops printing unit status once a getty owns the console, and docker and the agent
  start after the login prompt: the boot test's user data therefore always starts a journal
  follower (`unit_watch_cloud_config`) that copies systemd's own messages about those two units
  to the console, tagged; the same lines tell when the agent unit fails;
- the host (QEMU's first TCP connection to the broker, the first rpc_ping answer);
- optionally the guest itself (`guest_report_cloud_config`): a config-drive toggle that makes any
  image print `systemd-analyze`, its critical chain, `blame` and per-unit activation times to the
  serial console once boot has finished. It rides on the boot test's user data, so an image built
  before this existed reports the same way, and production images carry nothing for it.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from builder.verify.console import CLOUD_INIT_DONE, KERNEL_STARTED, LOGIN_PROMPT

# Console milestones in boot order: name -> (what it means, regex over the cleaned console).
# systemd >= 246 prints "<unit> - <Description>", older ones only the description: both match.
CONSOLE_MILESTONES: dict[str, tuple[str, str]] = {
    "kernel": ("kernel started", KERNEL_STARTED),
    "initrd": ("initramfs started", r"Run /init as init process|Loading, please wait\.\.\."),
    # Not GRUB's "Welcome to GRUB!" (SeaBIOS with graphics=off copies it to the serial console).
    "systemd": ("systemd started on the root fs", r"^Welcome to (?!GRUB!).*!"),
    "local_fs": ("local-fs.target", r"Reached target (?:local-fs\.target - )?Local File Systems\b"),
    "sysinit": ("sysinit.target", r"Reached target (?:sysinit\.target - )?System Initialization\b"),
    "cloud_init_local": ("cloud-init init-local", r"Cloud-init v\. \S+ running 'init-local'"),
    "cloud_init_network": ("cloud-init init (network)", r"Cloud-init v\. \S+ running 'init' "),
    "network": ("network.target", r"Reached target (?:network\.target - Network\b|Network\.)"),
    "network_online": ("network-online.target", r"Reached target (?:network-online\.target - )?Network is Online"),
    "cloud_config": ("cloud-init modules:config", r"Cloud-init v\. \S+ running 'modules:config'"),
    "docker": ("docker.service started", r"Started (?:docker\.service - )?Docker Application Container Engine"),
    "agent_unit": ("guest-agent.service started", r"Started (?:guest-agent\.service - )?OpenStack Trove Guest Agent"),
    # the agent, started early, goes on to its main() from here (builder/templates/guest-agent)
    "agent_setup": ("guest-agent-setup.service finished",
                    r"(?:Finished|Started) (?:guest-agent-setup\.service - )?"
                    r"Make Trove's config ready for the guest agent"),
    "multi_user": ("multi-user.target", r"Reached target (?:multi-user\.target - )?Multi-User System"),
    "login_prompt": ("login prompt", LOGIN_PROMPT),
    "cloud_final": ("cloud-init modules:final", r"Cloud-init v\. \S+ running 'modules:final'"),
    "cloud_init_done": ("cloud-init finished", CLOUD_INIT_DONE),
}
HOST_MILESTONES = {
    "broker_connected": "guest's first TCP connection to the broker",
    "first_rpc_ping": "first rpc_ping answered",
}
# Network stacks a guest may start; a production image must start exactly one.
NETWORK_STACKS: dict[str, str] = {
    "ifupdown": r"(?:Starting|Started|Finished) (?:networking\.service - )?Raise network interfaces",
    "systemd-networkd": r"(?:Starting|Started) (?:systemd-networkd\.service - )?Network (?:Configuration|Service)\b",
    "NetworkManager": r"(?:Starting|Started) (?:NetworkManager\.service - )?Network Manager\b",
}
# cloud-init's keys_to_console block: "256 SHA256:... root@host (ED25519)".
HOST_KEY_LINE = r"\b\d+ (?:SHA256|MD5):\S+ .*\((RSA|DSA|ECDSA|ED25519)\)\s*$"
HOST_KEYS_BLOCK = r"-----BEGIN SSH HOST KEY FINGERPRINTS-----(.*?)-----END SSH HOST KEY FINGERPRINTS-----"

WATCH_TAG = "trove-boot-watch:"
WATCHED_UNITS = ("docker.service", "guest-agent.service", "guest-agent-setup.service")
AGENT_UNIT = "guest-agent.service"
# The agent unit restarts forever (Restart=always): this many failed runs in one boot are not a
# slow start but an agent that cannot start.
AGENT_FAILURES_FATAL = 3
# A run of the agent unit failed ("guest-agent.service: Failed with result 'exit-code'."), and the
# process that ended it ("Main process exited, code=exited, status=203/EXEC", or a start-pre step's
# "Control process exited, ..."). Runs that failed by 'timeout' do not count: a start-pre step
# waiting for a docker still starting on a slow machine heals on a later restart.
_AGENT_FAILED = re.compile(rf"^{re.escape(WATCH_TAG)} {re.escape(AGENT_UNIT)}: Failed with result '([^']+)'",
                           re.MULTILINE)
_AGENT_EXITED = re.compile(
    rf"^{re.escape(WATCH_TAG)} {re.escape(AGENT_UNIT)}: ((?:Main|Control) process exited.*?)\.?$", re.MULTILINE)
# Runs in the guest as a transient unit started by cloud-init's bootcmd (before the units start):
# systemd's (PID 1) own messages about the watched units, from this boot, to the console.
_WATCH_SCRIPT = (
    "exec >/dev/console 2>&1; "
    "journalctl -b -f -n all -o cat {matches} | sed -u 's/^/{tag} /'"
)

REPORT_TAG = "trove-boot-report:"
REPORT_END = f"{REPORT_TAG} end"
_REPORT_END_LINE = re.compile(rf"^{re.escape(REPORT_END)}\s*$", re.MULTILINE)
# Units whose activation the guest report gives (the ones that are absent print nothing).
REPORT_UNITS = (
    "systemd-journald.service", "apparmor.service", "ldconfig.service", "netfilter-persistent.service",
    "systemd-networkd.service", "systemd-networkd-wait-online.service", "networking.service",
    "cloud-init-main.service",  # one process for cloud-init's stages: active once its imports are done
    "cloud-init-local.service", "cloud-init.service", "cloud-init-network.service", "network-online.target",
    "cloud-config.service", "ssh.service", "containerd.service", "docker.service", "guest-agent.service",
    "guest-agent-setup.service", "docker-hostnic.service",
    "multi-user.target", "cloud-final.service",
)
# Runs in the guest as a transient unit started by cloud-init's bootcmd (systemd expands "${...}" in
# its command line itself, so the script has none): waits until boot has
# finished (`systemd-analyze` refuses before that; systemd 237 has no is-system-running --wait),
# then writes everything to the console, one tagged line at a time.
_REPORT_SCRIPT = r"""
exec >/dev/console 2>&1
n=0
# First a check that costs no process (cloud-init's last stage is over), then systemd-analyze: asked
# every 2 s through the whole boot, it ran dozens of times beside the boot it measures.
until [ -e /var/lib/cloud/instance/boot-finished ] || [ $n -ge 600 ]; do sleep 2; n=$((n+2)); done
until systemd-analyze time >/dev/null 2>&1 || [ $n -ge 600 ]; do sleep 2; n=$((n+2)); done
say() { sed "s/^/{tag} $1 /"; }
systemd-analyze time | say analyze
systemd-analyze critical-chain guest-agent.service 2>&1 | say chain
systemd-analyze blame 2>&1 | head -n 30 | say blame
for u in {units}; do
  systemctl show -p Id,LoadState,InactiveExitTimestampMonotonic,ActiveEnterTimestampMonotonic "$u" \
    | tr '\n' ' ' | say unit; echo
done
ls /etc/ssh/ 2>&1 | grep '_key.pub$' | say hostkey
cloud-init analyze blame 2>&1 | head -n 25 | say ciblame
uname -r | say kernel
find /var/cache/apparmor /etc/apparmor.d/cache -type f ! -name .features -newer /etc/apparmor.d 2>/dev/null \
  | wc -l | say aacompiled
# The newest .features: the one apparmor_parser wrote for this kernel, not a build's cache dir for another set.
f=$(ls -t /var/cache/apparmor/*/.features /etc/apparmor.d/cache/.features 2>/dev/null | head -n 1)
[ -n "$f" ] && base64 "$f" | say aafeatures
# CPU time per unit so far (cgroup v2's cpu.stat, microseconds; a cgroup v1 guest prints none) and the
# whole guest's busy and idle time (/proc/stat, clock ticks): where two contended vCPUs went.
for s in /sys/fs/cgroup/system.slice/*/cpu.stat /sys/fs/cgroup/init.scope/cpu.stat; do
  [ -f "$s" ] && echo "$(sed -n 's/^usage_usec //p' "$s") $(basename "$(dirname "$s")")"
done 2>/dev/null | sort -rn | head -n 25 | say cpu
head -n 1 /proc/stat | say cputotal
# What the agent's start ran through sudo, and what its unit logged (guest clock): its main()'s steps.
journalctl -b -o short-monotonic --no-pager SYSLOG_IDENTIFIER=sudo 2>&1 | head -n 60 | say sudo
journalctl -b -o short-monotonic --no-pager -u guest-agent.service 2>&1 | head -n 60 | say agentlog
# CPU time of the units that had stopped by then (systemd >= 240 logs it when a unit stops), and the
# kernel modules loaded (each one udevd or a modprobe@ unit loads costs CPU).
pid1=$(journalctl -b -o cat --no-pager _PID=1 2>/dev/null)
printf '%s\n' "$pid1" | grep -F 'Consumed' | say consumed
printf '%s\n' "$pid1" | grep -c '^Reloading' | say reloads
lsmod 2>/dev/null | sed 1d | cut -d' ' -f1 | tr '\n' ' ' | say modules; echo
echo "{tag}" end
"""


def guest_report_cloud_config() -> dict:
    """Extra cloud-config (merged into the boot test's user data) that makes the guest print its report."""
    script = _REPORT_SCRIPT.replace("{tag}", REPORT_TAG).replace("{units}", " ".join(REPORT_UNITS))
    # A description of its own: systemd would otherwise print the whole script as the unit's
    # description on the console.
    return {"bootcmd": [["systemd-run", "--no-block", "--unit=trove-boot-report",
                         "--description=Trove boot report", "/bin/sh", "-c", script]]}


def unit_watch_cloud_config() -> dict:
    """Cloud-config (part of every boot test's user data) that copies systemd's messages about
    docker and the agent unit to the console: "Started ...", "Failed with result ..."."""
    matches = " + ".join(f"_PID=1 UNIT={unit}" for unit in WATCHED_UNITS)
    script = _WATCH_SCRIPT.replace("{matches}", matches).replace("{tag}", WATCH_TAG)
    return {"bootcmd": [["systemd-run", "--no-block", "--unit=trove-boot-watch",
                         "--description=Trove boot test unit watch", "/bin/sh", "-c", script]]}


def merge_cloud_configs(*configs: dict) -> dict:
    """One cloud-config from several: bootcmd lists are joined, other keys set by the later one."""
    merged: dict = {}
    for config in configs:
        for key, value in config.items():
            merged[key] = [*merged.get(key, []), *value] if key == "bootcmd" else value
    return merged


# A row of cloud-init's "Net device info" table: | Device | Up | Address | Mask | Scope | Hw-Address |
_NET_DEVICE_ROW = re.compile(r"ci-info: \|\s*(\S+)\s*\|\s*(?:True|False)\s*\|\s*(\S+)\s*\|")


def network_down(console_text: str) -> str | None:
    """Why the agent can never reach the broker, once cloud-init's init stage (which runs when the
    network should be up) printed its interfaces and none but lo has an address (else None)."""
    start = console_text.find("Net device info")
    end = console_text.find("Route IPv", start) if start >= 0 else -1
    if end < 0:  # no table yet, or not all of it
        return None
    rows = [(device, address) for device, address in _NET_DEVICE_ROW.findall(console_text[start:end])
            if device not in ("Device", "lo")]
    if not rows or any(address != "." for _, address in rows):
        return None
    devices = ", ".join(sorted({device for device, _ in rows}))
    return f"the guest's network did not come up: cloud-init found no address on {devices} (its Net device info)"


def agent_unit_failure(console_text: str) -> str | None:
    """Why the agent cannot start, once AGENT_FAILURES_FATAL of its runs failed other than by a
    timeout (else None)."""
    failures = [result for result in _AGENT_FAILED.findall(console_text) if result != "timeout"]
    if len(failures) < AGENT_FAILURES_FATAL:
        return None
    exits = _AGENT_EXITED.findall(console_text)
    return f"{AGENT_UNIT} failed {len(failures)} times at boot ({exits[-1] if exits else failures[-1]})"


@dataclass
class Event:
    """One step of the boot: seconds since QEMU started, and where the time was read."""

    name: str
    what: str
    seconds: float
    source: str  # console | host | guest


@dataclass
class GuestReport:
    """What the guest said about its own boot (its clock: seconds since the kernel started)."""

    analyze: str = ""
    critical_chain: list[str] = field(default_factory=list)
    blame: list[str] = field(default_factory=list)
    units: dict[str, dict[str, float | None]] = field(default_factory=dict)  # unit -> started/active
    host_key_files: list[str] = field(default_factory=list)
    cloud_init_blame: list[str] = field(default_factory=list)  # `cloud-init analyze blame`: its slowest steps
    kernel_release: str = ""  # `uname -r`
    # The running kernel's AppArmor feature set, as apparmor_parser wrote it beside the profiles it
    # compiled at this boot (its cache's .features): what a build needs to compile them for this kernel.
    apparmor_features: str = ""
    # Profiles apparmor_parser compiled at this boot (cache files newer than the image's profiles; 0: the
    # build's cache was used). None: not reported.
    apparmor_compiled: int | None = None
    # CPU seconds each unit had used when the report ran (cgroup v2 guests), most first; and the
    # whole guest's busy and idle CPU seconds then (both vCPUs together).
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    cpu_busy: float | None = None
    cpu_idle: float | None = None
    # The journal's sudo commands and the agent unit's lines, `journalctl -o short-monotonic`.
    sudo_log: list[str] = field(default_factory=list)
    agent_log: list[str] = field(default_factory=list)
    consumed: list[str] = field(default_factory=list)  # "<unit>: Consumed 1.234s CPU time." of stopped units
    modules: list[str] = field(default_factory=list)  # lsmod's names
    reloads: int | None = None  # systemd daemon-reloads in this boot (each runs every generator again)


def first_seen(text: str, pattern: str) -> re.Match | None:
    return re.search(pattern, text, re.MULTILINE)


def network_stacks(console_text: str) -> list[str]:
    """The network stacks the console shows being started (a healthy image: exactly one)."""
    return [name for name, pattern in NETWORK_STACKS.items() if first_seen(console_text, pattern)]


def host_key_types(console_text: str) -> list[str]:
    """Host key types cloud-init printed to the console (keys_to_console), lower case, sorted."""
    block = re.search(HOST_KEYS_BLOCK, console_text, re.DOTALL)
    if not block:
        return []
    return sorted({m.group(1).lower() for m in re.finditer(HOST_KEY_LINE, block.group(1), re.MULTILINE)})


def report_finished(console_text: str) -> bool:
    """The guest printed its report's last line (a line of its own, not the script's text)."""
    return _REPORT_END_LINE.search(console_text) is not None


def parse_guest_report(console_text: str) -> GuestReport | None:
    """The guest's report from the console, or None if it did not (yet) print one."""
    if not report_finished(console_text):
        return None
    report = GuestReport()
    analyze: list[str] = []
    features_b64: list[str] = []
    for line in console_text.splitlines():
        at = line.find(REPORT_TAG)
        if at < 0:
            continue
        kind, _, rest = line[at + len(REPORT_TAG):].strip().partition(" ")
        if kind == "analyze":
            analyze.append(rest)
        elif kind == "chain":
            report.critical_chain.append(rest)
        elif kind == "blame":
            report.blame.append(rest.strip())
        elif kind == "hostkey":
            report.host_key_files.append(rest.strip())
        elif kind == "ciblame" and re.match(r"\s*[\d.]+s \(", rest):  # not its headers nor its count
            report.cloud_init_blame.append(rest.strip())
        elif kind == "kernel":
            report.kernel_release = rest.strip()
        elif kind == "aacompiled" and rest.strip().isdigit():
            report.apparmor_compiled = int(rest.strip())
        elif kind == "cpu" and re.fullmatch(r"\d+ \S+", rest.strip()):
            usec, unit = rest.strip().split(" ")
            report.cpu_seconds[unit] = round(int(usec) / 1e6, 1)
        elif kind == "cputotal" and re.fullmatch(r"cpu(?: \d+){4,}", " ".join(rest.split())):
            ticks = [int(v) for v in rest.split()[1:]]
            # /proc/stat: user nice system idle iowait irq softirq steal ...; USER_HZ is 100 on every supported kernel.
            report.cpu_idle = round((ticks[3] + ticks[4]) / 100, 1)
            report.cpu_busy = round((sum(ticks[:8]) - ticks[3] - ticks[4]) / 100, 1)
        elif kind == "sudo":
            report.sudo_log.append(rest.strip())
        elif kind == "agentlog":
            report.agent_log.append(rest.strip())
        elif kind == "consumed":
            report.consumed.append(rest.strip())
        elif kind == "reloads" and rest.strip().isdigit():
            report.reloads = int(rest.strip())
        elif kind == "modules":
            report.modules = rest.split()
        elif kind == "aafeatures":
            features_b64.append(rest.strip())
        elif kind == "unit":
            props = dict(p.split("=", 1) for p in rest.split() if "=" in p)
            if props.get("LoadState") == "loaded":
                report.units[props["Id"]] = {
                    "started": _usec(props.get("InactiveExitTimestampMonotonic")),
                    "active": _usec(props.get("ActiveEnterTimestampMonotonic"))}
    report.analyze = " ".join(analyze).strip()
    # Units that had stopped (cloud-init's process, oneshots) have no cgroup left: their CPU time from the journal.
    for line in report.consumed:
        match = _CONSUMED.match(line)
        if match and match["unit"] not in report.cpu_seconds:
            report.cpu_seconds[match["unit"]] = round(_timespan(match["span"]), 1)
    report.cpu_seconds = dict(sorted(report.cpu_seconds.items(), key=lambda item: -item[1]))
    if features_b64:
        try:
            report.apparmor_features = base64.b64decode("".join(features_b64), validate=True).decode("ascii")
        except ValueError:  # a line garbled on the console (binascii.Error and UnicodeError are ValueErrors)
            report.apparmor_features = ""
    return report


_CONSUMED = re.compile(r"^(?P<unit>[^\s:]+): Consumed (?P<span>(?:[\d.]+(?:min|ms|us|s) ?)+) CPU time")
_SPAN_UNITS = {"min": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}


def _timespan(text: str) -> float:
    """systemd's format_timespan ("1min 3.250s", "845ms") in seconds."""
    return sum(float(n) * _SPAN_UNITS[u] for n, u in re.findall(r"([\d.]+)(min|ms|us|s)\b", text))


def _usec(value: str | None) -> float | None:
    if not value or not value.isdigit() or value == "0":
        return None
    return round(int(value) / 1e6, 2)


def console_events(console_seen: dict[str, float]) -> list[Event]:
    return [Event(name, CONSOLE_MILESTONES[name][0], round(t, 1), "console")
            for name, t in console_seen.items() if name in CONSOLE_MILESTONES]


def guest_events(report: GuestReport, kernel_at: float | None) -> list[Event]:
    """The report's unit activations on the host's clock: guest clock + when the kernel started."""
    if kernel_at is None:
        return []
    events = []
    for unit, times in report.units.items():
        if times["active"] is not None:
            events.append(Event(f"unit:{unit}", f"{unit} active (guest clock {times['active']:.1f} s)",
                                round(kernel_at + times["active"], 1), "guest"))
    return events


def build_timeline(console_seen: dict[str, float], host_seen: dict[str, float],
                   report: GuestReport | None) -> list[Event]:
    """Every known event, in time order."""
    events = console_events(console_seen)
    events += [Event(name, HOST_MILESTONES[name], round(t, 1), "host") for name, t in host_seen.items()]
    if report is not None:
        events += guest_events(report, console_seen.get("kernel"))
    return sorted(events, key=lambda e: e.seconds)


def render_timeline(events: list[Event]) -> list[str]:
    """Lines for the text report: time, the gap since the previous event, what happened."""
    lines, previous = [], 0.0
    for event in events:
        gap = event.seconds - previous
        lines.append(f"  {event.seconds:7.1f} s  (+{gap:5.1f})  {event.source:<7}  {event.what}")
        previous = event.seconds
    return lines


def events_as_dicts(events: list[Event]) -> list[dict]:
    return [asdict(e) for e in events]


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        for fd in fd_dir.iterdir():
            try:
                target = fd.readlink().as_posix()
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def qemu_connected_to(pid: int, port: int) -> bool:
    """Whether QEMU (user networking: the guest's connections are QEMU's own sockets) has an
    established TCP connection to local `port`, read from /proc: no polling of the broker."""
    inodes = _socket_inodes(pid)
    if not inodes:
        return False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "01" and cols[9] in inodes and int(cols[2].rsplit(":", 1)[1], 16) == port:
                return True
    return False


class BrokerConnectionWatch:
    """A background poller noting when QEMU first connects to the broker (the agent's first
    AMQP connection: nothing else in a Trove guest talks to it)."""

    def __init__(self, pid: int, port: int, t0: float, poll: float = 0.5):
        self.pid, self.port, self.t0, self.poll = pid, port, t0, poll
        self.connected_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broker-connection-watch", daemon=True)

    def __enter__(self) -> BrokerConnectionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set() and self.connected_at is None:
            if qemu_connected_to(self.pid, self.port):
                self.connected_at = round(time.monotonic() - self.t0, 1)
                return
            self._stop.wait(self.poll)
