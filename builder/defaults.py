"""Every default an operator can override, in one place (the CLI, BuildSpec and the boot test read them here)."""

from __future__ import annotations

OS = "ubuntu"
RELEASE = "noble"
GUEST_USER = "ubuntu"
SIZE_GB = 5
# trovestack's defaults for the controller a dev-mode guest syncs the agent's code from.
CONTROLLER_USER = "stack"
CONTROLLER_PATH = "/opt/stack/trove"
PIP_INDEX_URL = "https://pypi.org/simple"
DOCKER_SOURCE = "distro"
RUNTIME = "docker"
BUILDER_IMAGE = "trove-builder:latest"
CACHE_LIMIT = "20G"  # stage cache kept after a build
# 2026-01-01T00:00:00Z. Every file time in the image is clamped to this unless
# SOURCE_DATE_EPOCH says otherwise, so that the build time never leaks in.
SOURCE_DATE_EPOCH = 1767225600
# `boot-test --prepare`: the image the agent runs (`make datastore-image`; NAME:TAG, the tag is the version).
DATASTORE_IMAGE = "trove-builder/mariadb:10.11"
DATASTORE_VERSION = "8.4"  # boot-test without --prepare: guest_info's datastore version
