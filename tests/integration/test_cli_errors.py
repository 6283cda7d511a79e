"""Bad input: one clear line on stderr, a non-zero exit, no traceback, nothing under the output name.

The cases of issue 5 item 1 and where each is tried (grow this list with the tests):
  unknown OS / release, DEV_MODE not a boolean ............... test_bad_input
  trove release needs a newer Python than the guest ........... test_bad_input
  bad image size, unknown runtime ............................. test_bad_input
  output in a missing directory, output is a directory ........ test_bad_input
  output in a read-only directory (ro mount, chattr +i) ....... test_read_only_output_directory
  cache directory read-only ................................... test_read_only_cache_directory
  unreadable hooks dir, non-executable hook ................... test_bad_input, test_non_executable_hook_is_refused
  no Docker engine (DOCKER_HOST: missing socket, refused, junk) test_no_docker_engine
  no permission on the Docker socket .......................... test_no_permission_on_the_docker_socket
  builder image missing ....................................... test_missing_builder_image
  mirror unreachable, mirror without the release (404) ........ test_bad_mirror
  mirror that fails a few times, then answers: accepted ....... test_flaky_mirror_is_retried_then_accepted
  not enough disk space, checked before starting .............. test_not_enough_space_*
  disk full during the build (ENOSPC, real build, tmpfs cache)  test_disk_full_during_the_build
  check on a file that is no image ............................ test_check_on_a_file_that_is_no_image
  bad lock file: missing, not JSON, not a lock, bad hash ....... test_bad_lock_file
  lock for another OS than the arguments ...................... test_bad_lock_file
  lock of a local agent source or an https mirror ............. test_lock_refuses_what_it_cannot_replay
  --offline with --runtime none, --offline without a lock ..... test_bad_lock_file,
                                                                 test_offline_without_a_lock_is_refused
  locked file not in the cache (offline), tampered hash ....... tests/integration/test_lock.py
"""

import http.server
import os
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import docker
import pytest
from testcontainers.core.container import DockerContainer

from tests.conftest import TB, docker_available, require_archive, run_tb

needs_docker = pytest.mark.skipif(not docker_available(), reason="needs the Docker engine (make setup)")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs (root only)")
# Retry quickly in tests: 4 attempts, 0.1 s then doubling.
FAST_RETRY = {"TROVE_BUILDER_NET_ATTEMPTS": "4", "TROVE_BUILDER_NET_BACKOFF": "0.1"}
NO_SUCH_IMAGE = "trove-builder:no-such-tag"


