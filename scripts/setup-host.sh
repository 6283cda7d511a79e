#!/usr/bin/env bash
# Prepare a fresh Debian (bookworm or newer) host for trove-builder: the container
# engine (ENGINE=docker, the default: started if it is not running; ENGINE=podman: a
# Podman-only host, daemonless, its API socket started by the CLI on demand), the tools
# the tests and boot tests use, the Python venv, and the builder image (built with that
# engine). Idempotent; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE="${ENGINE:-docker}"
case "$ENGINE" in
    docker) engine_package=docker.io ;;
    podman) engine_package=podman ;;
    *) echo "setup-host.sh: ENGINE must be docker or podman, not '$ENGINE'" >&2; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
    echo "setup-host.sh: run as root (it installs Debian packages and starts dockerd)" >&2
    exit 1
fi

packages=(
    "$engine_package"                           # the engine the builder container runs in
    podman                                      # tests/integration/test_reproducible.py builds with --runtime podman too
    python3 python3-venv python3-pip            # the CLI and tests
    mmdebstrap debian-archive-keyring dpkg-dev  # the builder image from its lock (dpkg-scanpackages), its base
    debootstrap                                 # tests/unit/stages/test_bootstrap_retry.py runs the real debootstrap on the host
    qemu-system-x86 qemu-utils ovmf             # boot tests: SeaBIOS and UEFI
    e2fsprogs fdisk zstd tar cpio               # offline image checks (debugfs, sfdisk); stage cache, initramfs tests
    mtools dosfstools diffoscope-minimal        # trove-builder diff: the ESP, its tests, --diffoscope
    rabbitmq-server rsync openssh-client        # boot tests: broker, dev-mode controller (rsync), test keys
    make git ca-certificates curl
    shellcheck                                  # actionlint checks the workflows' scripts with it (unit test)
    netcat-openbsd                              # the guests' cloud-init stage units' client (fork-server unit test)
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Debian rabbitmq-server package starts a system broker where systemd runs;
# the boot test starts its own throwaway broker and does not need that one.

if [ "$ENGINE" = docker ] && ! docker info >/dev/null 2>&1; then
    echo "==> starting the Docker engine"
    if [ -d /run/systemd/system ] && systemctl start docker 2>/dev/null; then
        :
    else
        nohup dockerd >/var/log/trove-builder-dockerd.log 2>&1 &
    fi
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "setup-host.sh: dockerd did not start (see /var/log/trove-builder-dockerd.log)" >&2; exit 1; }
fi

# The venv (PyPI) and the builder's base image (Debian's archive) download from different places:
# both at once, the venv in the background.
echo "==> Python venv (in the background)"
venv_log=$(mktemp)
make --no-print-directory venv >"$venv_log" 2>&1 &
venv_pid=$!

# Always (re)build the builder image: cheap when nothing changed (layer cache),
# and it must carry this checkout's code.
if true; then
    # No registry may be reachable: make the trixie base locally unless the pinned one is present.
    if ! "$ENGINE" image inspect trove-builder-base:trixie >/dev/null 2>&1 \
       && ! timeout 120 "$ENGINE" pull -q "$(sed -n 's/^ARG BASE=//p' containerfiles/builder.Containerfile)" >/dev/null 2>&1; then
        echo "==> making the builder's base image locally (mmdebstrap | $ENGINE import)"
        make --no-print-directory builder-base ENGINE="$ENGINE"
    fi
    if ! wait "$venv_pid"; then
        cat "$venv_log" >&2
        echo "setup-host.sh: the Python venv could not be made (its log is above)" >&2
        exit 1
    fi
    cat "$venv_log"; rm -f "$venv_log"
    echo "==> building the builder image from its lock ($ENGINE)"
    if ! make --no-print-directory builder ENGINE="$ENGINE" >/dev/null; then
        # A lock whose .debs are neither cached nor still in the archive cannot be built here.
        echo "setup-host.sh: WARNING: the builder image could not be built from containerfiles/builder.lock.json" \
             "(see above; 'make builder-lock' refreshes it): building it from the Containerfile instead" >&2
        make --no-print-directory builder-unlocked ENGINE="$ENGINE" >/dev/null
    fi
fi
echo "==> host ready"
