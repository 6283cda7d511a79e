"""The lock every build writes, the disk IDs a lock must not change, and `verify`'s checks, without a build."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import pytest

from builder.context import BuildContext
from builder.lock.collect import _pip_cache_body, files_of_report
from builder.lock.lockfile import Lock, unlockable
from builder.proc import Log
from builder.spec import BuildSpec
from builder.verify.reproduce import rebuild_spec
from tests.conftest import run_tb
from tests.unit.lock.test_lockfile import lock_data, sha, write

PACKAGES = [{"name": "bash", "arch": "amd64", "version": "5.2.15-2+b7"},
            {"name": "python3-venv", "arch": "amd64", "version": "3.11.2-1+b1"}]
FREEZE = ["pbr==6.1.1", "pip==25.3", "trove==26.0.0"]


def built(tmp_path: Path, packages=PACKAGES, freeze=FREEZE, **spec) -> BuildContext:
    """A context as the normalize stage sees it: inputs, and what the hooks stage found installed."""
    spec = BuildSpec(os="debian", release="bookworm", output=tmp_path / "x.qcow2", cache_dir=tmp_path / "c", **spec)
    ctx = BuildContext(spec=spec, profile=spec.profile, work_dir=tmp_path / "work", log=Log(None))
    ctx.results.update(packages=copy.deepcopy(packages), pip_freeze=list(freeze))
    return ctx


def test_disk_ids_are_the_same_for_a_locked_and_an_unlocked_build_of_the_same_content(tmp_path):
    unlocked = built(tmp_path)
    locked = built(tmp_path, lock_file=tmp_path / "a.lock.json", lock_digest="f" * 64)
    for purpose in ("rootfs", "gpt-label", "part-root", "esp"):
        assert locked.stable_uuid(purpose) == unlocked.stable_uuid(purpose)


def test_disk_ids_follow_what_the_image_contains(tmp_path):
    base = built(tmp_path).stable_uuid("rootfs")
    newer_bash = [PACKAGES[0] | {"version": "5.2.15-2+b8"}, PACKAGES[1]]
    assert built(tmp_path, packages=newer_bash).stable_uuid("rootfs") != base
    assert built(tmp_path, freeze=["pbr==6.1.0", *FREEZE[1:]]).stable_uuid("rootfs") != base
    assert built(tmp_path, source_date_epoch=1767225601).stable_uuid("rootfs") != base


def test_disk_ids_are_not_made_before_the_packages_are_known(tmp_path):
    ctx = built(tmp_path)
    ctx.results.clear()
    with pytest.raises(RuntimeError, match="after the hooks stage"):
        ctx.stable_uuid("rootfs")


def report_item(name: str, version: str, filename: str, digest: str | None = "a" * 64) -> dict:
    info = {"url": f"https://files.example/packages/ab/cd/{filename}"}
    info["archive_info"] = {"hashes": {"sha256": digest}} if digest else {}
    return {"metadata": {"name": name, "version": version}, "download_info": info}


def test_a_pip_report_gives_each_file_its_url_and_sha256():
    report = {"install": [report_item("Trove", "26.0.0", "trove-26.0.0-py3-none-any.whl"),
                          report_item("oslo.config", "9.6.0", "oslo.config-9.6.0-py3-none-any.whl", "b" * 64)]}
    files = files_of_report(report, {"trove": "26.0.0", "oslo-config": "9.6.0"})
    assert files == [
        {"name": "oslo-config", "version": "9.6.0", "filename": "oslo.config-9.6.0-py3-none-any.whl",
         "sha256": "b" * 64, "url": "https://files.example/packages/ab/cd/oslo.config-9.6.0-py3-none-any.whl"},
        {"name": "trove", "version": "26.0.0", "filename": "trove-26.0.0-py3-none-any.whl",
         "sha256": "a" * 64, "url": "https://files.example/packages/ab/cd/trove-26.0.0-py3-none-any.whl"}]


def test_a_report_without_a_hash_or_with_an_sdist_falls_back_to_downloading():
    assert files_of_report({"install": [report_item("x", "1", "x-1-py3-none-any.whl", None)]}, {"x": "1"}) is None
    assert files_of_report({"install": [report_item("x", "1", "x-1.tar.gz")]}, {"x": "1"}) is None


def test_a_report_that_is_not_the_venv_is_an_error():
    from builder.errors import BuilderError

    with pytest.raises(BuilderError, match="not name exactly the venv"):
        files_of_report({"install": [report_item("x", "2", "x-2-py3-none-any.whl")]}, {"x": "1"})


def test_the_pip_cache_path_is_where_pip_keeps_a_downloaded_body(tmp_path):
    """pip's own cache class (the host's pip: the same vendored cachecontrol layout) agrees."""
    from pip._internal.network.cache import SafeFileCache

    url = "https://files.pythonhosted.org/packages/ab/cd/trove-26.0.0-py3-none-any.whl"
    theirs = SafeFileCache(str(tmp_path / "pip" / "http-v2"))._get_cache_path(url) + ".body"
    assert _pip_cache_body(tmp_path / "pip", url) == Path(theirs)


def test_builds_that_cannot_be_locked_say_why(tmp_path):
    def spec(**kw):
        return BuildSpec(os="debian", release="bookworm", output=tmp_path / "x.qcow2", **kw)
    assert unlockable(spec()) is None
    assert "http:// mirror" in unlockable(spec(mirror="https://deb.debian.org/debian"))
    assert "docker-ce" in unlockable(spec(docker_source="docker-ce"))
    assert "local path" in unlockable(spec(agent_source=str(tmp_path)))


def locked_bookworm(tmp_path: Path) -> tuple[Lock, dict]:
    data = lock_data()
    data["target"] |= {"agent_version": "26.0.0", "dev_mode": False, "guest_user": "ubuntu"}
    return Lock.load(write(tmp_path, data)), data


def test_a_rebuild_takes_the_disk_settings_from_the_lock_else_from_the_image(tmp_path):
    lock, data = locked_bookworm(tmp_path)
    out = tmp_path / "rebuilt.qcow2"
    spec = rebuild_spec(lock, tmp_path / "l.json", {"format": "qcow2", "virtual-size": 7 * 2**30}, out)
    assert (spec.size_gb, spec.fmt, spec.offline) == (7, "qcow2", True)
    assert spec.lock_digest == lock.digest and spec.source_date_epoch == data["source_date_epoch"]
    data["image"] = {"format": "raw", "compression": "none", "size_gb": 9}
    with_image = Lock.load(write(tmp_path, data))
    spec = rebuild_spec(with_image, tmp_path / "l.json", {"format": "qcow2", "virtual-size": 7 * 2**30}, out)
    assert (spec.size_gb, spec.fmt, spec.resolved_compression) == (9, "raw", "none")


@pytest.fixture
def small_image(tmp_path) -> Path:
    image = tmp_path / "guest.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "2G"], check=True)
    return image


def test_verify_with_a_bad_image_or_lock_is_a_one_line_usage_error(tmp_path, small_image):
    """No image, no lock beside it, a lock that is missing, a directory, not JSON, or not a lock."""
    (tmp_path / "a-dir.json").mkdir()
    (tmp_path / "log.json").write_text("stage bootstrap: started\n")
    (tmp_path / "other.json").write_text('{"packages": []}\n')
    for args, message in (([str(tmp_path / "none.qcow2")], "no image at"),
                          ([str(small_image)], "no lock at"),
                          ([str(small_image), "--lock", str(tmp_path / "missing.json")], "is not a readable file"),
                          ([str(small_image), "--lock", str(tmp_path / "a-dir.json")], "is not a readable file"),
                          ([str(small_image), "--lock", str(tmp_path / "log.json")], "is not valid JSON"),
                          ([str(small_image), "--lock", str(tmp_path / "other.json")], "not a trove-builder lock")):
        result = run_tb("verify", *args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr


def test_the_lock_digest_ignores_formatting_but_not_content(tmp_path):
    data = lock_data()
    a = Lock.load(write(tmp_path, data)).digest
    (tmp_path / "pretty.json").write_text(json.dumps(data, indent=4))
    assert Lock.load(tmp_path / "pretty.json").digest == a
    data["python"]["files"][0]["sha256"] = sha(b"another wheel")
    assert Lock.load(write(tmp_path, data)).digest != a


def test_a_rebuild_with_other_bytes_is_explained_by_the_diff_summary(tmp_path):
    """verify's last step on two small real disks (GPT, FAT ESP, ext4 root): the same tree twice is
    reproduced; a changed file is named, as `verify` prints it after a rebuild."""
    from builder.image.diffreport import render
    from builder.verify.reproduce import compare
    from tests.integration.test_diff import make_image, make_tree

    tree = make_tree(tmp_path / "tree")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    image, same = make_image(tmp_path / "a", "guest", tree), make_image(tmp_path / "b", "guest", tree)
    verdict = compare(image, same)
    assert verdict.reproduced and verdict.report is None and verdict.image_sha256 == verdict.rebuilt_sha256
    (tree / "etc/hostname").write_text("another guest\n")
    os.utime(tree / "etc/hostname", (1767225600, 1767225600))
    other = make_image(tmp_path / "c", "guest", tree)
    verdict = compare(image, other)
    assert not verdict.reproduced and verdict.image_sha256 != verdict.rebuilt_sha256
    text = render(verdict.report)
    assert "changed  /etc/hostname  content" in text and "different: 1 changed files" in text


def test_verify_of_a_preloaded_image_needs_the_archives_its_lock_names(tmp_path, small_image):
    """Without them the rebuild would be the image without its datastore images: refused in one line,
    before anything is fetched or built; so are an archive that does not exist and one the lock does not name."""
    from builder.preload.archive import write_archive
    from tests.unit.test_preload import IMAGE, root_tar

    data = lock_data()
    archive = tmp_path / "db.tar"
    write_archive(root_tar(tmp_path / "rootfs.tar"), IMAGE, archive, 1767225600)
    data["preload_images"] = [{"sha256": sha(b"the archive the image was built with"), "bytes": 42,
                               "guest_path": "/var/lib/trove-builder/preload/x.tar", "repo_tags": ["db:1"]}]
    lock = write(tmp_path, data)
    for extra, message in (([], "--preload-image archives it names are missing"),
                           (["--preload-image", str(tmp_path / "none.tar")], "none.tar is not a file"),
                           (["--preload-image", str(archive)], "archives it does not name were given")):
        result = run_tb("verify", str(small_image), "--lock", str(lock), *extra)
        assert result.returncode == 2, result.stdout + result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
