"""The OpenStack config drive a boot test gives the guest, carrying Trove's injected files.

Trove's taskmanager sends its files as cloud-init user data: one `#cloud-config` document whose
`write_files` entries are base64 with owner `<guest user>:root` (TROVE-GUEST-CONTRACT §3.1, §8).
Nova would serve that through the metadata service or a config drive; without Nova, a config
drive (ISO 9660 + Rock Ridge + Joliet, label `config-2`) is the only data source that needs no
network, and the images list ConfigDrive first.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

CONFIG_DRIVE_LABEL = "config-2"
GUEST_INFO_PATH = "/etc/trove/conf.d/guest_info.conf"
AGENT_CONF_PATH = "/etc/trove/conf.d/trove-guestagent.conf"
CONTROLLER_CONF_PATH = "/etc/trove/controller.conf"
NETWORK_MTU = 1450  # the boot test's Neutron network: VXLAN's MTU, where a guest that kept 1500 loses packets


def ini_text(sections: Mapping[str, Mapping[str, object]]) -> str:
    """INI text the way Trove writes it: `[SECTION]` then `key = value` lines."""
    out = []
    for section, values in sections.items():
        out.append(f"[{section}]")
        out.extend(f"{key} = {value}" for key, value in values.items())
        out.append("")
    return "\n".join(out)


def guest_info_conf(guest_id: str, datastore_manager: str, datastore_version: str, tenant_id: str,
                    *, network_isolation: bool = False, extra: Mapping[str, object] | None = None) -> str:
    """/etc/trove/conf.d/guest_info.conf: who the guest is (no instance_rpc_encr_key: plaintext RPC)."""
    values = {
        "guest_id": guest_id,
        "datastore_manager": datastore_manager,
        "datastore_version": datastore_version,
        "tenant_id": tenant_id,
        "network_isolation": str(bool(network_isolation)),
        **(extra or {}),
    }
    return ini_text({"DEFAULT": values})


def guestagent_conf(transport_url: str, *, control_exchange: str = "trove", debug: bool = True,
                    extra_sections: Mapping[str, Mapping[str, object]] | None = None) -> str:
    """/etc/trove/conf.d/trove-guestagent.conf: where the broker is and where the agent logs."""
    sections: dict[str, dict[str, object]] = {"DEFAULT": {
        "transport_url": transport_url,
        "control_exchange": control_exchange,
        "log_dir": "/var/log/trove/",
        "log_file": "trove-guestagent.log",
        "debug": str(bool(debug)),
    }}
    for name, values in (extra_sections or {}).items():
        sections.setdefault(name, {}).update(values)
    return ini_text(sections)


def controller_conf(controller: str) -> str:
    """/etc/trove/controller.conf for dev-mode images: the address the code is rsynced from."""
    return f"CONTROLLER={controller}\n"


def write_files_entry(path: str, content: str | bytes, owner: str) -> dict:
    data = content.encode() if isinstance(content, str) else content
    return {"encoding": "b64", "owner": owner, "path": path, "content": base64.b64encode(data).decode("ascii")}


def cloud_config_user_data(files: Iterable[tuple[str, str | bytes]], owner: str,
                           extra: Mapping[str, object] | None = None) -> str:
    """`#cloud-config` user data with one b64 write_files entry per (path, content).

    `extra` is merged like Trove merges an operator's `<manager>.cloudinit` template: its
    write_files are appended, other keys are set (e.g. runcmd for smoke checks).
    """
    doc: dict[str, object] = {"write_files": [write_files_entry(p, c, owner) for p, c in files]}
    for key, value in (extra or {}).items():
        if key == "write_files":
            doc["write_files"] = [*doc["write_files"], *value]  # type: ignore[misc]
        else:
            doc[key] = value
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1 << 20)
    return "#cloud-config\n" + body


def trove_user_data(*, guest_id: str, transport_url: str, datastore_manager: str = "mysql",
                    datastore_version: str = "8.4", tenant_id: str = "boot-test-tenant",
                    guest_user: str = "ubuntu", control_exchange: str = "trove",
                    controller: str | None = None,
                    agent_extra_sections: Mapping[str, Mapping[str, object]] | None = None,
                    extra_cloud_config: Mapping[str, object] | None = None) -> str:
    """The user data Trove's taskmanager would send for this guest (plus optional extras)."""
    files: list[tuple[str, str]] = [
        (GUEST_INFO_PATH, guest_info_conf(guest_id, datastore_manager, datastore_version, tenant_id)),
        (AGENT_CONF_PATH, guestagent_conf(transport_url, control_exchange=control_exchange,
                                          extra_sections=agent_extra_sections)),
    ]
    if controller:
        files.append((CONTROLLER_CONF_PATH, controller_conf(controller)))
    return cloud_config_user_data(files, owner=f"{guest_user}:root", extra=extra_cloud_config)


