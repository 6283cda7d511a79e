"""Backoff: transient failures are retried with growing delays, others at once; debootstrap really is."""

import os
import shutil
import time

import pytest

from builder.context import BuildContext
from builder.errors import BuilderError
from builder.proc import CommandFailed, Log
from builder.retry import Backoff, with_backoff
from builder.spec import BuildSpec
from builder.stages import bootstrap


def test_delays_double_and_come_from_the_environment(monkeypatch):
    assert Backoff(4, 1.0).delays() == [1.0, 2.0, 4.0]
    monkeypatch.setenv("TROVE_BUILDER_NET_ATTEMPTS", "2")
    monkeypatch.setenv("TROVE_BUILDER_NET_BACKOFF", "0.5")
    assert Backoff.from_env() == Backoff(2, 0.5)
    monkeypatch.setenv("TROVE_BUILDER_NET_ATTEMPTS", "many")
    assert Backoff.from_env(attempts=3).attempts == 3


def test_transient_failures_are_retried_until_success():
    calls, waits = [], []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionResetError("reset")
        return "ok"

    result = with_backoff(flaky, lambda e: isinstance(e, ConnectionError), Backoff(4, 0.05),
                          lambda exc, attempt, delay: waits.append(delay))
    assert result == "ok" and len(calls) == 3 and waits == [0.05, 0.1]
    assert calls[2] - calls[1] >= 0.1


def test_other_failures_are_not_retried():
    calls = []

    def broken():
        calls.append(1)
        raise ValueError("bad")

    with pytest.raises(ValueError):
        with_backoff(broken, lambda e: isinstance(e, ConnectionError), Backoff(4, 0.01))
    assert len(calls) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="runs debootstrap (root)")
def test_debootstrap_is_retried_on_a_download_failure(tmp_path, monkeypatch):
    """The real debootstrap against a mirror where nothing listens: 3 tries, then its own error."""
    assert shutil.which("debootstrap"), "debootstrap is not installed (scripts/setup-host.sh installs it)"
    monkeypatch.setenv("TROVE_BUILDER_NET_ATTEMPTS", "3")
    monkeypatch.setenv("TROVE_BUILDER_NET_BACKOFF", "0.1")
    spec = BuildSpec(os="debian", release="bookworm", output=tmp_path / "x.qcow2", cache_dir=tmp_path / "cache")
    log = Log(tmp_path / "build.log")
    ctx = BuildContext(spec=spec, profile=spec.profile, work_dir=tmp_path / "work", log=log)
    with pytest.raises(CommandFailed) as caught:
        (tmp_path / "debs").mkdir()
        bootstrap.debootstrap(ctx, "http://127.0.0.1:9/debian", tmp_path / "debs")
    log.close()
    assert "Failed getting release file" in str(caught.value)
    text = (tmp_path / "build.log").read_text()
    assert text.count("+ debootstrap ") == 3 and text.count("debootstrap: download failed, retry") == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="runs debootstrap (root)")
def test_debootstrap_on_a_full_disk_is_not_retried(tmp_path, monkeypatch):
    """'Couldn't download' also means a full disk: debootstrap's own log tells, and no retry is made."""
    assert shutil.which("debootstrap"), "debootstrap is not installed (scripts/setup-host.sh installs it)"
    import subprocess

    from tests.conftest import require_archive

    require_archive("debian")
    work = tmp_path / "work"
    work.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(work)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        spec = BuildSpec(os="debian", release="bookworm", output=tmp_path / "x.qcow2", cache_dir=tmp_path / "cache")
        log = Log(tmp_path / "build.log")
        ctx = BuildContext(spec=spec, profile=spec.profile, work_dir=work, log=log)
        with pytest.raises(BuilderError) as caught:
            (tmp_path / "debs").mkdir()
            bootstrap.debootstrap(ctx, spec.profile.mirror, tmp_path / "debs")
        log.close()
        assert "No space left on device" in str(caught.value)
        assert (tmp_path / "build.log").read_text().count("+ debootstrap ") == 1
    finally:
        subprocess.run(["umount", str(work)], check=True)
