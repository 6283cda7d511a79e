"""AppArmor in the guest: profiles of absent programs disabled, the rest compiled by the build for
the guest's kernel, from the feature set recorded for it (builder/apparmor-features)."""

import os
import re

import pytest

from builder.guest.apparmor import (
    FEATURES_DIR,
    compile_profiles,
    disable_absent_apparmor_profiles,
    features_path,
    recorded_features,
)
from builder.guest.chroot import Chroot
from builder.proc import Log


def test_apparmor_profiles_of_absent_programs_are_disabled(tmp_path):
    root = tmp_path / "root"
    (root / "etc/apparmor.d").mkdir(parents=True)
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/rsyslogd").write_text("")
    aa = root / "etc/apparmor.d"
    (aa / "chrome").write_text("abi <abi/4.0>,\ninclude <tunables/global>\n\n"
                               "profile chrome /opt/google/chrome/chrome flags=(unconfined) {\n  userns,\n}\n")
    (aa / "usr.sbin.rsyslogd").write_text("#include <tunables/global>\n/usr/sbin/rsyslogd {\n}\n")
    (aa / "lsb_release").write_text("profile lsb_release @{exec_path} {\n}\n")
    (aa / "unix-chkpwd").write_text("profile unix-chkpwd /{,usr/}{,s}bin/rsyslogd {\n}\n")
    (aa / "firefox").write_text(
        "profile firefox /{usr/lib/firefox{,-esr},opt/firefox}/firefox{,-bin} flags=(unconfined) {\n}\n")
    (aa / "tunables").mkdir()
    assert disable_absent_apparmor_profiles(root) == ["chrome", "firefox"]
    assert os.readlink(aa / "disable/chrome") == "/etc/apparmor.d/chrome"
    assert disable_absent_apparmor_profiles(root) == ["chrome", "firefox"]  # again: idempotent


def test_a_kernel_gets_its_own_feature_set_else_the_newest_of_its_series(tmp_path):
    for name in ("6.8.0-100-generic", "6.8.0-151-generic", "6.8.0-160-lowlatency", "6.1.0-57-cloud-amd64",
                 "6.12.110+deb13-cloud-amd64", "6.12.118+deb13-cloud-amd64"):
        features_path(name, tmp_path).write_text(name)
    assert recorded_features("6.8.0-100-generic", tmp_path) == tmp_path / "6.8.0-100-generic.features"
    # a newer ABI of the same series and flavour: the newest recorded one (its hash decides at boot)
    assert recorded_features("6.8.0-152-generic", tmp_path) == tmp_path / "6.8.0-151-generic.features"
    assert recorded_features("6.1.0-58-cloud-amd64", tmp_path) == tmp_path / "6.1.0-57-cloud-amd64.features"
    # trixie's names: the patch level moves
    assert recorded_features("6.12.120+deb13-cloud-amd64", tmp_path) == tmp_path / "6.12.118+deb13-cloud-amd64.features"
    assert recorded_features("6.12.120+deb14-cloud-amd64", tmp_path) is None
    # another flavour, another series, or a name that is not a kernel release: none
    assert recorded_features("6.8.0-152-aws", tmp_path) is None
    assert recorded_features("6.11.0-1-generic", tmp_path) is None
    assert recorded_features("vmlinuz", tmp_path) is None


def test_every_recorded_feature_set_is_a_kernel_s_as_apparmor_parser_wrote_it():
    recorded = sorted(FEATURES_DIR.glob("*.features"))
    assert recorded, "no feature set recorded"
    for path in recorded:
        kernel = path.name.removesuffix(".features")
        assert recorded_features(kernel) == path
        text = path.read_text()
        # the flattened securityfs tree: balanced braces, the sections every kernel since 4.x has
        assert text.count("{") == text.count("}") and re.search(r"^domain \{", text, re.MULTILINE), kernel
        assert re.search(r"^file \{mask \{", text, re.MULTILINE), kernel


def _guest(tmp_path, kernels=("6.8.0-151-generic",), parser=True):
    root = tmp_path / "root"
    (root / "etc/apparmor.d").mkdir(parents=True)
    (root / "sbin").mkdir()
    if parser:
        (root / "sbin/apparmor_parser").write_text("")
    for kernel in kernels:
        (root / "lib/modules" / kernel).mkdir(parents=True)
    return Chroot(root, Log(tmp_path / "log"))


@pytest.mark.parametrize("kernels,parser,said", [
    (("6.8.0-151-generic",), False, "no AppArmor in the guest"),
    ((), True, "not compiled: 0 kernels installed (none), one expected"),
    (("6.8.0-151-generic", "6.8.0-152-generic"), True, "not compiled: 2 kernels installed"),
    (("6.8.0-151-generic",), True, "not compiled: no feature set recorded for kernel 6.8.0-151-generic"),
])
def test_nothing_is_compiled_where_the_build_cannot_know_the_kernel(tmp_path, kernels, parser, said):
    chroot = _guest(tmp_path, kernels, parser)
    recorded = tmp_path / "features"  # none recorded
    recorded.mkdir()
    assert compile_profiles(chroot, recorded).startswith(said)
