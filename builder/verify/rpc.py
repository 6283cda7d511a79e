"""Talk to the guest agent exactly as Trove's controller does: oslo.messaging RPC over RabbitMQ.

Contract (TROVE-GUEST-CONTRACT §3.4, §8): exchange = control_exchange (`trove`), topic
`guestagent.<guest_id>`, version 1.0, an empty context dict. A call published before the agent
has declared its queue is unroutable and silently dropped, so pings are retried on
MessagingTimeout until a deadline; like Trove's taskmanager, the client can also pre-create the
queue so early calls wait in it instead of being lost.

oslo.messaging is imported lazily, so the rest of builder.verify imports without it.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from builder.errors import BuilderError

CONTROL_EXCHANGE = "trove"
BASE_VERSION = "1.0"
FS_STATS_KEYS = ("block_size", "total_blocks", "free_blocks", "avail_blocks", "total", "used", "free")
# Agents before Zed (bionic's trove 17 among them) report no avail_blocks: worth a warning, not a failure.
FS_STATS_LATER_KEYS = ("avail_blocks",)


class GuestRPCError(BuilderError):
    """An RPC to the guest failed for good (deadline passed, remote error, broker unreachable)."""


def guest_topic(guest_id: str) -> str:
    return f"guestagent.{guest_id}"


def _oslo():
    try:
        with warnings.catch_warnings():
            # oslo.messaging's import chain (oslo.service) warns that eventlet is deprecated;
            # the harness uses threads, not eventlet, so that warning is noise here.
            warnings.simplefilter("ignore")
            import oslo_messaging
            from oslo_config import cfg
            try:
                import oslo_service.service  # noqa: F401  (where the warning fires)
            except ImportError:
                pass
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise GuestRPCError("oslo.messaging is not installed: pip install 'trove-builder[verify]'") from exc
    return oslo_messaging, cfg


def messaging_conf():
    """A private oslo.config namespace for one transport (never the process-global CONF, so the
    harness, or a test's fake agent, can run several transports in one process)."""
    _, cfg = _oslo()
    conf = cfg.ConfigOpts()
    conf([], project="trove-boot-test", default_config_files=[], default_config_dirs=[])
    _register_global_only_opts(conf)
    return conf


def _register_global_only_opts(conf) -> None:
    """Some oslo.messaging releases register option groups only on the global CONF, yet read
    them from the transport's conf ([oslo_messaging_metrics], [oslo_messaging_tracing] in 18.x).
    Copy every such oslo_messaging* group onto our private conf (their defaults: all off)."""
    from oslo_config import cfg

    for module in ("oslo_messaging._metrics.client", "oslo_messaging._tracing.client"):
        try:
            __import__(module)
        except ImportError:
            pass
    groups = getattr(cfg.CONF, "_groups", {})
    for name, group in list(groups.items()):
        if not name.startswith("oslo_messaging") or name in getattr(conf, "_groups", {}):
            continue
        opts = [info["opt"] for info in group._opts.values()]
        conf.register_opts(opts, group=name)


@dataclass
class PingOutcome:
    """The result of retrying rpc_ping: when it first answered, after how many attempts."""

    ok: bool
    attempts: int
    elapsed: float          # seconds from the first attempt to the answer (or to giving up)
    answered_at: float | None = None  # time.monotonic() of the answer
    reason: str = ""
    errors: list[str] = field(default_factory=list)


class GuestClient:
    """An RPC client for one guest, with its own private oslo.config namespace and transport."""

    def __init__(self, transport_url: str, guest_id: str, *, exchange: str = CONTROL_EXCHANGE,
                 version: str = BASE_VERSION):
        oslo_messaging, _ = _oslo()
        self._om = oslo_messaging
        amqp_log = logging.getLogger("amqp")
        if amqp_log.level == logging.NOTSET:  # "Received method ... during closing channel" noise
            amqp_log.setLevel(logging.ERROR)
        self.guest_id = guest_id
        self.conf = messaging_conf()
        self.transport = oslo_messaging.get_rpc_transport(self.conf, url=transport_url)
        self.conf.set_override("control_exchange", exchange)
        self.target = oslo_messaging.Target(exchange=exchange, topic=guest_topic(guest_id), version=version)
        make_client = getattr(oslo_messaging, "get_rpc_client", None) or oslo_messaging.RPCClient  # < 14.1
        self.client = make_client(self.transport, self.target)

    def __enter__(self) -> GuestClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            try:
                self.transport.cleanup()
            finally:
                self.transport = None

    def call(self, method: str, timeout: float, retry: int | None = 1, **kwargs) -> Any:
        """One call with an empty context; raises oslo's MessagingTimeout, RemoteError, ..."""
        cctxt = self.client.prepare(timeout=timeout, retry=retry)
        return cctxt.call({}, method, **kwargs)

    def precreate_queue(self) -> None:
        """Declare the agent's queues now (Trove's taskmanager does this before `prepare`).

        A throw-away RPC server with no endpoints on the guest's topic and server name is started
        and stopped at once; the queues stay and hold calls until the agent consumes them.
        """
        om = self._om
        target = om.Target(exchange=self.target.exchange, topic=self.target.topic, server=self.guest_id)
        with warnings.catch_warnings():  # "executor is deprecated" on 18.x; older ones need it
            warnings.simplefilter("ignore", DeprecationWarning)
            server = om.get_rpc_server(self.transport, target, [], executor="threading")
        server.start()
        server.stop()
        server.wait()

    def rpc_ping(self, timeout: float = 15.0) -> Any:
        """One rpc_ping (version 1.0, no arguments): the agent answers True."""
        return self.call("rpc_ping", timeout)

    def ping_until(self, deadline: float, *, per_call_timeout: float = 15.0,
                   should_stop: Callable[[], str | None] | None = None) -> PingOutcome:
        """Retry rpc_ping until it returns True or time.monotonic() passes `deadline`.

        `should_stop` is asked between attempts; a non-empty string aborts with that reason
        (e.g. the VM died). Never raises for timeouts: the outcome says what happened.
        """
        om = self._om
        start = time.monotonic()
        attempts = 0
        errors: list[str] = []
        while True:
            if should_stop is not None:
                why = should_stop()
                if why:
                    return PingOutcome(False, attempts, time.monotonic() - start, reason=why, errors=errors)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                last = f"; last error: {errors[-1]}" if errors else ""
                return PingOutcome(False, attempts, time.monotonic() - start,
                                   reason=f"rpc_ping got no answer on topic {self.target.topic} (exchange "
                                          f"{self.target.exchange}) after {attempts} attempt(s) in "
                                          f"{time.monotonic() - start:.0f} s{last}", errors=errors)
            attempts += 1
            t_call = time.monotonic()
            try:
                answer = self.call("rpc_ping", max(1.0, min(per_call_timeout, remaining)))
            except om.MessagingTimeout:
                errors.append("MessagingTimeout")
                continue
            except om.RemoteError as exc:
                errors.append(f"remote {exc.exc_type}: {exc.value}")
            except Exception as exc:  # broker unreachable, auth refused, ...
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                if answer is True:
                    now = time.monotonic()
                    return PingOutcome(True, attempts, now - start, answered_at=now, errors=errors)
                errors.append(f"rpc_ping returned {answer!r}, not True")
            # A fast failure (not a timeout): do not spin.
            time.sleep(max(0.0, min(2.0 - (time.monotonic() - t_call), deadline - time.monotonic())))

    def get_filesystem_stats(self, fs_path: str | None = None, timeout: float = 60.0) -> dict:
        """statvfs of the agent's mount_point (fs_path=None), as the controller asks for it."""
        return self.call("get_filesystem_stats", timeout, fs_path=fs_path)
