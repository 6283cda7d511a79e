"""--preload-image: archives are checked on the host, keyed into the image checkpoint only, and
`make datastore-image`'s archive writer gives the same bytes for the same root tar."""

import io
import json
import tarfile
from pathlib import Path

import pytest

from builder.cache import stagekeys
from builder.context import BuildContext
from builder.errors import UsageError
from builder.preload.archive import read_archive, write_archive
from builder.proc import Log
from builder.spec import BuildSpec

IMAGE = {"name": "example/db", "tag": "1.0", "entrypoint": ["/e.sh"], "cmd": ["db"], "env": ["PATH=/bin"],
         "exposed_ports": ["3306/tcp"]}


def root_tar(path: Path, content: bytes = b"hello\n") -> Path:
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("./etc/motd")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return path


def tar_of(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_written_archive_is_byte_identical_and_names_its_image(tmp_path):
    rootfs = root_tar(tmp_path / "rootfs.tar")
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    id_a = write_archive(rootfs, IMAGE, first, 1767225600)
    id_b = write_archive(rootfs, IMAGE, second, 1767225600)
    assert id_a == id_b and first.read_bytes() == second.read_bytes()
    archive = read_archive(first)
    assert archive.repo_tags == ("example/db:1.0",)
    with tarfile.open(first) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        config = json.load(tar.extractfile(manifest[0]["Config"]))
    assert config["config"]["Entrypoint"] == ["/e.sh"] and config["rootfs"]["diff_ids"][0].startswith("sha256:")
    # Another root tar is another image.
    other = write_archive(root_tar(tmp_path / "other.tar", b"bye\n"), IMAGE, tmp_path / "c.tar", 1767225600)
    assert other != id_a


@pytest.mark.parametrize("files, message", [
    ({"index.json": b"{}", "oci-layout": b"{}"}, "OCI layout without manifest.json"),
    ({"etc/passwd": b"root:x:0:0::/root:/bin/sh\n"}, "not an image archive"),
    ({"manifest.json": json.dumps([{"Config": "x.json", "RepoTags": None, "Layers": []}]).encode()},
     "names no image"),
])
def test_unusable_archives_are_refused_in_one_line(tmp_path, files, message):
    with pytest.raises(UsageError, match=message):
        read_archive(tar_of(tmp_path / "bad.tar", files))


def test_a_file_that_is_no_tar_is_refused(tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x00not a tar at all" * 100)
    with pytest.raises(UsageError, match="cannot be read as a tar archive|not an image archive"):
        read_archive(junk)
    with pytest.raises(UsageError, match="is not a file"):
        read_archive(tmp_path / "missing.tar")


def spec_with(tmp_path: Path, preload: list[Path]) -> BuildSpec:
    return BuildSpec(os="debian", release="bookworm", output=tmp_path / "x.qcow2", cache_dir=tmp_path / "c",
                     preload_images=preload)


def keys(spec: BuildSpec, tmp_path: Path) -> dict[str, str]:
    ctx = BuildContext(spec=spec, profile=spec.profile, work_dir=tmp_path / "work", log=Log(None))
    return stagekeys.checkpoint_keys(ctx)


def test_archive_digests_key_the_image_checkpoint_only(tmp_path):
    rootfs = root_tar(tmp_path / "rootfs.tar")
    one = tmp_path / "one.tar"
    write_archive(rootfs, IMAGE, one, 1767225600)
    two = tmp_path / "two.tar"
    write_archive(rootfs, {**IMAGE, "tag": "2.0"}, two, 1767225600)
    plain = keys(spec_with(tmp_path, []), tmp_path)
    with_one = keys(spec_with(tmp_path, [one]), tmp_path)
    with_two = keys(spec_with(tmp_path, [two]), tmp_path)
    both = keys(spec_with(tmp_path, [one, two]), tmp_path)
    both_reversed = keys(spec_with(tmp_path, [two, one]), tmp_path)
    for other in (with_one, with_two, both):
        assert [n for n in stagekeys.CHECKPOINTS if other[n] != plain[n]] == ["image"]
    assert len({with_one["image"], with_two["image"], both["image"]}) == 3
    assert both == both_reversed, "the order archives are given in does not change the image"
    assert spec_with(tmp_path, [one]).image_identity["preload_images"] == [read_archive(one).sha256]
    assert "preload_images" not in spec_with(tmp_path, []).image_identity


def test_the_same_archive_twice_is_refused(tmp_path):
    one = tmp_path / "one.tar"
    write_archive(root_tar(tmp_path / "rootfs.tar"), IMAGE, one, 1767225600)
    copy = tmp_path / "copy.tar"
    copy.write_bytes(one.read_bytes())
    with pytest.raises(UsageError, match="same archive"):
        spec_with(tmp_path, [one, copy]).validate()


def test_spec_round_trips_through_json_with_its_archives(tmp_path):
    one = tmp_path / "one.tar"
    write_archive(root_tar(tmp_path / "rootfs.tar"), IMAGE, one, 1767225600)
    spec = spec_with(tmp_path, [one])
    assert BuildSpec.from_json(spec.to_json()).preload_images == [one]


def test_a_locked_build_needs_exactly_the_locked_archives():
    from builder.lock.lockfile import Lock

    a, b = "a" * 64, "b" * 64
    lock = Lock({"preload_images": [{"sha256": a}]}, Path("x.lock.json"))
    lock.check_preload([a])
    with pytest.raises(UsageError, match="missing"):
        lock.check_preload([])
    with pytest.raises(UsageError, match="does not name"):
        lock.check_preload([a, b])
    with pytest.raises(UsageError, match="does not name"):
        Lock({}, Path("x.lock.json")).check_preload([b])


def test_preload_stage_puts_archives_and_their_loader_into_the_guest(tmp_path):
    from builder.stages import preload

    archive = tmp_path / "db.tar"
    write_archive(root_tar(tmp_path / "rootfs.tar"), IMAGE, archive, 1767225600)
    spec = spec_with(tmp_path, [archive])
    ctx = BuildContext(spec=spec, profile=spec.profile, work_dir=tmp_path / "work", log=Log(None))
    (ctx.rootfs / "etc").mkdir(parents=True)
    (ctx.rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (ctx.rootfs / "etc/group").write_text("root:x:0:\n")
    preload.run_stage(ctx)
    digest = read_archive(archive).sha256
    inside = ctx.rootfs / "var/lib/trove-builder/preload" / f"{digest[:16]}.tar"
    assert inside.read_bytes() == archive.read_bytes()
    assert inside.with_suffix(".tags").read_text() == "example/db:1.0\n"
    unit = (ctx.rootfs / "etc/systemd/system/trove-preload-images.service").read_text()
    # before the agent goes on to its main() (the launcher waits for guest-agent-setup.service)
    assert "Before=guest-agent-setup.service" in unit and "After=docker.service" in unit
    link = ctx.rootfs / "etc/systemd/system/multi-user.target.wants/trove-preload-images.service"
    assert link.is_symlink() and str(link.readlink()) == "/etc/systemd/system/trove-preload-images.service"
    assert ctx.results["preload_images"][0]["sha256"] == digest


def test_preload_stage_adds_nothing_without_archives(tmp_path):
    from builder.stages import preload

    spec = spec_with(tmp_path, [])
    ctx = BuildContext(spec=spec, profile=spec.profile, work_dir=tmp_path / "work", log=Log(None))
    ctx.rootfs.mkdir(parents=True)
    preload.run_stage(ctx)
    assert list(ctx.rootfs.iterdir()) == [] and ctx.results["preload_images"] == []