def assert_one_line_error(result, code, fragment):
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("trove-builder: error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


class LocalMirror:
    """A tiny archive on 127.0.0.1 with dists/<release>/InRelease, whose first `fail_first` answers fail."""

    def __init__(self, release: str = "bookworm", fail_first: int = 0, failure: str = "503"):
        self.release, self.fail_first, self.failure = release, fail_first, failure
        self.requests = 0
        lock = threading.Lock()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with lock:
                    mirror.requests += 1
                    n = mirror.requests
                if n <= mirror.fail_first:
                    if mirror.failure == "drop":  # close without a word: the client sees a reset/disconnect
                        self.close_connection = True
                        return
                    self.send_error(503, "Service Unavailable")
                    return
                if self.path == f"/debian/dists/{mirror.release}/InRelease":
                    body = f"Origin: Debian\nSuite: {mirror.release}\n".encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/debian"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror():
    """A healthy local mirror, so the cases after the mirror probe need no Internet."""
    served = LocalMirror()
    yield served.url
    served.close()


@contextmanager
def tmpfs(path: Path, size: str, *options: str):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs",
                              str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def build_args(out: Path, *extra: str) -> list[str]:
    return ["build", "debian", "bookworm", "false", "ubuntu", str(out), *extra]


@pytest.mark.parametrize("args,fragment", [
    (["centos", "9"], "unknown guest OS 'centos'"),
    (["ubuntu", "xenial"], "unknown ubuntu release 'xenial'"),
    (["ubuntu", "noble", "maybe"], "DEV_MODE must be true or false"),
    (["ubuntu", "jammy", "false", "ubuntu", "/tmp/x.qcow2", "--agent-version", "26.0.0"], "needs Python >= 3.11"),
    (["ubuntu", "noble", "false", "ubuntu", "/nonexistent/dir/x.qcow2"], "does not exist"),
    (["ubuntu", "noble", "false", "ubuntu", "/tmp", "--size", "5"], "is a directory"),
    (["ubuntu", "noble", "false", "ubuntu", "/tmp/x.qcow2", "--size", "1"], "image size"),
    (["ubuntu", "noble", "false", "ubuntu", "/tmp/x.qcow2", "--runtime", "lxc"],
     "'lxc' is not one of 'docker', 'podman', 'none'"),
    (["ubuntu", "noble", "false", "ubuntu", "/tmp/x.qcow2", "--hooks-dir", "/nonexistent"], "hooks directory"),
    (["ubuntu", "noble", "false", "ubuntu", "/tmp/x.qcow2", "--mirror", "ftp.debian.org/debian"],
     "is not an http://, https:// or file:// URL"),
])
def test_bad_input(args, fragment):
    assert_one_line_error(run_tb("build", *args), 2, fragment)


LOCK = ('{"trove_builder_lock": 1, "source_date_epoch": 1767225600, "target": {"os": "debian", '
        '"release": "bookworm", "dev_mode": false, "guest_user": "ubuntu", "agent_version": "26.0.0", '
        '"agent_source": null, "mirror": "http://deb.debian.org/debian", "docker_source": "distro", '
        '"pip_index_url": "https://pypi.org/simple", "controller_user": "stack", '
        '"controller_path": "/opt/stack/trove", '
        '"sync_logs": false}, "apt": {"indexes": [], "packages": [{"name": "bash", "arch": "amd64", "version": "5.2", '
        '"url": "http://deb.debian.org/debian/pool/main/b/bash/bash_5.2_amd64.deb", "sha256": "SHA"}]}, '
        '"python": {"files": []}}')


@pytest.mark.parametrize("content, positional, options, fragment", [
    (None, [], [], "is not a readable file"),
    ("{not json", [], [], "is not valid JSON"),
    ('{"hello": 1}', [], [], "not a trove-builder lock"),
    (LOCK.replace("SHA", "0123"), [], [], "package bash 5.2 (amd64): '0123' is not a sha256"),
    (LOCK.replace("SHA", "a" * 64), ["ubuntu"], [], "is for OS debian, not ubuntu"),
    (LOCK.replace("SHA", "a" * 64), [], ["--runtime", "none", "--offline"], "--offline needs a container runtime"),
])
def test_bad_lock_file(tmp_path, content, positional, options, fragment):
    lock = tmp_path / "guest.lock.json"
    if content is not None:
        lock.write_text(content)
    out = tmp_path / "x.qcow2"
    assert_one_line_error(run_tb("build", *positional, "--lock", str(lock), "-o", str(out), *options), 2, fragment)
    assert not out.exists()


@pytest.mark.parametrize("args, fragment", [
    (["--agent-source", "/tmp"], "is a local path: only releases on a package index can be locked"),
    (["--mirror", "https://deb.debian.org/debian"], "use an http:// mirror"),
])
def test_lock_refuses_what_it_cannot_replay(tmp_path, args, fragment):
    result = run_tb("lock", "debian", "bookworm", "-o", str(tmp_path / "x.lock.json"), *args)
    assert_one_line_error(result, 2, fragment)
    assert not (tmp_path / "x.lock.json").exists()


def test_offline_without_a_lock_is_refused(tmp_path):
    assert_one_line_error(run_tb(*build_args(tmp_path / "x.qcow2", "--offline")), 2, "--offline needs --lock FILE")


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


# ---- output and cache directories that cannot be written ----

@needs_root
@pytest.mark.parametrize("how", ["read-only mount", "chattr +i"])
def test_read_only_output_directory(tmp_path, how):
    """Root ignores mode bits, so the directory is made read-only the ways root cannot write through."""
    out_dir = tmp_path / "out"
    if how == "read-only mount":
        context = tmpfs(out_dir, "1m", "ro")
        fragment = f"output directory {out_dir} is not writable (read-only file system)"
    else:
        out_dir.mkdir()
        if subprocess.run(["chattr", "+i", str(out_dir)], capture_output=True).returncode != 0:
            pytest.skip("this filesystem has no immutable flag")
        context = nullcontext(out_dir)
        fragment = f"output directory {out_dir} is not writable"
    try:
        with context:
            result = run_tb(*build_args(out_dir / "x.qcow2"))
            assert_one_line_error(result, 2, fragment)
            assert list(out_dir.iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(out_dir)], capture_output=True)


