"""The newest Debian release (trixie: cloud-init 25.1, systemd-networkd since it stopped rendering
ifupdown's files, which left the NIC at MTU 1500) boots and serves RPC, under SeaBIOS; the boot
test's own checks include the network's MTU from network_data.json."""

import pytest

from tests.e2e.boots import boot_production

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # not in `make test`: README, Tests


def test_trixie_boots_and_serves_rpc(images, tmp_path):
    boot_production(images, "debian", "trixie", "bios", tmp_path)
