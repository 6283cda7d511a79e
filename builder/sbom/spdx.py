"""The SPDX 2.3 document of an image (spdx-tools builds, validates and serializes it).

Reproducible: the creation time is SOURCE_DATE_EPOCH and the namespace is derived from the image's
sha256, so the same image gives the same bytes."""

from __future__ import annotations

import hashlib
import io
import re

from spdx_tools.spdx.model import (
    Actor,
    ActorType,
    Checksum,
    ChecksumAlgorithm,
    CreationInfo,
    Document,
    ExternalPackageRef,
    ExternalPackageRefCategory,
    Package,
    PackagePurpose,
    Relationship,
    RelationshipType,
    SpdxNoAssertion,
)
from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream

from builder.sbom.inventory import Inventory, Item

IMAGE_ID = "SPDXRef-Image"
NAMESPACE = "https://trove-builder.invalid/spdx"   # .invalid: no one can own it; the sha256 makes it unique
PURPOSE = {"deb": PackagePurpose.LIBRARY, "pypi": PackagePurpose.LIBRARY,
           "kernel": PackagePurpose.OPERATING_SYSTEM, "container": PackagePurpose.CONTAINER}


def spdx_id(item: Item) -> str:
    """SPDXRef-<kind>-<name>-<hash>: names may hold characters SPDX ids cannot ('+', ':', '_')."""
    safe = re.sub(r"[^A-Za-z0-9.-]", "-", item.name)
    return f"SPDXRef-{item.kind}-{safe}-{hashlib.sha256(item.ref.encode()).hexdigest()[:10]}"


def _package(item: Item) -> Package:
    return Package(
        spdx_id=spdx_id(item), name=item.name, version=item.version, download_location=SpdxNoAssertion(),
        files_analyzed=False, primary_package_purpose=PURPOSE[item.kind],
        checksums=[Checksum(ChecksumAlgorithm.SHA256, item.sha256)] if item.sha256 else [],
        external_references=[ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", item.ref)])


def document(inv: Inventory) -> Document:
    image = Package(
        spdx_id=IMAGE_ID, name=inv.image_file, file_name=f"./{inv.image_file}", version=inv.image_sha256,
        download_location=SpdxNoAssertion(), files_analyzed=False,
        primary_package_purpose=PackagePurpose.OPERATING_SYSTEM,
        checksums=[Checksum(ChecksumAlgorithm.SHA256, inv.image_sha256)],
        summary=f"Trove guest image, {inv.os} {inv.release}{' (dev mode)' if inv.dev_mode else ''}, "
                f"{inv.image_format}")
    creators = [Actor(ActorType.TOOL, f"trove-builder-{inv.builder_version}")]
    info = CreationInfo(
        spdx_version="SPDX-2.3", spdx_id="SPDXRef-DOCUMENT", name=inv.image_file,
        document_namespace=f"{NAMESPACE}/{inv.image_file}-{inv.image_sha256}", creators=creators,
        created=inv.created,
        creator_comment=f"builder image {inv.builder_image}" if inv.builder_image else None)
    packages = [image] + [_package(i) for i in inv.items]
    relationships = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, IMAGE_ID)]
    relationships += [Relationship(IMAGE_ID, RelationshipType.CONTAINS, spdx_id(i)) for i in inv.items]
    kernel = inv.kernel
    if kernel is not None:  # the kernel is shipped by its dpkg package
        shipped_by = dict(kernel.properties)["trove-builder:package"]
        for item in inv.items:
            if item.kind == "deb" and item.name == shipped_by:
                relationships.append(Relationship(spdx_id(item), RelationshipType.CONTAINS, spdx_id(kernel)))
    return Document(creation_info=info, packages=packages, relationships=relationships)


def render(inv: Inventory) -> str:
    """The document as SPDX JSON, validated first (ValueError with the validator's messages if invalid)."""
    out = io.StringIO()
    write_document_to_stream(document(inv), out, validate=True)
    return out.getvalue() + "\n"
