"""Guest OS knowledge, kept as YAML data: one file per release, merged over family and common defaults."""

from __future__ import annotations

import functools
from dataclasses import MISSING, dataclass, field, fields
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import yaml

from builder.errors import UsageError

PROFILE_DIR = resources.files("builder") / "profiles"
CLOUD_INIT_STAGE_RUNNERS = ("per-stage", "all-stages", "fork-server")


def _load(path: Traversable) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Overlay `override` on `base`; `key_add`/`key_remove` lists edit an inherited list."""
    merged = dict(base)
    for key, value in override.items():
        if key.endswith("_add"):
            target = key[: -len("_add")]
            merged[target] = list(merged.get(target, [])) + [v for v in value if v not in merged.get(target, [])]
        elif key.endswith("_remove"):
            target = key[: -len("_remove")]
            merged[target] = [v for v in merged.get(target, []) if v not in value]
        else:
            merged[key] = value
    return merged


def available() -> dict[str, list[str]]:
    """OS name -> releases this version of trove-builder knows."""
    found: dict[str, list[str]] = {}
    for os_dir in sorted(PROFILE_DIR.iterdir(), key=lambda p: p.name):
        if os_dir.is_dir():
            found[os_dir.name] = sorted(
                p.name[: -len(".yaml")]
                for p in os_dir.iterdir()
                if p.name.endswith(".yaml") and not p.name.startswith("_")
            )
    return found


@dataclass(frozen=True)
class Profile:
    """Everything the pipeline needs to know about one guest OS release (a key it does not know is an error)."""

    os: str
    release: str
    data: dict[str, Any] = field(repr=False)  # the merged YAML: the templates' context, a cache-key input
    os_name: str  # for humans: "Debian GNU/Linux", "Ubuntu"
    version_id: str  # os-release VERSION_ID, "24.04", "12": the image's os_version in Glance
    python: str  # the guest's python3, "3.11"
    agent_version: str  # default Trove release of the guest agent
    mirror: str
    security_mirror: str
    suites: list[str]  # apt suites, {release} filled in
    security_suite: str
    components: list[str]
    keyring: str
    arch: str
    variant: str
    bootstrap_tool: str
    kernel_package: str
    kernel_cmdline: str
    hostname: str
    locale: str  # the guest's LANG (cloud-init's `locale`; set by the build, see builder/guest/firstboot.py)
    packages: list[str]
    build_packages: list[str]  # compilers and headers for requirements without a wheel (purged again)
    docker_package: str
    qcow2_compression: str
    ext4_disable_features: list[str]
    initramfs_repack: bool
    recompile_pyc: bool
    remove_unreproducible: list[str]
    space_mib: dict[str, int]  # free space a build needs, by place
    ssh_host_key_types: list[str]  # generated at first boot (cloud-init, else the ssh drop-in)
    kernel_module_blacklist: list[str]  # not loaded by alias at boot (/etc/modprobe.d, initramfs too)
    network_renderer: str  # cloud-init's one network renderer (eni: ifupdown; netplan, networkd: systemd-networkd)
    boot_enabled_units: list[str]  # the rendered stack's units, where nothing else enables them
    boot_disabled_units: list[str]  # the other stacks' units, masked at build
    cloud_init_modules: list[str]  # cloud-init's module lists: only what a Trove guest uses
    cloud_config_modules: list[str]
    cloud_final_modules: list[str]
    cloud_init_stage_runner: str  # per-stage, all-stages (cloud-init >= 24.3) or fork-server (see _common.yaml)
    docker_daemon_config: dict[str, Any]  # /etc/docker/daemon.json (empty: not written)
    agent_import_cpu_weight: int  # guest-agent.service's CPUWeight= until its config is ready
    agent_cpu_weight: int  # ... and from then on (set by guest-agent-setup.service)
    pip_bootstrap: str = "pip"  # the requirement pip upgrades itself to before installing the agent

    @classmethod
    def from_data(cls, os_name: str, release: str, data: dict[str, Any]) -> Profile:
        known = {f.name for f in fields(cls)} - {"os", "release", "data"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"profile {os_name}/{release}: unknown key(s) {', '.join(unknown)}")
        missing = sorted(f.name for f in fields(cls) if f.name in known and f.name not in data
                         and f.default is MISSING)
        if missing:
            raise UsageError(f"profile {os_name}/{release}: missing key(s) {', '.join(missing)}")
        if data["cloud_init_stage_runner"] not in CLOUD_INIT_STAGE_RUNNERS:
            raise UsageError(f"profile {os_name}/{release}: cloud_init_stage_runner "
                             f"'{data['cloud_init_stage_runner']}' (known: {', '.join(CLOUD_INIT_STAGE_RUNNERS)})")
        values = dict(data)
        values["suites"] = [s.format(release=release) for s in data["suites"]]
        values["security_suite"] = data["security_suite"].format(release=release)
        return cls(os=os_name, release=release, data=data, **values)

    @property
    def python_version(self) -> tuple[int, int]:
        major, minor = self.python.split(".")[:2]
        return int(major), int(minor)


@functools.cache
def load(os_name: str, release: str) -> Profile:
    """Load and merge the profile for `os_name`/`release`, or fail with the known choices.

    Once per process: every derived ID and template asks for it."""
    known = available()
    if os_name not in known:
        raise UsageError(f"unknown guest OS '{os_name}' (known: {', '.join(known)})")
    if release not in known[os_name]:
        raise UsageError(
            f"unknown {os_name} release '{release}' (known: {', '.join(known[os_name])})"
        )
    data = _load(PROFILE_DIR / "_common.yaml")
    data = _merge(data, _load(PROFILE_DIR / os_name / "_family.yaml"))
    data = _merge(data, _load(PROFILE_DIR / os_name / f"{release}.yaml"))
    return Profile.from_data(os_name, release, data)
