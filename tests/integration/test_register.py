"""`trove-builder register` against real Keystone, Glance and trove-api (tests/integration/cloud/),
with the bookworm image the suite builds anyway. Everything is read back through the APIs, as Trove
and operators see it. The only stand-in: Trove's database is SQLite (with the big-integer shim
described in cloud/sqlite_bigint.py) and its message bus is oslo.messaging's fake:// transport,
which no registration call uses.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from builder.register.plan import SHA256_PROPERTY
from tests.conftest import run_tb
from tests.integration.cloud.services import REGION, running_cloud, trove_command
from tests.integration.test_cli_errors import assert_one_line_error

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def cloud():
    with running_cloud() as running:
        yield running


@pytest.fixture(scope="session")
def guest_image(request) -> Path:
    """The suite's bookworm image (TROVE_BUILDER_REGISTER_IMAGE: any built image, to skip the build)."""
    given = os.environ.get("TROVE_BUILDER_REGISTER_IMAGE")
    return Path(given) if given else request.getfixturevalue("images").get("debian", "bookworm")


@pytest.fixture(scope="session")
def rules(cloud) -> Path:
    """The rules file of the trove release the cloud runs (trove-manage's own input)."""
    found = list((cloud.trove_venv / "lib").glob("python3*/site-packages/trove/templates/mysql/validation-rules.json"))
    assert found, "the trove venv has no mysql validation-rules.json"
    return found[0]


def admin_connection(cloud):
    import openstack

    env = cloud.env()
    return openstack.connect(auth_url=env["OS_AUTH_URL"], username="admin", password=cloud.admin_password,
                             project_name="admin", user_domain_name="Default", project_domain_name="Default",
                             region_name=REGION)


def trove_admin(cloud):
    from builder.register.trove import trove_client

    return trove_client(admin_connection(cloud))


def mgmt_parameters(tc, version_id: str) -> dict:
    from troveclient.v1.management import MgmtConfigurationParameters

    return {p.name: p for p in MgmtConfigurationParameters(tc).list_all_parameter_by_version(version_id)}


def register(cloud, image: Path, *args: str, user: str = "admin"):
    return run_tb("register", str(image), *args, env=cloud.env(user), timeout=900)


def versions(tc, datastore: str, name: str) -> list:
    return [v for v in tc.mgmt_ds_versions.list() if v.datastore_name == datastore and v.name == name]


