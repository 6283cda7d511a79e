"""A preloaded datastore image, prepared as Trove's taskmanager does, runs a database that answers."""

import pytest

from builder.verify import run_boot_test
from builder.verify.prepare import PrepareRequest
from tests.e2e.boots import assert_production_boot, assert_serves_trove

pytestmark = pytest.mark.slow


def test_preloaded_datastore_image_runs_a_database_that_answers_select_1(images, datastore_archive, tmp_path):
    """bookworm/bios production with `make datastore-image`'s archive preloaded: rpc_ping, then prepare
    as the taskmanager casts it, the agent's 'healthy' on the conductor topic, SELECT 1 from the host."""
    image = images.get("debian", "bookworm", False, "--preload-image", str(datastore_archive.path))
    # docker load of the 228 MiB archive runs before the agent starts: ~13 min of TCG at load 12 here
    result = run_boot_test(image, firmware="bios", datastore_version=datastore_archive.tag, timeout=1500,
                           prepare=PrepareRequest(docker_image=datastore_archive.name),
                           console_log=tmp_path / "console.log")
    assert_serves_trove(result)
    assert_production_boot(result, "debian", "bookworm", "bios", tmp_path / "console.log")
    prepare = result.prepare
    assert prepare["select_1"] is not None and "MariaDB" in prepare["server_version"], prepare
    statuses = [status for _, status in prepare["status_history"]]
    assert statuses[-1] == "healthy" and "failed" not in statuses, statuses
    assert prepare["prepare_sent"] < prepare["healthy"] <= prepare["select_1"], prepare
