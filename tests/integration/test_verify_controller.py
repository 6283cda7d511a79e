"""The dev-mode fake controller, driven exactly as a dev guest drives it: rsync over ssh with the
deploy key, to user@10.0.2.100:<path>/, through the same relay command QEMU's guestfwd runs."""

from __future__ import annotations

import shutil
import subprocess

import asyncssh  # noqa: F401  (the verify extra: a broken install must fail, not skip)
import pytest

from builder.verify.controller import FakeController, public_key_of


@pytest.fixture
def tree(tmp_path):
    if shutil.which("rsync") is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.fail("rsync and the OpenSSH client are needed (scripts/setup-host.sh installs them)")
    src = tmp_path / "trove"
    (src / "contrib").mkdir(parents=True)
    (src / "contrib" / "trove-guestagent").write_text("#!/usr/bin/env python3\n")
    (src / "requirements.txt").write_text("oslo.messaging\n")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref: refs/heads/master\n")
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(tmp_path / "id_rsa")],
                   check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    return tmp_path


def _rsync(ctl: FakeController, key, user: str, remote: str, dest) -> subprocess.CompletedProcess:
    # The guest unit's command, with the relay as ProxyCommand instead of QEMU's guestfwd.
    ssh = (f"ssh -i {key} -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR "
           f"-o BatchMode=yes -o ProxyCommand='{ctl.relay_command()}'")
    return subprocess.run(["rsync", "-a", "--exclude=.*", "-e", ssh, f"{user}@10.0.2.100:{remote}", str(dest)],
                           capture_output=True, text=True, timeout=120)


def test_guest_rsync_gets_the_tree_without_dotfiles(tree):
    with FakeController(tree / "trove", tree / "id_rsa", user="stack", path="/opt/stack/trove") as ctl:
        res = _rsync(ctl, tree / "id_rsa", "stack", "/opt/stack/trove/", tree / "guest")
        assert res.returncode == 0, res.stderr
        assert ctl.served and ctl.logins == ["stack"]
        assert ctl.exit_codes == [0]
    assert (tree / "guest" / "contrib" / "trove-guestagent").read_text() == "#!/usr/bin/env python3\n"
    assert (tree / "guest" / "requirements.txt").exists()
    assert not (tree / "guest" / ".git").exists()


def test_wrong_user_wrong_key_and_other_paths_are_refused(tree):
    with FakeController(tree / "trove", tree / "id_rsa", user="stack", path="/opt/stack/trove") as ctl:
        assert _rsync(ctl, tree / "id_rsa", "root", "/opt/stack/trove/", tree / "g1").returncode != 0
        assert _rsync(ctl, tree / "other", "stack", "/opt/stack/trove/", tree / "g2").returncode != 0
        res = _rsync(ctl, tree / "id_rsa", "stack", "/etc/", tree / "g3")
        assert res.returncode != 0 and "outside /opt/stack/trove" in res.stderr
        assert ctl.served == []
    for d in ("g1", "g2", "g3"):
        assert not (tree / d).exists() or not any((tree / d).iterdir())


def test_public_key_from_private_or_pub_file(tree):
    pub = (tree / "id_rsa.pub").read_text().split()[:2]
    assert public_key_of(tree / "id_rsa").split()[:2] == pub
    assert public_key_of(tree / "id_rsa.pub").split()[:2] == pub


def test_stop_closes_the_port_and_removes_the_relay(tree):
    ctl = FakeController(tree / "trove", tree / "id_rsa")
    ctl.start()
    relay = ctl.relay_command().split()[1]
    port = ctl.port
    assert port and __import__("os").path.exists(relay)
    ctl.stop()
    import socket
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert not __import__("os").path.exists(relay)
