"""The CycloneDX 1.6 BOM of an image (cyclonedx-python-lib builds and serializes it).

Reproducible: the timestamp is SOURCE_DATE_EPOCH and the serial number is a UUID made from the
image's sha256, so the same image gives the same bytes."""

from __future__ import annotations

import uuid

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6

from builder.sbom.inventory import Inventory, Item

TYPE = {"deb": ComponentType.LIBRARY, "pypi": ComponentType.LIBRARY,
        "kernel": ComponentType.OPERATING_SYSTEM, "container": ComponentType.CONTAINER}


def serial_number(inv: Inventory) -> uuid.UUID:
    """A version-5-shaped UUID from the image's sha256: one image, one serial number."""
    return uuid.UUID(bytes=bytes.fromhex(inv.image_sha256)[:16], version=5)


def _component(item: Item) -> Component:
    return Component(
        name=item.name, version=item.version, type=TYPE[item.kind], purl=item.purl, bom_ref=item.ref,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=item.sha256)] if item.sha256 else [],
        properties=[Property(name=k, value=v) for k, v in item.properties])


def bom(inv: Inventory) -> Bom:
    image = Component(
        name=inv.image_file, version=inv.image_sha256, type=ComponentType.FILE, bom_ref="image",
        description=f"Trove guest image, {inv.os} {inv.release}{' (dev mode)' if inv.dev_mode else ''}, "
                    f"{inv.image_format}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=inv.image_sha256)],
        properties=[Property(name="trove-builder:version", value=inv.builder_version)]
        + ([Property(name="trove-builder:builder-image", value=inv.builder_image)] if inv.builder_image else []))
    components = {item.ref: _component(item) for item in inv.items}
    result = Bom(serial_number=serial_number(inv), version=1, components=components.values(),
                 metadata=BomMetaData(timestamp=inv.created, component=image))
    result.register_dependency(image, components.values())
    kernel = inv.kernel
    if kernel is not None:  # the kernel is shipped by its dpkg package
        shipped_by = dict(kernel.properties)["trove-builder:package"]
        for item in inv.items:
            if item.kind == "deb" and item.name == shipped_by:
                result.register_dependency(components[item.ref], [components[kernel.ref]])
    return result


def render(inv: Inventory) -> str:
    return JsonV1Dot6(bom(inv)).output_as_string(indent=2) + "\n"
