"""Static checks of a built image against the Trove guest contract (offline, no boot)."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.context import ROOT_LABEL, TROVE_DIRS, VENV
from builder.image import leaks
from builder.image.reader import Image

UNAUTHENTICATED = re.compile(r"AllowUnauthenticated|AllowInsecureRepositories|AllowDowngradeToInsecure"
                             r"|trusted=yes|allow-unauthenticated", re.I)
PRIVATE_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----")
# Where a private key could hide in a guest: everything but the package-owned trees.
KEY_SCAN_DIRS = ["/etc", "/home", "/root", "/opt/trove-guestagent", "/var/lib", "/usr/local"]


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""


class ContractChecker:
    def __init__(self, img: Image, manifest: dict | None, forbid: Sequence[str] = ()):
        self.img = img
        self.forbid = list(forbid)
        self.manifest = manifest or {}
        inputs = self.manifest.get("inputs", {})
        self.user = inputs.get("guest_user", "ubuntu")
        self.dev_mode = bool(inputs.get("dev_mode", False))
        self.agent_version = inputs.get("agent_version")

    def _ids(self, name: str, path: str = "/etc/passwd") -> tuple[int, int] | None:
        for line in (self.img.read(path) or "").splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2]), int(fields[3]) if path.endswith("passwd") else int(fields[2])
        return None

    # Each check returns (passed, detail).
    def layout(self):
        sb = self.img.superblock()
        fstab = self.img.read("/etc/fstab") or ""
        types = [p.get("type", "").upper() for p in self.img.partitions]
        ok = (self.img.table.get("label") == "gpt" and len(types) == 3
              and types[-1] == "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
              and sb.get("Filesystem volume name") == ROOT_LABEL
              and re.search(rf"^LABEL={ROOT_LABEL}\s+/\s+ext4\s+\S+\s+0\s+1", fstab, re.M) is not None)
        return ok, f"label={sb.get('Filesystem volume name')} partitions={len(types)}"

    def enabled_units(self):
        wants = "/etc/systemd/system/multi-user.target.wants"
        units = set(self.img.listdir(wants)) | {f"sockets/{u}" for u in
                                                 self.img.listdir("/etc/systemd/system/sockets.target.wants")}
        need = ({"guest-agent.service", "sockets/docker.socket"}
                | (set() if self.dev_mode else {"guest-agent-setup.service"}))
        problems = [u for u in need if u not in units]
        # dockerd starts at boot: enabled, or wanted by the agent's unit (builder/stages/system.py)
        agent_wants = re.findall(r"^Wants=(.*)$", self.img.read("/etc/systemd/system/guest-agent.service") or "", re.M)
        if "docker.service" not in units and "docker.service" not in " ".join(agent_wants).split():
            problems.append("docker.service (neither enabled nor wanted by guest-agent.service)")
        if self.img.exists(f"{VENV}/bin/trove-docker-plugin") and "sockets/docker-hostnic.socket" not in units:
            problems.append("docker-hostnic.socket")
        loader = "trove-image-loader.service" in units
        if loader != self.dev_mode:
            mode = "dev" if self.dev_mode else "production"
            problems.append(f"trove-image-loader.service enabled={loader} in {mode}")
        return not problems, "missing/wrong: " + ", ".join(problems) if problems else "ok"

    def agent_venv(self):
        problems = []
        if not self.img.exists(f"{VENV}/bin/trove-guestagent"):
            problems.append("no trove-guestagent entry point")
        site = [d for d in self.img.listdir(f"{VENV}/lib") if d.startswith("python3")]
        dist = [n for s in site for n in self.img.listdir(f"{VENV}/lib/{s}/site-packages")
                if n.lower().startswith("trove-") and n.endswith(".dist-info")]
        if self.agent_version and f"trove-{self.agent_version}.dist-info" not in dist:
            problems.append(f"trove {self.agent_version} not installed (found {dist})")
        if not self.dev_mode:  # the launcher (builder/templates/guest-agent): the venv's python, trove's main()
            entry = self.img.stat("/usr/local/bin/guest-agent")
            text = self.img.read("/usr/local/bin/guest-agent", follow=False) or ""
            launches = text.startswith(f"#!{VENV}/bin/python3\n") and "from trove.cmd.guest import main" in text
            if not entry or entry.kind != "regular" or not entry.mode & 0o111 or not launches:
                problems.append("/usr/local/bin/guest-agent does not start the venv's trove.cmd.guest")
        return not problems, "; ".join(problems) or f"{dist}"

    def sudoers(self):
        entry = self.img.stat("/etc/sudoers.d/60_trove_guest")
        text = self.img.read("/etc/sudoers.d/60_trove_guest") or ""
        ok = (entry is not None and entry.mode & 0o7777 == 0o440 and (entry.uid, entry.gid) == (0, 0)
              and re.search(rf"^{self.user}\s+ALL=\(ALL\)\s+NOPASSWD:\s*ALL", text, re.M) is not None)
        mode, owner = (oct(entry.mode & 0o7777), (entry.uid, entry.gid)) if entry else (None, None)
        return ok, f"mode={mode} owner={owner}"

    def trove_tree(self):
        ids = self._ids(self.user)
        bad = []
        for path in TROVE_DIRS:
            entry = self.img.stat(path)
            if not entry or entry.kind != "directory" or ids is None or (entry.uid, entry.gid) != (ids[0], 0):
                bad.append(path)
        return not bad, "wrong owner or missing: " + ", ".join(bad) if bad else f"{self.user}:root"

    def users(self):
        problems = []
        group = self.img.read("/etc/group") or ""
        docker = re.search(r"^docker:[^:]*:\d+:(.*)$", group, re.M)
        if not docker or self.user not in docker.group(1).split(","):
            problems.append(f"{self.user} not in group docker")
        passwd = self.img.read("/etc/passwd") or ""
        if re.search(r"^[^:]*:[^:]*:1001:", passwd, re.M) or re.search(r"^[^:]*:[^:]*:1001:", group, re.M):
            problems.append("uid/gid 1001 is taken (the agent needs it for 'database')")
        return not problems, "; ".join(problems) or "ok"

    def no_passwords(self):
        usable = []
        for line in (self.img.read("/etc/shadow") or "").splitlines():
            fields = line.split(":")
            if len(fields) > 1 and not (fields[1].startswith(("!", "*"))):
                usable.append(fields[0])
        return not usable, "usable password: " + ", ".join(usable) if usable else "all locked"

    def cloud_init(self):
        ds = self.img.read("/etc/cloud/cloud.cfg.d/91-dib-cloud-init-datasources.cfg") or ""
        hosts = self.img.read("/etc/cloud/cloud.cfg.d/10_etc_hosts.cfg") or ""
        ok = "ConfigDrive" in ds and "OpenStack" in ds and "manage_etc_hosts: localhost" in hosts
        return ok, ds.strip()

    def apt_authenticated(self):
        offenders = []
        for directory in ("/etc/apt/apt.conf.d", "/etc/apt/sources.list.d"):
            for name in self.img.listdir(directory):
                if UNAUTHENTICATED.search(self.img.read(f"{directory}/{name}") or ""):
                    offenders.append(f"{directory}/{name}")
        if UNAUTHENTICATED.search(self.img.read("/etc/apt/sources.list") or ""):
            offenders.append("/etc/apt/sources.list")
        return not offenders, ", ".join(offenders) or "signatures required"

    def no_private_keys(self):
        found = []
        with tempfile.TemporaryDirectory(prefix="trove-builder-scan-") as tmp:
            for directory in KEY_SCAN_DIRS:
                if not self.img.exists(directory):
                    continue
                top = self.img.extract(directory, Path(tmp) / directory.strip("/").replace("/", "_"))
                for path in top.rglob("*"):
                    if path.is_file() and not path.is_symlink() and path.stat().st_size < 1 << 20:
                        if PRIVATE_KEY.search(path.read_bytes()):
                            found.append(directory + "/" + str(path.relative_to(top)))
        if self.dev_mode and self.manifest.get("agent", {}).get("dev_ssh_key"):
            found = [f for f in found if not f.endswith(f"/home/{self.user}/.ssh/id_rsa")]
        return not found, ", ".join(found) or "none"

    def no_identity(self):
        problems = []
        if self.img.listdir("/etc/ssh") and any(n.startswith("ssh_host_") for n in self.img.listdir("/etc/ssh")):
            problems.append("ssh host keys baked in")
        if (self.img.read("/etc/machine-id") or "").strip():
            problems.append("machine-id not empty")
        if self.img.exists("/etc/iptables/rules.v4"):
            problems.append("saved iptables rules")
        return not problems, "; ".join(problems) or "ok"

    def no_build_host_strings(self):
        """The build host's paths and names (--forbid); a dev image may hold its controller user and path."""
        inputs = self.manifest.get("inputs", {})
        allow = [inputs.get("controller_user"), inputs.get("controller_path")] if self.dev_mode else []
        hits = leaks.scan_image(self.img, self.forbid, [a for a in allow if a])
        return not hits, leaks.summary(hits) or f"none of {len(self.forbid)} strings"

    def manifest_records(self):
        agent = self.manifest.get("agent", {})
        missing = [what for what, value in (("packages", self.manifest.get("packages")),
                                            ("agent pip freeze", agent.get("pip_freeze")),
                                            ("agent version", agent.get("version"))) if not value]
        if missing:
            return False, "manifest has no " + ", ".join(missing)
        return True, f"trove {agent.get('version')}, {len(self.manifest.get('packages', []))} packages"

    CHECKS: list[tuple[str, Callable]] = [
        ("disk layout and fstab", layout),
        ("units enabled", enabled_units),
        ("agent venv and entry points", agent_venv),
        ("sudoers 0440 root:root", sudoers),
        ("/etc/trove tree owners", trove_tree),
        ("guest user groups, uid 1001 free", users),
        ("no usable passwords", no_passwords),
        ("cloud-init data sources", cloud_init),
        ("apt verifies signatures", apt_authenticated),
        ("no private keys", no_private_keys),
        ("no baked-in identity", no_identity),
        ("manifest records versions", manifest_records),
    ]

    def run(self) -> list[Check]:
        results = []
        extra = [("no build-host strings", ContractChecker.no_build_host_strings)] if self.forbid else []
        for name, func in self.CHECKS + extra:
            try:
                passed, detail = func(self)
            except Exception as exc:  # a check that cannot run is a failed check
                passed, detail = False, f"{type(exc).__name__}: {exc}"
            results.append(Check(name, bool(passed), detail))
        return results


def check_image(image: Path, manifest: Path | None = None, forbid: Sequence[str] = ()) -> list[Check]:
    """Every contract check; with `forbid`, also scan every file for those build-host strings."""
    manifest = manifest or image.with_name(image.name + ".manifest.json")
    data = json.loads(manifest.read_text()) if manifest.exists() else None
    with Image(image) as img:
        return ContractChecker(img, data, forbid).run()
