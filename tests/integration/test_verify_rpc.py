"""The real throw-away RabbitMQ and the real oslo.messaging client, against an in-process fake agent.

Seconds each (the broker starts in about 5 s); needs Debian's rabbitmq-server on the host.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
import warnings

import oslo_messaging as om  # the verify extra: a broken install must fail, not skip
import pytest

from builder.verify import procs
from builder.verify.rabbitmq import Broker, amqp_login, rabbitmq_broker
from builder.verify.rpc import GuestClient, guest_topic, messaging_conf
from tests.conftest import record_latency
from tests.helpers import pid_alive


class FakeAgent:
    """The two guest-agent calls the boot test makes, with Trove's signatures."""

    target = om.Target(version="1.3")

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []

    def rpc_ping(self, context):
        self.calls.append(("rpc_ping", context))
        return True

    def get_filesystem_stats(self, context, fs_path):
        self.calls.append(("get_filesystem_stats", {"fs_path": fs_path}))
        return {"block_size": 4096, "total_blocks": 508431, "free_blocks": 503000, "avail_blocks": 480000,
                "total": 1.94, "used": 0.02, "free": 2060288000, "mgr_extra_info": {}}


class FakeAgentServer:
    """An oslo.messaging RPC server on guestagent.<id> in exchange `trove`, like the guest's."""

    def __init__(self, url: str, guest_id: str, exchange: str = "trove"):
        self.agent = FakeAgent()
        self.transport = om.get_rpc_transport(messaging_conf(), url=url)
        target = om.Target(topic=guest_topic(guest_id), server=guest_id, exchange=exchange, version="1.3")
        with warnings.catch_warnings():  # "executor is deprecated" on 18.x; older ones need it
            warnings.simplefilter("ignore", DeprecationWarning)
            self.server = om.get_rpc_server(self.transport, target, [self.agent], executor="threading")

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop()
        self.server.wait()
        self.transport.cleanup()




@pytest.fixture(scope="module")
def broker():
    with rabbitmq_broker() as b:
        yield b


def test_broker_is_private_and_on_loopback(broker: Broker):
    assert broker.host == "127.0.0.1"
    assert broker.guest_transport_url == f"rabbit://{broker.user}:{broker.password}@10.0.2.2:{broker.port}/"
    amqp_login(broker.host, broker.port, broker.user, broker.password)  # the test user logs in
    with pytest.raises(Exception):  # noqa: B017 (a refused login: the amqp library's error varies by version)
        amqp_login(broker.host, broker.port, broker.user, "wrong-password")
    with pytest.raises(Exception):  # noqa: B017
        amqp_login(broker.host, broker.port, "guest", "guest")  # the default user is gone
    users = broker.ctl("list_users", "-q").stdout
    assert broker.user in users


def test_rpc_ping_and_filesystem_stats_against_a_fake_agent(broker: Broker):
    guest_id = str(uuid.uuid4())
    with GuestClient(broker.transport_url(), guest_id) as client, \
            FakeAgentServer(broker.transport_url(), guest_id) as server:
        outcome = client.ping_until(time.monotonic() + 60, per_call_timeout=10)
        assert outcome.ok, outcome.reason
        assert outcome.attempts >= 1
        stats = client.get_filesystem_stats(timeout=30)
    assert stats["total"] == 1.94
    name, context = server.agent.calls[0]
    assert name == "rpc_ping"
    # an empty context, as the contract says (oslo.messaging itself adds client_timeout)
    assert {k: v for k, v in context.items() if k != "client_timeout"} == {}
    assert ("get_filesystem_stats", {"fs_path": None}) in server.agent.calls


def test_other_exchange_does_not_answer(broker: Broker):
    """control_exchange matters: an agent on `openstack` never sees calls sent to `trove`."""
    guest_id = str(uuid.uuid4())
    with GuestClient(broker.transport_url(), guest_id) as client, \
            FakeAgentServer(broker.transport_url(), guest_id, exchange="openstack"):
        outcome = client.ping_until(time.monotonic() + 4, per_call_timeout=2)
    assert not outcome.ok