def test_register_twice_and_read_back(cloud, guest_image, rules):
    manifest = json.loads(guest_image.with_name(guest_image.name + ".manifest.json").read_text())
    sha256 = manifest["image"]["sha256"]
    first = register(cloud, guest_image, "--datastore", "mysql", "--version", "8.4", "--rules", str(rules),
                     "--default")
    assert first.returncode == 0, first.stderr
    assert "uploaded" in first.stdout and "datastore version mysql 8.4 created" in first.stdout

    conn = admin_connection(cloud)
    images = [i for i in conn.image.images(tag="trove") if (i.properties or {}).get(SHA256_PROPERTY) == sha256]
    assert len(images) == 1
    image = conn.image.get_image(images[0].id)
    assert (image.disk_format, image.container_format, image.visibility, image.status) == \
        ("qcow2", "bare", "private", "active")
    assert {"trove", "mysql"} <= set(image.tags)
    assert image.hw_rng_model == "virtio" and image.os_distro == "debian"
    assert image.properties["trove_agent_version"] == manifest["inputs"]["agent_version"]
    # Glance's own digest of what it stored, in its own algorithm, equals the local file's.
    local = hashlib.new(image.hash_algo)
    with open(guest_image, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            local.update(chunk)
    assert image.hash_value == local.hexdigest()
    assert image.size == guest_image.stat().st_size

    tc = trove_admin(cloud)
    [version] = versions(tc, "mysql", "8.4")
    assert version.active and version.default and version.image == image.id
    assert version.datastore_manager == "mysql" and version.version == "8.4"
    # What Trove's users see: the default version of mysql, and its parameters.
    assert tc.datastores.get("mysql").default_version == version.id
    params = mgmt_parameters(tc, version.id)
    rule_file = {r["name"]: r for r in json.loads(rules.read_text())["configuration-parameters"]}
    assert params and set(params) <= set(rule_file)
    assert int(params["max_connections"].max_size) == rule_file["max_connections"]["max"]
    public = {p.name for p in tc.configuration_parameters.parameters("mysql", "8.4")}
    assert public == set(params)

    second = register(cloud, guest_image, "--datastore", "mysql", "--version", "8.4", "--rules", str(rules),
                      "--default")
    assert second.returncode == 0, second.stderr
    assert "nothing to change" in second.stdout and "changed:" not in second.stdout
    assert "reused, not uploaded" in second.stdout
    assert len([i for i in conn.image.images(tag="trove") if (i.properties or {}).get(SHA256_PROPERTY) == sha256]) == 1
    assert len(versions(tc, "mysql", "8.4")) == 1
    assert mgmt_parameters(tc, version.id).keys() == params.keys()


def test_register_by_image_tags(cloud, guest_image, rules):
    """The version names no image: Trove itself looks the image up by its tags when the version is made."""
    result = register(cloud, guest_image, "--datastore", "mysql", "--version", "8.4-tagged", "--version-number",
                      "8.4", "--image-tags", "mysql-84", "--rules", str(rules))
    assert result.returncode == 0, result.stderr
    tc = trove_admin(cloud)
    [version] = versions(tc, "mysql", "8.4-tagged")
    assert not version.image and version.image_tags == ["trove", "mysql-84"] and version.active
    conn = admin_connection(cloud)
    assert [i.id for i in conn.image.images(tag=["trove", "mysql-84"])]


def test_trove_manage_path_on_the_same_database(cloud, guest_image, rules, tmp_path):
    """The emitted commands run for real (openstack CLI + trove-manage on Trove's SQLite database);
    register then finds everything in place."""
    args = ["--datastore", "mysql-manage", "--manager", "mysql", "--version", "8.4", "--rules", str(rules),
            "--name", "trove-guest-emitted"]
    emitted = run_tb("register", str(guest_image), *args, "--emit", "trove-manage", env={"OS_AUTH_URL": ""})
    assert emitted.returncode == 0, emitted.stderr
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    manage = bin_dir / "trove-manage"  # as on a controller: trove-manage reads Trove's config
    manage.write_text("#!/bin/sh\nexec " + " ".join(map(str, trove_command(cloud.trove_venv, "trove-manage")))
                      + f" --config-file {cloud.trove_conf} \"$@\"\n")
    manage.chmod(0o755)
    (bin_dir / "openstack").symlink_to(cloud.trove_venv / "bin" / "openstack")
    (tmp_path / "register.sh").write_text(emitted.stdout)
    ran = subprocess.run(["sh", str(tmp_path / "register.sh")], capture_output=True, text=True, timeout=900,
                         env={**os.environ, **cloud.env(), "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert ran.returncode == 0, ran.stdout + ran.stderr

    tc = trove_admin(cloud)
    [version] = versions(tc, "mysql-manage", "8.4")
    conn = admin_connection(cloud)
    image = conn.image.get_image(version.image)
    assert image.name == "trove-guest-emitted" and {"trove", "mysql-manage"} <= set(image.tags)
    loaded = mgmt_parameters(tc, version.id)
    assert len(loaded) == len(json.loads(rules.read_text())["configuration-parameters"])  # booleans too

    after = register(cloud, guest_image, *args)
    assert after.returncode == 0, after.stderr
    assert "nothing to change" in after.stdout, after.stdout


def test_not_admin_is_refused_before_any_upload(cloud, guest_image, rules):
    conn = admin_connection(cloud)
    before = len(list(conn.image.images()))
    result = register(cloud, guest_image, "--datastore", "mysql", "--version", "8.4-member", "--rules", str(rules),
                      user="member")
    assert_one_line_error(result, 1, "registering needs the admin role")
    assert len(list(conn.image.images())) == before


def test_glance_holding_other_bytes_is_a_checksum_mismatch(cloud, rules, tmp_path):
    """An image that claims this build's sha256 but holds other bytes is refused, not reused."""
    image = tmp_path / "trove-guest-debian-bookworm.qcow2"
    # Real qcow2 headers (Glance inspects uploads against disk_format), different virtual sizes.
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "1G"], check=True)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    image.with_name(image.name + ".manifest.json").write_text(json.dumps({
        "builder": {"version": "0.1.0"}, "inputs": {"os": "debian", "release": "bookworm", "agent_version": "26.0.0"},
        "image": {"format": "qcow2", "sha256": digest, "virtual_size": 2**30}}))
    other = tmp_path / "other.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(other), "2G"], check=True)
    made = subprocess.run([str(cloud.trove_venv / "bin" / "openstack"), "image", "create", "impostor", "--file",
                           str(other), "--disk-format", "qcow2", "--container-format", "bare", "--tag", "trove",
                           "--property", f"{SHA256_PROPERTY}={digest}", "-f", "value", "-c", "id"],
                          capture_output=True, text=True, env={**os.environ, **cloud.env()}, timeout=300)
    assert made.returncode == 0, made.stderr
    impostor_id = made.stdout.strip()
    result = register(cloud, image, "--datastore", "mysql", "--version", "8.4-mismatch", "--rules", str(rules))
    line = assert_one_line_error(result, 1, "checksum mismatch")
    assert impostor_id in line
    tc = trove_admin(cloud)
    assert not versions(tc, "mysql", "8.4-mismatch")