@needs_root
def test_read_only_cache_directory(tmp_path):
    with tmpfs(tmp_path / "cache", "1m", "ro") as cache:
        result = run_tb(*build_args(tmp_path / "x.qcow2", "--cache-dir", str(cache)))
        assert_one_line_error(result, 2, f"cache directory {cache} is not writable (Read-only file system)")
    assert not (tmp_path / "x.qcow2").exists()


# ---- disk space ----

@needs_root
def test_not_enough_space_for_the_cache_and_work_dir(tmp_path, mirror):
    """Default work dir is in the cache: a 64 MiB cache cannot hold the ~6 GiB a build needs there."""
    with tmpfs(tmp_path / "cache", "64m") as cache:
        started = time.monotonic()
        result = run_tb(*build_args(tmp_path / "x.qcow2", "--cache-dir", str(cache), "--mirror", mirror))
        line = assert_one_line_error(result, 1, f"not enough free space in {cache}/work: 0.1 GiB free")
        assert "needs about 6.0 GiB there (work dir 4.0 + cache 2.0 GiB)" in line
        assert time.monotonic() - started < 20
        assert sorted(p.name for p in cache.iterdir()) == []


@needs_root
def test_not_enough_space_for_the_output(tmp_path, mirror):
    with tmpfs(tmp_path / "out", "64m") as out_dir:
        result = run_tb(*build_args(out_dir / "x.qcow2", "--mirror", mirror))
        line = assert_one_line_error(result, 1, f"not enough free space in {out_dir}: 0.1 GiB free")
        assert "(output 1.0 GiB)" in line
        assert list(out_dir.iterdir()) == []


@needs_root
@needs_docker
@pytest.mark.parametrize("size,enough", [("4600m", False), ("6300m", True)])
def test_not_enough_space_counts_places_on_one_filesystem_together(tmp_path, mirror, size, enough):
    """Work dir (4 GiB) and cache (2 GiB) on one 4.5 GiB disk: each would fit alone, both do not."""
    with tmpfs(tmp_path / "disk", size) as disk:
        result = run_tb(*build_args(tmp_path / "x.qcow2", "--cache-dir", str(disk / "cache"),
                                    "--work-dir", str(disk / "work"), "--mirror", mirror,
                                    "--builder-image", NO_SUCH_IMAGE))
        if enough:  # accepted: the build gets as far as looking for the builder image
            assert_one_line_error(result, 1, f"builder image '{NO_SUCH_IMAGE}' not found")
        else:
            assert_one_line_error(result, 1, f"not enough free space in {disk / 'work'}: 4.5 GiB free, "
                                             f"a build needs about 6.0 GiB there")


@needs_root
@needs_docker
def test_disk_full_during_the_build(tmp_path, builder_image):
    """A real build whose cache (and so its work dir) is a 48 MiB tmpfs: debootstrap fills it in seconds.

    The space check is skipped (as an operator may, with a warm cache) so the build starts."""
    require_archive("debian")
    out = tmp_path / "out" / "x.qcow2"
    out.parent.mkdir()
    with tmpfs(tmp_path / "cache", "48m") as cache:
        result = run_tb(*build_args(out, "--cache-dir", str(cache), "--builder-image", builder_image),
                        env={"TROVE_BUILDER_SKIP_SPACE_CHECK": "1"}, timeout=600)
        line = assert_one_line_error(result, 1,
                                     f"stage bootstrap failed: no space left on device in {cache}/work/build-")
        assert line.endswith("(work dir)")
        assert list((cache / "work").iterdir()) == []  # the scratch dir went
    assert list(out.parent.iterdir()) == []
    assert docker.from_env().containers.list(all=True, filters={"label": f"trove-builder.output={out}"}) == []


# ---- the distribution mirror ----

@pytest.mark.parametrize("kind", ["nothing listens", "404"])
def test_bad_mirror(tmp_path, kind):
    served = LocalMirror(release="trixie") if kind == "404" else None  # has no bookworm
    url = served.url if served else "http://127.0.0.1:9/debian"
    try:
        started = time.monotonic()
        result = run_tb(*build_args(tmp_path / "x.qcow2", "--mirror", url), env=FAST_RETRY)
        elapsed = time.monotonic() - started
    finally:
        if served:
            served.close()
    if kind == "404":
        assert_one_line_error(result, 1, f"mirror {url} has no bookworm release ({url}/dists/bookworm/InRelease "
                                         f"and Release: HTTP 404)")
        assert served.requests == 2  # a 404 is an answer: not retried
    else:
        assert_one_line_error(result, 1, f"mirror {url} is unreachable (Connection refused, 4 attempts)")
        assert result.stdout.count("trying again") == 3
    assert elapsed < 15
    assert list(tmp_path.iterdir()) == []


