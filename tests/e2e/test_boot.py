"""Boot the built production images under QEMU as Trove would: config drive, data disk, RabbitMQ, RPC.

Each boot file is its own pytest-xdist unit (--dist loadfile): the boots spread over the workers."""

import pytest

from tests.e2e.boots import boot_production

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # not in `make test`: README, Tests


# One boot per property: noble is the newest Ubuntu under UEFI with a zstd qcow2; bionic, the oldest
# release (systemd 237, Python 3.6), boots in test_boot_oldest_release.py under SeaBIOS with zlib;
# bookworm (Debian) boots in test_boot_prepare.py. Apart, so that two workers boot at once.
def test_production_image_boots_and_serves_rpc(images, tmp_path):
    boot_production(images, "ubuntu", "noble", "uefi", tmp_path)

