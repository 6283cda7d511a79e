"""SBOMs from a real build's manifest: valid under the SPDX and CycloneDX validators, complete
(every dpkg package, every venv distribution, the kernel, the image's sha256), byte-identical
when made again, and written atomically."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from builder.sbom import cyclonedx, paths, publish, spdx
from builder.sbom.inventory import from_manifest

# The manifest of a bookworm build (trove-builder build debian bookworm, production mode).
MANIFEST = Path(__file__).parent / "data" / "trove-guest-debian-bookworm.qcow2.manifest.json"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(MANIFEST.read_text())


@pytest.fixture(scope="module")
def written(manifest, tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("sbom")
    image = out / manifest["image"]["file"]
    (out / MANIFEST.name).write_text(MANIFEST.read_text())
    spdx_file, cdx_file = publish.write(image, out / MANIFEST.name)
    return spdx_file, cdx_file


def spdx_errors(path: Path) -> list[str]:
    return [e.validation_message for e in validate_full_spdx_document(parse_file(str(path)))]


def cdx_errors(text: str):
    return JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)


def purls_in_cdx(doc: dict) -> set[str]:
    return {c["purl"] for c in doc["components"]}


def test_both_sboms_validate(written):
    spdx_file, cdx_file = written
    assert spdx_file.name.endswith(".qcow2.spdx.json") and cdx_file.name.endswith(".qcow2.cdx.json")
    assert spdx_errors(spdx_file) == []
    assert cdx_errors(cdx_file.read_text()) is None
    assert json.loads(spdx_file.read_text())["spdxVersion"] == "SPDX-2.3"
    assert json.loads(cdx_file.read_text())["specVersion"] == "1.6"


def test_the_validators_reject_broken_documents(written):
    """The checks above can fail: a component without a name, a relationship to nothing."""
    spdx_file, cdx_file = written
    doc = json.loads(cdx_file.read_text())
    del doc["components"][0]["name"]
    assert cdx_errors(json.dumps(doc)) is not None
    broken = json.loads(spdx_file.read_text())
    broken["relationships"].append({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS",
                                    "relatedSpdxElement": "SPDXRef-nothing"})
    path = spdx_file.with_name("broken.spdx.json")
    path.write_text(json.dumps(broken))
    assert any("SPDXRef-nothing" in e for e in spdx_errors(path))


def test_every_package_distribution_and_the_kernel_is_listed(manifest, written):
    spdx_file, cdx_file = written
    vendor, release = manifest["inputs"]["os"], manifest["inputs"]["release"]
    debs = {PackageURL("deb", vendor, p["name"], p["version"], {"arch": p["arch"], "distro": release}).to_string()
            for p in manifest["packages"]}
    pypi = {PackageURL("pypi", None, *r.split("==")).to_string() for r in manifest["agent"]["pip_freeze"]}
    assert len(debs) > 200 and any(p.startswith("pkg:pypi/trove@") for p in pypi)
    cdx = json.loads(cdx_file.read_text())
    listed = purls_in_cdx(cdx)
    assert debs <= listed and pypi <= listed
    [kernel] = [c for c in cdx["components"] if c["purl"].startswith("pkg:generic/linux-kernel@")]
    assert any(p["name"] == f"linux-image-{kernel['version']}" for p in manifest["packages"])
    spdx_doc = json.loads(spdx_file.read_text())
    spdx_purls = {r["referenceLocator"] for p in spdx_doc["packages"] for r in p.get("externalRefs", [])}
    assert spdx_purls == listed


def test_the_image_and_its_sha256_are_what_the_sboms_describe(manifest, written):
    spdx_file, cdx_file = written
    digest = manifest["image"]["sha256"]
    spdx_doc = json.loads(spdx_file.read_text())
    [image] = [p for p in spdx_doc["packages"] if p["SPDXID"] == "SPDXRef-Image"]
    assert image["checksums"] == [{"algorithm": "SHA256", "checksumValue": digest}]
    assert spdx_doc.get("documentDescribes") == ["SPDXRef-Image"] or any(
        r["relationshipType"] == "DESCRIBES" and r["relatedSpdxElement"] == "SPDXRef-Image"
        for r in spdx_doc["relationships"])
    contained = {r["relatedSpdxElement"] for r in spdx_doc["relationships"]
                 if r["spdxElementId"] == "SPDXRef-Image" and r["relationshipType"] == "CONTAINS"}
    assert contained == {p["SPDXID"] for p in spdx_doc["packages"]} - {"SPDXRef-Image"}
    cdx = json.loads(cdx_file.read_text())
    assert cdx["metadata"]["component"]["hashes"] == [{"alg": "SHA-256", "content": digest}]
    [deps] = [d for d in cdx["dependencies"] if d["ref"] == cdx["metadata"]["component"]["bom-ref"]]
    assert set(deps["dependsOn"]) == {c["bom-ref"] for c in cdx["components"]}


def test_sboms_are_reproducible_and_change_with_the_image(manifest, written, tmp_path):
    """Made again in another process, TZ and directory: the same bytes; another image: another id."""
    spdx_file, cdx_file = written
    (tmp_path / MANIFEST.name).write_text(MANIFEST.read_text())
    code = ("import sys; from pathlib import Path; from builder.sbom import publish; "
            "publish.write(Path(sys.argv[1]), Path(sys.argv[2]))")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / manifest["image"]["file"]),
                    str(tmp_path / MANIFEST.name)], check=True, env={**os.environ, "TZ": "Asia/Tokyo"})
    assert (tmp_path / spdx_file.name).read_bytes() == spdx_file.read_bytes()
    assert (tmp_path / cdx_file.name).read_bytes() == cdx_file.read_bytes()
    epoch = manifest["inputs"]["source_date_epoch"]
    created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert json.loads(cdx_file.read_text())["metadata"]["timestamp"].startswith(created)
    assert json.loads(spdx_file.read_text())["creationInfo"]["created"].startswith(created)
    other = copy.deepcopy(manifest)
    other["image"]["sha256"] = "0" * 64
    inv, inv_other = from_manifest(manifest), from_manifest(other)
    assert cyclonedx.serial_number(inv) != cyclonedx.serial_number(inv_other)
    namespaces = {spdx.document(i).creation_info.document_namespace for i in (inv, inv_other)}
    assert len(namespaces) == 2


def test_preloaded_images_are_container_components(manifest):
    entry = {"sha256": "ab" * 32, "repo_tags": ["trove-builder/mariadb:10.11"], "bytes": 1,
             "guest_path": "/var/lib/trove-images/mariadb.tar"}
    text = cyclonedx.render(from_manifest({**manifest, "preload_images": [entry]}))
    [container] = [c for c in json.loads(text)["components"] if c["type"] == "container"]
    assert container["purl"].startswith("pkg:docker/trove-builder/mariadb@10.11")
    assert container["hashes"] == [{"alg": "SHA-256", "content": entry["sha256"]}]
    assert cdx_errors(text) is None


def test_a_bad_manifest_leaves_no_sbom_beside_the_image(manifest, tmp_path):
    """An SBOM beside an image always describes it: a failure removes earlier ones and leaves no temp file."""
    image = tmp_path / "guest.qcow2"
    stale = [paths.spdx_path(image), paths.cyclonedx_path(image)]
    for path in stale:
        path.write_text("from an earlier build\n")
    bad = tmp_path / "guest.qcow2.manifest.json"
    bad.write_text(json.dumps({k: v for k, v in manifest.items() if k != "packages"}))
    with pytest.raises(ValueError, match="packages"):
        publish.write(image, bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["guest.qcow2.manifest.json"]
