"""Supply chain, for real: the builder image from its lock is the same image on a second, cold build
(other TZ, other work dir); the session's bookworm image has valid SBOMs that name it; a lock made
with another builder image is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import docker
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from builder.sbom import paths, publish
from builder.spec import default_cache_dir
from tests.conftest import REPO, run_tb
from tests.integration.test_cli_errors import LOCK, assert_one_line_error

pytestmark = pytest.mark.slow


def build_builder(tmp: Path, tz: str, *extra: str) -> str:
    """python -m builder.builderimage build (what `make builder` runs); the image ID it prints."""
    tmp.mkdir()
    cache = os.environ.get("TROVE_BUILDER_CACHE") or str(default_cache_dir())
    result = subprocess.run([sys.executable, "-m", "builder.builderimage", "build", "--cache-dir", cache, *extra],
                            cwd=REPO, capture_output=True, text=True, timeout=1800,
                            env={**os.environ, "TZ": tz, "TMPDIR": str(tmp)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout.split()[-1]


def test_the_builder_image_from_its_lock_is_the_same_image_twice(tmp_path):
    tag = f"trove-builder:lock-test-{os.getpid()}"
    first = build_builder(tmp_path / "a", "UTC", "--tag", tag)
    try:
        loaded = docker.from_env().images.get(tag).id
        assert loaded == first
        shown = run_tb("version", "--builder-image", tag, check=True).stdout
        assert first in shown and "from builder lock sha256:" in shown
    finally:
        try:
            docker.from_env().images.remove(tag)
        except docker.errors.ImageNotFound:
            pass
    # another day's build elsewhere: nothing reused but the downloaded .debs, another TZ and work dir
    second = build_builder(tmp_path / "b", "Asia/Tokyo", "--no-load", "--archive", str(tmp_path / "b.tar"))
    assert second == first, "two builds of the builder image from the same lock differ"


def test_the_session_image_has_valid_sboms_that_name_it(images, tmp_path):
    image = images.get("debian", "bookworm")
    digest = (image.parent / (image.name + ".sha256")).read_text().split()[0]
    spdx_file, cdx_file = paths.spdx_path(image), paths.cyclonedx_path(image)
    assert validate_full_spdx_document(parse_file(str(spdx_file))) == []
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(cdx_file.read_text()) is None
    spdx_doc, cdx = json.loads(spdx_file.read_text()), json.loads(cdx_file.read_text())
    [described] = [p for p in spdx_doc["packages"] if p["SPDXID"] == "SPDXRef-Image"]
    assert described["checksums"] == [{"algorithm": "SHA256", "checksumValue": digest}]
    assert cdx["metadata"]["component"]["hashes"] == [{"alg": "SHA-256", "content": digest}]
    manifest = json.loads((image.parent / (image.name + ".manifest.json")).read_text())
    assert manifest["builder"]["image"].startswith("sha256:")
    assert len(cdx["components"]) >= len(manifest["packages"]) + len(manifest["agent"]["pip_freeze"]) + 1
    # made again from the manifest, elsewhere: the same bytes
    copied = tmp_path / (image.name + ".manifest.json")
    copied.write_bytes((image.parent / copied.name).read_bytes())
    again = publish.write(tmp_path / image.name, copied)
    assert [p.read_bytes() for p in again] == [spdx_file.read_bytes(), cdx_file.read_bytes()]


def test_a_lock_made_with_another_builder_image_is_refused(builder_image, tmp_path):
    lock = tmp_path / "guest.lock.json"
    data = json.loads(LOCK.replace("SHA", "a" * 64))
    data["builder_image"] = "sha256:" + "0" * 64
    lock.write_text(json.dumps(data))
    out = tmp_path / "x.qcow2"
    result = run_tb("build", "--lock", str(lock), "-o", str(out), "--builder-image", builder_image)
    assert_one_line_error(result, 1, "was made with builder image sha256:000")
    assert "--allow-other-builder" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["guest.lock.json"]
