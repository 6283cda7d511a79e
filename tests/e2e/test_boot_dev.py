"""A dev image syncs the agent's code from the controller at boot and serves RPC."""

import subprocess
import sys
import tarfile

import pytest

from builder.verify import run_boot_test
from tests.e2e.boots import BOOT_TIMEOUT, assert_serves_trove

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # not in `make test`: README, Tests


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
                           timeout=BOOT_TIMEOUT, console_log=tmp_path / "console.log")
    assert_serves_trove(result)
    assert result.dev_mode