def test_precreated_queue_keeps_early_pings(broker: Broker):
    """With the queue pre-created, a ping sent before the agent starts is answered once it does."""
    guest_id = str(uuid.uuid4())
    with GuestClient(broker.transport_url(), guest_id) as client:
        client.precreate_queue()
        import threading
        outcome = {}
        t = threading.Thread(target=lambda: outcome.update(r=client.ping_until(
            time.monotonic() + 40, per_call_timeout=30)))
        t.start()
        time.sleep(3)  # the ping is now waiting in the queue
        with FakeAgentServer(broker.transport_url(), guest_id):
            t.join(60)
    assert outcome["r"].ok, outcome["r"].reason
    assert outcome["r"].attempts == 1  # the first call itself was answered, not a retry
    assert outcome["r"].elapsed >= 3


def test_rpc_ping_without_an_agent_fails_within_the_deadline(broker: Broker):
    guest_id = str(uuid.uuid4())
    start = time.monotonic()
    with GuestClient(broker.transport_url(), guest_id) as client:
        outcome = client.ping_until(time.monotonic() + 6, per_call_timeout=2)
    took = time.monotonic() - start
    assert not outcome.ok
    assert record_latency("rpc ping with no agent, 6 s deadline: gave up after", took) < 6 + 30  # loose: busy cores
    assert outcome.attempts >= 2
    assert f"guestagent.{guest_id}" in outcome.reason and "no answer" in outcome.reason


def test_rpc_ping_stops_when_told(broker: Broker):
    with GuestClient(broker.transport_url(), str(uuid.uuid4())) as client:
        outcome = client.ping_until(time.monotonic() + 60, per_call_timeout=1, should_stop=lambda: "VM died")
    assert not outcome.ok and outcome.reason == "VM died" and outcome.attempts == 0


def test_broker_is_gone_afterwards():
    with rabbitmq_broker() as b:
        pids, base, marker, port = list(b.pids), b.base_dir, b.marker, b.port
        assert all(pid_alive(p) for p in pids)
        assert base.is_dir()
        assert procs.marked_pids(marker)  # beam, epmd, erl_child_setup, ...
        assert procs.port_open("127.0.0.1", port)
    assert not any(pid_alive(p) for p in pids)
    assert [p for p in procs.marked_pids(marker) if pid_alive(p)] == []
    assert not base.exists()
    assert not procs.port_open("127.0.0.1", port)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert b.node not in ps


def test_broker_is_gone_after_an_exception():
    seen = {}
    with pytest.raises(RuntimeError):
        with rabbitmq_broker() as b:
            seen.update(pids=list(b.pids), base=b.base_dir, marker=b.marker)
            raise RuntimeError("boom")
    assert not any(pid_alive(p) for p in seen["pids"])
    assert [p for p in procs.marked_pids(seen["marker"]) if pid_alive(p)] == []
    assert not seen["base"].exists()


def test_broker_is_gone_after_sigterm(tmp_path):
    """A harness process killed with SIGTERM still stops its broker and removes its files."""
    script = tmp_path / "hold.py"
    script.write_text(
        "import sys, time\n"
        "from builder.verify.rabbitmq import rabbitmq_broker\n"
        "with rabbitmq_broker() as b:\n"
        "    print(b.marker, b.base_dir, flush=True)\n"
        "    time.sleep(600)\n")
    proc = subprocess.Popen([os.environ.get("PYTHON", __import__("sys").executable), str(script)],
                            stdout=subprocess.PIPE, text=True, cwd=os.getcwd(),
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        line = proc.stdout.readline().split()
        assert line, "the broker did not start in the child"
        marker, base = line[0], line[1]
        assert procs.marked_pids(marker)
        proc.terminate()
        assert proc.wait(timeout=60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [p for p in procs.marked_pids(marker) if pid_alive(p)] == []
    assert not os.path.exists(base)
