"""A stand-in for trove-conductor: receives what the guest agent casts to the control plane.

The agent reports its datastore's status as `heartbeat` casts on topic `trove-conductor` (exchange
= control_exchange) once `prepare` has begun, and ends `prepare` with `notify_end` or
`notify_exc_info` (TROVE-GUEST-CONTRACT §3.4). This server records them with their arrival time;
it changes no state anywhere, which is all a boot test needs from a conductor.
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from .rpc import CONTROL_EXCHANGE, _oslo, messaging_conf

CONDUCTOR_TOPIC = "trove-conductor"
FAILED_STATUSES = ("failed", "crashed", "shutdown", "error")


@dataclass
class Report:
    """One cast from the guest: what (heartbeat status, notify_end, ...), when (time.monotonic())."""

    at: float
    method: str
    status: str = ""
    detail: str = ""


@dataclass
class ConductorLog:
    """Everything the guest cast, in arrival order, with a condition variable to wait on."""

    reports: list[Report] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def add(self, report: Report) -> None:
        with self.changed:
            self.reports.append(report)
            self.changed.notify_all()

    def statuses(self) -> list[str]:
        return [r.status for r in self.reports if r.method == "heartbeat"]


def root_cause(formatted: Any) -> str:
    """The first exception of a chain as traceback.format_exception wrote it (the agent sends that):
    e.g. docker's "404 Client Error ... No such image" under the agent's "Failed to start mysql"."""
    if not formatted:
        return ""
    text = "".join(formatted) if isinstance(formatted, (list, tuple)) else str(formatted)
    first = text.split("\nDuring handling of the above exception")[0].split("\nThe above exception was")[0]
    lines = [line for line in first.splitlines() if line.strip() and not line.startswith((" ", "Traceback"))]
    return lines[-1].strip() if lines else ""


class _Endpoint:
    """The conductor methods the guest agent casts (trove.conductor.manager.Manager's signatures)."""

    def __init__(self, log: ConductorLog, guest_id: str, target):
        self.log, self.guest_id, self.target = log, guest_id, target

    def heartbeat(self, ctxt, instance_id, payload, sent=None):
        if instance_id == self.guest_id:
            self.log.add(Report(time.monotonic(), "heartbeat", str(payload.get("service_status", "")),
                                str(payload)))

    def notify_end(self, ctxt, serialized_notification=None, notification_args=None):
        self.log.add(Report(time.monotonic(), "notify_end", detail=str(notification_args or {})))

    def notify_exc_info(self, ctxt, serialized_notification=None, message="", exception=None):
        cause = root_cause(exception)
        detail = f"{message} ({cause})" if cause and cause not in str(message) else str(message)
        self.log.add(Report(time.monotonic(), "notify_exc_info", detail=detail))

    def report_root(self, ctxt, instance_id, user=None):
        self.log.add(Report(time.monotonic(), "report_root"))

    def update_backup(self, ctxt, instance_id, backup_id, sent=None, **fields):
        self.log.add(Report(time.monotonic(), "update_backup", detail=str(fields)))


class Conductor:
    """An oslo.messaging RPC server on the conductor topic of one broker, for one guest."""

    def __init__(self, transport_url: str, guest_id: str, exchange: str = CONTROL_EXCHANGE):
        om, _ = _oslo()
        self.log = ConductorLog()
        self.conf = messaging_conf()
        self.transport = om.get_rpc_transport(self.conf, url=transport_url)  # registers control_exchange
        self.conf.set_override("control_exchange", exchange)
        target = om.Target(exchange=exchange, topic=CONDUCTOR_TOPIC, server="boot-test-conductor")
        endpoint = _Endpoint(self.log, guest_id, om.Target(version="1.0"))
        with warnings.catch_warnings():  # "executor is deprecated" on 18.x; older ones need it
            warnings.simplefilter("ignore", DeprecationWarning)
            self.server = om.get_rpc_server(self.transport, target, [endpoint], executor="threading")

    def __enter__(self) -> Conductor:
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.server.stop()
            self.server.wait()
        finally:
            self.transport.cleanup()
