"""The oldest supported release (bionic: systemd 237, Python 3.6) boots and serves RPC, under SeaBIOS."""

import pytest

from tests.e2e.boots import boot_production

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # not in `make test`: README, Tests


def test_bionic_boots_and_serves_rpc(images, tmp_path):
    boot_production(images, "ubuntu", "bionic", "bios", tmp_path)
