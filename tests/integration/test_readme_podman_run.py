"""The README's `podman run` one-liner, run as written (rootful Podman 4: the caps it does not grant by
default, ulimits within the host's): a cold build in a Podman volume, with the bytes of the Docker build."""

import pytest

from builder.runtime.container import connect
from tests.conftest import record_hash
from tests.integration.one_liners import OTHER_OWNER, explain_difference, run_one_liner

pytestmark = pytest.mark.slow


def test_the_readme_podman_run_one_liner_gives_the_bytes_of_docker(images, podman_builder_image, tmp_path):
    first = images.get("debian", "bookworm")
    [run] = run_one_liner("podman", connect("podman"), podman_builder_image, tmp_path)
    out = tmp_path / "images" / first.name
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert record_hash("bookworm, the README's podman run one-liner (cold volume)", out) == \
        record_hash("bookworm, --runtime docker (session build)", first), \
        "podman run and the docker build differ:\n" + explain_difference(first, out)
    assert (out.stat().st_uid, out.stat().st_gid) == (OTHER_OWNER, OTHER_OWNER), "not the output directory owner's"
