import json
import os
import subprocess
import sys
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
    ctx = context(tmp_path)
    ctx.results["docker_plugin"] = True
    text = render.render("guest-agent.service", ctx.template_context())
    assert "ExecStart=/usr/local/bin/guest-agent --config-dir=/etc/trove/conf.d" in text
    assert "Restart=always" in text and "KillMode=mixed" in text and "User=ubuntu" in text
    # started early (its imports beside cloud-init's stages); its launcher waits for the setup unit
    assert "DefaultDependencies=no\nAfter=local-fs.target systemd-tmpfiles-setup.service\n" in text
    assert "cloud-init" not in text.split("[Service]")[1]
    assert "Wants=guest-agent-setup.service syslog.service docker.service" in text
    assert "SuccessExitStatus=78\nRestartPreventExitStatus=78" in text  # quiet outside Trove
    assert "Environment=EVENTLET_NO_GREENDNS=yes" in text
    assert "ExecStartPre=+/bin/chown -R ubuntu:root /etc/trove /var/log/trove" in text and "/usr/bin/sudo" not in text
    assert "rsync" not in text and "controller.conf" not in text
    setup = render.render("guest-agent-setup.service", ctx.template_context())
    assert "After=cloud-init.service docker.socket" in setup
    assert "ConditionPathExists=/etc/trove/conf.d/guest_info.conf" in setup
    assert setup.index("ExecStart=/bin/chown -R ubuntu:root") < setup.index(
        "ExecStart=/bin/touch /run/trove-guest-agent.ready")
    # the plugin is not on the agent's path: enabled, it starts at boot before dockerd, as upstream orders it
    assert "Plugin.Activate" not in setup
    plugin = render.render("docker-hostnic.service", ctx.template_context())
    assert "After=network.target docker-hostnic.socket\nBefore=docker.service" in plugin
    assert "\nCPUWeight=20\n" in plugin  # after the boot's startup phase too, when the agent starts
    assert "ExecStart=/usr/local/bin/trove-docker-plugin" in plugin
    launcher = render.render("guest-agent", ctx.template_context())
    assert launcher.startswith("#!/opt/guest-agent-venv/bin/python3\n")
    assert 'READY = "/run/trove-guest-agent.ready"' in launcher
    compile(launcher, "guest-agent", "exec")  # valid Python (the guest runs it; no trove here)


@pytest.mark.parametrize("os_name,release,importing", [("ubuntu", "noble", 100), ("debian", "bookworm", 100),
                                                        ("ubuntu", "bionic", 100)])
def test_agent_cpu_share_while_importing_and_after(tmp_path, os_name, release, importing):
    # cloud-init's stages are the longest path (noble too, with the build's AppArmor cache): the agent
    # imports with the default share until its config is ready, then gets the larger one
    ctx = context(tmp_path, os=os_name, release=release)
    unit = render.render("guest-agent.service", ctx.template_context())
    setup = render.render("guest-agent-setup.service", ctx.template_context())
    assert f"\nCPUWeight={importing}\n" in unit
    raise_share = "ExecStartPost=-/bin/systemctl set-property --runtime guest-agent.service CPUWeight=400\n"
    assert (raise_share in setup) is (importing != 400)
    if importing != 400:  # raised only after the ready flag (the agent's main() does not wait for it)
        assert setup.index("ExecStart=/bin/touch /run/trove-guest-agent.ready") < setup.index(raise_share)


def test_grub_boots_without_a_menu_wait(tmp_path):
    ctx = context(tmp_path)
    cfg = render.render("grub.cfg", {**ctx.template_context(), "root_uuid": "0" * 8})
    assert "\nset timeout=0\n" in cfg and cfg.count("menuentry ") == 1


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


def test_only_the_profiles_host_key_types_are_generated(tmp_path):
    ctx = context(tmp_path)
    assert ctx.profile.ssh_host_key_types == ["ed25519"]
    dropin = render.render("ssh-hostkeys.conf", ctx.template_context())
    assert "ExecStartPre=/usr/bin/ssh-keygen -A" not in dropin and "-t rsa" not in dropin
    assert "ssh-keygen -q -t ed25519" in dropin
    assert "ExecStart=/usr/sbin/sshd -D $SSHD_OPTS -h /etc/ssh/ssh_host_ed25519_key\n" in dropin
    user = render.render("cloud-default-user.cfg", ctx.template_context())
    assert "ssh_genkeytypes: [ed25519]" in user


