"""BuildSpec: the validated inputs of one build, the only thing the pipeline reads."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from builder import defaults
from builder import profile as profiles
from builder.cache.stagecache import parse_size
from builder.choices import DockerSource, Format, Runtime, values
from builder.errors import UsageError
from builder.image.qemu_img import COMPRESSIONS
from builder.preload.archive import ImageArchive, read_archive

FORMATS = values(Format)
RUNTIMES = values(Runtime)
DOCKER_SOURCES = values(DockerSource)


def parse_bool(value: str | bool, what: str) -> bool:
    """trovestack takes dev_mode as a lower-cased string; accept the usual spellings."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise UsageError(f"{what} must be true or false, not '{value}'")


# What a lock fixes besides OS, release, DEV_MODE, guest user and SYNC_LOG_TO_CONTROLLER.
LOCKED_OPTIONS = ("agent_version", "agent_source", "mirror", "docker_source", "pip_index_url",
                  "controller_user", "controller_path")


def _epoch(text: str) -> int:
    if not text.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH must be a whole number of seconds, not '{text}'")
    return int(text)


def default_output(os_name: str, release: str, dev_mode: bool, fmt: str = "qcow2") -> Path:
    suffix = "-dev" if dev_mode else ""
    return Path("images") / f"trove-guest-{os_name}-{release}{suffix}.{fmt}"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trove-builder"


def host_ca_bundle_path(explicit: Path | None) -> Path | None:
    """The CA bundle the build host trusts (HTTPS may be intercepted); lent to pip for the build only."""
    if explicit:
        return explicit
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if os.environ.get(var) and Path(os.environ[var]).is_file():
            return Path(os.environ[var])
    default = Path("/etc/ssl/certs/ca-certificates.crt")
    return default if default.is_file() else None


def agent_min_python(agent_version: str) -> tuple[int, int] | None:
    """Oldest guest Python the Trove release `agent_version` runs on, None if unknown."""
    table = yaml.safe_load((profiles.PROFILE_DIR / "_trove.yaml").read_text())["min_python"]
    match = re.match(r"(\d+)", agent_version)
    if not match:
        return None
    major = int(match.group(1))
    for series in sorted(table, reverse=True):
        if major >= series:
            maj, minor = table[series].split(".")
            return int(maj), int(minor)
    return None


