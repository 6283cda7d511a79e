"""The boot test: does this image boot, take Trove's config, reach the broker and answer RPC?

Proves TROVE-GUEST-CONTRACT §8 without OpenStack: a private RabbitMQ, a config drive with the
user data Trove's taskmanager would send, QEMU with a blank data disk, then `rpc_ping` and
`get_filesystem_stats` over oslo.messaging as the controller would call them. Times are seconds
since QEMU started; the timeline (builder/verify/timeline.py) says where a boot spends them.
Any failure gives one clear reason plus the console's last lines.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from builder import defaults
from builder.verify import procs
from builder.verify.conductor import Conductor
from builder.verify.configdrive import NETWORK_MTU, meta_data, network_data, trove_user_data, write_config_drive
from builder.verify.console import ConsoleWatcher
from builder.verify.controller import GUEST_CONTROLLER_ADDR, ControllerError, FakeController
from builder.verify.netprobe import net_probe_cloud_config, network_data_applied
from builder.verify.prepare import PrepareRequest, run_prepare
from builder.verify.qemu import GUEST_MAC, GiB, VMConfig, VMError, boot_vm, image_info
from builder.verify.rabbitmq import rabbitmq_broker
from builder.verify.rpc import FS_STATS_KEYS, FS_STATS_LATER_KEYS, GuestClient
from builder.verify.timeline import (
    CONSOLE_MILESTONES,
    BrokerConnectionWatch,
    Event,
    agent_unit_failure,
    build_timeline,
    events_as_dicts,
    guest_report_cloud_config,
    host_key_types,
    merge_cloud_configs,
    network_down,
    network_stacks,
    parse_guest_report,
    render_timeline,
    report_finished,
    unit_watch_cloud_config,
)

MARKER_GRACE = 300.0  # seconds the login prompt and cloud-init's end may come after the agent
DEFAULT_TIMEOUT = 900.0      # TCG boots are slow: the first rpc_ping may come 2-5 min after start
KERNEL_WATCHDOG = 240.0      # no kernel line by then: the accelerator (or the boot loader) is stuck
TAIL_LINES = 40
CLOUD_INIT_MODULE_FAILURE = r"Running module \S+ \(.*\) failed|Failed to run module \S+"
# systemd breaks an ordering cycle among the image's units by dropping one start job: a unit then
# silently does not start at boot.
ORDERING_CYCLE = r"Found ordering cycle on \S+"


@dataclass
class Check:
    """One finding. Only `required` checks decide the verdict; the others are warnings
    (image defects worth seeing that §8 does not make fatal, e.g. a failing cloud-init module)."""

    name: str
    ok: bool
    detail: str = ""
    required: bool = True


@dataclass
class BootTestResult:
    """Everything a boot test found; `passed` and `reason` are the verdict."""

    image: str
    passed: bool = False
    reason: str = ""
    guest_id: str = ""
    datastore: str = ""
    datastore_version: str = ""
    firmware: str = ""
    accel: str = ""
    accel_reason: str = ""
    data_disk_gb: float | None = None
    dev_mode: bool = False
    timings: dict[str, float | None] = field(default_factory=lambda: {
        "login_prompt": None, "cloud_init_done": None, "first_rpc_ping": None})
    # Every step seen, in time order: {name, what, seconds, source} (timeline.Event).
    timeline: list[dict] = field(default_factory=list)
    network_stacks: list[str] = field(default_factory=list)
    host_key_types: list[str] = field(default_factory=list)
    guest_report: dict | None = None
    total_seconds: float | None = None
    checks: list[Check] = field(default_factory=list)
    fs_stats: dict | None = None
    cloud_init_line: str | None = None
    rpc_ping_attempts: int = 0
    console_log: str | None = None
    serial_tail: list[str] = field(default_factory=list)
    qemu_command: list[str] = field(default_factory=list)
    prepare: dict | None = None  # --prepare: builder.verify.prepare.PrepareResult as a dict

    def check(self, name: str, ok: bool, detail: str = "", required: bool = True) -> bool:
        self.checks.append(Check(name, bool(ok), detail, required))
        return bool(ok)

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and not c.required]

    def fail(self, reason: str) -> None:
        """Record the first failure only: it is the one that explains the rest."""
        if not self.reason:
            self.reason = " ".join(reason.split())
        self.passed = False

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)


def _fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def render_result_table(result: BootTestResult) -> str:
    """A plain-text report: verdict, setup, timings, checks; the console tail if it failed."""
    rows: list[tuple[str, str]] = [
        ("result", "PASSED" if result.passed else "FAILED"),
        ("image", result.image),
        ("firmware / accel", f"{result.firmware} / {result.accel or '-'}"),
        ("datastore", f"{result.datastore} {result.datastore_version}"),
        ("guest_id", result.guest_id),
        ("data disk", "none" if not result.data_disk_gb else f"{result.data_disk_gb:g} GiB"),
        ("dev mode", "yes" if result.dev_mode else "no"),
        ("login prompt", _fmt_seconds(result.timings.get("login_prompt"))),
        ("cloud-init done", _fmt_seconds(result.timings.get("cloud_init_done"))),
        ("broker connection", _fmt_seconds(result.timings.get("broker_connected"))),
        ("first rpc_ping", _fmt_seconds(result.timings.get("first_rpc_ping"))),
        ("total", _fmt_seconds(result.total_seconds)),
        ("network stacks", ", ".join(result.network_stacks) or "-"),
        ("ssh host keys", ", ".join(result.host_key_types) or "-"),
    ]
    if result.prepare is not None:
        rows += prepare_rows(result.prepare)
    if result.console_log:
        rows.append(("console log", result.console_log))
    width = max(len(k) for k, _ in rows)
    lines = [f"Boot test of {result.image}", ""]
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    if result.timeline:
        lines += ["", "  Timeline (seconds since QEMU started; +gap since the previous step)"]
        lines += render_timeline([Event(**e) for e in result.timeline])
    report = result.guest_report
    if report:
        lines += ["", f"  Guest: {report['analyze'] or 'systemd-analyze gave nothing'}"]
        if report["blame"]:
            lines += ["  Guest's slowest units (systemd-analyze blame):"]
            lines += [f"    {line}" for line in report["blame"][:12]]
        if report["critical_chain"]:
            lines += ["  Guest's critical chain to guest-agent.service:"]
            lines += [f"    {line}" for line in report["critical_chain"]]
        if report.get("cloud_init_blame"):
            lines += ["  cloud-init's slowest steps (cloud-init analyze blame):"]
            lines += [f"    {line}" for line in report["cloud_init_blame"][:8]]
        if report.get("cpu_seconds"):
            lines += [f"  Guest's CPU time when the report ran: {report['cpu_busy']} s busy, {report['cpu_idle']} s "
                      "idle (both vCPUs); the units that used most:"]
            lines += [f"    {seconds:7.1f}s {unit}" for unit, seconds in list(report["cpu_seconds"].items())[:12]]
        if report.get("modules") or report.get("reloads") is not None:
            lines += [f"  Kernel modules loaded: {len(report.get('modules') or [])}; systemd daemon-reloads: "
                      f"{report.get('reloads')}"]
    if result.checks:
        name_w = max(len(c.name) for c in result.checks)
        lines += ["", "  Checks"]
        lines += [f"  {'PASS' if c.ok else 'FAIL' if c.required else 'WARN'}  {c.name.ljust(name_w)}  "
                  f"{c.detail}".rstrip() for c in result.checks]
    if not result.passed:
        lines += ["", f"  Reason: {result.reason or 'unknown'}"]
        if result.serial_tail:
            lines += ["", f"  Serial console, last {len(result.serial_tail)} lines:"]
            lines += [f"    | {line}" for line in result.serial_tail]
    return "\n".join(lines) + "\n"


def _check_fs_stats(result: BootTestResult, stats, data_gb: float, root_gb: float) -> None:
    if not isinstance(stats, dict):
        result.check("get_filesystem_stats", False, f"returned {stats!r}, not a dict")
        result.fail(f"get_filesystem_stats returned {type(stats).__name__}, not a dict")
        return
    missing = [k for k in FS_STATS_KEYS if k not in stats and k not in FS_STATS_LATER_KEYS]
    result.check("get_filesystem_stats keys", not missing,
                 "all of " + ", ".join(FS_STATS_KEYS) if not missing else "missing " + ", ".join(missing))
    older = [k for k in FS_STATS_LATER_KEYS if k not in stats]
    if older:
        result.check("get_filesystem_stats newer keys", False,
                     f"no {', '.join(older)} (an older agent)", required=False)
    try:
        total = float(stats.get("total"))  # type: ignore[arg-type]  # None and text are caught below
    except (TypeError, ValueError):
        result.check("data disk mounted", False, f"total={stats.get('total')!r} is not a number")
        result.fail(f"get_filesystem_stats total={stats.get('total')!r} is not a number")
        return
    ok = 0.8 * data_gb <= total <= 1.02 * data_gb
    detail = f"total {total:g} GB, data disk {data_gb:g} GiB, root {root_gb:g} GiB"
    result.check("data disk mounted", ok, detail)
    if not ok:
        looks_root = abs(total - root_gb) < abs(total - data_gb)
        result.fail(f"get_filesystem_stats total is {total:g} GB, expected about {data_gb:g} (the data disk)"
                    + (": that is the root filesystem, so /dev/vdb was not mounted" if looks_root else ""))
    elif missing:
        result.fail(f"get_filesystem_stats lacks {', '.join(missing)}")


def _diagnose(result: BootTestResult, watcher: ConsoleWatcher, vm, rpc_reason: str) -> str:
    """The most telling reason an rpc_ping never came, from what the console showed."""
    if watcher.fatal_seen:
        return f"the guest console shows {watcher.fatal_seen}"
    exit_reason = vm.exit_reason()
    if exit_reason:
        return exit_reason
    if "kernel" not in watcher.seen:
        hint = " (KVM may be unusable here: try accel='tcg')" if vm.accel == "kvm" else ""
        return f"no kernel output on the serial console after {vm.elapsed():.0f} s{hint}"
    if "login_prompt" not in watcher.seen:
        return f"no login prompt on the serial console after {vm.elapsed():.0f} s; {rpc_reason}"
    ci = watcher.matches.get("cloud_init_done", "")
    if ci and "DataSourceConfigDrive" not in ci:
        return f"cloud-init did not use the config drive ({ci}); {rpc_reason}"
    return rpc_reason


def run_boot_test(
    image: str | Path,
    *,
    datastore: str = "mysql",
    datastore_version: str = "8.4",
    guest_user: str = defaults.GUEST_USER,
    firmware: str = "bios",
    timeout: float = DEFAULT_TIMEOUT,
    data_disk_gb: float | None = 2,
    controller_source: str | Path | None = None,
    controller_key: str | Path | None = None,
    controller_user: str = defaults.CONTROLLER_USER,
    controller_path: str = defaults.CONTROLLER_PATH,
    console_log: str | Path | None = None,
    accel: str = "auto",
    rpc_timeout: float = 15.0,
    guest_id: str | None = None,
    tenant_id: str = "boot-test-tenant",
    extra_cloud_config: dict | None = None,
    agent_extra_sections: dict | None = None,
    guest_report: bool = False,
    progress: Callable[[str], None] | None = None,
    prepare: PrepareRequest | None = None,
) -> BootTestResult:
    """Boot `image` and check it serves Trove's RPC; never raises for a failing image.

    Dev mode (`controller_source` = a trove source tree): a fake controller serves it over SSH
    at 10.0.2.100:22 (guestfwd) for `controller_user` with the public half of `controller_key`
    (the private key the dev image was built with, --dev-ssh-key), as `controller_path`; the
    user data then also writes /etc/trove/controller.conf (CONTROLLER=10.0.2.100).

    data_disk_gb=None boots without the second disk (the negative test of §8: rpc_ping must
    then time out). guest_report=True adds the timeline's debug toggle to the user data: the
    guest prints systemd-analyze (time, blame, critical chain, unit times) to the console once
    booted, and the test waits up to a minute for it after the checks. Errors in the harness itself
    (no QEMU, no broker) are raised as
    BuilderError subclasses; everything about the guest lands in the result.

    `prepare`: after the RPC checks, cast `prepare` and require the database to answer SELECT 1
    (builder.verify.prepare).
    """
    say = progress or (lambda _msg: None)
    t_start = time.monotonic()
    deadline = t_start + timeout
    guest_id = guest_id or str(uuid.uuid4())
    image = Path(image)
    dev_mode = controller_source is not None
    result = BootTestResult(image=str(image), guest_id=guest_id, datastore=datastore,
                            datastore_version=datastore_version, firmware=firmware,
                            data_disk_gb=data_disk_gb, dev_mode=dev_mode,
                            console_log=str(console_log) if console_log else None)
    if not image.is_file():
        raise VMError(f"image {image} does not exist")
    if dev_mode and controller_key is None:
        raise ControllerError("dev mode needs controller_key: the private key the image was built with "
                              "(--dev-ssh-key), whose public half the fake controller accepts")
    root_gb = image_info(image).get("virtual-size", 0) / GiB

    with contextlib.ExitStack() as stack, procs.sigterm_raises():
        broker = stack.enter_context(rabbitmq_broker())
        say(f"broker up on {broker.host}:{broker.port} (guest URL {broker.guest_transport_url})")
        guestfwds = []
        controller = None
        if dev_mode:
            assert controller_source is not None and controller_key is not None  # dev mode; checked above
            controller = stack.enter_context(FakeController(
                Path(controller_source), Path(controller_key), user=controller_user, path=controller_path))
            guestfwds.append(controller.guestfwd())
            say(f"fake controller serving {controller.source} as {controller_user}@{GUEST_CONTROLLER_ADDR}:"
                f"{controller.path}")
        conductor = None
        if prepare is not None:
            conductor = stack.enter_context(Conductor(broker.transport_url(), guest_id))
            agent_extra_sections = {**(agent_extra_sections or {}), **prepare.agent_sections(datastore)}
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trove-boot-test-")))
        user_data = trove_user_data(
            guest_id=guest_id, transport_url=broker.guest_transport_url, datastore_manager=datastore,
            datastore_version=datastore_version, tenant_id=tenant_id, guest_user=guest_user,
            controller=GUEST_CONTROLLER_ADDR if dev_mode else None,
            agent_extra_sections=agent_extra_sections,
            extra_cloud_config=merge_cloud_configs(extra_cloud_config or {}, unit_watch_cloud_config(),
                                                   net_probe_cloud_config(),
                                                   guest_report_cloud_config() if guest_report else {}))
        drive = write_config_drive(tmp / "config-drive.iso", meta=meta_data(guest_id), user_data=user_data,
                                   network_data=network_data(GUEST_MAC))
        client = stack.enter_context(GuestClient(broker.transport_url(), guest_id))
        try:
            client.precreate_queue()  # early pings wait in the queue instead of being dropped
        except Exception as exc:  # retrying still works without it
            say(f"could not pre-create the agent's queue ({exc}); relying on retries")
        vm = stack.enter_context(boot_vm(
            VMConfig(image=image, config_drive=drive, data_disk_gb=data_disk_gb, firmware=firmware,
                     accel=accel, guestfwds=guestfwds, hostfwds=[prepare.hostfwd()] if prepare else []),
            serial_log=Path(console_log) if console_log else None))
        result.accel, result.accel_reason, result.qemu_command = vm.accel, vm.accel_reason, vm.command
        say(f"QEMU started ({vm.accel}: {vm.accel_reason}; firmware {firmware})")
        markers = {name: pattern for name, (_what, pattern) in CONSOLE_MILESTONES.items()}
        watcher = stack.enter_context(ConsoleWatcher(vm.console, {
            **markers, "cloud_init_module_failure": CLOUD_INIT_MODULE_FAILURE, "ordering_cycle": ORDERING_CYCLE}))
        broker_watch = stack.enter_context(BrokerConnectionWatch(vm.proc.pid, broker.port, vm.t0))
        try:
            _drive_guest(result, client, vm, watcher, deadline, rpc_timeout, data_disk_gb, root_gb,
                         controller, say)
            if guest_report and result.timings["first_rpc_ping"] is not None:
                _wait_for_report(vm, min(60.0, max(0.0, deadline - time.monotonic())))
            if prepare is not None and not result.reason:
                _prepare_guest(result, client, conductor, prepare, vm, watcher, deadline, tenant_id, say)
        finally:
            watcher.check()
            _record_timeline(result, watcher, vm, broker_watch)
            result.serial_tail = vm.console.tail(TAIL_LINES)
            result.total_seconds = round(time.monotonic() - t_start, 1)
    if not result.reason and all(c.ok for c in result.checks if c.required):
        result.passed = True
    return result


def _wait_for_report(vm, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not report_finished(vm.console.text()) and time.monotonic() < end and vm.alive():
        time.sleep(1)


def _record_timeline(result: BootTestResult, watcher: ConsoleWatcher, vm, broker_watch) -> None:
    """The timeline, network stacks and host key types from what the console and host saw."""
    text = vm.console.text()
    console_seen = {name: t for name, t in watcher.seen.items() if name in CONSOLE_MILESTONES}
    host_seen = {}
    if broker_watch.connected_at is not None:
        host_seen["broker_connected"] = broker_watch.connected_at
        result.timings["broker_connected"] = broker_watch.connected_at
    if result.timings.get("first_rpc_ping") is not None:
        host_seen["first_rpc_ping"] = result.timings["first_rpc_ping"]
    report = parse_guest_report(text)
    result.guest_report = asdict(report) if report else None
    result.timeline = events_as_dicts(build_timeline(console_seen, host_seen, report))
    result.network_stacks = network_stacks(text)
    result.host_key_types = host_key_types(text)


def _drive_guest(result: BootTestResult, client: GuestClient, vm, watcher: ConsoleWatcher, deadline: float,
                 rpc_timeout: float, data_disk_gb: float | None, root_gb: float, controller, say) -> None:
    def abort() -> str | None:
        if watcher.fatal_seen:
            return f"the guest console shows {watcher.fatal_seen}"
        exit_reason = vm.exit_reason()
        if exit_reason:
            return exit_reason
        if "kernel" not in watcher.seen and vm.elapsed() > KERNEL_WATCHDOG:
            return "no kernel output"
        text = vm.console.text()
        return agent_unit_failure(text) or network_down(text)

    def remaining() -> float:
        return max(0.0, deadline - time.monotonic())

    outcome = client.ping_until(deadline, per_call_timeout=rpc_timeout, should_stop=abort)
    result.rpc_ping_attempts = outcome.attempts
    watcher.check()
    for name in ("login_prompt", "cloud_init_done"):
        if name in watcher.seen:
            result.timings[name] = round(watcher.seen[name], 1)
    if outcome.ok:
        result.timings["first_rpc_ping"] = round(outcome.answered_at - vm.t0, 1)
        say(f"rpc_ping answered {result.timings['first_rpc_ping']} s after QEMU started")
    agent_failed = not outcome.ok and agent_unit_failure(vm.console.text()) is not None
    if outcome.ok or agent_failed:
        # The console markers usually precede the agent; give them a little longer if not (an
        # agent that failed at once may still be followed by cloud-init's end: up to 3 min later
        # under TCG on a loaded host). dockerd too: the agent's unit starts it (its Wants=), and
        # the agent answers without it (the launcher gives the docker SDK its API version).
        for name in ("login_prompt", "cloud_init_done", "docker"):
            if name not in watcher.seen:
                seen = watcher.wait_for(name, min(remaining(), MARKER_GRACE), abort=lambda: vm.exit_reason())
                if seen is not None:
                    result.timings[name] = round(seen, 1)
    result.check("rpc_ping", outcome.ok, f"True after {outcome.attempts} attempt(s)" if outcome.ok else outcome.reason)
    login = result.timings["login_prompt"]
    result.check("login prompt", login is not None, f"at {login} s" if login is not None else "not seen")
    ci_line = watcher.matches.get("cloud_init_done")
    result.cloud_init_line = ci_line
    ci_ok = ci_line is not None and "DataSourceConfigDrive" in ci_line
    result.check("cloud-init from config drive", ci_ok,
                 (ci_line or "no 'Cloud-init v. ... finished' line")[:160])
    result.check("network from network_data.json", *network_data_applied(vm.console.text(), GUEST_MAC, NETWORK_MTU))
    module_failure = watcher.matches.get("cloud_init_module_failure")
    if module_failure:
        module_failure = re.sub(r"\s*\(<module [^)]*\)", "", module_failure)
    result.check("cloud-init modules", module_failure is None,
                 module_failure or "no module failures on the console", required=False)
    docker = watcher.seen.get("docker")
    result.check("dockerd started", docker is not None,
                 f"at {docker:.1f} s" if docker is not None else "no 'Started ... Docker Application Container "
                 "Engine' on the console: Trove's prepare would find no dockerd")
    result.check("no emergency/panic", watcher.fatal_seen is None, watcher.fatal_seen or "")
    cycle = watcher.matches.get("ordering_cycle")
    result.check("no unit ordering cycle", cycle is None, cycle or "systemd found none")
    if controller is not None:
        result.check("code synced from controller", bool(controller.served),
                     f"rsync served {len(controller.served)} time(s), exit codes {controller.exit_codes}"
                     if controller.served
                     else "the guest never fetched the code" + (f" (refused: {controller.refused[-1]})"
                                                                if controller.refused else ""))

    if not outcome.ok:
        result.fail(_diagnose(result, watcher, vm, outcome.reason))
        return
    if data_disk_gb:
        try:
            stats = client.get_filesystem_stats(timeout=max(5.0, min(60.0, remaining())))
        except Exception as exc:
            result.check("get_filesystem_stats", False, f"{type(exc).__name__}: {exc}")
            result.fail(f"get_filesystem_stats failed: {type(exc).__name__}: {exc}")
        else:
            result.fs_stats = stats
            _check_fs_stats(result, stats, float(data_disk_gb), root_gb)
    if not result.reason:
        failed = [c for c in result.checks if not c.ok and c.required]
        if failed:
            result.fail(f"{failed[0].name}: {failed[0].detail}")


def _prepare_guest(result: BootTestResult, client: GuestClient, conductor, request: PrepareRequest, vm,
                   watcher: ConsoleWatcher, deadline: float, tenant_id: str, say) -> None:
    def abort() -> str | None:
        return (f"the guest console shows {watcher.fatal_seen}" if watcher.fatal_seen else vm.exit_reason())

    outcome = run_prepare(client, conductor, request, manager=result.datastore, version=result.datastore_version,
                          tenant_id=tenant_id, t0=vm.t0, deadline=deadline, abort=abort, say=say)
    result.prepare = asdict(outcome)
    history = " -> ".join(status for _, status in outcome.status_history) or "no status reports"
    result.check("prepare: datastore healthy", outcome.healthy is not None,
                 f"at {outcome.healthy} s ({history})" if outcome.healthy is not None else history)
    result.check("prepare: SELECT 1 from the host", outcome.passed,
                 f"at {outcome.select_1} s via 127.0.0.1:{outcome.host_port} ({outcome.server_version})"
                 if outcome.passed else outcome.reason)
    if not outcome.passed:
        result.fail(outcome.reason)


def prepare_rows(prepare: dict) -> list[tuple[str, str]]:
    history = ", ".join(f"{status} {at:.1f} s" for at, status in prepare.get("status_history", []))
    return [("prepare sent", _fmt_seconds(prepare.get("prepare_sent"))),
            ("prepare done", _fmt_seconds(prepare.get("prepare_done"))),
            ("healthy", _fmt_seconds(prepare.get("healthy"))),
            ("SELECT 1", _fmt_seconds(prepare.get("select_1"))),
            ("status history", history or "-")]
