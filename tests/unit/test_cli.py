"""The command line's conventions, through the installed entry point (as a user types it): --version,
-h, completion, choices listed and refused in one line, environment variables honoured or refused,
and the two messages that used to mislead (a missing extra, an output that cannot be written)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from builder import __version__
from tests.conftest import run_tb
from tests.integration.test_cli_errors import assert_one_line_error

NO_SUCH_IMAGE = "trove-builder:no-such-tag"


def test_version_and_short_help():
    assert run_tb("--version").stdout == f"trove-builder {__version__}\n"
    short, long = run_tb("build", "-h"), run_tb("build", "--help")
    assert short.returncode == 0 and short.stdout == long.stdout


def test_help_lists_every_choice():
    text = " ".join(run_tb("build", "--help", env={"COLUMNS": "200"}).stdout.split())
    for choices in ("<docker|podman|none>", "<qcow2|raw>", "<zstd|zlib|none>", "<distro|docker-ce>"):
        assert choices in text
    assert "<bios|uefi>" in " ".join(run_tb("boot-test", "--help", env={"COLUMNS": "200"}).stdout.split())


def test_shell_completion_is_offered():
    result = run_tb("--show-completion", "bash", env={"SHELL": "/bin/bash"})
    assert result.returncode == 0 and "_TROVE_BUILDER_COMPLETE" in result.stdout


@pytest.mark.parametrize("args,env,fragment", [
    (["--runtime", "lxc"], {}, "'lxc' is not one of 'docker', 'podman', 'none'"),
    ([], {"TROVE_BUILDER_RUNTIME": "lxc"}, "(env var: 'TROVE_BUILDER_RUNTIME'): 'lxc' is not one of"),
    (["--format", "vhd"], {}, "'vhd' is not one of 'qcow2', 'raw'"),
    ([], {"GUEST_IMAGETYPE": "vhd"}, "(env var: 'GUEST_IMAGETYPE'): 'vhd' is not one of 'qcow2', 'raw'"),
    (["--compression", "lz4"], {}, "'lz4' is not one of 'zstd', 'zlib', 'none'"),
    (["--docker-source", "snap"], {}, "'snap' is not one of 'distro', 'docker-ce'"),
    (["--bogus"], {}, "No such option: --bogus"),
])
def test_bad_choices_are_one_line_errors(tmp_path, args, env, fragment):
    result = run_tb("build", "debian", "bookworm", "false", "ubuntu", str(tmp_path / "x.qcow2"), *args,
                    "--builder-image", NO_SUCH_IMAGE, env=env)
    assert_one_line_error(result, 2, fragment)
    assert list(tmp_path.iterdir()) == []


def test_firmware_choice_is_refused_in_one_line(tmp_path):
    image = tmp_path / "x.qcow2"
    image.write_bytes(b"")
    assert_one_line_error(run_tb("boot-test", str(image), "--firmware", "coreboot"), 2,
                          "'coreboot' is not one of 'bios', 'uefi'")


def no_engines(tmp_path) -> dict[str, str]:
    return {"CONTAINER_HOST": f"unix://{tmp_path}/no-podman.sock", "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}


def test_trove_builder_runtime_selects_the_runtime(tmp_path):
    result = run_tb("build", "debian", "bookworm", "false", "ubuntu", str(tmp_path / "x.qcow2"),
                    "--builder-image", NO_SUCH_IMAGE, env={**no_engines(tmp_path), "TROVE_BUILDER_RUNTIME": "podman"})
    assert_one_line_error(result, 1, f"cannot reach the Podman engine at unix://{tmp_path}/no-podman.sock")


def test_trovestack_guest_cachedir_is_the_cache(tmp_path):
    cache = tmp_path / "image-create"
    result = run_tb("build", "debian", "bookworm", "false", "ubuntu", str(tmp_path / "x.qcow2"),
                    "--builder-image", NO_SUCH_IMAGE, env={**no_engines(tmp_path), "GUEST_CACHEDIR": str(cache)})
    assert_one_line_error(result, 1, "cannot reach the Docker engine")
    assert cache.is_dir(), "GUEST_CACHEDIR was not used as the cache"


def test_path_trove_sets_the_controller_path():
    text = " ".join(run_tb("build", "--help", env={"COLUMNS": "200", "PATH_TROVE": "/srv/trove"}).stdout.split())
    assert "[env var: PATH_TROVE]" in text and "[default: /opt/stack/trove]" in text


def test_output_where_the_claim_cannot_be_created_says_why():
    result = run_tb("build", "debian", "bookworm", "false", "ubuntu", "/proc/x.qcow2", "--builder-image", NO_SUCH_IMAGE)
    line = assert_one_line_error(result, 1, "cannot write /proc/x.qcow2: creating .x.qcow2.lock in /proc failed")
    assert "another build" not in line


BLOCK_PYCDLIB = ("import sys; sys.modules['pycdlib'] = None; sys.argv = ['trove-builder', *sys.argv[1:]]; "
                 "from builder.cli import main; main()")


def test_boot_test_without_the_verify_extra_names_the_extra(tmp_path):
    """A plain `pip install` lacks pycdlib (None in sys.modules: Python's own 'not importable')."""
    image = tmp_path / "x.qcow2"
    image.write_bytes(b"")
    result = subprocess.run([sys.executable, "-c", BLOCK_PYCDLIB, "boot-test", str(image)],
                            capture_output=True, text=True, timeout=60)
    assert_one_line_error(result, 2, "boot-test needs pycdlib (not installed): pip install 'trove-builder[verify]'")
