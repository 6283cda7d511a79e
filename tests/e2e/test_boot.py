"""Boot the built images under QEMU as Trove would use them: config drive, data disk, RabbitMQ, RPC."""

import subprocess
import sys
import tarfile

import pytest

from builder.verify import run_boot_test
from builder.verify.prepare import PrepareRequest

pytestmark = pytest.mark.slow


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


def assert_production_boot(result, os_name, release, firmware):
    assert result.firmware == firmware
    modules = next(c for c in result.checks if c.name == "cloud-init modules")
    assert modules.ok, modules.detail  # e.g. the locale module failing on an ungenerated locale
    assert_timeline(result, os_name, release)


def assert_timeline(result, os_name, release):
    """The boot timeline (issue 10), read from the same boot's console: the milestones in their order,
    and docker and the agent unit seen starting (the boot test's journal watch)."""
    names = [e["name"] for e in result.timeline]
    assert names.index("kernel") < names.index("cloud_init_local") < names.index("first_rpc_ping"), names
    assert {"docker", "agent_unit"} <= set(names), names


# One boot per release, both firmwares between them (noble under UEFI, the others under SeaBIOS),
# both qcow2 compressions (noble: zstd, bionic: zlib) and both guest families. bookworm/bios boots
# in the prepare test below (the same production boot, prepare added).
@pytest.mark.parametrize("os_name,release,firmware", [
    ("ubuntu", "noble", "uefi"), ("ubuntu", "bionic", "bios"),
])
def test_production_image_boots_and_serves_rpc(images, os_name, release, firmware, tmp_path):
    image = images.get(os_name, release)
    result = run_boot_test(image, firmware=firmware, console_log=tmp_path / "console.log")
    assert_serves_trove(result)
    assert_production_boot(result, os_name, release, firmware)


def test_preloaded_datastore_image_runs_a_database_that_answers_select_1(images, datastore_archive, tmp_path):
    """bookworm/bios production with `make datastore-image`'s archive preloaded: rpc_ping, then prepare
    as the taskmanager casts it, the agent's 'healthy' on the conductor topic, SELECT 1 from the host."""
    image = images.get("debian", "bookworm", False, "--preload-image", str(datastore_archive.path))
    # docker load of the 228 MiB archive runs before the agent starts: ~13 min of TCG at load 12 here
    result = run_boot_test(image, firmware="bios", datastore_version=datastore_archive.tag, timeout=1500,
                           prepare=PrepareRequest(docker_image=datastore_archive.name),
                           console_log=tmp_path / "console.log")
    assert_serves_trove(result)
    assert_production_boot(result, "debian", "bookworm", "bios")
    prepare = result.prepare
    assert prepare["select_1"] is not None and "MariaDB" in prepare["server_version"], prepare
    statuses = [status for _, status in prepare["status_history"]]
    assert statuses[-1] == "healthy" and "failed" not in statuses, statuses
    assert prepare["prepare_sent"] < prepare["healthy"] <= prepare["select_1"], prepare


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
