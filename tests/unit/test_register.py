"""register without a cloud: the plan, --dry-run, --emit trove-manage, and every bad input caught
before anything is uploaded (one line on stderr, non-zero exit, no traceback)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from pathlib import Path

import pytest

from builder.register.emit import trove_manage_script
from builder.register.plan import SHA256_PROPERTY, Request, make_plan
from builder.verify.procs import free_port
from tests.conftest import run_tb
from tests.integration.test_cli_errors import assert_one_line_error

RULES = {"configuration-parameters": [
    {"name": "max_connections", "restart_required": False, "max": 100000, "min": 1, "type": "integer"},
    {"name": "sql_mode", "restart_required": False, "type": "string"},
    {"name": "autocommit", "restart_required": False, "type": "boolean"},
]}


@pytest.fixture
def built(tmp_path) -> Path:
    """An image file with a manifest beside it, as `trove-builder build` leaves them."""
    image = tmp_path / "trove-guest-debian-bookworm.qcow2"
    image.write_bytes(b"not really a qcow2, but these tests never upload it\n" * 1000)
    manifest = {"builder": {"name": "trove-builder", "version": "0.1.0"},
                "inputs": {"os": "debian", "release": "bookworm", "dev_mode": False, "agent_version": "26.0.0"},
                "image": {"file": image.name, "format": "qcow2", "virtual_size": 5 * 2**30 + 1,
                          "sha256": hashlib.sha256(image.read_bytes()).hexdigest()},
                "agent": {"version": "26.0.0"}}
    image.with_name(image.name + ".manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "rules.json").write_text(json.dumps(RULES))
    return image


def no_cloud_env(tmp_path: Path) -> dict:
    """No OS_* variables and no clouds.yaml anywhere openstacksdk looks."""
    env = {k: "" for k in os.environ if k.startswith("OS_")}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"),
               OS_CLIENT_CONFIG_FILE=str(tmp_path / "no-clouds.yaml"))
    return env


def test_plan_takes_facts_from_the_manifest(built):
    plan = make_plan(Request(image=built, datastore="mysql", version="8.4", rules=built.parent / "rules.json"))
    assert plan.image_name == "trove-guest-debian-bookworm"
    assert plan.properties["hw_rng_model"] == "virtio"
    assert plan.properties["os_distro"] == "debian" and plan.properties["os_version"] == "12"
    assert plan.properties["trove_agent_version"] == "26.0.0"
    assert plan.properties[SHA256_PROPERTY] == hashlib.sha256(built.read_bytes()).hexdigest()
    assert plan.tags == ("trove", "mysql") and plan.by_tags == ()
    assert plan.min_disk_gb == 6  # 5 GiB + 1 byte rounds up
    assert plan.manager == "mysql" and plan.version_number == "8.4"
    assert [p.name for p in plan.parameters] == ["max_connections", "sql_mode", "autocommit"]
    assert [p.name for p in plan.manage_only_parameters] == ["autocommit"]  # the API takes no booleans
    assert plan.parameters[0].max_size == "100000" and plan.parameters[1].min_size is None


def test_plan_with_image_tags_selects_by_tags(built):
    plan = make_plan(Request(image=built, datastore="mysql", version="8.4", image_tags=("mysql-84",),
                             rules=built.parent / "rules.json"))
    assert plan.tags == ("trove", "mysql", "mysql-84")
    assert plan.by_tags == ("trove", "mysql-84")


def test_emit_is_a_runnable_script_of_the_guides_commands(built):
    plan = make_plan(Request(image=built, datastore="mysql", version="8.4", default=True,
                             rules=built.parent / "rules.json"))
    script = trove_manage_script(plan)
    lines = [line for line in script.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "set -e"
    create = shlex.split(lines[1].removeprefix("image_id=$(").removesuffix(")"))
    assert create[:4] == ["openstack", "image", "create", "trove-guest-debian-bookworm"]
    assert "--private" in create and ["--container-format", "bare"] == create[6:8]
    assert "hw_rng_model=virtio" in create and f"{SHA256_PROPERTY}={plan.sha256}" in create
    assert [create[i + 1] for i, w in enumerate(create) if w == "--tag"] == ["trove", "mysql"]
    assert shlex.split(lines[2]) == ["trove-manage", "datastore_update", "mysql", ""]
    assert lines[3] == "trove-manage datastore_version_update mysql 8.4 mysql \"$image_id\" '' 1 --version 8.4"
    assert shlex.split(lines[4]) == ["trove-manage", "datastore_update", "mysql", "8.4"]
    assert shlex.split(lines[5]) == ["trove-manage", "db_load_datastore_config_parameters", "mysql", "8.4",
                                     str(built.parent / "rules.json"), "--version", "8.4"]


def test_emit_by_tags_names_no_image(built):
    plan = make_plan(Request(image=built, datastore="mysql", version="8.4", image_tags=("mysql",),
                             rules=built.parent / "rules.json"))
    version_line = [line for line in trove_manage_script(plan).splitlines() if "datastore_version_update" in line][0]
    assert shlex.split(version_line)[5:] == ["", "", "1", "--image-tags", "trove,mysql", "--version", "8.4"]


def test_dry_run_and_emit_need_no_cloud(built, tmp_path):
    rules = str(built.parent / "rules.json")
    dry = run_tb("register", str(built), "--datastore", "mysql", "--version", "8.4", "--rules", rules,
                 "--dry-run", env=no_cloud_env(tmp_path))
    assert dry.returncode == 0, dry.stderr
    assert "glance: [create image 'trove-guest-debian-bookworm'" in dry.stdout
    assert "the 2 the API accepts in " + rules in dry.stdout
    assert "note: 1 of 3 configuration parameters cannot go through Trove's API" in dry.stdout
    emit = run_tb("register", str(built), "--datastore", "mysql", "--version", "8.4", "--rules", rules,
                  "--emit", "trove-manage", env=no_cloud_env(tmp_path))
    assert emit.returncode == 0, emit.stderr
    assert emit.stdout == trove_manage_script(make_plan(Request(
        image=built, datastore="mysql", version="8.4", rules=Path(rules))))


def _register(built, *extra, env=None):
    return run_tb("register", str(built), "--datastore", "mysql", "--version", "8.4",
                  "--rules", str(built.parent / "rules.json"), *extra, env=env)


@pytest.mark.parametrize("case", ["no image", "no manifest", "bad manifest", "unknown manager", "bad name",
                                  "no rules", "bad rules", "bad emit"])
def test_bad_input_before_any_cloud_call(built, tmp_path, case):
    args: list[str] = []
    image = built
    fragment = {"no image": "no image at", "no manifest": "no build manifest beside the image",
                "bad manifest": "is not a trove-builder manifest",
                "unknown manager": "unknown datastore manager 'oracle'",
                "bad name": "version '8.4; rm' must be", "no rules": "no rules file at",
                "bad rules": "is not a validation-rules.json", "bad emit": "--emit knows only trove-manage"}[case]
    if case == "no image":
        image = tmp_path / "missing.qcow2"
    elif case == "no manifest":
        built.with_name(built.name + ".manifest.json").unlink()
    elif case == "bad manifest":
        built.with_name(built.name + ".manifest.json").write_text('{"image": {}}')
    elif case == "unknown manager":
        args = ["--manager", "oracle"]
    elif case == "no rules":
        (built.parent / "rules.json").unlink()
    elif case == "bad rules":
        (built.parent / "rules.json").write_text('{"parameters": []}')
    elif case == "bad emit":
        args = ["--emit", "ansible"]
    if case == "bad name":
        result = run_tb("register", str(image), "--datastore", "mysql", "--version", "8.4; rm",
                        "--rules", str(built.parent / "rules.json"), "--dry-run")
    else:
        result = _register(image, *args, "--dry-run")
    assert_one_line_error(result, 2, fragment)


def test_file_changed_after_the_build_is_a_checksum_mismatch(built, tmp_path):
    with open(built, "ab") as fh:
        fh.write(b"tampered")
    assert_one_line_error(_register(built, env=no_cloud_env(tmp_path)), 1, "checksum mismatch")


def test_no_credentials(built, tmp_path):
    assert_one_line_error(_register(built, env=no_cloud_env(tmp_path)), 1, "no OpenStack credentials")


def test_unknown_cloud_name(built, tmp_path):
    line = assert_one_line_error(_register(built, "--os-cloud", "nowhere", env=no_cloud_env(tmp_path)), 1,
                                 "cloud configuration")
    assert "nowhere" in line


def test_cloud_unreachable(built, tmp_path):
    env = {**no_cloud_env(tmp_path), "OS_AUTH_URL": f"http://127.0.0.1:{free_port()}/v3", "OS_USERNAME": "admin",
           "OS_PASSWORD": "x", "OS_PROJECT_NAME": "admin", "OS_USER_DOMAIN_NAME": "Default",
           "OS_PROJECT_DOMAIN_NAME": "Default", "TROVE_BUILDER_NET_ATTEMPTS": "1"}
    assert_one_line_error(_register(built, env=env), 1, "cannot reach keystone")
