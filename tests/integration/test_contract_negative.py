"""Every check of `trove-builder check` shown failing on a bad image, and the mutation check.

The bad images are the session's good bookworm image changed in one place each: the root ext4 of one
raw copy is edited with `debugfs -w` and the edit undone afterwards (e2undo), so the cases cost one
`qemu-img convert`, not a build each. Each case must fail exactly its own check, with the detail a user
reads in `trove-builder check`. The mutation check: with a check replaced by `return True`, its bad
image is no longer caught, so the case's test fails — a check that cannot fail cannot hide here.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from builder.image.contract import ContractChecker
from builder.image.reader import Image
from tests.conftest import run_tb

pytestmark = pytest.mark.slow

FORBID = "/srv/build-host-42"
LEAK_CHECK = "no build-host strings"


@dataclass
class BadImage:
    """One change to the good image, and the one check (with the detail it prints) it must fail."""
    check: str
    detail: str  # a substring of the FAIL line's detail
    debugfs: list[str] = field(default_factory=list)  # requests; {name} is a local file from `files`
    files: dict[str, bytes | Callable[[], bytes]] = field(default_factory=dict)
    rewrite: dict[str, Callable[[str], str]] = field(default_factory=dict)  # image path -> new text
    manifest: Callable[[dict], None] | None = None

    @property
    def forbid(self) -> list[str]:
        return [FORBID] if self.check == LEAK_CHECK else []


def _drop(*keys: str) -> Callable[[dict], None]:
    def change(manifest: dict) -> None:
        target = manifest
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
    return change


def _private_key() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{tmp}/k"], check=True)
        return Path(f"{tmp}/k").read_bytes()


# The checks (ContractChecker.CHECKS and the --forbid scan of builder/leaks.py) and their bad images.
CASES = {
    "fs-label": BadImage("disk layout and fstab", "label=not-the-root partitions=3",
                         ["ssv volume_name not-the-root"]),
    "agent-unit-off": BadImage("units enabled", "missing/wrong: guest-agent.service",
                               ["rm /etc/systemd/system/multi-user.target.wants/guest-agent.service"]),
    "docker-not-started": BadImage("units enabled",
                                   "missing/wrong: docker.service (neither enabled nor wanted by guest-agent.service)",
                                   rewrite={"/etc/systemd/system/guest-agent.service":
                                            lambda t: t.replace(" docker.service\n", "\n")}),
    "entry-point-gone": BadImage("agent venv and entry points",
                                 "/usr/local/bin/guest-agent does not start the venv's trove.cmd.guest",
                                 ["rm /usr/local/bin/guest-agent"]),
    "sudoers-0644": BadImage("sudoers 0440 root:root", "mode=0o644 owner=(0, 0)",
                             ["sif /etc/sudoers.d/60_trove_guest mode 0100644"]),
    "conf.d-root-owned": BadImage("/etc/trove tree owners", "wrong owner or missing: /etc/trove/conf.d",
                                  ["sif /etc/trove/conf.d uid 0"]),
    "uid-1001-taken": BadImage("guest user groups, uid 1001 free", "uid/gid 1001 is taken",
                               rewrite={"/etc/passwd":
                                        lambda t: t + "intruder:x:1001:1001::/nonexistent:/usr/sbin/nologin\n"}),
    "root-password": BadImage("no usable passwords", "usable password: root",
                              rewrite={"/etc/shadow": lambda t: "\n".join(
                                  ":".join([f[0], "$6$salt$Zq0b3n3w6ZlVb1kq", *f[2:]]) if f[0] == "root" else line
                                  for line in t.splitlines() for f in [line.split(":")]) + "\n"}),
    "no-configdrive": BadImage("cloud-init data sources", "NoCloud",
                               rewrite={"/etc/cloud/cloud.cfg.d/91-dib-cloud-init-datasources.cfg":
                                        lambda t: t.replace("ConfigDrive", "NoCloud")}),
    "apt-unauthenticated": BadImage("apt verifies signatures", "/etc/apt/apt.conf.d/99-insecure",
                                    ["write {insecure} /etc/apt/apt.conf.d/99-insecure"],
                                    files={"insecure": b'APT::Get::AllowUnauthenticated "true";\n'}),
    "private-key": BadImage("no private keys", "/root/id_ed25519", ["write {key} /root/id_ed25519"],
                            files={"key": _private_key}),
    "ssh-host-key": BadImage("no baked-in identity", "ssh host keys baked in",
                             ["mkdir /etc/ssh", "write {pub} /etc/ssh/ssh_host_ed25519_key.pub"],
                             files={"pub": b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0 root@build\n"}),
    "machine-id": BadImage("no baked-in identity", "machine-id not empty",
                           rewrite={"/etc/machine-id": lambda t: "3f1c2d4e5a6b7c8d9e0f1a2b3c4d5e6f\n"}),
    "iptables-rules": BadImage("no baked-in identity", "saved iptables rules",
                               ["mkdir /etc/iptables", "write {rules} /etc/iptables/rules.v4"],
                               files={"rules": b"*filter\n-A INPUT -s 10.0.0.0/8 -j ACCEPT\nCOMMIT\n"}),
    "manifest-no-freeze": BadImage("manifest records versions", "manifest has no agent pip freeze",
                                   manifest=_drop("agent", "pip_freeze")),
    "build-host-path": BadImage(LEAK_CHECK, f"'{FORBID}' in 1 file (/etc/trove/conf.d/leak.conf)",
                                ["write {conf} /etc/trove/conf.d/leak.conf"],
                                files={"conf": f"[DEFAULT]\nlog_dir = {FORBID}/logs\n".encode()}),
}
ALL_CHECKS = [name for name, _ in ContractChecker.CHECKS] + [LEAK_CHECK]


def _debugfs_write(raw: Path, offset: int, requests: list[str], undo: Path) -> None:
    script = undo.with_suffix(".requests")
    script.write_text("\n".join(requests) + "\n")
    out = subprocess.run(["debugfs", "-w", "-z", str(undo), "-f", str(script), f"{raw}?offset={offset}"],
                         capture_output=True, text=True)
    errors = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith("debugfs 1.")]
    assert out.returncode == 0 and not errors, f"debugfs {requests}: {out.stderr}"


@contextmanager
def altered(img: Image, case: BadImage, scratch: Path):
    """The image's root ext4 with the case's change, restored byte for byte afterwards."""
    scratch.mkdir(parents=True, exist_ok=True)
    local = {}
    for name, data in case.files.items():
        local[name] = scratch / name
        local[name].write_bytes(data() if callable(data) else data)
    requests = [r.format(**{k: str(v) for k, v in local.items()}) for r in case.debugfs
                if not (r.startswith("mkdir ") and img.exists(r.split()[1]))]  # a directory the image has
    for path, change in case.rewrite.items():
        entry = img.stat(path)
        new = scratch / Path(path).name
        new.write_text(change(img.read(path) or ""))
        requests += [f"rm {path}"] if entry else []
        requests += [f"write {new} {path}"]
        requests += [f"sif {path} mode 0{0o100000 | entry.mode:o}", f"sif {path} uid {entry.uid}",
                     f"sif {path} gid {entry.gid}"] if entry else []
    undo = scratch / "undo.e2undo"
    undo.unlink(missing_ok=True)
    with open(img.raw, "r+b") as fh:  # e2undo leaves the primary superblock as debugfs last wrote it
        fh.seek(img.root_offset + 1024)
        superblock = fh.read(1024)
    try:
        if requests:
            _debugfs_write(img.raw, img.root_offset, requests, undo)
        yield
    finally:
        if undo.exists():
            subprocess.run(["e2undo", "-o", str(img.root_offset), str(undo), str(img.raw)],
                           check=True, capture_output=True)
        with open(img.raw, "r+b") as fh:
            fh.seek(img.root_offset + 1024)
            fh.write(superblock)


@pytest.fixture(scope="module")
def good(images):
    """The session's bookworm image, opened once (one raw copy the cases edit in turn), and its manifest."""
    image = images.get("debian", "bookworm")
    manifest = json.loads(image.with_name(image.name + ".manifest.json").read_text())
    with Image(image) as img:
        yield image, img, manifest


