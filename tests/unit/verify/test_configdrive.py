"""The config drive and its user data are what Trove's taskmanager would send (contract §3.1, §8)."""

from __future__ import annotations

import base64
import json

import pycdlib
import yaml

from builder.verify import configdrive as cd
from tests.helpers import decode_user_data, parse_ini, read_config_drive

GUEST_ID = "0f0e0d0c-1111-2222-3333-444455556666"
URL = "rabbit://trove:s3cret@10.0.2.2:45678/"


def _user_data(**kw) -> str:
    args = dict(guest_id=GUEST_ID, transport_url=URL, datastore_manager="mysql", datastore_version="8.4",
                tenant_id="t1", guest_user="ubuntu")
    args.update(kw)
    return cd.trove_user_data(**args)


def test_user_data_is_one_cloud_config_document_with_b64_write_files():
    text = _user_data()
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert set(doc) == {"write_files"}
    paths = [e["path"] for e in doc["write_files"]]
    assert paths == [cd.GUEST_INFO_PATH, cd.AGENT_CONF_PATH]
    for entry in doc["write_files"]:
        assert entry["encoding"] == "b64"
        assert entry["owner"] == "ubuntu:root"
        base64.b64decode(entry["content"], validate=True)


def test_guest_info_conf_content():
    files = decode_user_data(_user_data())
    ini = parse_ini(files[cd.GUEST_INFO_PATH])
    assert dict(ini["DEFAULT"]) == {
        "guest_id": GUEST_ID, "datastore_manager": "mysql", "datastore_version": "8.4",
        "tenant_id": "t1", "network_isolation": "False"}
    assert "instance_rpc_encr_key" not in ini["DEFAULT"]  # plaintext RPC


def test_guestagent_conf_content():
    files = decode_user_data(_user_data())
    ini = parse_ini(files[cd.AGENT_CONF_PATH])
    assert dict(ini["DEFAULT"]) == {
        "transport_url": URL, "control_exchange": "trove", "log_dir": "/var/log/trove/",
        "log_file": "trove-guestagent.log", "debug": "True"}


def test_guest_user_sets_the_owner():
    doc = yaml.safe_load(_user_data(guest_user="debian"))
    assert {e["owner"] for e in doc["write_files"]} == {"debian:root"}


def test_controller_conf_only_in_dev_mode():
    assert cd.CONTROLLER_CONF_PATH not in decode_user_data(_user_data())
    files = decode_user_data(_user_data(controller="10.0.2.100"))
    assert files[cd.CONTROLLER_CONF_PATH] == "CONTROLLER=10.0.2.100\n"


def test_extra_cloud_config_merges_like_trove_templates():
    extra = {"runcmd": [["touch", "/tmp/smoke"]],
             "write_files": [{"path": "/etc/extra", "content": "x"}]}
    doc = yaml.safe_load(_user_data(extra_cloud_config=extra))
    assert doc["runcmd"] == [["touch", "/tmp/smoke"]]
    assert [e["path"] for e in doc["write_files"]] == [cd.GUEST_INFO_PATH, cd.AGENT_CONF_PATH, "/etc/extra"]


def test_agent_extra_sections():
    files = decode_user_data(_user_data(agent_extra_sections={"mysql": {"docker_image": "mysql"}}))
    assert parse_ini(files[cd.AGENT_CONF_PATH])["mysql"]["docker_image"] == "mysql"


def test_meta_data_fields():
    meta = cd.meta_data(GUEST_ID)
    assert meta["uuid"] == GUEST_ID
    for key in ("name", "hostname", "availability_zone", "launch_index"):
        assert key in meta
    assert meta["launch_index"] == 0


def test_iso_label_and_paths(tmp_path):
    ud = _user_data()
    meta = cd.meta_data(GUEST_ID)
    net = {"links": [], "networks": [], "services": []}
    iso = cd.write_config_drive(tmp_path / "cd.iso", meta=meta, user_data=ud, network_data=net)
    label, files = read_config_drive(iso)
    assert label == "config-2"
    assert set(files) == {"/openstack/latest/meta_data.json", "/openstack/latest/user_data",
                          "/openstack/latest/network_data.json"}
    assert json.loads(files["/openstack/latest/meta_data.json"]) == meta
    assert files["/openstack/latest/user_data"].decode() == ud
    assert json.loads(files["/openstack/latest/network_data.json"]) == net


def test_iso_has_rock_ridge_and_joliet(tmp_path):
    iso_path = cd.write_config_drive(tmp_path / "cd.iso", meta=cd.meta_data(GUEST_ID), user_data=_user_data())
    iso = pycdlib.PyCdlib()
    iso.open(str(iso_path))
    try:
        assert iso.has_rock_ridge()
        assert iso.has_joliet()
        joliet = {p for d, _, names in iso.walk(joliet_path="/") for p in (f"{d.rstrip('/')}/{n}" for n in names)}
        assert "/openstack/latest/user_data" in joliet
    finally:
        iso.close()


def test_network_data_is_optional(tmp_path):
    _, files = read_config_drive(cd.write_config_drive(tmp_path / "cd.iso", meta=cd.meta_data(GUEST_ID),
                                                          user_data=_user_data()))
    assert "/openstack/latest/network_data.json" not in files


def test_network_data_names_the_link_by_mac_with_the_network_mtu_as_nova_does():
    net = cd.network_data("fa:16:3e:00:00:01")
    (link,) = net["links"]
    (network,) = net["networks"]
    assert link["ethernet_mac_address"] == "fa:16:3e:00:00:01" and link["mtu"] == cd.NETWORK_MTU != 1500
    # a Neutron subnet with DHCP (Nova writes ipv4_dhcp then), on that link
    assert network["type"] == "ipv4_dhcp" and network["link"] == link["id"]
    assert cd.network_data("fa:16:3e:00:00:02", mtu=9000)["links"][0]["mtu"] == 9000
