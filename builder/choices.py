"""The CLI's fixed choices as enums, so that `--help` lists them and a wrong one is refused by the parser.

The tuples the rest of the code checks against (spec.RUNTIMES, qemu_img.COMPRESSIONS, ...) are made
from these: one list of each."""

from __future__ import annotations

from enum import Enum, StrEnum


class Runtime(StrEnum):
    docker = "docker"
    podman = "podman"
    none = "none"


class Format(StrEnum):
    qcow2 = "qcow2"
    raw = "raw"


class Compression(StrEnum):
    zstd = "zstd"
    zlib = "zlib"
    none = "none"


class DockerSource(StrEnum):
    distro = "distro"
    docker_ce = "docker-ce"


class Firmware(StrEnum):
    bios = "bios"
    uefi = "uefi"


def values(choices: type[Enum]) -> tuple[str, ...]:
    return tuple(member.value for member in choices)
