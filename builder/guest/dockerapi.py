"""The API version of the image's docker engine, read at build time for the agent's launcher.

Trove's datastore manager makes its docker client in its __init__ (`docker.from_env()`), and the
docker SDK then asks dockerd for its API version: the agent could not answer Trove before dockerd
had started. Given this version, the SDK makes its client without asking (templates/guest-agent);
the agent's first docker call waits on docker.socket until dockerd answers, as every call did before.

The image's docker CLI knows the version without a daemon: `docker version` prints its client part,
then fails to connect. It speaks its engine's API when both are of one release (one package in
Debian and Ubuntu; docker-ce and docker-ce-cli of one version). When they are not, or anything is
unexpected, there is no version and the SDK asks dockerd, as upstream does.
"""

from __future__ import annotations

import re

from builder.guest.chroot import Chroot

NO_DAEMON = "unix:///nonexistent/docker.sock"  # `docker version` prints the client part, then fails
CLI_PATHS = ("/usr/bin/docker",)
ENGINE_PATHS = ("/usr/bin/dockerd", "/usr/sbin/dockerd")  # Ubuntu's and docker-ce's; Debian's
API_VERSION = re.compile(r"\d+\.\d+")
ENGINE_VERSION = re.compile(r"Docker version (\d[^,\s]*)")


def release(version_output: str) -> str | None:
    """'Docker version 29.1.3, build ...' -> '29.1.3'."""
    found = ENGINE_VERSION.match(version_output.strip())
    return found.group(1) if found else None


def client_api_version(output: str) -> str | None:
    """The first line of `docker version --format '{{.Client.APIVersion}}'` when it is a version."""
    lines = output.strip().splitlines()
    return lines[0].strip() if lines and API_VERSION.fullmatch(lines[0].strip()) else None


def engine_api_version(chroot: Chroot) -> tuple[str | None, str]:
    """(the engine's API version or None, why) for the build log."""
    cli_path = next((p for p in CLI_PATHS if chroot.path(p).exists()), None)
    engine_path = next((p for p in ENGINE_PATHS if chroot.path(p).exists()), None)
    if cli_path is None or engine_path is None:
        return None, f"no docker CLI ({cli_path}) or engine ({engine_path}) in the image"
    env = {"DOCKER_HOST": NO_DAEMON}
    cli = release(chroot.run([cli_path, "--version"], env=env, check=False, capture=True).stdout)
    engine = release(chroot.run([engine_path, "--version"], env=env, check=False, capture=True).stdout)
    if cli is None or cli != engine:
        return None, f"the docker CLI ({cli}) is not of the engine's release ({engine})"
    listed = chroot.run([cli_path, "version", "--format", "{{.Client.APIVersion}}"], env=env,
                        check=False, capture=True)
    version = client_api_version(listed.stdout)
    if version is None:
        return None, f"`docker version` printed no API version: {listed.stdout.strip()[:80]!r}"
    return version, f"docker {engine} speaks API {version}"
