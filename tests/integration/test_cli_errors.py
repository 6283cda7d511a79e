"""Bad input: one clear line on stderr, a non-zero exit, no traceback, nothing under the output name."""


import pytest

from tests.conftest import docker_available, run_tb


def assert_one_line_error(result, code, fragment):
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("trove-builder: error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("args,fragment", [
    (["centos", "9"], "unknown guest OS 'centos'"),
    (["ubuntu", "xenial"], "unknown ubuntu release 'xenial'"),
    (["ubuntu", "noble", "maybe"], "DEV_MODE must be true or false"),
    (["ubuntu", "jammy", "false", "ubuntu", "/tmp/x.qcow2", "--agent-version", "26.0.0"], "needs Python >= 3.11"),
    (["ubuntu", "noble", "false", "ubuntu", "/nonexistent/dir/x.qcow2"], "does not exist"),
    (["ubuntu", "noble", "false", "ubuntu", "/tmp", "--size", "5"], "is a directory"),
    (["ubuntu", "noble", "false", "ubuntu", "/tmp/x.qcow2", "--size", "1"], "image size"),
    (["ubuntu", "noble", "false", "ubuntu", "/tmp/x.qcow2", "--runtime", "lxc"], "unknown runtime 'lxc'"),
    (["ubuntu", "noble", "false", "ubuntu", "/tmp/x.qcow2", "--hooks-dir", "/nonexistent"], "hooks directory"),
])
def test_bad_input(args, fragment):
    assert_one_line_error(run_tb("build", *args), 2, fragment)


def test_non_executable_hook_is_refused(tmp_path):
    phase = tmp_path / "hooks" / "install.d"
    phase.mkdir(parents=True)
    hook = phase / "10-hello"
    hook.write_text("#!/bin/sh\necho hi\n")
    hook.chmod(0o644)
    result = run_tb("build", "debian", "bookworm", "false", "ubuntu", str(tmp_path / "x.qcow2"),
                    "--hooks-dir", str(tmp_path / "hooks"))
    assert_one_line_error(result, 2, "is not executable")
    assert not (tmp_path / "x.qcow2").exists()


def test_no_docker_engine(tmp_path):
    result = run_tb("build", "debian", "bookworm", "false", "ubuntu", str(tmp_path / "x.qcow2"),
                    env={"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"})
    assert_one_line_error(result, 1, "cannot reach the docker engine")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not docker_available(), reason="needs the Docker engine (make setup)")
def test_missing_builder_image(tmp_path):
    result = run_tb("build", "debian", "bookworm", "false", "ubuntu", str(tmp_path / "x.qcow2"),
                    "--builder-image", "trove-builder:no-such-tag")
    assert_one_line_error(result, 1, "builder image 'trove-builder:no-such-tag' not found")
    assert list(tmp_path.iterdir()) == []


def test_profiles_lists_every_release():
    result = run_tb("profiles")
    assert result.returncode == 0
    releases = {line.split()[1] for line in result.stdout.splitlines()}
    assert releases == {"bionic", "focal", "jammy", "noble", "bookworm", "trixie"}


def test_check_on_a_file_that_is_no_image(tmp_path):
    bogus = tmp_path / "x.qcow2"
    bogus.write_text("not an image")
    result = run_tb("check", str(bogus))
    assert result.returncode != 0 and "Traceback" not in result.stderr
