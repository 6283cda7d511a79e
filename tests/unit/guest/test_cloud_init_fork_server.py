"""The fork server that runs cloud-init < 24.3's stages from one set of imports (bookworm, bionic).

It runs here as in a guest, with a stand-in `cloudinit` package (the real one needs a booted
guest: the e2e boots of bookworm and bionic run it), and each stage is asked for with the command
its unit's drop-in runs (`printf start | nc -U <socket>`, the reply then run by the shell)."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.guest import render
from tests.unit.guest.test_templates import context

STAND_IN_MAIN = '''
import os, sys
with open(os.environ["STAND_IN_LOG"], "a") as log:
    log.write("imported %d\\n" % os.getpid())

def main(argv):
    stage = " ".join(argv[1:])
    with open(os.environ["STAND_IN_LOG"], "a") as log:
        log.write("ran %s|%s|%d\\n" % (argv[0], stage, os.getpid()))
    print("Cloud-init stand-in running '%s'" % stage, flush=True)
    if stage == "modules --mode=config":
        return 3  # cloud-init returns its count of errors
    if stage == "modules --mode=final":
        raise RuntimeError("a stage that fails")
'''


def _stage_command(dropin: str, sockets: Path) -> str:
    command = re.search(r"^ExecStart=/bin/sh -c '(.*)'$", dropin, re.M).group(1)
    # as systemd passes it: "$$" is its literal "$" (no other specifier or variable is used)
    assert "%" not in command and "$" not in command.replace("$$", ""), command
    return command.replace("$$", "$").replace("/run/cloud-init/share", str(sockets))


@pytest.fixture
def server(tmp_path):
    if not shutil.which("nc"):
        pytest.fail("nc (netcat-openbsd) is missing: scripts/setup-host.sh installs it")
    ctx = context(tmp_path, os="debian", release="bookworm")
    files = {path: text for path, _, _, text in render.stage_files("system", ctx.template_context())}
    script = tmp_path / "cloud-init-fork-server"
    script.write_text(files["/usr/local/sbin/cloud-init-fork-server"])
    package = tmp_path / "lib" / "cloudinit"
    (package / "cmd").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cmd" / "__init__.py").write_text("")
    (package / "cmd" / "main.py").write_text(STAND_IN_MAIN)
    sockets, log = tmp_path / "share", tmp_path / "stand-in.log"
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "lib"), CLOUD_INIT_SOCKET_DIR=str(sockets),
               STAND_IN_LOG=str(log))
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (sockets / "final.sock").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the server never listened"
        time.sleep(0.05)
    units = {stage: _stage_command(files[f"/etc/systemd/system/{unit}.service.d/single-process.conf"], sockets)
             for unit, stage in [("cloud-init-local", "local"), ("cloud-init", "network"),
                                 ("cloud-config", "config"), ("cloud-final", "final")]}
    yield proc, units, log
    proc.kill()
    proc.wait()


def test_each_stage_runs_in_a_fork_of_one_import_with_its_own_exit_status(server):
    proc, units, log = server
    status = {}
    for stage in ("local", "network", "config", "final"):  # systemd's order
        done = subprocess.run(["/bin/sh", "-c", units[stage]], capture_output=True, text=True, timeout=60)
        status[stage] = done.returncode
    assert proc.wait(timeout=30) == 0, "the server did not end after the final stage"
    # what the stage units see: cloud-init's exit status (its count of errors; 1 for an exception)
    assert status == {"local": 0, "network": 0, "config": 3, "final": 1}
    lines = log.read_text().splitlines()
    imports = [line for line in lines if line.startswith("imported")]
    assert imports == [f"imported {proc.pid}"], "cloud-init was imported again, not only in the server"
    ran = [line.split(" ", 1)[1].split("|") for line in lines if line.startswith("ran")]
    assert [(argv0, stage) for argv0, stage, _ in ran] == [
        ("/usr/bin/cloud-init", "init --local"), ("/usr/bin/cloud-init", "init"),
        ("/usr/bin/cloud-init", "modules --mode=config"), ("/usr/bin/cloud-init", "modules --mode=final")]
    pids = {int(pid) for _, _, pid in ran}
    assert len(pids) == 4 and proc.pid not in pids, "the stages did not each run in a child of their own"
    # the stages' own output reaches the server's (journal+console in a guest)
    assert "Cloud-init stand-in running 'init --local'" in proc.stdout.read()


def test_a_stage_asked_for_out_of_order_still_runs(server):
    """systemd orders the units; the server does not hang on a stage whose unit did not run."""
    proc, units, log = server
    done = subprocess.run(["/bin/sh", "-c", units["network"]], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "ran /usr/bin/cloud-init|init|" in log.read_text()
    assert proc.poll() is None, "the server ended before the other stages ran"


def test_a_stage_unit_fails_with_a_reason_when_the_server_gives_no_answer(server):
    """A server that died (or never listened) must not let the stage units pass without running."""
    proc, units, log = server
    proc.kill()
    proc.wait()
    done = subprocess.run(["/bin/sh", "-c", units["local"]], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == "cloud-init-main.service gave no answer for the local stage"
    assert "ran " not in (log.read_text() if log.exists() else "")
