"""Real builds interrupted at several stages (SIGINT, SIGTERM, SIGKILL of the CLI, a killed container)
leave nothing behind; a second build to the same output is refused at once; two builds to different
outputs share the download cache; and the next build succeeds.

All builds are debian bookworm in the real builder container, with a cache of their own (seeded with
hard links to the machine's .deb and wheel downloads, when there are some, to save time).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import docker
import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.waiting_utils import wait_for_logs

from builder.guest.chroot import mounts_below
from builder.spec import default_cache_dir
from tests.conftest import REPO, TB, file_sha256, record_hash, record_latency

pytestmark = pytest.mark.slow

WATCHDOG_GRACE = 120  # seconds for a build container to notice its dead CLI and clean up (busy cores)


class Build:
    """One `trove-builder build` CLI, its stdout followed line by line.

    Without the stage cache: every build really runs the stage it is interrupted in (a checkpoint
    from an earlier build would skip it, or finish the image before the signal arrives)."""

    def __init__(self, out: Path, cache: Path, image: str, *extra: str):
        self.out = out
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            [*TB, "build", "debian", "bookworm", "false", "ubuntu", str(out), "--builder-image", image,
             "--cache-dir", str(cache), "--no-cache", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 600) -> str:
        """Block until a stdout line matches `pattern` (a stage line: r'\\[\\d+/\\d+\\] system:')."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if line is None or time.monotonic() > deadline:
                pytest.fail(f"never saw /{pattern}/; exit {self.proc.poll()}, output:\n" + "\n".join(self.lines)
                            + "\n" + (self.proc.stderr.read() if self.proc.poll() is not None else ""))
            if re.search(pattern, line):
                return line

    def stage(self, name: str, timeout: float = 600) -> None:
        self.wait_for(rf"^\[\d+/\d+\] {name}: ", timeout)

    def send(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def finish(self, timeout: float = 240) -> tuple[int, str, str]:
        rc = self.proc.wait(timeout=timeout)
        while self._queue.get() is not None:
            pass
        return rc, "\n".join(self.lines), self.proc.stderr.read()


def containers(out: Path, running_only: bool = False) -> list[str]:
    found = docker.from_env().containers.list(all=not running_only,
                                              filters={"label": f"trove-builder.output={out.resolve()}"})
    return [c.name for c in found]


def work_entries(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "work").glob("build-*"))


def loop_devices_on(*dirs: Path) -> list[str]:
    """Loop devices backed by a file under `dirs` (the builder should never make one)."""
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        target = backing.read_text().strip()
        if any(target.startswith(str(d.resolve()) + "/") for d in dirs):
            found.append(f"{backing.parts[3]} -> {target}")
    return found


def assert_left_nothing(out: Path, cache: Path) -> None:
    """What an interrupted build must not leave: output or temporary files, containers, mounts,
    loop devices, work dirs."""
    assert sorted(p.name for p in out.parent.iterdir()) == [], "files left in the output dir"
    assert containers(out) == [], "build container left"
    assert mounts_below(cache) == [], "mounts left under the cache"
    assert loop_devices_on(cache, out.parent) == [], "loop devices left"
    assert work_entries(cache) == [], "work dir left"


