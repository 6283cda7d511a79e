import os
from pathlib import Path

import pytest

from builder.context import BuildContext
from builder.guest import render
from builder.proc import Log
from builder.spec import BuildSpec


def context(tmp_path: Path, **kw) -> BuildContext:
    spec = BuildSpec(output=tmp_path / "x.qcow2", cache_dir=tmp_path / "c", **kw)
    ctx = BuildContext(spec=spec, profile=spec.profile, work_dir=tmp_path / "work", log=Log(None))
    ctx.results["docker_plugin"] = True
    # What the hooks stage found installed: disk IDs derive from it.
    ctx.results.update(packages=[{"name": "bash", "arch": "amd64", "version": "5.2"}], pip_freeze=["trove==26.0.0"])
    return ctx


def fake_root(tmp_path: Path, user: str = "ubuntu") -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    uid, gid = os.getuid(), os.getgid()  # chown to ourselves works unprivileged too
    (root / "etc/passwd").write_text(f"root:x:{uid}:{gid}::/root:/bin/sh\n"
                                     f"{user}:x:{uid}:{gid}::/home/{user}:/bin/bash\n")
    (root / "etc/group").write_text(f"root:x:{gid}:\n{user}:x:{gid}:\n")
    return root


def test_production_agent_unit(tmp_path):
    text = render.render("guest-agent.service", context(tmp_path).template_context())
    assert "ExecStart=/usr/local/bin/guest-agent --config-dir=/etc/trove/conf.d" in text
    assert "Restart=always" in text and "KillMode=mixed" in text and "User=ubuntu" in text
    assert "After=network.target syslog.service cloud-config.service docker.service" in text
    assert "ConditionPathExists=/etc/trove/conf.d/guest_info.conf" in text
    assert "Plugin.Activate" in text
    assert "rsync" not in text and "controller.conf" not in text


def test_dev_agent_unit_syncs_from_the_controller(tmp_path):
    ctx = context(tmp_path, dev_mode=True, guest_user="trove", controller_user="stack",
                  controller_path="/opt/stack/trove/")
    text = render.render("guest-agent.service", ctx.template_context())
    assert "EnvironmentFile=/etc/trove/controller.conf" in text
    assert "stack@${CONTROLLER}:/opt/stack/trove/ /home/trove/trove" in text
    assert "-i /home/trove/.ssh/id_rsa" in text
    assert "ExecStart=/opt/guest-agent-venv/bin/python /home/trove/trove/contrib/trove-guestagent" in text
    assert "-c /opt/upper-constraints.txt" in text
    assert "Requires=trove-image-loader.service" in text and "Restart=on-failure" in text


def test_no_plugin_activation_when_the_agent_has_no_plugin(tmp_path):
    ctx = context(tmp_path)
    ctx.results["docker_plugin"] = False
    assert "Plugin.Activate" not in render.render("guest-agent.service", ctx.template_context())


def test_sources_list_debian_has_security_and_ubuntu_universe(tmp_path):
    deb = render.render("sources.list", context(tmp_path, os="debian", release="bookworm").template_context())
    assert "deb http://deb.debian.org/debian bookworm main" in deb
    assert "deb http://deb.debian.org/debian-security bookworm-security main" in deb
    ubu = render.render("sources.list", context(tmp_path, release="bionic").template_context())
    assert "deb http://archive.ubuntu.com/ubuntu bionic-security main universe" in ubu
    assert "trusted=yes" not in deb + ubu


def test_grub_cfg_boots_the_root_by_label_on_the_serial_console(tmp_path):
    ctx = context(tmp_path)
    text = render.render("grub.cfg", {**ctx.template_context(), "root_uuid": ctx.stable_uuid("rootfs")})
    assert f"search --no-floppy --fs-uuid --set=root {ctx.stable_uuid('rootfs')}" in text
    assert "root=LABEL=cloudimg-rootfs" in text and "console=ttyS0,115200" in text


@pytest.mark.parametrize("dev_mode", [False, True])
def test_stage_files_modes_and_conditions(tmp_path, dev_mode):
    root = fake_root(tmp_path)
    ctx = context(tmp_path, dev_mode=dev_mode)
    written = render.install_stage_files(root, "system", ctx.template_context())
    written += render.install_stage_files(root, "agent", ctx.template_context())
    sudoers = root / "etc/sudoers.d/60_trove_guest"
    assert oct(sudoers.stat().st_mode & 0o7777) == "0o440"
    assert sudoers.read_text().strip().endswith("ubuntu ALL=(ALL) NOPASSWD:ALL")
    assert ("/usr/local/sbin/trove-image-loader" in written) is dev_mode
    assert ("/usr/local/sbin/fix-default-route" in written) is dev_mode
    assert "/etc/systemd/system/guest-log-collection.service" not in written
    if dev_mode:
        assert os.access(root / "usr/local/sbin/trove-image-loader", os.X_OK)


def test_log_collection_only_with_sync_logs(tmp_path):
    root = fake_root(tmp_path)
    ctx = context(tmp_path, dev_mode=True, sync_logs=True, guest_user="ubuntu")
    written = render.install_stage_files(root, "agent", ctx.template_context())
    unit = (root / "etc/systemd/system/guest-log-collection.service").read_text()
    assert "/etc/systemd/system/guest-log-collection.timer" in written
    assert "User=ubuntu" in unit and "/var/log/guest-agent-logs/${guest_id}/" in unit


def test_uuids_derive_from_inputs(tmp_path):
    a, b = context(tmp_path), context(tmp_path / "other")
    assert a.stable_uuid("rootfs") == b.stable_uuid("rootfs")
    assert context(tmp_path, size_gb=9).stable_uuid("rootfs") != a.stable_uuid("rootfs")