@needs_docker
@pytest.mark.parametrize("failure", ["503", "drop"])
def test_flaky_mirror_is_retried_then_accepted(tmp_path, failure):
    served = LocalMirror(fail_first=2, failure=failure)
    try:
        result = run_tb(*build_args(tmp_path / "x.qcow2", "--mirror", served.url, "--builder-image", NO_SUCH_IMAGE),
                        env=FAST_RETRY)
    finally:
        served.close()
    # accepted: the build goes on to the next step, which fails on purpose (no such builder image)
    assert_one_line_error(result, 1, f"builder image '{NO_SUCH_IMAGE}' not found")
    assert served.requests == 3 and result.stdout.count("trying again") == 2


# ---- the container engine ----

@pytest.mark.parametrize("docker_host,fragment", [
    ("unix://{tmp}/no-such.sock", "cannot reach the Docker engine at unix://{tmp}/no-such.sock (set by DOCKER_HOST): "
                                  "no such socket; is it running?"),
    ("tcp://127.0.0.1:9",
     "cannot reach the Docker engine at tcp://127.0.0.1:9 (set by DOCKER_HOST): connection refused"),
    ("bogus://x", "cannot reach the Docker engine at bogus://x (set by DOCKER_HOST): Invalid bind address protocol"),
])
def test_no_docker_engine(tmp_path, mirror, docker_host, fragment):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run_tb(*build_args(out_dir / "x.qcow2", "--mirror", mirror),
                    env={"DOCKER_HOST": docker_host.format(tmp=tmp_path)})
    assert_one_line_error(result, 1, fragment.format(tmp=tmp_path))
    assert list(out_dir.iterdir()) == []


@needs_root
@pytest.mark.skipif(not Path("/var/run/docker.sock").exists() or shutil.which("setpriv") is None,
                    reason="needs the Docker socket and setpriv")
def test_no_permission_on_the_docker_socket(mirror):
    """The CLI run as 'nobody' (not in the docker group) with a HOME of its own (pytest's tmp is root's only)."""
    home = Path(tempfile.mkdtemp(prefix="trove-builder-nobody-"))
    home.chmod(0o755)
    try:
        shutil.chown(home, "nobody", "nogroup")
        env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "TROVE_BUILDER_CACHE", "XDG_CACHE_HOME")}
        result = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *TB,
                                 *build_args(home / "x.qcow2", "--mirror", mirror)],
                                capture_output=True, text=True, timeout=120, env={**env, "HOME": str(home)})
        assert_one_line_error(result, 1, "user 'nobody' cannot reach the Docker engine at "
                                         "unix:///var/run/docker.sock (permission denied): add the user to the "
                                         "'docker' group")
        assert "rootless" in result.stderr
        assert not (home / "x.qcow2").exists()
    finally:
        shutil.rmtree(home)


@needs_docker
def test_missing_builder_image(tmp_path, mirror):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run_tb(*build_args(out_dir / "x.qcow2", "--mirror", mirror, "--builder-image", NO_SUCH_IMAGE))
    assert_one_line_error(result, 1, f"builder image '{NO_SUCH_IMAGE}' not found")
    assert list(out_dir.iterdir()) == []


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


def test_docker_run_without_the_flags_names_them_at_once(builder_image, tmp_path):
    """`docker run trove-builder build ...` as first typed: no capabilities added. The build (runtime none,
    the image's default) stops before any stage, naming the flags, and leaves nothing."""
    (tmp_path / "out").mkdir()
    bare = (DockerContainer(builder_image).with_volume_mapping(str(tmp_path / "out"), "/out", "rw")
            .with_command(["build", "debian", "bookworm", "false", "ubuntu", "/out/x.qcow2"]))
    with bare:
        status = bare.get_wrapped_container().wait(timeout=120)["StatusCode"]
        stdout, stderr = (b.decode() for b in bare.get_logs())
    result = subprocess.CompletedProcess([], status, stdout, stderr)
    line = assert_one_line_error(result, 1, "this process lacks CAP_SYS_ADMIN")
    assert line.endswith("start the container with --cap-add SYS_ADMIN --cap-add MKNOD --cap-add AUDIT_WRITE "
                         "--security-opt seccomp=unconfined --security-opt apparmor=unconfined")
    assert "[1/8]" not in stdout and list((tmp_path / "out").iterdir()) == []
