"""boot-test --prepare's pieces that need no guest: the config it sends, the failure it reports,
the port forward it asks QEMU for, and the usage errors of the CLI."""

import traceback

from typer.testing import CliRunner

from builder.cli import app
from builder.verify.conductor import root_cause
from builder.verify.prepare import config_contents, prepare_context
from builder.verify.qemu import HostFwd, VMConfig, qemu_command


def test_config_is_sized_from_the_flavor_like_trove_renders_it():
    small, large = config_contents(1024, server_id=1), config_contents(4096, server_id=7)
    assert "innodb_buffer_pool_size = 300M" in small and "innodb_buffer_pool_size = 1200M" in large
    assert "server_id = 7" in large and "datadir = /var/lib/mysql/data" in small
    assert small.rstrip().endswith("!includedir /etc/mysql/conf.d/")


def test_prepare_context_carries_the_notification_the_agent_ends_prepare_with():
    ctx = prepare_context("g-1", "t-1", "mysql", "10.11")
    note = ctx["trove_notification"]
    assert note["notification_classname"] == "trove.common.notification.DBaaSInstanceCreate"
    assert note["server_type"] == "guest" and note["request_id"] == ctx["request_id"]


def test_the_agents_failure_is_reported_by_its_first_cause():
    try:
        try:
            raise LookupError('404 Client Error: Not Found ("No such image: trove-builder/mariadb:10.11")')
        except LookupError:
            raise RuntimeError("Failed to start mysql")  # noqa: B904 - implicit chaining, as the agent does
    except RuntimeError as exc:
        formatted = traceback.format_exception(type(exc), exc, exc.__traceback__)
    assert root_cause(formatted) == \
        'LookupError: 404 Client Error: Not Found ("No such image: trove-builder/mariadb:10.11")'
    assert root_cause(None) == ""


def test_qemu_forwards_the_database_port_on_loopback_only(tmp_path):
    cfg = VMConfig(image=tmp_path / "i.qcow2", hostfwds=[HostFwd(40123, 3306)])
    argv = qemu_command(cfg, accel="tcg", root_disk=tmp_path / "o.qcow2", serial_log=tmp_path / "s.log")
    netdev = argv[argv.index("-netdev") + 1]
    assert "hostfwd=tcp:127.0.0.1:40123-:3306" in netdev


def test_prepare_usage_errors_are_one_line(tmp_path):
    image = tmp_path / "i.qcow2"
    image.write_bytes(b"")
    runner = CliRunner()
    for args, message in ((["--datastore-image", "no-tag"], "must be NAME:TAG"),
                          (["--datastore-version", "8.4"], "differs from the tag"),
                          (["--datastore", "postgresql"], "mysql manager")):
        res = runner.invoke(app, ["boot-test", str(image), "--prepare", *args])
        assert res.exit_code == 2, res.output
        assert message in res.output
