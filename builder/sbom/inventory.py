"""What an image contains, as the SBOM writers need it, read from the build's manifest.

The manifest already records every dpkg package and every distribution of the agent venv; the SBOMs
are a standard view of that record, so they are made from it (not by scanning the image again) and
are as reproducible as the manifest is. A build with preloaded images lists them in the manifest's
`preload_images` ({"sha256", "repo_tags", "guest_path"} each); they become container components."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from packageurl import PackageURL

# The kernel image package, named after the kernel release it ships (linux-image-6.1.0-28-cloud-amd64).
KERNEL_PACKAGE = re.compile(r"^linux-image-(?:unsigned-)?(\d[^\s]*)$")


@dataclass(frozen=True)
class Item:
    """One thing in the image: a dpkg package, a Python distribution, the kernel or a preloaded image."""

    kind: str                 # deb | pypi | kernel | container
    name: str
    version: str
    purl: PackageURL
    sha256: str | None = None
    properties: tuple[tuple[str, str], ...] = ()

    @property
    def ref(self) -> str:
        """A stable identifier inside one SBOM (purls are unique per image)."""
        return self.purl.to_string()


@dataclass(frozen=True)
class Inventory:
    image_file: str
    image_format: str
    image_sha256: str
    image_bytes: int
    os: str
    release: str
    dev_mode: bool
    created: datetime
    builder_version: str
    builder_image: str | None
    items: list[Item] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.image_file

    @property
    def kernel(self) -> Item | None:
        return next((i for i in self.items if i.kind == "kernel"), None)


def _deb(pkg: dict[str, str], vendor: str, release: str) -> Item:
    purl = PackageURL("deb", vendor, pkg["name"], pkg["version"], {"arch": pkg["arch"], "distro": release})
    return Item("deb", pkg["name"], pkg["version"], purl)


def _pypi(requirement: str) -> Item:
    name, _, version = requirement.partition("==")
    return Item("pypi", name, version, PackageURL("pypi", None, name, version))


def _kernels(packages: list[dict[str, str]], vendor: str) -> list[Item]:
    """The kernel(s) the image boots, from the package that ships each (its version is the build's)."""
    found = []
    for pkg in packages:
        match = KERNEL_PACKAGE.match(pkg["name"])
        if match:
            release = match.group(1)
            found.append(Item("kernel", "linux", release, PackageURL("generic", None, "linux-kernel", release),
                              properties=(("trove-builder:package", pkg["name"]),
                                          ("trove-builder:package-version", pkg["version"]),
                                          ("trove-builder:vendor", vendor))))
    return found


def _container(entry: dict[str, Any]) -> Item:
    tag = (entry.get("repo_tags") or ["unnamed:latest"])[0]
    repo, _, version = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
    namespace, _, name = repo.rpartition("/")
    purl = PackageURL("docker", namespace or None, name, version, {"checksum": f"sha256:{entry['sha256']}"})
    return Item("container", repo, version, purl, sha256=entry["sha256"],
                properties=(("trove-builder:guest-path", entry.get("guest_path", "")),))


def from_manifest(manifest: dict[str, Any]) -> Inventory:
    """The inventory of the image a manifest describes (ValueError if it is not a trove-builder manifest)."""
    try:
        inputs, image, packages = manifest["inputs"], manifest["image"], manifest["packages"]
        vendor, release = inputs["os"], inputs["release"]
        items = [_deb(p, vendor, release) for p in packages]
        items += [_pypi(r) for r in manifest["agent"]["pip_freeze"]]
        items += _kernels(packages, vendor)
        items += [_container(e) for e in manifest.get("preload_images") or []]
        return Inventory(
            image_file=image["file"], image_format=image["format"], image_sha256=image["sha256"],
            image_bytes=image["bytes"], os=vendor, release=release, dev_mode=bool(inputs["dev_mode"]),
            created=datetime.fromtimestamp(int(inputs["source_date_epoch"]), UTC),
            builder_version=manifest["builder"]["version"], builder_image=manifest["builder"].get("image"),
            items=sorted(items, key=lambda i: (i.kind, i.ref)))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a trove-builder manifest (missing {exc})") from None
