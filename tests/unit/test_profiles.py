import pytest

from builder import profile
from builder.errors import UsageError
from builder.spec import agent_min_python

EXPECTED = {"ubuntu": ["bionic", "focal", "jammy", "noble"], "debian": ["bookworm", "trixie"]}


def test_all_supported_releases_are_known():
    assert profile.available() == EXPECTED


@pytest.mark.parametrize("os_name,release", [(o, r) for o, rs in EXPECTED.items() for r in rs])
def test_profile_has_what_the_pipeline_reads(os_name, release):
    prof = profile.load(os_name, release)
    for key in ("mirror", "keyring", "kernel_package", "docker_package", "python", "agent_version",
                "packages", "build_packages", "components", "kernel_cmdline"):
        assert prof.data.get(key), f"{os_name}/{release} lacks {key}"
    assert prof.suites[0] == release
    assert "openssh-server" in prof.packages and "cloud-init" in prof.packages and "curl" in prof.packages
    # build-only packages never end up in the runtime set
    assert not set(prof.build_packages) & set(prof.packages)


@pytest.mark.parametrize("os_name,release", [(o, r) for o, rs in EXPECTED.items() for r in rs])
def test_default_agent_runs_on_the_guest_python(os_name, release):
    prof = profile.load(os_name, release)
    assert agent_min_python(prof.agent_version) <= prof.python_version


def test_bionic_gets_a_python36_trove():
    prof = profile.load("ubuntu", "bionic")
    assert prof.python == "3.6"
    assert int(prof.agent_version.split(".")[0]) <= 17


def test_ubuntu_only_packages_stay_out_of_debian():
    assert "ubuntu-cloudimage-keyring" in profile.load("ubuntu", "noble").packages
    assert "ubuntu-cloudimage-keyring" not in profile.load("debian", "bookworm").packages


def test_old_guests_get_ext4_features_their_e2fsck_knows():
    assert "orphan_file" in profile.load("ubuntu", "bionic").ext4_disable_features
    assert "metadata_csum_seed" in profile.load("ubuntu", "jammy").ext4_disable_features


@pytest.mark.parametrize("os_name,release,message", [
    ("centos", "9", "unknown guest OS 'centos'"),
    ("ubuntu", "xenial", "unknown ubuntu release 'xenial'"),
    ("debian", "noble", "unknown debian release 'noble'"),
])
def test_unknown_os_or_release_names_the_known_ones(os_name, release, message):
    with pytest.raises(UsageError) as err:
        profile.load(os_name, release)
    assert message in str(err.value)
    assert "known:" in str(err.value)


def test_merge_add_and_remove_edit_inherited_lists():
    merged = profile._merge({"packages": ["a", "b"]}, {"packages_add": ["c", "a"], "packages_remove": ["b"]})
    assert merged["packages"] == ["a", "c"]


def test_a_profile_key_nothing_reads_is_an_error():
    data = dict(profile.load("debian", "bookworm").data, cloud_init_units=["cloud-init.service"])
    with pytest.raises(UsageError, match="profile debian/bookworm: unknown key.s. cloud_init_units"):
        profile.Profile.from_data("debian", "bookworm", data)


def test_a_profile_without_a_required_key_is_an_error():
    data = {k: v for k, v in profile.load("debian", "bookworm").data.items() if k != "kernel_package"}
    with pytest.raises(UsageError, match="missing key.s. kernel_package"):
        profile.Profile.from_data("debian", "bookworm", data)