@dataclass
class BuildSpec:
    """Inputs of one build. Everything else (work paths, UUIDs, names) is derived from these."""

    os: str = defaults.OS
    release: str = defaults.RELEASE
    dev_mode: bool = False
    guest_user: str = defaults.GUEST_USER
    output: Path = field(default_factory=lambda: default_output(defaults.OS, defaults.RELEASE, False))
    fmt: str = "qcow2"
    size_gb: int = defaults.SIZE_GB
    agent_version: str | None = None
    agent_source: str | None = None
    mirror: str | None = None
    hooks_dir: Path | None = None
    runtime: str = defaults.RUNTIME
    builder_image: str = defaults.BUILDER_IMAGE
    work_dir: Path | None = None
    keep_work_dir: bool = False
    cache_dir: Path = field(default_factory=default_cache_dir)
    controller_user: str = defaults.CONTROLLER_USER
    controller_path: str = defaults.CONTROLLER_PATH
    dev_ssh_key: Path | None = None
    sync_logs: bool = False
    ca_bundle: Path | None = None
    pip_index_url: str = defaults.PIP_INDEX_URL
    docker_source: str = defaults.DOCKER_SOURCE
    source_date_epoch: int = defaults.SOURCE_DATE_EPOCH
    verbose: bool = False
    compression: str | None = None
    stage_cache: bool = True
    reuse_checkpoints: bool = True  # False: store checkpoints, never restore one (verify's rebuild)
    cache_limit: str = defaults.CACHE_LIMIT
    lock_file: Path | None = None   # build --lock: install exactly what it names
    lock_digest: str | None = None  # its content's sha256 (keys the stage cache, not the image's IDs)
    offline: bool = False           # build --offline: the builder container has no network
    lock_out: Path | None = None    # trove-builder lock: write the lock here instead of an image
    allow_other_builder: bool = False  # build --lock with a builder image other than the lock's
    preload_images: list[Path] = field(default_factory=list)  # docker save archives baked into the guest

    @classmethod
    def for_build(cls, *, guest_os: str | None, release: str | None, dev_mode: str | None,
                  guest_user: str | None, output: Path | None, output_option: Path | None, fmt: str | None,
                  lock_file: Path | None, offline: bool, runtime: str, sync_logs: str, no_cache: bool,
                  **options: Any) -> BuildSpec:
        """`trove-builder build`'s arguments as a checked spec: positional and --output merged, a lock's
        target taken over (an argument that contradicts it is an error), the defaults filled in."""
        if offline and runtime == "none":
            raise UsageError("--offline needs a container runtime (it takes the builder container's network away)")
        if output_option is not None:
            if output is not None and output != output_option:
                raise UsageError(f"two outputs given: {output} and --output {output_option}")
            output = output_option
        epoch = os.environ.get("SOURCE_DATE_EPOCH", str(defaults.SOURCE_DATE_EPOCH))
        lock_digest = None
        if lock_file is not None:
            from builder.lock.lockfile import Lock

            locked = Lock.load(lock_file)
            target = locked.target
            given = {"OS": (guest_os, target["os"]), "release": (release, target["release"]),
                     "DEV_MODE": (None if dev_mode is None else parse_bool(dev_mode, "DEV_MODE"), target["dev_mode"]),
                     "guest user": (guest_user, target["guest_user"])}
            for what, (value, want) in given.items():
                if value is not None and value != want:
                    raise UsageError(f"the lock {lock_file} is for {what} {want}, not {value}")
            guest_os, release, guest_user = target["os"], target["release"], target["guest_user"]
            dev_mode, sync_logs = str(target["dev_mode"]), str(target["sync_logs"])
            options.update({name: target[name] for name in LOCKED_OPTIONS})
            epoch, lock_digest = str(locked.source_date_epoch), locked.digest
            # A lock a build wrote also says how its disk was written: the same, unless told otherwise.
            if fmt is None and (output is None or output.suffix not in (".raw", ".qcow2")):
                fmt = locked.image.get("format")
            options["compression"] = options.get("compression") or locked.image.get("compression")
            if options.get("size_gb") is None:
                options["size_gb"] = locked.image.get("size_gb")
        if options.get("size_gb") is None:
            options["size_gb"] = defaults.SIZE_GB
        guest_os, release = guest_os or defaults.OS, release or defaults.RELEASE
        guest_user = guest_user or defaults.GUEST_USER
        dev = parse_bool(dev_mode or "false", "DEV_MODE")
        if fmt is None:
            fmt = "raw" if output is not None and output.suffix == ".raw" else "qcow2"
        if output is None:
            output = default_output(guest_os, release, dev, fmt)
            output.parent.mkdir(parents=True, exist_ok=True)
        source_date_epoch = _epoch(epoch)
        spec = cls(os=guest_os, release=release, dev_mode=dev, guest_user=guest_user, output=output, fmt=fmt,
                   runtime=runtime, sync_logs=parse_bool(sync_logs, "SYNC_LOG_TO_CONTROLLER"),
                   source_date_epoch=source_date_epoch, stage_cache=not no_cache, lock_file=lock_file,
                   lock_digest=lock_digest, offline=offline, **options).validate()
        if lock_file is not None:
            locked.check_preload([archive.sha256 for archive in spec.preload_archives])
        return spec

    @classmethod
    def for_lock(cls, *, guest_os: str | None, release: str | None, dev_mode: str | None,
                 guest_user: str | None, output: Path | None, no_cache: bool, **options: Any) -> BuildSpec:
        """`trove-builder lock`'s arguments as a checked spec that writes a lock file instead of an image."""
        guest_os, release = guest_os or defaults.OS, release or defaults.RELEASE
        guest_user = guest_user or defaults.GUEST_USER
        dev = parse_bool(dev_mode or "false", "DEV_MODE")
        if output is None:
            from builder.lock.lockfile import default_lock_path

            output = default_lock_path(default_output(guest_os, release, dev))
            output.parent.mkdir(parents=True, exist_ok=True)
        epoch = _epoch(os.environ.get("SOURCE_DATE_EPOCH", str(defaults.SOURCE_DATE_EPOCH)))
        source = options.get("agent_source")
        if source and (source.startswith((".", "/")) or Path(source).exists()):
            raise UsageError(f"--agent-source {source} is a local path: only releases on a package index "
                             f"can be locked")
        chosen_mirror = options.get("mirror") or profiles.load(guest_os, release).mirror
        if not chosen_mirror.startswith("http://"):
            raise UsageError(f"mirror {chosen_mirror}: locks replay apt through an http proxy; use an http:// mirror")
        return cls(os=guest_os, release=release, dev_mode=dev, guest_user=guest_user, output=output,
                   source_date_epoch=epoch, stage_cache=not no_cache, lock_out=output, **options).validate()

    @property
    def profile(self) -> profiles.Profile:
        return profiles.load(self.os, self.release)

    @property
    def resolved_agent_version(self) -> str:
        return self.agent_version or self.profile.agent_version

    @property
    def resolved_compression(self) -> str:
        """qcow2 compression: the operator's choice, else the profile's (zlib where old clouds read it)."""
        if self.fmt != "qcow2":
            return "none"
        return self.compression or self.profile.qcow2_compression

    @property
    def preload_archives(self) -> list[ImageArchive]:
        """The --preload-image archives, checked, in digest order (the order given does not matter)."""
        return sorted((read_archive(p) for p in self.preload_images), key=lambda a: a.sha256)

    @property
    def image_identity(self) -> dict[str, Any]:
        """The inputs that decide the image's bytes (no host paths, no runtime choice).

        Whether a lock was used is not one of them: a lock only pins what an unlocked build resolves."""
        return {
            "os": self.os,
            "release": self.release,
            "dev_mode": self.dev_mode,
            "guest_user": self.guest_user,
            "format": self.fmt,
            "compression": self.resolved_compression,
            "size_gb": self.size_gb,
            "agent_version": self.resolved_agent_version,
            "agent_source": self.agent_source,
            "mirror": self.mirror or self.profile.mirror,
            "docker_source": self.docker_source,
            "pip_index_url": self.pip_index_url,
            "controller_user": self.controller_user if self.dev_mode else None,
            "controller_path": self.controller_path if self.dev_mode else None,
            "dev_ssh_key": bool(self.dev_ssh_key) if self.dev_mode else None,
            "sync_logs": self.sync_logs if self.dev_mode else None,
            "source_date_epoch": self.source_date_epoch,
        } | ({"preload_images": [a.sha256 for a in self.preload_archives]} if self.preload_images else {})

    def validate(self) -> BuildSpec:
        """Check every input before any work starts; raise UsageError with one clear line."""
        prof = self.profile  # unknown OS/release
        if self.fmt not in FORMATS:
            raise UsageError(f"unknown output format '{self.fmt}' (known: {', '.join(FORMATS)})")
        if self.compression is not None and self.compression not in COMPRESSIONS:
            raise UsageError(f"unknown compression '{self.compression}' (known: {', '.join(COMPRESSIONS)})")
        parse_size(self.cache_limit)
        if self.runtime not in RUNTIMES:
            raise UsageError(f"unknown runtime '{self.runtime}' (known: {', '.join(RUNTIMES)})")
        if self.docker_source not in DOCKER_SOURCES:
            raise UsageError(
                f"unknown docker source '{self.docker_source}' (known: {', '.join(DOCKER_SOURCES)})"
            )
        if not 2 <= self.size_gb <= 2048:
            raise UsageError(f"image size must be between 2 and 2048 GB, not {self.size_gb}")
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", self.guest_user):
            raise UsageError(f"'{self.guest_user}' is not a valid Linux user name")
        need = agent_min_python(self.resolved_agent_version)
        if need and prof.python_version < need:
            raise UsageError(
                f"trove {self.resolved_agent_version} needs Python >= {need[0]}.{need[1]}, "
                f"but {self.os} {self.release} has {prof.python}"
            )
        self._validate_output()
        if self.hooks_dir is not None:
            if not self.hooks_dir.is_dir() or not os.access(self.hooks_dir, os.R_OK | os.X_OK):
                raise UsageError(f"hooks directory {self.hooks_dir} is not a readable directory")
        if self.dev_ssh_key is not None:
            if not self.dev_mode:
                raise UsageError("--dev-ssh-key only makes sense with dev mode (DEV_MODE=true)")
            if not self.dev_ssh_key.is_file() or not os.access(self.dev_ssh_key, os.R_OK):
                raise UsageError(f"dev ssh key {self.dev_ssh_key} is not a readable file")
        if self.offline and self.lock_file is None:
            raise UsageError("--offline needs --lock FILE: an offline build installs what a lock names")
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise UsageError(f"CA bundle {self.ca_bundle} is not a file")
        if self.work_dir is not None and self.work_dir.is_dir() and any(self.work_dir.iterdir()):
            # checked here, where the path is the one the user gave (in the builder container it is /work)
            raise UsageError(f"work dir {self.work_dir} is not empty (a build fills a new or empty one)")
        self._validate_preload()
        return self

    def _validate_preload(self) -> None:
        seen: dict[str, Path] = {}
        for archive in self.preload_archives:  # each one read and checked
            if archive.sha256 in seen:
                raise UsageError(f"preload image {archive.path} is the same archive as {seen[archive.sha256]}")
            seen[archive.sha256] = archive.path

    def _validate_output(self) -> None:
        out = self.output
        if out.exists() and out.is_dir():
            raise UsageError(f"output {out} is a directory; give a file name such as {out}/guest.qcow2")
        parent = out.parent if str(out.parent) else Path(".")
        if not parent.is_dir():
            raise UsageError(f"output directory {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            why = " (read-only file system)" if os.statvfs(parent).f_flag & os.ST_RDONLY else ""
            raise UsageError(f"output directory {parent} is not writable{why}")

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        return json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}, default=str)

    @classmethod
    def from_json(cls, text: str) -> BuildSpec:
        data = json.loads(text)
        path_fields = {f.name for f in dataclasses.fields(cls) if "Path" in str(f.type)}
        for name in path_fields:
            if isinstance(data.get(name), list):
                data[name] = [Path(p) for p in data[name]]
            elif data.get(name) is not None:
                data[name] = Path(data[name])
        return cls(**data)
