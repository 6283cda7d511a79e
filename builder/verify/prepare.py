"""`boot-test --prepare`: after rpc_ping, make the guest run its database, then query it from the host.

Casts `prepare` with the arguments Trove's taskmanager sends (TROVE-GUEST-CONTRACT §3.4), follows
the agent's own reports to a stand-in conductor (builder.verify.conductor) until the datastore is
healthy, and runs `SELECT 1` through a QEMU host forward to the guest's database port. Fails with
the agent's own reason (notify_exc_info, a failed status) instead of waiting out the deadline.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import jinja2

from .conductor import FAILED_STATUSES, Conductor
from .procs import free_port
from .qemu import HostFwd

PREPARE_VERSION = "1.1"  # prepare with ds_version (the taskmanager sends 1.1 when the guest can take it)
DEVICE_PATH = "/dev/vdb"  # the boot test's blank data disk (Trove's default device_path)
MOUNT_POINT = "/var/lib/mysql"
DATABASE_PORT = 3306
HEALTHY = "healthy"


@dataclass
class PrepareRequest:
    """What to prepare: the datastore image the agent runs is `<docker_image>:<datastore_version>`."""

    docker_image: str = "trove-builder/mariadb"
    memory_mb: int = 2048
    root_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    host_port: int = 0  # 0: a free loopback port is chosen

    def __post_init__(self) -> None:
        if not self.host_port:
            self.host_port = free_port()

    def hostfwd(self) -> HostFwd:
        return HostFwd(self.host_port, DATABASE_PORT)

    def agent_sections(self, manager: str) -> dict[str, dict[str, object]]:
        """trove-guestagent.conf sections: which image the manager runs, where its volume goes."""
        return {manager: {"docker_image": self.docker_image, "device_path": DEVICE_PATH,
                          "mount_point": MOUNT_POINT}}


@dataclass
class PrepareResult:
    """Seconds since QEMU started; statuses as the agent reported them, in order."""

    passed: bool = False
    reason: str = ""
    host_port: int = 0
    prepare_sent: float | None = None
    prepare_done: float | None = None   # notify_end
    healthy: float | None = None        # first heartbeat 'healthy'
    select_1: float | None = None       # SELECT 1 answered through the host forward
    status_history: list[tuple[float, str]] = field(default_factory=list)
    server_version: str = ""


def config_contents(memory_mb: int, server_id: int) -> str:
    """The datastore config Trove's taskmanager renders for a flavor of `memory_mb` MB."""
    text = (resources.files("builder.verify") / "templates" / "mysql.cnf").read_text()
    return jinja2.Template(text, keep_trailing_newline=True).render(ram=memory_mb, server_id=server_id)


def prepare_context(guest_id: str, tenant_id: str, manager: str, version: str) -> dict[str, Any]:
    """The request context the taskmanager sends: its instance-create notification travels with it,
    and the agent's prepare reports its end (notify_end / notify_exc_info) through it."""
    request_id = f"req-{uuid.uuid4()}"
    return {
        "request_id": request_id, "project_id": tenant_id, "tenant": tenant_id, "user_id": "boot-test",
        "trove_notification": {
            "notification_classname": "trove.common.notification.DBaaSInstanceCreate",
            "request_id": request_id, "server_type": "guest", "tenant_id": tenant_id,
            "client_ip": "127.0.0.1", "server_ip": "127.0.0.1", "instance_id": guest_id,
            "name": "boot-test", "flavor_id": "boot-test", "datastore": manager,
            "datastore_version": version,
        },
    }


def cast_prepare(client, request: PrepareRequest, manager: str, version: str, tenant_id: str) -> None:
    """`prepare` as trove.taskmanager's guest API casts it: no databases, users, backup or overrides."""
    kwargs = dict(packages=[], databases=[], memory_mb=request.memory_mb, users=[],
                  device_path=DEVICE_PATH, mount_point=MOUNT_POINT, backup_info=None,
                  config_contents=config_contents(request.memory_mb, server_id=1),
                  root_password=request.root_password, overrides=None, cluster_config=None,
                  snapshot=None, modules=None, ds_version=version)
    cctxt = client.client.prepare(version=PREPARE_VERSION)
    cctxt.cast(prepare_context(client.guest_id, tenant_id, manager, version), "prepare", **kwargs)


def select_1(port: int, password: str, timeout: float = 10.0) -> str:
    """SELECT 1 as root over TCP; returns the server's version, raises pymysql's errors."""
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=port, user="root", password=password,
                           connect_timeout=timeout, read_timeout=timeout)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            (value,) = cur.fetchone()
            if value != 1:
                raise RuntimeError(f"SELECT 1 returned {value!r}")
        return conn.get_server_info()
    finally:
        conn.close()


def run_prepare(client, conductor: Conductor, request: PrepareRequest, *, manager: str, version: str,
                tenant_id: str, t0: float, deadline: float, abort: Callable[[], str | None],
                say: Callable[[str], None]) -> PrepareResult:
    """Cast prepare, wait for 'healthy' (or the agent's failure), then SELECT 1; never raises for the guest."""
    result = PrepareResult(host_port=request.host_port)

    def since(at: float) -> float:
        return round(at - t0, 1)

    cast_prepare(client, request, manager, version, tenant_id)
    result.prepare_sent = since(time.monotonic())
    say(f"prepare cast ({manager} {version}, {DEVICE_PATH} on {MOUNT_POINT}) at {result.prepare_sent} s")
    log, seen = conductor.log, 0
    while result.healthy is None or result.prepare_done is None:
        with log.changed:
            if len(log.reports) == seen:
                log.changed.wait(timeout=2.0)
            new, seen = log.reports[seen:], len(log.reports)
        for report in new:
            if report.method == "heartbeat":
                result.status_history.append((since(report.at), report.status))
                say(f"agent status {report.status} at {since(report.at)} s")
                if report.status == HEALTHY and result.healthy is None:
                    result.healthy = since(report.at)
                elif report.status in FAILED_STATUSES:
                    result.reason = f"the agent reported status '{report.status}' after prepare"
            elif report.method == "notify_end":
                result.prepare_done = since(report.at)
                say(f"prepare done at {result.prepare_done} s")
            elif report.method == "notify_exc_info":
                result.reason = f"prepare failed in the guest: {report.detail}"
        if result.reason:
            return result
        why = abort()
        if why:
            result.reason = why
            return result
        if time.monotonic() > deadline:
            waited = "'healthy' status" if result.healthy is None else "end of prepare (notify_end)"
            history = ", ".join(s for _, s in result.status_history) or "none"
            result.reason = f"no {waited} from the agent before the deadline (statuses: {history})"
            return result
    # Root's remote access is granted after prepare's end: retry until it answers.
    last = ""
    while time.monotonic() < deadline:
        try:
            result.server_version = select_1(request.host_port, request.root_password)
        except Exception as exc:
            last = f"{type(exc).__name__}: {exc}"
            time.sleep(2)
            continue
        result.select_1 = since(time.monotonic())
        result.passed = True
        say(f"SELECT 1 answered through 127.0.0.1:{request.host_port} at {result.select_1} s "
            f"(server {result.server_version})")
        return result
    result.reason = f"SELECT 1 through 127.0.0.1:{request.host_port} never answered: {last}"
    return result
