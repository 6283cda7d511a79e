"""Locks that vanish with their holder: what the interruption and concurrency handling stands on.

Every holder here is a real process, killed for real; the CLI is the real one.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.cache import workdirs
from builder.claims.flock import Flock
from builder.claims.output import claim_path as output_claim_path
from builder.guest.chroot import mounts_below
from tests.conftest import record_latency, run_tb

HOLD = """
import sys, time
from pathlib import Path
from builder.claims.flock import Flock
lock = Flock.try_acquire(Path(sys.argv[1]), holder=sys.argv[2])
print("held" if lock else "busy", flush=True)
time.sleep(600)
"""

# What debootstrap's tar does after its CLI was killed: writes into the dir from outside, without end.
WRITER = """
import itertools, os, sys
print("writing", flush=True)
for n in itertools.count():
    d = os.path.join(sys.argv[1], "usr", "lib", str(n % 50))
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, str(n)), "w").close()
"""


def holder_process(path: Path, text: str = "pid test") -> subprocess.Popen:
    """A process that holds `path` until killed (stands in for a running build)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), text], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def test_a_held_lock_is_refused_and_free_once_its_holder_is_killed(tmp_path):
    path = tmp_path / "x.lock"
    holder = holder_process(path)
    try:
        assert Flock.try_acquire(path) is None
    finally:
        kill(holder)
    lock = Flock.try_acquire(path)
    assert lock is not None
    lock.release()
    assert not path.exists()


def test_a_second_build_to_the_same_output_fails_at_once(tmp_path):
    out = tmp_path / "guest.qcow2"
    holder = holder_process(output_claim_path(out), "pid 4242")
    try:
        started = time.monotonic()
        # A missing builder image: were the lock ignored, this would fail differently (and fast).
        result = run_tb("build", "debian", "bookworm", "false", "ubuntu", str(out),
                        "--builder-image", "trove-builder:no-such-tag", "--cache-dir", str(tmp_path / "cache"),
                        timeout=60)
        elapsed = time.monotonic() - started
    finally:
        kill(holder)
    assert result.returncode == 1
    assert result.stderr == f"trove-builder: error: another build is writing {out} (pid 4242)\n"
    assert record_latency("second build to a locked output refused", elapsed) < 45  # no wait on the lock
    assert sorted(p.name for p in tmp_path.iterdir()) == [".guest.qcow2.lock"]  # the holder's, untouched


def test_the_output_lock_holder_sweeps_what_a_killed_build_left(tmp_path):
    out = tmp_path / "guest.qcow2"
    for name in (".guest.qcow2.partial-77", ".guest.qcow2.manifest.json.partial-77", ".guest.qcow2.sha256.partial-1"):
        (tmp_path / name).write_text("half written")
    (tmp_path / ".guest.qcow2.lock").write_text("pid 77")  # left by a SIGKILLed build: free
    (tmp_path / "other.qcow2").write_text("not ours")
    result = run_tb("build", "debian", "bookworm", "false", "ubuntu", str(out),
                    "--builder-image", "trove-builder:no-such-tag", "--cache-dir", str(tmp_path / "cache"),
                    timeout=60)
    assert "builder image 'trove-builder:no-such-tag' not found" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == ["other.qcow2"]


WATCHED = """
import sys, time
from builder.claims.watchdog import watch_owner
try:
    with watch_owner(sys.argv[1]):
        print("watching", flush=True)
        time.sleep(60)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_the_watchdog_interrupts_the_build_once_its_cli_is_gone(tmp_path):
    lock = tmp_path / ".guest.qcow2.lock"
    cli = holder_process(lock, "pid 1234")
    build = subprocess.Popen([sys.executable, "-c", WATCHED, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert build.stdout.readline().strip() == "watching"
        time.sleep(2.5)
        assert build.poll() is None, "interrupted while its CLI was alive"
        kill(cli)
        killed = time.monotonic()
        assert build.stdout.readline().strip() == "interrupted"
        # the poll is 1 s; a generous bound for two busy cores, the measured latency logged
        assert record_latency("watchdog: CLI killed -> build interrupted", time.monotonic() - killed) < 30
        assert build.wait(timeout=30) == 0
    finally:
        kill(cli)
        kill(build)
    assert not lock.exists(), "the watchdog took the lock over and, as its holder, removes it"


CHROOTED = """
import os, sys, time
os.chroot(sys.argv[1])
print("inside", flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts and chroot need root")
def test_stale_work_dirs_go_with_their_mounts_and_processes_live_and_unowned_ones_stay(tmp_path):
    work = tmp_path / "cache" / "work"
    dead = work / "build-dead"
    (dead / "rootfs" / "dev").mkdir(parents=True)
    # what a SIGKILLed --runtime none build leaves: a bind mount, a chrooted process, a free lock
    precious = tmp_path / "host-dev"
    precious.mkdir()
    (precious / "null").write_text("must survive")
    subprocess.run(["mount", "--bind", str(precious), str(dead / "rootfs" / "dev")], check=True)
    orphan = subprocess.Popen([sys.executable, "-c", CHROOTED, str(dead / "rootfs")], stdout=subprocess.PIPE, text=True)
    assert orphan.stdout.readline().strip() == "inside"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(dead / "rootfs")], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, workdirs.OWNER_ENV: os.path.realpath(dead)})
    assert writer.stdout.readline().strip() == "writing"
    Flock.try_acquire(workdirs.claim_path(dead)).release(remove=False)
    live = work / "build-live"
    live.mkdir()
    alive = holder_process(workdirs.claim_path(live))
    kept = work / "build-kept"  # no lock file: --keep-work-dir, or an older trove-builder's
    kept.mkdir()
    visitor = subprocess.Popen(["sleep", "600"], cwd=dead)  # someone looking around in it: spared
    said = []
    try:
        removed = workdirs.reap_stale(tmp_path / "cache", said.append)
        try:  # the reaper's kill, not the cleanup's below
            orphan_code = orphan.wait(timeout=30)
        except subprocess.TimeoutExpired:
            orphan_code = None
        writer_code = writer.poll()
    finally:
        kill(writer)
        kill(alive)
        if mounts_below(dead):
            subprocess.run(["umount", "-l", str(dead / "rootfs" / "dev")])
        kill(orphan)
        visitor_alive = visitor.poll() is None
        kill(visitor)
    assert removed == ["build-dead"]
    assert said == ["trove-builder: removed 1 stale work dir(s) of killed builds: build-dead"]
    assert orphan_code == -9, "the reaper did not kill the process chrooted into the stale work dir"
    assert writer_code == -9, "the reaper did not kill the build's process writing into its work dir from outside"
    assert not dead.exists() and not workdirs.claim_path(dead).exists()
    assert (precious / "null").read_text() == "must survive", "followed into a mount"
    assert live.is_dir() and kept.is_dir() and visitor_alive
    assert mounts_below(tmp_path) == []