def test_cloud_init_renders_one_network_stack_and_runs_few_modules(tmp_path):
    import yaml
    noble = context(tmp_path)
    # noble: systemd-networkd's files, no `netplan generate` at boot
    assert yaml.safe_load(render.render("cloud-boot.cfg", noble.template_context()))["system_info"] == {
        "network": {"renderers": ["networkd"]}}
    assert "networking.service" in noble.profile.boot_disabled_units
    assert "systemd-networkd.service" not in noble.profile.boot_disabled_units
    assert "netplan.io" in noble.profile.packages
    # bionic: networkd's own files, no netplan (with netplan rendered it came up with its NIC down)
    bionic = context(tmp_path, os="ubuntu", release="bionic")
    assert bionic.profile.network_renderer == "networkd" and "netplan.io" not in bionic.profile.packages
    assert "networking.service" in bionic.profile.boot_disabled_units
    # bookworm: systemd-networkd's files too (ifupdown's dhclient-script costs seconds under emulation)
    bookworm = context(tmp_path, os="debian", release="bookworm")
    assert yaml.safe_load(render.render("cloud-boot.cfg", bookworm.template_context()))["system_info"] == {
        "network": {"renderers": ["networkd"]}}
    assert "networking.service" in bookworm.profile.boot_disabled_units
    # trixie: networkd's too (ifupdown's `inet dhcp` left the NIC at 1500, not network_data.json's MTU)
    ctx = context(tmp_path, os="debian", release="trixie")
    cfg = yaml.safe_load(render.render("cloud-boot.cfg", ctx.template_context()))
    assert cfg["system_info"]["network"]["renderers"] == ["networkd"]
    assert "networking.service" in ctx.profile.boot_disabled_units
    assert "systemd-networkd.service" in ctx.profile.boot_enabled_units
    assert "write_files" in cfg["cloud_init_modules"] and "runcmd" in cfg["cloud_config_modules"]
    assert "keys_to_console" in cfg["cloud_final_modules"]
    assert not {"mounts", "apt_configure", "grub_dpkg"} & set(sum(
        (cfg[k] for k in ("cloud_init_modules", "cloud_config_modules", "cloud_final_modules")), []))


def test_every_release_masks_the_other_network_stack_and_not_its_own():
    from builder.profile import available, load
    stack = {"eni": "ifupdown", "netplan": "networkd", "networkd": "networkd"}  # renderer -> what brings it up
    units = {"ifupdown": {"networking.service"}, "networkd": {"systemd-networkd.service"}}
    for os_name, releases in available().items():
        for release in releases:
            profile = load(os_name, release)
            masked = set(profile.boot_disabled_units)
            own = units[stack[profile.network_renderer]]
            other = set().union(*(u for s, u in units.items() if s != stack[profile.network_renderer]))
            assert not own & masked, f"{os_name}/{release} masks its own stack: {own & masked}"
            assert other <= masked, f"{os_name}/{release} leaves {other - masked} to start"
            # nothing but netplan's generator enables networkd: rendering its files alone leaves the NIC down
            if profile.network_renderer == "networkd":
                assert "systemd-networkd.service" in profile.boot_enabled_units, f"{os_name}/{release}"


@pytest.mark.parametrize("os_name,release,runner", [("ubuntu", "noble", "all-stages"),
                                                     ("debian", "bookworm", "fork-server"),
                                                     ("ubuntu", "bionic", "fork-server"),
                                                     ("ubuntu", "jammy", "per-stage")])
def test_cloud_init_stages_run_as_the_profile_says(tmp_path, os_name, release, runner):
    ctx = context(tmp_path, os=os_name, release=release)
    assert ctx.profile.cloud_init_stage_runner == runner
    files = {path: text for path, _, _, text in render.stage_files("system", ctx.template_context())}
    assert ("/usr/local/sbin/cloud-init-fork-server" in files) is (runner == "fork-server")
    assert ("/etc/systemd/system/cloud-init-main.service" in files) is (runner != "per-stage")
    if runner == "per-stage":
        assert not any("single-process.conf" in path for path in files)
        return
    main = files["/etc/systemd/system/cloud-init-main.service"]
    command = {"all-stages": "/usr/bin/cloud-init --all-stages",
               "fork-server": "/usr/local/sbin/cloud-init-fork-server"}
    assert f"ExecStart={command[runner]}\n" in main and "Type=notify" in main
    assert "Before=cloud-init-local.service" in main
    # each stage's unit keeps its name and order and signals its own socket (one template, four files)
    for unit, stage in [("cloud-init-local", "local"), ("cloud-init", "network"), ("cloud-config", "config"),
                        ("cloud-final", "final")]:
        dropin = files[f"/etc/systemd/system/{unit}.service.d/single-process.conf"]
        signal = f"/bin/sh -c 'reply=$$(printf start | nc -U /run/cloud-init/share/{stage}.sock) && "
        assert f"ExecStart=\nExecStart={signal}" in dropin
        assert f"gave no answer for the {stage} stage" in dropin  # run: test_cloud_init_fork_server.py
        assert "After=cloud-init-main.service" in dropin
    assert "netcat-openbsd" in ctx.profile.packages


