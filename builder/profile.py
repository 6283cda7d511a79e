"""Guest OS knowledge, kept as YAML data: one file per release, merged over family and common defaults."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from builder.errors import UsageError

PROFILE_DIR = resources.files("builder") / "profiles"


def _load(path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Overlay `override` on `base`; `key_add`/`key_remove` lists edit an inherited list."""
    merged = dict(base)
    for key, value in override.items():
        if key.endswith("_add"):
            target = key[: -len("_add")]
            merged[target] = list(merged.get(target, [])) + [v for v in value if v not in merged.get(target, [])]
        elif key.endswith("_remove"):
            target = key[: -len("_remove")]
            merged[target] = [v for v in merged.get(target, []) if v not in value]
        else:
            merged[key] = value
    return merged


def available() -> dict[str, list[str]]:
    """OS name -> releases this version of trove-builder knows."""
    found: dict[str, list[str]] = {}
    for os_dir in sorted(PROFILE_DIR.iterdir(), key=lambda p: p.name):
        if os_dir.is_dir():
            found[os_dir.name] = sorted(
                p.name[: -len(".yaml")]
                for p in os_dir.iterdir()
                if p.name.endswith(".yaml") and not p.name.startswith("_")
            )
    return found


@dataclass(frozen=True)
class Profile:
    """Everything the pipeline needs to know about one guest OS release."""

    os: str
    release: str
    data: dict[str, Any] = field(repr=False)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.data[name]
        except KeyError as exc:
            raise AttributeError(name) from exc

    @property
    def suites(self) -> list[str]:
        return [s.format(release=self.release) for s in self.data["suites"]]

    @property
    def security_suite(self) -> str:
        return self.data["security_suite"].format(release=self.release)

    @property
    def python_version(self) -> tuple[int, int]:
        major, minor = self.data["python"].split(".")[:2]
        return int(major), int(minor)


@functools.lru_cache(maxsize=None)
def load(os_name: str, release: str) -> Profile:
    """Load (once per process: every derived ID and template asks for it) and merge the profile for `os_name`/`release`, or fail with the known choices."""
    known = available()
    if os_name not in known:
        raise UsageError(f"unknown guest OS '{os_name}' (known: {', '.join(known)})")
    if release not in known[os_name]:
        raise UsageError(
            f"unknown {os_name} release '{release}' (known: {', '.join(known[os_name])})"
        )
    data = _load(PROFILE_DIR / "_common.yaml")
    data = _merge(data, _load(PROFILE_DIR / os_name / "_family.yaml"))
    data = _merge(data, _load(PROFILE_DIR / os_name / f"{release}.yaml"))
    return Profile(os=os_name, release=release, data=data)
