"""BuildContext: what the stages share (inputs, paths derived from them, the log, results)."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.guest.chroot import Chroot
from builder.proc import Log
from builder.profile import Profile
from builder.spec import BuildSpec

ROOT_LABEL = "cloudimg-rootfs"
VENV = "/opt/guest-agent-venv"
# Trove's own directories, owned <guest user>:root (contract §2.3).
TROVE_DIRS = ["/etc/trove", "/etc/trove/conf.d", "/etc/trove/certs", "/var/lib/trove",
              "/var/log/trove", "/opt/trove-guestagent"]
GUEST_CA_PATH = "/tmp/trove-builder-ca.pem"
PRELOAD_DIR = "/var/lib/trove-builder/preload"  # the --preload-image archives in the guest
AGENT_READY_FLAG = "/run/trove-guest-agent.ready"  # guest-agent-setup.service has run (this boot)


@dataclass
class BuildContext:
    spec: BuildSpec
    profile: Profile
    work_dir: Path
    log: Log
    results: dict[str, Any] = field(default_factory=dict)
    replay: Any = None  # builder.lock.replay.Replay when building from a lock file

    @property
    def rootfs(self) -> Path:
        return self.work_dir / "rootfs"

    @property
    def disk_path(self) -> Path:
        """The raw disk the assemble stage writes and the export stage converts."""
        return self.work_dir / "disk.raw"

    @property
    def cache_dir(self) -> Path:
        return self.spec.cache_dir

    @property
    def input_digest(self) -> str:
        """The seed of every ID in the disk: the image's inputs and what they resolved to (every
        package and Python distribution installed, known after the hooks stage). Never the lock
        file or the builder image, so a build from a lock gets the IDs of the build it replays."""
        if "packages" not in self.results or "pip_freeze" not in self.results:
            raise RuntimeError("disk IDs are derived from the installed packages: only after the hooks stage")
        content = {"inputs": self.spec.image_identity,
                   "packages": [[p["name"], p["arch"], p["version"]] for p in self.results["packages"]],
                   "python": self.results["pip_freeze"]}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def stable_uuid(self, purpose: str) -> str:
        """A UUID derived from the resolved inputs, so filesystems and partitions are the same every build."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"trove-builder:{self.input_digest}:{purpose}"))

    def reproducible_env(self) -> dict[str, str]:
        """What every program run for the guest sees: the build's clamped clock (initramfs, pyc and
        docs honour it) and a fixed hash seed (Python byte-compiles set constants in hash order)."""
        return {"SOURCE_DATE_EPOCH": str(self.spec.source_date_epoch), "PYTHONHASHSEED": "0"}

    def chroot(self, env: dict[str, str] | None = None) -> Chroot:
        """The guest root, entered with the reproducible environment."""
        base = self.reproducible_env()
        mounts = {}
        if self.replay is not None:  # a locked build: apt through the lock's proxy, wheels from the lock
            base.update(self.replay.chroot_env)
            mounts = self.replay.chroot_mounts
        return Chroot(self.rootfs, self.log, {**base, **(env or {})}, mounts)

    @property
    def guest_home(self) -> str:
        return f"/home/{self.spec.guest_user}"

    def template_context(self) -> dict[str, Any]:
        spec, prof = self.spec, self.profile
        return {
            **prof.data,
            "os": spec.os,
            "release": spec.release,
            "suites": prof.suites,
            "security_suite": prof.security_suite,
            "mirror": spec.mirror or prof.mirror,
            "security_mirror": prof.security_mirror,
            "dev_mode": spec.dev_mode,
            "guest_user": spec.guest_user,
            "guest_home": self.guest_home,
            "controller_user": spec.controller_user,
            "controller_path": spec.controller_path.rstrip("/"),
            "sync_logs": spec.sync_logs,
            "venv": VENV,
            "root_label": ROOT_LABEL,
            "datasources": ["ConfigDrive", "OpenStack", "None"],
            "docker_plugin": self.results.get("docker_plugin", False),
            "docker_api_version": self.results.get("docker_api_version") or "",
            "preload_images": bool(spec.preload_images),
            "preload_dir": PRELOAD_DIR,
            "agent_ready_flag": AGENT_READY_FLAG,
            "agent_import_cpu_weight": prof.agent_import_cpu_weight,
            "agent_cpu_weight": prof.agent_cpu_weight,
        }
