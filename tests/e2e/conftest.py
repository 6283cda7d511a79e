"""The datastore image the prepare boot preloads: `make datastore-image`'s archive, made once and kept.

The archive is reproducible (same recipe, same Debian packages -> same bytes), so it is cached under
~/.cache/trove-builder/datastore-images/<key>/, keyed by everything that decides its bytes: the recipe,
the script and archive writer, mmdebstrap's version, SOURCE_DATE_EPOCH and the suite's InRelease (which
changes when the archive's packages do). A new key is a new archive (~3 min of mmdebstrap, once).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from builder.spec import default_cache_dir
from tests.conftest import REPO

RECIPE = REPO / "containerfiles" / "datastore" / "mariadb"
SCRIPT = REPO / "scripts" / "make-datastore-image.py"


@dataclass(frozen=True)
class DatastoreArchive:
    path: Path
    name: str  # the image name the agent's docker_image option names
    tag: str   # the datastore version prepare is cast with

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}"


def _inputs_key(image: dict) -> str:
    digest = hashlib.sha256()
    for path in [*sorted(RECIPE.iterdir()), SCRIPT, REPO / "builder" / "preload" / "archive.py"]:
        digest.update(f"{path.relative_to(REPO)}\0".encode() + path.read_bytes())
    with urllib.request.urlopen(f"{image['mirror']}/dists/{image['suite']}/InRelease", timeout=60) as resp:
        digest.update(resp.read())
    version = subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True, check=True).stdout
    digest.update(f"{version}\0{os.environ.get('SOURCE_DATE_EPOCH', '')}".encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def datastore_archive() -> DatastoreArchive:
    image = yaml.safe_load((RECIPE / "image.yaml").read_text())
    out = (default_cache_dir() / "datastore-images" / _inputs_key(image)
           / f"trove-builder-mariadb-{image['tag']}.tar")
    if not out.is_file():  # the script writes beside it and renames: a file here is a whole archive
        out.parent.mkdir(parents=True, exist_ok=True)
        made = subprocess.run([sys.executable, str(SCRIPT), str(RECIPE), str(out)],
                              capture_output=True, text=True, timeout=1800)
        assert made.returncode == 0, f"make-datastore-image failed:\n{made.stdout[-2000:]}\n{made.stderr[-3000:]}"
    return DatastoreArchive(out, image["name"], str(image["tag"]))
