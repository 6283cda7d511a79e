"""runtime docker|podman: the pipeline in the pinned builder container, through the Docker API."""

from __future__ import annotations

import dataclasses
import os
import sys
import uuid
from pathlib import Path

from builder.claims.output import claim_path
from builder.claims.watchdog import OWNER_CLAIM_ENV
from builder.errors import BuilderError
from builder.progress import EVENTS_ENV, Reporter, parse_line
from builder.runtime import privileges, reaper
from builder.runtime.engine_errors import explain
from builder.runtime.limits import host_ulimits
from builder.runtime.reaper import LABEL
from builder.spec import BuildSpec, host_ca_bundle_path

# The fewest privileges debootstrap, chroot mounts and mknod need (--privileged is not required).
CAPABILITIES = list(privileges.CAPABILITIES)
SECURITY_OPTS = ["seccomp=unconfined", "apparmor=unconfined"]
STOP_TIMEOUT = 60


def connect(engine: str):
    """A Docker API client for `engine`; podman is reached through its Docker-compatible socket."""
    import docker

    url = None
    try:
        if engine == "podman":
            from builder.runtime.podman import socket_url

            url = socket_url()
            client = docker.DockerClient(base_url=url)
        else:
            client = docker.from_env()
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        raise explain(exc, engine, url) from None


def _mounts(spec: BuildSpec) -> tuple[dict, BuildSpec]:
    """Bind only what the build needs; return the volumes and the spec as seen inside."""
    volumes: dict[str, dict[str, str]] = {}

    def mount(host: Path, inner: str, mode: str = "rw") -> str:
        volumes[str(host.resolve())] = {"bind": inner, "mode": mode}
        return inner

    inner = dataclasses.replace(spec, runtime="none")
    out_dir = spec.output.parent.resolve()
    inner.output = Path(mount(out_dir, "/out")) / spec.output.name
    spec.cache_dir.mkdir(parents=True, exist_ok=True)
    inner.cache_dir = Path(mount(spec.cache_dir, "/cache"))
    if spec.work_dir:
        spec.work_dir.mkdir(parents=True, exist_ok=True)
        inner.work_dir = Path(mount(spec.work_dir, "/work"))
    if spec.hooks_dir:
        inner.hooks_dir = Path(mount(spec.hooks_dir, "/hooks", "ro"))
    if spec.dev_ssh_key:
        inner.dev_ssh_key = Path(mount(spec.dev_ssh_key, "/run/trove-builder/dev-key", "ro"))
    if spec.lock_file:
        inner.lock_file = Path(mount(spec.lock_file, "/run/trove-builder/lock.json", "ro"))
    inner.preload_images = [Path(mount(path, f"/run/trove-builder/preload/{index}.tar", "ro"))
                            for index, path in enumerate(spec.preload_images)]
    if spec.lock_out:  # `lock` writes its lock as its output
        inner.lock_out = inner.output
    ca = host_ca_bundle_path(spec.ca_bundle)
    inner.ca_bundle = Path(mount(ca, "/run/trove-builder/ca.pem", "ro")) if ca else None
    return volumes, inner


def _relay(chunks, reporter: Reporter) -> None:
    """Container stdout -> events for the reporter; ordinary lines straight through."""
    pending = ""
    for chunk in chunks:
        pending += chunk.decode(errors="replace")
        *lines, pending = pending.split("\n")
        for line in lines:
            event = parse_line(line)
            if event is not None:
                reporter.handle(event)
            else:
                reporter.stream.write(line + "\n")
                reporter.stream.flush()
    if pending:
        reporter.stream.write(pending + "\n")


def check_builder(lock_file: Path, image_id: str, allow_other: bool) -> None:
    """A lock names the builder image it was made with: another one's tools may write other bytes.

    Refused unless `allow_other` (build --allow-other-builder), which proceeds with a loud warning."""
    from builder.lock.lockfile import Lock

    made_with = Lock.load(lock_file).data.get("builder_image")
    if not made_with or made_with == image_id:
        return
    text = (f"the lock {lock_file.name} was made with builder image {made_with}, this one is {image_id}: "
            f"the image may differ from one built with that")
    if not allow_other:
        raise BuilderError(f"{text} (build that builder from its lock with `make builder`, "
                           f"or pass --allow-other-builder)")
    print(f"trove-builder: WARNING: {text}", file=sys.stderr)


def build(spec: BuildSpec, engine: str, reporter: Reporter) -> int:
    """Run the build in a throwaway builder container; stop and remove it whatever happens."""
    import docker

    client = connect(engine)
    try:
        image = client.images.get(spec.builder_image)
    except docker.errors.ImageNotFound:
        raise BuilderError(f"builder image '{spec.builder_image}' not found: build it with "
                           f"'make builder' or pass --builder-image") from None
    if spec.lock_file is not None:
        check_builder(spec.lock_file, image.id, spec.allow_other_builder)
    own_lock = claim_path(spec.output.resolve())  # held by the CLI (cli.build) for the whole build
    reaper.reap_stale_containers(client, own_lock, STOP_TIMEOUT, lambda line: print(line, flush=True))
    volumes, inner = _mounts(spec)
    env = {"TROVE_BUILDER_CACHE_SHOWN_AS": str(spec.cache_dir.resolve()),
           "TROVE_BUILDER_OUTPUT_SHOWN_AS": str(spec.output.resolve()),
           "TROVE_BUILDER_WORK_SHOWN_AS": str(spec.work_dir.resolve()) if spec.work_dir else "",
           "TROVE_BUILDER_OWNER": f"{os.getuid()}:{os.getgid()}",
           # The stage cache's tool identity: a new builder image never reuses another's checkpoints.
           "TROVE_BUILDER_IMAGE_ID": image.id,
           EVENTS_ENV: "1",
           OWNER_CLAIM_ENV: str(inner.output.with_name(own_lock.name))}
    name = f"trove-builder-{uuid.uuid4().hex[:12]}"
    container = client.containers.create(
        spec.builder_image,
        command=["_run-spec", inner.to_json()],
        name=name,
        labels={LABEL: "build", f"{LABEL}.output": str(spec.output.resolve()), **reaper.labels(own_lock)},
        volumes=volumes,
        environment=env,
        cap_add=CAPABILITIES,
        security_opt=SECURITY_OPTS,
        # --offline: only the loopback, where the lock's proxy answers from the cache.
        network_mode="none" if spec.offline else "bridge",
        tty=False,
        # Podman sets high nofile/nproc limits a constrained host refuses; docker keeps its own defaults.
        ulimits=[docker.types.Ulimit(name=name, soft=limit, hard=limit) for name, limit in host_ulimits().items()]
        if engine == "podman" else None,
    )
    try:
        try:
            container.start()
            _relay(container.logs(stream=True, follow=True, stdout=True, stderr=False), reporter)
            status = container.wait()["StatusCode"]
        except KeyboardInterrupt:
            reporter.close()
            print("interrupted: stopping the build container (it cleans up) ...", file=sys.stderr)
            container.stop(timeout=STOP_TIMEOUT)
            raise
        errors = container.logs(stdout=False, stderr=True).decode(errors="replace")
        if errors:
            sys.stderr.write(errors)
        elif status > 128:
            print(f"trove-builder: error: the build container was killed (signal {status - 128})", file=sys.stderr)
        return status
    finally:
        try:
            container.remove(force=True)
        except docker.errors.DockerException:
            pass
