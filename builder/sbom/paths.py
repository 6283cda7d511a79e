"""Where an image's SBOMs live (no SBOM library needed to name or remove them)."""

from __future__ import annotations

from pathlib import Path


def spdx_path(image: Path) -> Path:
    return image.with_name(image.name + ".spdx.json")


def cyclonedx_path(image: Path) -> Path:
    return image.with_name(image.name + ".cdx.json")
