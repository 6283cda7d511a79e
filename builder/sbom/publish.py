"""Write an image's two SBOMs beside it, each under a temporary name and then renamed into place.

Made on the host by the CLI once the build has published the image and its manifest (the builder
container has no spdx-tools: Debian does not package it). If making them fails, SBOMs left from an
earlier build of the same output are removed: an SBOM beside an image always describes that image."""

from __future__ import annotations

import json
import os
from pathlib import Path

from builder.sbom import cyclonedx, spdx
from builder.sbom.inventory import from_manifest
from builder.sbom.paths import cyclonedx_path, spdx_path


def _temp(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial-{os.getpid()}")


def write(image: Path, manifest: Path) -> list[Path]:
    """Make both SBOMs of `image` from `manifest`; return their paths."""
    finals = [spdx_path(image), cyclonedx_path(image)]
    done = False
    try:
        inv = from_manifest(json.loads(manifest.read_text()))
        outputs = dict(zip(finals, (spdx.render(inv), cyclonedx.render(inv)), strict=True))
        for final, text in outputs.items():
            _temp(final).write_text(text)
        for final in finals:
            os.replace(_temp(final), final)
        done = True
    finally:
        for final in finals:
            _temp(final).unlink(missing_ok=True)
            if not done:
                final.unlink(missing_ok=True)
    return finals
