"""Boot the built images under QEMU as Trove would use them: config drive, data disk, RabbitMQ, RPC."""

import subprocess
import sys
import tarfile

import pytest

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


# Both firmwares on the Debian image; one each on the Ubuntu ones (noble: zstd qcow2, bionic: zlib),
# so that every firmware, compression and guest family boots while the suite stays under 45 minutes.
@pytest.mark.parametrize("os_name,release,firmware", [
    ("debian", "bookworm", "bios"), ("debian", "bookworm", "uefi"),
    ("ubuntu", "noble", "uefi"), ("ubuntu", "bionic", "bios"),
])
def test_production_image_boots_and_serves_rpc(images, os_name, release, firmware, tmp_path):
    image = images.get(os_name, release)
    result = run_boot_test(image, firmware=firmware, console_log=tmp_path / "console.log")
    assert_serves_trove(result)
    assert result.firmware == firmware
    modules = next(c for c in result.checks if c.name == "cloud-init modules")
    assert modules.ok, modules.detail  # e.g. the locale module failing on an ungenerated locale


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
    result = run_boot_test(broken_agent_image, timeout=240, console_log=tmp_path / "console.log")
    assert not result.passed
    checks = {c.name: c for c in result.checks}
    # the guest itself came up (an image that never boots must not pass here): only the agent is missing
    assert checks["login prompt"].ok and checks["cloud-init from config drive"].ok, explain(result)
    assert checks["no emergency/panic"].ok, explain(result)
    assert [name for name, c in checks.items() if not c.ok and c.required] == ["rpc_ping"], explain(result)
    assert result.reason.startswith("rpc_ping got no answer"), result.reason
    assert result.serial_tail, "a failed boot test shows the end of the console"
