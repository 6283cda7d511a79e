"""Disk space: the estimate comes from the profile, and a real full disk becomes one line naming it."""

import os
import subprocess

import pytest

from builder import diskspace
from builder.errors import BuilderError
from builder.proc import Log, run
from builder.spec import BuildSpec

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs (root only)")


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def spec(tmp_path, **kw):
    kw.setdefault("cache_dir", tmp_path / "cache")
    return BuildSpec(os="debian", release="bookworm", output=tmp_path / "out" / "x.qcow2", **kw)


def test_estimate_is_the_profiles(tmp_path):
    places = {p.role: p for p in diskspace.places(spec(tmp_path))}
    assert places["work dir"].path == tmp_path / "cache" / "work"
    assert (places["work dir"].need, places["cache"].need, places["output"].need) == (4 << 30, 2 << 30, 1 << 30)
    raw = {p.role: p for p in diskspace.places(spec(tmp_path, fmt="raw"))}
    assert raw["output"].need == 2 << 30


def test_places_are_shown_as_the_operator_named_them(tmp_path, monkeypatch):
    """In the builder container the work dir is /work: messages about it (space, "work dir kept")
    name the operator's --work-dir, which the runtime passes in."""
    monkeypatch.setenv("TROVE_BUILDER_WORK_SHOWN_AS", "/srv/scratch/noble")
    work = {p.role: p for p in diskspace.places(spec(tmp_path, work_dir=tmp_path / "work"))}["work dir"]
    assert (work.path, work.shown) == (tmp_path / "work", "/srv/scratch/noble")


@needs_root
def test_enospc_from_python_names_the_full_place(tmp_path, small_disk):
    places = diskspace.places(spec(tmp_path, work_dir=small_disk / "work"))
    with pytest.raises(BuilderError) as caught:
        with diskspace.out_of_space_as_error(places):
            (small_disk / "work").mkdir()
            with open(small_disk / "work" / "fill", "wb") as fh:
                while True:
                    fh.write(b"\0" * 65536)
    assert str(caught.value) == f"no space left on device in {small_disk / 'work'} (work dir)"


@needs_root
def test_a_tool_failing_with_no_space_names_the_full_place(tmp_path, small_disk):
    places = diskspace.places(spec(tmp_path, cache_dir=small_disk))
    with pytest.raises(BuilderError) as caught:
        with diskspace.out_of_space_as_error(places):
            run(["dd", "if=/dev/zero", f"of={small_disk}/apt.deb", "bs=1M", "count=8"], Log(None))
    assert str(caught.value) == f"no space left on device in {small_disk} (cache)"


def test_other_errors_pass_through(tmp_path):
    with pytest.raises(FileNotFoundError):
        with diskspace.out_of_space_as_error(diskspace.places(spec(tmp_path))):
            open(tmp_path / "missing" / "x")