def meta_data(guest_id: str, *, name: str | None = None, hostname: str | None = None,
              availability_zone: str = "nova", launch_index: int = 0,
              public_keys: Mapping[str, str] | None = None) -> dict:
    """openstack/latest/meta_data.json as Nova writes it (the fields cloud-init reads)."""
    name = name or f"trove-boot-test-{guest_id[:8]}"
    data: dict[str, object] = {
        "uuid": guest_id,
        "name": name,
        "hostname": hostname or name,
        "availability_zone": availability_zone,
        "launch_index": launch_index,
        "files": [],
        "meta": {},
    }
    if public_keys:
        data["public_keys"] = dict(public_keys)
    return data


def _iso_name(name: str, is_dir: bool) -> str:
    """An ISO 9660 (level 4) name for `name`; Rock Ridge and Joliet keep the real one."""
    upper = "".join(c if c.isalnum() or c in "._" else "_" for c in name.upper())
    return upper if is_dir else f"{upper};1"


def network_data(mac: str, *, mtu: int = NETWORK_MTU) -> dict:
    """openstack/latest/network_data.json as Nova writes it for one port on a Neutron subnet with
    DHCP (type ipv4_dhcp): the link named by its MAC, with the network's MTU. cloud-init renders the
    guest's network from it, not from its fallback (DHCP on the first NIC at 1500), the path every
    Nova-booted guest takes."""
    link = "tap-boot-test-0"
    return {
        "links": [{"id": link, "vif_id": "boot-test-port-0", "type": "ovs", "mtu": mtu,
                   "ethernet_mac_address": mac}],
        "networks": [{"id": "network0", "type": "ipv4_dhcp", "link": link,
                      "network_id": "boot-test-network-0"}],
        "services": [],
    }


def write_config_drive(path: Path, *, meta: Mapping[str, object], user_data: str | None,
                       network_data: Mapping[str, object] | None = None,
                       vendor_data: Mapping[str, object] | None = None) -> Path:
    """Write the ISO: openstack/latest/{meta_data.json,user_data[,network_data.json,vendor_data.json]}."""
    import pycdlib  # the verify extra; imported here so the module loads without it

    files: dict[str, bytes] = {"meta_data.json": json.dumps(meta, indent=2).encode()}
    if user_data is not None:
        files["user_data"] = user_data.encode()
    if network_data is not None:
        files["network_data.json"] = json.dumps(network_data, indent=2).encode()
    if vendor_data is not None:
        files["vendor_data.json"] = json.dumps(vendor_data, indent=2).encode()

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4, joliet=3, rock_ridge="1.09", vol_ident=CONFIG_DRIVE_LABEL)
    try:
        parts: list[str] = []
        for part in ("openstack", "latest"):
            parts.append(part)
            iso.add_directory("/" + "/".join(_iso_name(p, True) for p in parts), rr_name=part,
                              joliet_path="/" + "/".join(parts))
        iso_dir = "/" + "/".join(_iso_name(p, True) for p in parts)
        for name, data in files.items():
            iso.add_fp(io.BytesIO(data), len(data), f"{iso_dir}/{_iso_name(name, False)}", rr_name=name,
                       joliet_path=f"/openstack/latest/{name}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        iso.write(str(path))
    finally:
        iso.close()
    return path
