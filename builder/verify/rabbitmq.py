"""A throw-away RabbitMQ 3.x broker on host loopback, gone without a trace afterwards.

The boot test must not depend on (or disturb) a system broker or a system epmd: everything here
lives in a fresh temp dir with its own node name, ports, Erlang cookie and epmd port. QEMU
user-network connections from the guest (to 10.0.2.2) arrive from 127.0.0.1, so the broker
listens on loopback only, and the test user (not `guest`) may log in from there.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import BuilderError
from builder.verify import procs

RABBITMQ_BIN = Path(os.environ.get("RABBITMQ_BIN_DIR", "/usr/lib/rabbitmq/bin"))
EPMD_CANDIDATES = ("/usr/bin/epmd", "/usr/lib/erlang/bin/epmd")
QEMU_HOST_ADDR = "10.0.2.2"  # the host as seen from a QEMU user-network guest


class BrokerError(BuilderError):
    """The throw-away broker could not be started; the message quotes its log."""


@dataclass
class Broker:
    """A running broker: where it listens and how to log in."""

    host: str
    port: int
    user: str
    password: str
    node: str
    base_dir: Path
    env: dict = field(repr=False, default_factory=dict)
    marker: str = ""
    pids: list[int] = field(default_factory=list)

    def transport_url(self, host: str | None = None, vhost: str = "/") -> str:
        """oslo.messaging URL; host=QEMU_HOST_ADDR gives the one a QEMU guest uses."""
        vh = "" if vhost == "/" else vhost.lstrip("/")
        return f"rabbit://{self.user}:{self.password}@{host or self.host}:{self.port}/{vh}"

    @property
    def guest_transport_url(self) -> str:
        return self.transport_url(QEMU_HOST_ADDR)

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """rabbitmqctl against this node (same env: cookie, node name, epmd port)."""
        return subprocess.run([str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, *args],
                              env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=timeout)


def _epmd() -> str:
    for path in EPMD_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("epmd")
    if not found:
        raise BrokerError("epmd not found: install Debian's rabbitmq-server (erlang-base)")
    return found


def _config(port: int, host: str) -> str:
    return "\n".join([
        f"listeners.tcp.1 = {host}:{port}",
        # The test user logs in from loopback (QEMU's slirp); only `guest` stays loopback-bound.
        "loopback_users = none",
        "disk_free_limit.absolute = 1MB",
        "log.console = false",
        "log.file.level = info",
        "",
    ])


def _log_tail(base: Path, lines: int = 30) -> str:
    chunks = []
    for path in sorted(base.glob("log/*")) + [base / "server.out"]:
        if path.is_file():
            text = path.read_text(errors="replace").splitlines()[-lines:]
            chunks.append(f"--- {path.name} ---\n" + "\n".join(text))
    return "\n".join(chunks)


def amqp_login(host: str, port: int, user: str, password: str, timeout: float = 5.0) -> None:
    """One AMQP 0-9-1 login (raises on failure). Uses py-amqp (oslo.messaging pulls it in)."""
    import amqp  # imported here: the rest of the harness works without it

    conn = amqp.Connection(host=f"{host}:{port}", userid=user, password=password, virtual_host="/",
                           connect_timeout=timeout)
    try:
        conn.connect()
    finally:
        with contextlib.suppress(Exception):
            conn.close()


@contextlib.contextmanager
def rabbitmq_broker(
    user: str = "trove",
    password: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    start_timeout: float = 120.0,
) -> Iterator[Broker]:
    """Start a private RabbitMQ node, yield it once an AMQP login works, always tear it down.

    Teardown (on normal exit, exceptions, KeyboardInterrupt and, in the main thread, SIGTERM):
    SIGTERM then SIGKILL to the broker's and epmd's process groups, a sweep for anything else
    started with this broker's marker, and removal of the temp dir.
    """
    if not (RABBITMQ_BIN / "rabbitmq-server").exists():
        raise BrokerError(f"{RABBITMQ_BIN}/rabbitmq-server not found: apt-get install rabbitmq-server")
    password = password or secrets.token_hex(12)
    token = uuid.uuid4().hex[:10]
    node = f"tbt{token}@localhost"
    marker = procs.new_marker("rabbitmq")
    base = Path(tempfile.mkdtemp(prefix="trove-boot-test-rabbitmq-"))
    server = epmd = None
    with procs.sigterm_raises():
        try:
            amqp_port = port or procs.free_port(host)
            dist_port = procs.free_port(host)
            epmd_port = procs.free_port(host)
            (base / "home").mkdir()
            (base / "rabbitmq.conf").write_text(_config(amqp_port, host))
            (base / "enabled_plugins").write_text("[].\n")
            (base / "rabbitmq-env.conf").write_text("")
            env = {
                "HOME": str(base / "home"),  # its own Erlang cookie, shared with rabbitmqctl
                "RABBITMQ_NODENAME": node,
                "RABBITMQ_NODE_IP_ADDRESS": host,
                "RABBITMQ_NODE_PORT": str(amqp_port),
                "RABBITMQ_DIST_PORT": str(dist_port),
                "ERL_EPMD_PORT": str(epmd_port),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
                "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
                "RABBITMQ_LOG_BASE": str(base / "log"),
                "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
                "RABBITMQ_PLUGINS_EXPAND_DIR": str(base / "plugins-expand"),
            }
            # Our own epmd, in the foreground (in our process group, unlike `epmd -daemon`), on a
            # port no system epmd uses: the node registers there and we kill it afterwards.
            epmd = procs.spawn([_epmd(), "-port", str(epmd_port), "-address", "127.0.0.1"],
                               marker=marker, env=env, cwd=base)
            deadline = time.monotonic() + 10
            while not procs.port_open("127.0.0.1", epmd_port, 0.5):
                if epmd.poll() is not None or time.monotonic() > deadline:
                    raise BrokerError(f"epmd did not start on 127.0.0.1:{epmd_port}")
                time.sleep(0.1)
            with open(base / "server.out", "wb") as out:
                server = procs.spawn([RABBITMQ_BIN / "rabbitmq-server"], marker=marker, env=env,
                                     stdout=out, cwd=base)
            broker = Broker(host=host, port=amqp_port, user=user, password=password, node=node,
                            base_dir=base, env=env, marker=marker, pids=[server.pid, epmd.pid])
            _wait_started(broker, server, start_timeout)
            for args in (("add_user", user, password),
                         ("set_permissions", "-p", "/", user, ".*", ".*", ".*"),
                         ("delete_user", "guest")):
                res = broker.ctl(*args)
                if res.returncode != 0 and args[0] != "delete_user":
                    raise BrokerError(f"rabbitmqctl {args[0]} failed: {res.stderr.strip() or res.stdout.strip()}")
            _wait_login(broker, server, start_timeout)
            yield broker
        finally:
            procs.terminate(server, grace=15)
            procs.terminate(epmd, marker=marker, grace=5)
            shutil.rmtree(base, ignore_errors=True)


def _wait_started(broker: Broker, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise BrokerError(f"rabbitmq-server exited with {server.returncode}:\n{_log_tail(broker.base_dir)}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerError(f"rabbitmq-server did not start in {timeout:.0f} s:\n{_log_tail(broker.base_dir)}")
        try:
            res = broker.ctl("await_startup", "--timeout", str(max(5, int(min(remaining, 30)))),
                             timeout=min(remaining, 30) + 30)
        except subprocess.TimeoutExpired:
            continue
        if res.returncode == 0:
            return
        time.sleep(1)


def _wait_login(broker: Broker, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BrokerError(f"rabbitmq-server exited with {server.returncode}:\n{_log_tail(broker.base_dir)}")
        try:
            amqp_login(broker.host, broker.port, broker.user, broker.password)
            return
        except ImportError:
            if procs.port_open(broker.host, broker.port):
                return
        except Exception as exc:  # connection refused, access refused while users settle
            last = exc
        time.sleep(0.5)
    raise BrokerError(f"no AMQP login as {broker.user} on {broker.host}:{broker.port} within {timeout:.0f} s "
                      f"({last})")
