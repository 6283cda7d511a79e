"""What registering an image means, decided from the request and the build manifest alone (no cloud).

The plan is the single source for the real run, --dry-run and --emit trove-manage, so the three
cannot disagree about names, properties, tags or parameters.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import UsageError
from builder.register.rules import Parameter, find_rules, load_rules

# The managers Trove's guest agent implements (trove/common/constants.py REGISTRY_EXT_DEFAULTS, 2026.2);
# trove-api itself accepts any name and fails later, when an instance of it is created.
KNOWN_MANAGERS = ("mysql", "mariadb", "postgresql")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Image properties the builder owns; the sha256 one also finds an earlier upload of the same bytes.
SHA256_PROPERTY = "trove_builder_sha256"


@dataclass(frozen=True)
class Request:
    """What the operator asked for on the command line."""

    image: Path
    datastore: str
    version: str
    manager: str | None = None
    version_number: str | None = None
    name: str | None = None
    default: bool = False
    image_tags: tuple[str, ...] = ()
    rules: Path | None = None


@dataclass(frozen=True)
class Plan:
    """Everything the cloud should hold once registration is done."""

    image: Path
    image_name: str
    sha256: str
    disk_format: str
    min_disk_gb: int
    properties: dict[str, str]
    tags: tuple[str, ...]
    datastore: str
    version: str
    version_number: str
    manager: str
    by_tags: tuple[str, ...]  # non-empty: Trove picks the newest active image carrying all of these
    default: bool
    rules: Path
    parameters: tuple[Parameter, ...] = field(repr=False)
    packages: str = ""
    active: bool = True

    @property
    def api_parameters(self) -> tuple[Parameter, ...]:
        return tuple(p for p in self.parameters if p.api_loadable)

    @property
    def manage_only_parameters(self) -> tuple[Parameter, ...]:
        """Booleans, floats, integers without both bounds: Trove's API refuses them; trove-manage does not."""
        return tuple(p for p in self.parameters if not p.api_loadable)

    def trove_manage_load(self) -> str:
        return shlex.join(["trove-manage", "db_load_datastore_config_parameters", self.datastore, self.version,
                           str(self.rules), "--version", self.version_number])


def manifest_of(image: Path) -> dict:
    path = image.with_name(image.name + ".manifest.json")
    if not image.is_file():
        raise UsageError(f"no image at {image}")
    if not path.is_file():
        raise UsageError(f"no build manifest beside the image ({path.name}): register images built by trove-builder")
    try:
        manifest = json.loads(path.read_text())
        manifest["image"]["sha256"], manifest["inputs"]["os"]  # noqa: B018 - the keys a plan needs
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path} is not a trove-builder manifest ({exc})") from None
    return manifest


def _check_name(label: str, value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise UsageError(f"{label} '{value}' must be letters, digits, '.', '_' or '-'")
    return value


def _os_version(os_name: str, release: str) -> str | None:
    from builder import profile  # data only: the release's version number (24.04, 12)

    try:
        return str(profile.load(os_name, release).version_id)
    except Exception:  # an image of a release this checkout no longer knows: the codename still says it
        return None


def image_properties(manifest: dict) -> dict[str, str]:
    """The Glance properties Trove and operators look for, plus the build's provenance."""
    inputs = manifest["inputs"]
    props = {
        "hw_rng_model": "virtio",
        "os_type": "linux",
        "os_distro": inputs["os"],
        "os_release": inputs["release"],
        "trove_agent_version": str(inputs.get("agent_version") or manifest.get("agent", {}).get("version")),
        "trove_builder_version": str(manifest.get("builder", {}).get("version", "")),
        "trove_guest_dev_mode": str(bool(inputs.get("dev_mode"))).lower(),
        SHA256_PROPERTY: manifest["image"]["sha256"],
    }
    version = _os_version(inputs["os"], inputs["release"])
    if version:
        props["os_version"] = version
    return props


def make_plan(request: Request) -> Plan:
    """Check the request against the manifest and the rules file; raise UsageError with one line."""
    datastore = _check_name("datastore", request.datastore)
    version = _check_name("version", request.version)
    manager = request.manager or datastore
    if manager not in KNOWN_MANAGERS:
        raise UsageError(f"unknown datastore manager '{manager}' (Trove knows {', '.join(KNOWN_MANAGERS)}); "
                         f"pass --manager for a datastore named otherwise")
    for tag in request.image_tags:
        _check_name("image tag", tag)
    manifest = manifest_of(request.image)
    rules = find_rules(manager, request.rules)
    image = manifest["image"]
    disk_format = image.get("format", "qcow2")
    virtual_size = int(image.get("virtual_size") or 0)
    tags = tuple(dict.fromkeys(("trove", datastore, *request.image_tags)))
    return Plan(
        image=request.image,
        image_name=_check_name("image name", request.name or request.image.name.rsplit(".", 1)[0]),
        sha256=image["sha256"],
        disk_format=disk_format,
        min_disk_gb=math.ceil(virtual_size / 2**30),
        properties=image_properties(manifest),
        tags=tags,
        datastore=datastore,
        version=version,
        version_number=request.version_number or version,
        manager=manager,
        by_tags=tuple(dict.fromkeys(("trove", *request.image_tags))) if request.image_tags else (),
        default=request.default,
        rules=rules,
        parameters=tuple(load_rules(rules)),
    )


def describe(plan: Plan) -> list[str]:
    """--dry-run: every call a real run would make, in order (the ones in brackets only when needed)."""
    props = " ".join(f"{k}={v}" for k, v in sorted(plan.properties.items()))
    image_ref = f"image tags {','.join(plan.by_tags)}" if plan.by_tags else "image <the Glance image's ID>"
    lines = [
        f"glance: list images tagged 'trove' with {SHA256_PROPERTY}={plan.sha256} (an earlier upload is reused)",
        f"glance: [create image '{plan.image_name}' disk_format={plan.disk_format} container_format=bare "
        f"visibility=private min_disk={plan.min_disk_gb} tags={','.join(plan.tags)} {props}]",
        f"glance: [upload {plan.image} and compare its hash with Glance's os_hash_value]",
        "glance: [set missing tags/properties on the reused image]",
        f"trove: list datastore versions of '{plan.datastore}' (management API)",
        f"trove: [create or update version '{plan.version}' of datastore '{plan.datastore}': manager={plan.manager} "
        f"{image_ref} version_number={plan.version_number} packages='{plan.packages}' active=true"
        f"{' default=true' if plan.default else ''}]",
        f"trove: list configuration parameters of the version; [create/update the ones that differ from "
        f"the {len(plan.api_parameters)} the API accepts in {plan.rules}]",
    ]
    if plan.manage_only_parameters:
        lines.append(manage_only_note(plan))
    return lines


def manage_only_note(plan: Plan) -> str:
    return (f"note: {len(plan.manage_only_parameters)} of {len(plan.parameters)} configuration parameters cannot "
            f"go through Trove's API (it takes strings and integers with min and max only, not booleans, floats "
            f"or open-ended integers); load all of them on the controller with: {plan.trove_manage_load()}")