def wait_until(check, timeout: float, what: str):
    """Poll `check` until it returns something true (which is returned); fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        time.sleep(0.5)
    return found


class Inside:
    """The build container seen from inside: its processes (docker exec) and its mount namespace, held
    open from the host (nsenter) so that what the build left mounted there can still be read once the
    container is gone (the chroot's mounts never show on the host)."""

    def __init__(self, out: Path):
        [self.name] = wait_until(lambda: containers(out, running_only=True), 300, "the build container running")
        self.container = docker.from_env().containers.get(self.name)
        pid = str(self.container.attrs["State"]["Pid"])
        self.holder = subprocess.Popen(["nsenter", "-t", pid, "-m", "sleep", "infinity"])

    def __enter__(self) -> Inside:
        return self

    def __exit__(self, *exc) -> None:
        self.holder.kill()
        self.holder.wait()

    def build_mounts(self) -> list[str]:
        """Mount points under the work dirs, in the container's mount namespace (alive or not)."""
        text = Path(f"/proc/{self.holder.pid}/mountinfo").read_text()
        return [line.split()[4] for line in text.splitlines() if line.split()[4].startswith("/cache/work/")]

    def processes(self) -> list[str]:
        """Command lines of the container's processes ([] once it has stopped)."""
        try:
            script = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done"
            listed = self.container.exec_run(["sh", "-c", script], stderr=False)
        except docker.errors.APIError:  # stopped meanwhile
            return []
        return [line.strip() for line in listed.output.decode(errors="replace").splitlines() if line.strip()]

    def running(self, pattern: str, timeout: float = 600) -> str:
        """Wait until a process whose command line matches `pattern` runs in the container; return it."""
        return wait_until(lambda: next((c for c in self.processes() if re.search(pattern, c)), None), timeout,
                          f"a process /{pattern}/ in the build container")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A cache for these builds only; downloads this machine already made are hard-linked in."""
    path = tmp_path_factory.mktemp("interrupt-cache")
    shared = default_cache_dir()
    for sub in ("apt/debian-bookworm", "pip"):
        if (shared / sub).is_dir():
            (path / sub).parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-al", str(shared / sub), str(path / sub)], capture_output=True)
            for partial in (path / sub).rglob("partial"):
                shutil.rmtree(partial, ignore_errors=True)  # another build's downloads in flight
    return path


def output(tmp_path: Path, name: str = "guest") -> Path:
    out_dir = tmp_path / name
    out_dir.mkdir()
    return out_dir / "trove-guest-debian-bookworm.qcow2"


def stages_started(stdout: str) -> list[str]:
    return re.findall(r"^\[\d+/\d+\] (\w+): ", stdout, re.M)


def test_ctrl_c_during_bootstrap(builder_image, cache, tmp_path):
    out = output(tmp_path)
    build = Build(out, cache, builder_image)
    build.stage("bootstrap")
    with Inside(out) as inside:
        print("running at the signal:", inside.running(r"\bdebootstrap\b"))
        build.send(signal.SIGINT)
        rc, stdout, stderr = build.finish()
        assert rc == 130, stdout + stderr
        assert "trove-builder: interrupted" in stderr
        assert stages_started(stdout) == ["bootstrap"], "the signal came after the stage it was meant for"
        assert inside.build_mounts() == [], "the build left mounts in its container"
    assert_left_nothing(out, cache)


def test_sigterm_during_system(builder_image, cache, tmp_path):
    out = output(tmp_path)
    build = Build(out, cache, builder_image)
    build.stage("system")
    with Inside(out) as inside:
        # apt installs in the chroot, with /proc, /sys, /dev and the cache mounted
        print("running at the signal:", inside.running(r"\b(apt-get|dpkg)\b"))
        mounted = inside.build_mounts()
        assert mounted, "no chroot mounts while apt runs: the test would prove nothing"
        build.send(signal.SIGTERM)
        rc, stdout, stderr = build.finish()
        assert rc == 130, stdout + stderr
        assert stages_started(stdout)[-1] == "system", "the signal came after the stage it was meant for"
        assert inside.build_mounts() == [], f"the build left mounts in its container (had {mounted})"
    assert_left_nothing(out, cache)


def test_a_killed_container_leaves_a_work_dir_the_next_build_removes(builder_image, cache, tmp_path):
    out = output(tmp_path)
    build = Build(out, cache, builder_image)
    build.stage("bootstrap")
    with Inside(out) as inside:
        inside.running(r"\bdebootstrap\b")
    [name] = containers(out, running_only=True)
    docker.from_env().containers.get(name).kill()
    rc, stdout, stderr = build.finish()
    assert rc == 137
    assert stderr == "trove-builder: error: the build container was killed (signal 9)\n"
    assert sorted(p.name for p in out.parent.iterdir()) == [] and containers(out) == []
    [left, lock] = work_entries(cache)  # no cleanup ran: the next build must do it
    assert lock == left + ".lock"

    nxt = Build(out, cache, builder_image)
    nxt.wait_for(rf"^trove-builder: removed 1 stale work dir\(s\) of killed builds: {left}$", timeout=120)
    nxt.stage("bootstrap")
    nxt.send(signal.SIGINT)
    assert nxt.finish()[0] == 130
    assert_left_nothing(out, cache)


def test_a_second_build_to_the_same_output_is_refused_at_once(builder_image, cache, tmp_path):
    out = output(tmp_path)
    first = Build(out, cache, builder_image)
    first.stage("bootstrap")
    started = time.monotonic()
    second = Build(out, cache, builder_image)
    rc, stdout, stderr = second.finish(timeout=120)
    assert record_latency("second build to the same output refused", time.monotonic() - started) < 60
    assert rc == 1
    assert stderr == f"trove-builder: error: another build is writing {out} (pid {first.proc.pid})\n"
    assert first.proc.poll() is None, "the first build was disturbed"
    assert len(containers(out, running_only=True)) == 1
    first.send(signal.SIGINT)
    assert first.finish()[0] == 130
    assert_left_nothing(out, cache)


def test_sigkill_of_a_runtime_none_build_leaves_mounts_the_next_build_removes(builder_image, cache, tmp_path):
    """--runtime none (the image's default), here inside a plain builder container as the README shows: a
    SIGKILL leaves the chroot's mounts (the build's own /dev bind among them) and its running apt behind;
    the next build kills those processes, unmounts without following into /dev, and removes the work dir."""
    out = output(tmp_path)
    plain = (DockerContainer(builder_image)
             .with_kwargs(entrypoint="sh", cap_add=["SYS_ADMIN", "MKNOD"],
                          security_opt=["seccomp=unconfined", "apparmor=unconfined"])
             .with_command(["-c", "echo ready; exec sleep infinity"])
             .with_volume_mapping(str(cache), "/cache", "rw").with_volume_mapping(str(out.parent), "/out", "rw"))

    def sh(script: str) -> str:
        return plain.exec(["sh", "-c", script]).output.decode(errors="replace")

    def start(tag: str) -> None:
        plain.get_wrapped_container().exec_run(
            ["sh", "-c", f"echo $$ > /tmp/{tag}.pid; exec trove-builder build debian bookworm false ubuntu "
                         f"/out/{out.name} --cache-dir /cache --no-cache > /tmp/{tag}.log 2>&1"], detach=True)

    def build_mounts() -> list[str]:
        return [line.split()[4] for line in sh("cat /proc/self/mountinfo").splitlines()
                if line.split()[4].startswith("/cache/work/")]

    def chrooted() -> list[str]:
        return sh("for p in /proc/[0-9]*; do readlink $p/root; done | grep '^/cache/work/' || true").split()

    with plain:  # stopped and removed on failure and Ctrl-C too
        wait_for_logs(plain, "ready", timeout=60)
        try:
            start("first")
            wait_until(lambda: len(build_mounts()) >= 3, 600, "the bootstrap stage's chroot mounts")
            wait_until(chrooted, 300, "a process (apt) running in the chroot")
            sh("kill -9 $(cat /tmp/first.pid)")
            assert build_mounts() and work_entries(cache), "nothing left to clean: the test proves nothing"

            start("second")
            wait_until(lambda: re.search(r"^\[\d+/\d+\] bootstrap: ", sh("cat /tmp/second.log"), re.M), 120,
                       "the next build's bootstrap")
            sh("kill -INT $(cat /tmp/second.pid)")
            wait_until(lambda: "trove-builder: interrupted" in sh("cat /tmp/second.log"), 120,
                       "the interrupt handled")
            log = sh("cat /tmp/second.log")
            assert re.search(r"^trove-builder: removed 1 stale work dir\(s\) of killed builds: build-", log, re.M), log
            assert build_mounts() == [] and chrooted() == []
            assert sh("test -c /dev/null && echo ok").strip() == "ok", "the reaper followed into /dev"
            assert_left_nothing(out, cache)
        except BaseException:
            print("first build:", sh("cat /tmp/first.log"), "second build:", sh("cat /tmp/second.log"), sep="\n")
            raise


@pytest.mark.extended  # two cold builds at once: not in `make test` (README, Tests)
def test_sigkill_of_the_cli_beside_a_build_that_succeeds(builder_image, cache, images, tmp_path):
    """Two builds to different outputs share the cache through bootstrap and system; one CLI is
    SIGKILLed in the agent stage (its container notices and cleans up); the other succeeds, with the
    very bytes of the session's bookworm image."""
    killed_out, good_out = output(tmp_path, "killed"), output(tmp_path, "good")
    killed = Build(killed_out, cache, builder_image)
    good = Build(good_out, cache, builder_image)
    killed.stage("agent", timeout=900)
    good.stage("agent", timeout=900)
    with Inside(killed_out) as inside:
        print("running at the signal:", inside.running(r"\bpip\b"))
        killed.send(signal.SIGKILL)
        assert killed.finish()[0] == -signal.SIGKILL
        killed_at = time.monotonic()
        wait_until(lambda: containers(killed_out, running_only=True) == [], WATCHDOG_GRACE,
                   "the orphaned build container stopped")
        record_latency("CLI SIGKILLed -> its build container stopped", time.monotonic() - killed_at)
        assert inside.build_mounts() == [], "the orphaned build left mounts in its container"
    wait_until(lambda: len(work_entries(cache)) == 2, 60, "its work dir removed")  # the good build's remain
    assert sorted(p.name for p in killed_out.parent.iterdir()) == [], "files left in the output dir"

    rc, stdout, stderr = good.finish(timeout=1200)
    assert rc == 0, stdout[-3000:] + stderr
    assert sorted(p.name for p in good_out.parent.iterdir()) == sorted(
        [good_out.name, good_out.name + ".sha256", good_out.name + ".manifest.json", good_out.name + ".spdx.json",
         good_out.name + ".cdx.json", good_out.name + ".lock.json"])
    assert subprocess.run(["qemu-img", "check", str(good_out)], capture_output=True).returncode == 0
    assert record_hash("bookworm, --no-cache, beside a SIGKILLed build sharing its cache", good_out) == \
        file_sha256(images.get("debian", "bookworm")), "not the session image's bytes"
    assert containers(good_out) == [] and work_entries(cache) == [] and mounts_below(cache) == []

    # the next build clears the exited container the SIGKILLed CLI could not remove
    [stale] = containers(killed_out)
    nxt = Build(killed_out, cache, builder_image)
    nxt.wait_for(rf"^trove-builder: removed 1 stale build container\(s\) of killed builds: {stale}$", timeout=120)
    nxt.stage("bootstrap")
    nxt.send(signal.SIGINT)
    assert nxt.finish()[0] == 130
    assert_left_nothing(killed_out, cache)
