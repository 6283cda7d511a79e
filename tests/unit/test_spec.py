from pathlib import Path

import pytest

from builder.errors import UsageError
from builder.spec import BuildSpec, agent_min_python, default_output, parse_bool


def spec(tmp_path: Path, **kw) -> BuildSpec:
    kw.setdefault("output", tmp_path / "guest.qcow2")
    kw.setdefault("cache_dir", tmp_path / "cache")
    return BuildSpec(**kw)


def test_defaults_are_noble_production(tmp_path):
    s = spec(tmp_path).validate()
    assert (s.os, s.release, s.dev_mode, s.guest_user, s.size_gb, s.fmt) == (
        "ubuntu", "noble", False, "ubuntu", 5, "qcow2")
    assert s.resolved_agent_version == "26.0.0"


def test_default_output_names_follow_trovestack():
    assert default_output("ubuntu", "noble", False) == Path("images/trove-guest-ubuntu-noble.qcow2")
    assert default_output("debian", "bookworm", True) == Path("images/trove-guest-debian-bookworm-dev.qcow2")


@pytest.mark.parametrize("text,value", [("true", True), ("True", True), ("false", False), ("0", False)])
def test_dev_mode_is_parsed_like_trovestack(text, value):
    assert parse_bool(text, "DEV_MODE") is value


def test_dev_mode_garbage_is_refused():
    with pytest.raises(UsageError, match="DEV_MODE must be true or false"):
        parse_bool("maybe", "DEV_MODE")


def test_agent_needing_newer_python_is_refused(tmp_path):
    with pytest.raises(UsageError, match=r"trove 26.0.0 needs Python >= 3.11, but ubuntu jammy has 3.10"):
        spec(tmp_path, release="jammy", agent_version="26.0.0").validate()


def test_python_table():
    assert agent_min_python("26.0.0") == (3, 11)
    assert agent_min_python("17.0.1") == (3, 6)
    assert agent_min_python("23.1.0") == (3, 9)


@pytest.mark.parametrize("size", [0, 1, 4096])
def test_bad_sizes_are_refused(tmp_path, size):
    with pytest.raises(UsageError, match="image size"):
        spec(tmp_path, size_gb=size).validate()


def test_output_in_missing_directory(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        spec(tmp_path, output=tmp_path / "nope" / "x.qcow2").validate()


def test_output_that_is_a_directory(tmp_path):
    (tmp_path / "dir.qcow2").mkdir()
    with pytest.raises(UsageError, match="is a directory"):
        spec(tmp_path, output=tmp_path / "dir.qcow2").validate()


def test_bad_user_name(tmp_path):
    with pytest.raises(UsageError, match="not a valid Linux user name"):
        spec(tmp_path, guest_user="Bad User").validate()


def test_a_work_dir_with_files_is_refused_by_its_own_name(tmp_path):
    (tmp_path / "wd").mkdir()
    spec(tmp_path, work_dir=tmp_path / "wd").validate()  # empty: fine
    (tmp_path / "wd" / "rootfs").mkdir()
    with pytest.raises(UsageError, match=f"^work dir {tmp_path}/wd is not empty"):
        spec(tmp_path, work_dir=tmp_path / "wd").validate()


def test_dev_key_needs_dev_mode(tmp_path):
    key = tmp_path / "id"
    key.write_text("k")
    with pytest.raises(UsageError, match="only makes sense with dev mode"):
        spec(tmp_path, dev_ssh_key=key).validate()


def test_json_round_trip_keeps_paths(tmp_path):
    s = spec(tmp_path, dev_mode=True, hooks_dir=tmp_path)
    again = BuildSpec.from_json(s.to_json())
    assert again == s and isinstance(again.output, Path)


def test_identity_ignores_host_paths_and_runtime(tmp_path):
    a = spec(tmp_path, runtime="docker", work_dir=tmp_path / "w1")
    b = spec(tmp_path / "elsewhere", runtime="none", work_dir=tmp_path / "w2", cache_dir=tmp_path / "c2")
    assert a.image_identity == b.image_identity
    assert spec(tmp_path, size_gb=7).image_identity != a.image_identity