def test_an_unknown_cloud_init_stage_runner_is_refused():
    from builder.errors import UsageError
    from builder.profile import Profile, load
    data = dict(load("debian", "bookworm").data, cloud_init_stage_runner="one-process")
    with pytest.raises(UsageError, match="cloud_init_stage_runner 'one-process'"):
        Profile.from_data("debian", "bookworm", data)


def test_docker_daemon_config_only_where_a_release_sets_it(tmp_path):
    """noble's dockerd leaves ip6tables alone (its start sets up no IPv6 chains); bookworm has no
    daemon.json: dockerd's own defaults."""
    def daemon_json(os_name: str, release: str) -> list[str]:
        ctx = context(tmp_path / release, os=os_name, release=release)
        return [content for path, _, _, content in render.stage_files("system", ctx.template_context())
                if path == "/etc/docker/daemon.json"]
    assert [json.loads(text) for text in daemon_json("ubuntu", "noble")] == [{"ip6tables": False}]
    assert daemon_json("debian", "bookworm") == []


FAKE_TROVE = {  # what the launcher imports of trove; main() makes its client as trove's datastore manager does
    "trove/__init__.py": "", "trove/rpc.py": "", "trove/cmd/__init__.py": "",
    "trove/common/__init__.py": "", "trove/common/rpc/__init__.py": "", "trove/common/rpc/service.py": "",
    "trove/cmd/guest.py": "import docker\n\ndef main():\n    print('api', docker.from_env().api.api_version)\n",
}


@pytest.mark.parametrize("pinned", ["1.52", ""])
def test_the_launcher_makes_the_docker_client_without_dockerd_only_when_given_its_api_version(tmp_path, pinned):
    """The real docker SDK, no daemon behind DOCKER_HOST: with the engine's API version the client is
    made at once (the agent can answer before dockerd is up); without it the SDK must ask dockerd."""
    ctx = context(tmp_path)
    ctx.results["docker_api_version"] = pinned
    ready = tmp_path / "ready"
    ready.touch()
    launcher = tmp_path / "guest-agent"
    launcher.write_text(render.render("guest-agent", {**ctx.template_context(), "agent_ready_flag": str(ready)}))
    for name, text in FAKE_TROVE.items():
        (tmp_path / "lib" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "lib" / name).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "lib"), "DOCKER_HOST": f"unix://{tmp_path}/no-dockerd.sock"}
    ran = subprocess.run([sys.executable, str(launcher)], env=env, capture_output=True, text=True, timeout=60)
    if pinned:
        assert ran.returncode == 0 and ran.stdout.strip() == "api 1.52", ran.stderr
    else:
        assert ran.returncode != 0 and "Error while fetching server API version" in ran.stderr


def test_unused_kernel_modules_are_blacklisted_before_the_kernel_is_installed(tmp_path):
    """Written in the bootstrap stage (the kernel's package, in the system stage, makes the initramfs,
    which copies /etc/modprobe.d): one `blacklist` line per profile entry, nothing else."""
    ctx = context(tmp_path)
    root = fake_root(tmp_path)
    written = render.install_stage_files(root, "bootstrap", ctx.template_context())
    assert "/etc/modprobe.d/trove-builder-blacklist.conf" in written
    text = (root / "etc/modprobe.d/trove-builder-blacklist.conf").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == [f"blacklist {m}" for m in ctx.profile.kernel_module_blacklist]
    assert {"kvm_amd", "kvm_intel", "floppy"} <= set(ctx.profile.kernel_module_blacklist)
    (root / "etc/modprobe.d/trove-builder-blacklist.conf").unlink()
    none = render.install_stage_files(root, "bootstrap",
                                      {**ctx.template_context(), "kernel_module_blacklist": []})
    assert "/etc/modprobe.d/trove-builder-blacklist.conf" not in none
