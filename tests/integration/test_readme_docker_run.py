"""The README's `docker run` one-liner, run as written: the pipeline straight in a container the operator
started (`--runtime none`, the image's default), a cold named cache volume. It gives the bytes of the
CLI's build, owned by the output directory's owner; run again, the volume makes it warm."""

import re

import docker
import pytest

from tests.conftest import record_hash
from tests.integration.one_liners import OTHER_OWNER, explain_difference, run_one_liner

pytestmark = pytest.mark.slow


def test_the_readme_docker_run_one_liner_gives_the_bytes_of_the_cli(images, builder_image, tmp_path):
    first = images.get("debian", "bookworm")
    cold, warm = run_one_liner("docker", docker.from_env(), builder_image, tmp_path, runs=2)
    out = tmp_path / "images" / first.name
    assert cold.returncode == 0, cold.stdout[-2000:] + cold.stderr[-2000:]
    first_sum = record_hash("bookworm, --runtime docker (session build)", first)
    assert record_hash("bookworm, the README's docker run one-liner (runtime none in the image, cold volume)",
                       out) == first_sum, "docker run and the CLI differ:\n" + explain_difference(first, out)
    assert (out.stat().st_uid, out.stat().st_gid) == (OTHER_OWNER, OTHER_OWNER), "not the output directory owner's"
    assert warm.returncode == 0, warm.stdout[-2000:] + warm.stderr[-2000:]
    assert not re.search(r"^\s+\w+ done in ", warm.stdout, re.M), "the second run was not warm:\n" + warm.stdout
    assert record_hash("bookworm, the docker one-liner again (warm volume)", out) == first_sum
