"""Boot the built images under QEMU as Trove would use them: config drive, data disk, RabbitMQ, RPC."""

import subprocess
import sys
import tarfile

import pytest

from builder.profile import load as load_profile
from builder.verify import run_boot_test

pytestmark = pytest.mark.slow


def explain(result) -> str:
    return f"{result.reason}\n" + "\n".join(result.serial_tail)


def assert_serves_trove(result, data_disk_gb=2):
    assert result.passed, explain(result)
    checks = {c.name: c for c in result.checks}
    assert checks["rpc_ping"].ok and checks["login prompt"].ok
    assert checks["cloud-init from config drive"].ok
    assert checks["data disk mounted"].ok, checks["data disk mounted"].detail
    assert 1.5 < result.fs_stats["total"] < 2.5, result.fs_stats  # the 2 GiB data disk, not the 5 GiB root


# One boot per release, both firmwares between them (noble under UEFI, the others under SeaBIOS),
# both qcow2 compressions (noble: zstd, bionic: zlib) and both guest families.
@pytest.mark.parametrize("os_name,release,firmware", [
    ("debian", "bookworm", "bios"), ("ubuntu", "noble", "uefi"), ("ubuntu", "bionic", "bios"),
])
def test_production_image_boots_and_serves_rpc(images, os_name, release, firmware, tmp_path):
    image = images.get(os_name, release)
    result = run_boot_test(image, firmware=firmware, console_log=tmp_path / "console.log")
    assert_serves_trove(result)
    assert result.firmware == firmware
    modules = next(c for c in result.checks if c.name == "cloud-init modules")
    assert modules.ok, modules.detail  # e.g. the locale module failing on an ungenerated locale
    assert_boots_lean(result, os_name, release)


def assert_boots_lean(result, os_name, release):
    """First-boot speed (issue 10), read from the same boot's console: one network stack, and no
    ssh host key type beyond the profile's (RSA under emulation costs seconds)."""
    assert len(result.network_stacks) == 1, f"network stacks started: {result.network_stacks}"
    wanted = load_profile(os_name, release).ssh_host_key_types
    assert result.host_key_types, "cloud-init printed no host key fingerprints"
    assert set(result.host_key_types) <= set(wanted), f"host keys {result.host_key_types}, profile: {wanted}"
    names = [e["name"] for e in result.timeline]
    assert names.index("kernel") < names.index("cloud_init_local") < names.index("first_rpc_ping"), names
    assert {"docker", "agent_unit", "broker_connected"} <= set(names), names


@pytest.fixture(scope="session")
def trove_source(tmp_path_factory):
    """A trove source tree, as a controller's checkout would be (the released sdist)."""
    where = tmp_path_factory.mktemp("trove-src")
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                    "trove==26.0.0", "-d", str(where)], check=True)
    with tarfile.open(next(where.glob("trove-*.tar.gz"))) as tar:
        tar.extractall(where, filter="data")
    tree = where / "trove-26.0.0"
    assert (tree / "contrib/trove-guestagent").is_file()
    return tree


def test_dev_image_syncs_from_the_controller_and_serves_rpc(dev_image, dev_key, trove_source, tmp_path):
    result = run_boot_test(dev_image, controller_source=trove_source, controller_key=dev_key,
                           controller_user="stack", controller_path="/opt/stack/trove",
                           console_log=tmp_path / "console.log")
    assert_serves_trove(result)
    assert result.dev_mode


@pytest.fixture(scope="session")
def broken_agent_image(images, tmp_path_factory):
    hooks = tmp_path_factory.mktemp("hooks")
    (hooks / "post-install.d").mkdir()
    hook = hooks / "post-install.d" / "50-break-the-agent"
    hook.write_text("#!/bin/sh\nset -e\nrm -rf /opt/guest-agent-venv\n")
    hook.chmod(0o755)
    return images.get("debian", "bookworm", False, "--hooks-dir", str(hooks))


def test_image_whose_agent_cannot_start_fails_with_a_clear_reason(broken_agent_image, tmp_path):
    # Ends once the agent unit has failed a few times (read from the console), not at the timeout.
    result = run_boot_test(broken_agent_image, timeout=600, console_log=tmp_path / "console.log")
    assert not result.passed
    checks = {c.name: c for c in result.checks}
    # the guest itself came up (an image that never boots must not pass here): only the agent is missing
    assert checks["login prompt"].ok and checks["cloud-init from config drive"].ok, explain(result)
    assert checks["no emergency/panic"].ok, explain(result)
    assert [name for name, c in checks.items() if not c.ok and c.required] == ["rpc_ping"], explain(result)
    assert result.reason.startswith("guest-agent.service failed 3 times at boot ("), result.reason
    assert result.serial_tail, "a failed boot test shows the end of the console"
