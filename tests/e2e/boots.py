"""The e2e boots' shared steps: what a boot test's result must show (the guest served Trove, its
boot timeline), and the production boot each release file runs."""

from builder.profile import load as load_profile
from builder.verify import run_boot_test

BOOT_TIMEOUT = 1500  # seconds: a production boot with the other worker busy (the CLI's default is 900)


def explain(result) -> str:
    return f"{result.reason}\n" + "\n".join(result.serial_tail)


def assert_serves_trove(result, data_disk_gb=2):
    assert result.passed, explain(result)
    assert_answers_rpc(result)


def assert_answers_rpc(result):
    checks = {c.name: c for c in result.checks}
    assert checks["rpc_ping"].ok and checks["login prompt"].ok
    assert checks["cloud-init from config drive"].ok
    assert checks["data disk mounted"].ok, checks["data disk mounted"].detail
    assert 1.5 < result.fs_stats["total"] < 2.5, result.fs_stats  # the 2 GiB data disk, not the 5 GiB root


def assert_production_boot(result, os_name, release, firmware, console):
    assert result.firmware == firmware
    modules = next(c for c in result.checks if c.name == "cloud-init modules")
    assert modules.ok, modules.detail  # e.g. the locale module failing on an ungenerated locale
    assert_timeline(result, os_name, release)
    assert_boots_lean(result, os_name, release)
    assert_cloud_init_stages_served(console.read_text(errors="replace"), os_name, release)


# What each stage unit prints when cloud-init-main.service's process ran its stage and answered
STAGE_ANSWER = {"all-stages": "Completed socket interaction for boot stage {stage}",  # cloudinit/socket.py
                "fork-server": "cloud-init {stage} stage: exit status 0"}  # templates/cloud-init-fork-server


def assert_cloud_init_stages_served(console, os_name, release):
    """Where the profile runs cloud-init's stages from one process, each of the four stage units got
    its stage's answer (a unit that got none would pass whatever its stage did)."""
    runner = load_profile(os_name, release).cloud_init_stage_runner
    if runner == "per-stage":
        return
    missing = [stage for stage in ("local", "network", "config", "final")
               if STAGE_ANSWER[runner].format(stage=stage) not in console]
    assert not missing, f"{runner}: no answer on the console for the stage(s) {missing}"


def assert_boots_lean(result, os_name, release):
    """First-boot speed (issue 10), read from the same boot's console: exactly one network stack,
    and no ssh host key type beyond the profile's (RSA under emulation costs seconds)."""
    assert len(result.network_stacks) == 1, f"network stacks started: {result.network_stacks}"
    wanted = load_profile(os_name, release).ssh_host_key_types
    assert result.host_key_types, "cloud-init printed no host key fingerprints"
    assert set(result.host_key_types) <= set(wanted), f"host keys {result.host_key_types}, profile: {wanted}"
    print(f"{os_name} {release}: network stack {result.network_stacks[0]}, host keys {result.host_key_types}")


def assert_timeline(result, os_name, release):
    """The boot timeline (issue 10), read from the same boot's console: the milestones in their order,
    and docker and the agent unit seen starting (the boot test's journal watch)."""
    names = [e["name"] for e in result.timeline]
    assert names.index("kernel") < names.index("cloud_init_local") < names.index("first_rpc_ping"), names
    assert {"docker", "agent_unit"} <= set(names), names


def boot_production(images, os_name, release, firmware, tmp_path):
    image = images.get(os_name, release)
    # under CI's load (the other worker builds) a noble boot passed 860 s before cloud-init ended
    result = run_boot_test(image, firmware=firmware, timeout=BOOT_TIMEOUT, console_log=tmp_path / "console.log")
    assert_serves_trove(result)
    assert_production_boot(result, os_name, release, firmware, tmp_path / "console.log")
