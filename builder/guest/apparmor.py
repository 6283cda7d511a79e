"""AppArmor at first boot: only the profiles of programs the guest has, compiled by the build.

apparmor.service compiles every enabled profile at a boot that finds no cache for the running kernel:
14 s on bookworm and 30 s on noble at first boot under emulation, beside cloud-init's and the agent's
imports. The cache is keyed by the kernel's AppArmor feature set, which only that kernel can tell
(the builder container runs another one): each guest kernel's set is recorded once, as data, by
booting an image with it (scripts/record_apparmor_features.py), and the build compiles the profiles
for it with the guest's own apparmor_parser. Guest kernels come from the live archive, so a newer
kernel of the same series and flavour (6.8.0-*-generic, 6.12.*+deb13-cloud-amd64) is given the newest
set recorded for that series: the parser names its cache after the features' hash, so if the newer
kernel's differ its boot finds no cache and compiles, as it does with no set at all. A profile
changed after the build is newer than its cache and compiled again.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from builder.guest.chroot import Chroot

FEATURES_DIR = Path(__file__).resolve().parent.parent / "apparmor-features"
_FEATURES_IN_GUEST = "/tmp/trove-builder-apparmor.features"

# The program an AppArmor profile attaches to: `profile <name> <path> ... {` or `<path> ... {`.
_ATTACHMENT = re.compile(r'^\s*(?:profile\s+(?:"[^"]*"|\S+)\s+)?("/[^"]+"|/\S+)\s+(?:flags=\([^)]*\)\s*)?\{',
                         re.MULTILINE)


# `uname -r` of the guests' kernels: Ubuntu's and bookworm's 6.8.0-151-generic, 6.1.0-57-cloud-amd64 (series,
# ABI, flavour), trixie's 6.12.118+deb13-cloud-amd64 (series, patch level, distribution, flavour).
_KERNEL_RELEASE = re.compile(r"^(?P<series>\d+\.\d+)\.(?P<patch>\d+)(?:-(?P<abi>\d+)(?:\.\d+)*|(?P<distro>\+[a-z]+\d+))"
                             r"-(?P<flavour>[a-z0-9-]+)$")


def features_path(kernel_release: str, features_dir: Path = FEATURES_DIR) -> Path:
    """Where the feature set of the kernel `uname -r` calls `kernel_release` is recorded."""
    return features_dir / f"{kernel_release}.features"


def recorded_features(kernel_release: str, features_dir: Path = FEATURES_DIR) -> Path | None:
    """The feature set recorded for this kernel, else the newest one of its series and flavour."""
    exact = features_path(kernel_release, features_dir)
    if exact.is_file():
        return exact
    wanted = _KERNEL_RELEASE.match(kernel_release)
    if not wanted or not features_dir.is_dir():
        return None
    def series(m: re.Match) -> tuple:
        return m["series"], m["distro"], m["flavour"]

    same_series = []
    for path in features_dir.glob("*.features"):
        found = _KERNEL_RELEASE.match(path.name.removesuffix(".features"))
        if found and series(found) == series(wanted):
            same_series.append((int(found["patch"]), int(found["abi"] or 0), path))
    return max(same_series)[2] if same_series else None


def kernel_releases(root: Path) -> list[str]:
    """The kernels installed in the guest (their /lib/modules directories)."""
    modules = root / "lib/modules"
    return sorted(p.name for p in modules.iterdir() if p.is_dir()) if modules.is_dir() else []


def _alternatives(pattern: str) -> list[str]:
    """The paths an AppArmor `{a,b}` alternation names (nested ones too)."""
    depth, start = 0, 0
    for i, c in enumerate(pattern):
        if c == "{":
            depth, start = depth + 1, (i if depth == 0 else start)
        elif c == "}" and depth:
            depth -= 1
            if depth == 0:
                inner, parts, level, last = pattern[start + 1:i], [], 0, 0
                for j, d in enumerate(inner):
                    level += (d == "{") - (d == "}")
                    if d == "," and level == 0:
                        parts.append(inner[last:j])
                        last = j + 1
                parts.append(inner[last:])
                return [x for part in parts for x in _alternatives(pattern[:start] + part + pattern[i + 1:])]
    return [pattern]


def disable_absent_apparmor_profiles(root: Path) -> list[str]:
    """Profiles for programs the guest does not have (noble ships ~90 for desktop applications)
    are disabled the way an administrator would (a link in /etc/apparmor.d/disable/), so
    apparmor.service does not compile them at every boot without a cache. Profiles whose
    attachment is a glob or variable stay. Returns the names disabled."""
    profiles = root / "etc/apparmor.d"
    if not profiles.is_dir():
        return []
    disabled = []
    for path in sorted(p for p in profiles.iterdir() if p.is_file() and not p.is_symlink()):
        found = _ATTACHMENT.search(path.read_text(errors="replace"))
        if not found or any(c in found.group(1) for c in "*?[@"):
            continue
        if any(os.path.lexists(root / alt.lstrip("/")) for alt in _alternatives(found.group(1).strip('"'))):
            continue
        (profiles / "disable").mkdir(exist_ok=True)
        link = profiles / "disable" / path.name
        if not os.path.lexists(link):
            link.symlink_to(f"/etc/apparmor.d/{path.name}")
        disabled.append(path.name)
    return disabled


def compile_profiles(chroot: Chroot, features_dir: Path = FEATURES_DIR) -> str:
    """Compile the guest's enabled profiles into apparmor_parser's cache for its kernel, as
    apparmor.service would at first boot (the same parser, directory and cache location; --features-file: the
    recorded features stand for the kernel's, for compiling and for naming the cache). Returns what
    was done, for the build log."""
    root = chroot.root
    if not (root / "etc/apparmor.d").is_dir() or not os.path.lexists(root / "sbin/apparmor_parser"):
        return "no AppArmor in the guest"
    kernels = kernel_releases(root)
    if len(kernels) != 1:
        return f"not compiled: {len(kernels)} kernels installed ({' '.join(kernels) or 'none'}), one expected"
    recorded = recorded_features(kernels[0], features_dir)
    if recorded is None:
        return (f"not compiled: no feature set recorded for kernel {kernels[0]} or its series "
                f"(scripts/record_apparmor_features.py): the first boot compiles the profiles")
    inner = chroot.path(_FEATURES_IN_GUEST)
    inner.write_bytes(recorded.read_bytes())
    try:
        with chroot.session() as session:  # the parser writes its cache through /proc/self/fd
            session.run(["apparmor_parser", "--replace", "--skip-kernel-load", "--write-cache",
                         "--features-file", _FEATURES_IN_GUEST, "--", "/etc/apparmor.d"])
    finally:
        inner.unlink(missing_ok=True)
    recorded_for = recorded.name.removesuffix(".features")
    if recorded_for == kernels[0]:
        return f"profiles compiled for kernel {kernels[0]}"
    return (f"profiles compiled for kernel {kernels[0]} with the feature set recorded for {recorded_for} "
            f"(used at boot only if that kernel's are the same)")