def failures(good, case: BadImage, scratch: Path) -> dict[str, str]:
    """check name -> detail, for every check the altered image fails."""
    _, img, manifest = good
    manifest = json.loads(json.dumps(manifest))
    if case.manifest:
        case.manifest(manifest)
    with altered(img, case, scratch):
        results = ContractChecker(img, manifest, case.forbid).run()
    assert [r.name for r in results] == ALL_CHECKS[:len(results)]
    return {r.name: r.detail for r in results if not r.passed}


def assert_fails_only(case: BadImage, failed: dict[str, str]) -> None:
    assert list(failed) == [case.check], f"expected only '{case.check}' to fail, failed: {failed}"
    assert case.detail in failed[case.check], failed


def test_every_check_has_a_bad_image():
    """The list above names every check `trove-builder check` runs; a new check needs a bad image here."""
    assert sorted({c.check for c in CASES.values()}) == sorted(ALL_CHECKS)


def test_the_unaltered_image_passes_every_check(good, tmp_path):
    assert failures(good, BadImage(LEAK_CHECK, ""), tmp_path) == {}


@pytest.mark.parametrize("case_id", CASES)
def test_a_bad_image_fails_exactly_its_check(good, case_id, tmp_path):
    assert_fails_only(CASES[case_id], failures(good, CASES[case_id], tmp_path))


@pytest.mark.parametrize("check", ALL_CHECKS)
def test_mutation_a_check_that_always_passes_is_caught(good, check, tmp_path, monkeypatch):
    """Replace one check by `return True`: the bad image's test above must then fail."""
    def always_passes(self):
        return True, "mutated"

    if check == LEAK_CHECK:
        monkeypatch.setattr(ContractChecker, "no_build_host_strings", always_passes)
    else:
        monkeypatch.setattr(ContractChecker, "CHECKS", [(name, always_passes if name == check else func)
                                                         for name, func in ContractChecker.CHECKS])
    case_id = next(i for i, c in CASES.items() if c.check == check)
    with pytest.raises(AssertionError, match=re.escape(f"expected only '{check}' to fail")):
        assert_fails_only(CASES[case_id], failures(good, CASES[case_id], tmp_path))


def test_check_from_the_command_line(good, tmp_path):
    """`trove-builder check` as a user runs it: a real image passes; a bad one fails with one FAIL line."""
    image, img, _ = good
    ok = run_tb("check", str(image), "--forbid", FORBID)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[-1] == f"{len(ALL_CHECKS)} passed, 0 failed"
    case = CASES["root-password"]
    with altered(img, case, tmp_path):
        bad = run_tb("check", str(img.raw), "--manifest", str(image.with_name(image.name + ".manifest.json")))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stdout + bad.stderr
    fail_lines = [" ".join(line.split()) for line in bad.stdout.splitlines() if line.startswith("FAIL")]
    assert fail_lines == ["FAIL no usable passwords usable password: root"]
    assert bad.stdout.splitlines()[-1] == f"{len(ALL_CHECKS) - 2} passed, 1 failed"
