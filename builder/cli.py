"""The trove-builder command line (thin: parse, validate, hand over to a runtime)."""

from __future__ import annotations

import errno
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer

from . import __version__
from . import profile as profiles
from .errors import BuilderError, UsageError
from .spec import DEFAULT_BUILDER_IMAGE, DEFAULT_SOURCE_DATE_EPOCH, BuildSpec, default_cache_dir, default_output, parse_bool

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Build OpenStack Trove guest images in a pinned container, identically on any host.",
)


def fail(exc: BuilderError) -> None:
    print(f"trove-builder: error: {exc}", file=sys.stderr)
    raise typer.Exit(exc.exit_code)


def guarded(func):
    """Every command: user errors as one line on stderr, no traceback (unless TROVE_BUILDER_DEBUG)."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BuilderError as exc:
            fail(exc)
        except KeyboardInterrupt:
            print("trove-builder: interrupted", file=sys.stderr)
            raise typer.Exit(130)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: still one line, with a way to see more
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # a full disk outside the stages
                fail(BuilderError(f"no space left on device{f' in {exc.filename}' if exc.filename else ''}"))
            if os.environ.get("TROVE_BUILDER_DEBUG"):
                traceback.print_exc()
            print(f"trove-builder: internal error: {type(exc).__name__}: {exc} "
                  f"(set TROVE_BUILDER_DEBUG=1 for a traceback)", file=sys.stderr)
            raise typer.Exit(70)
    return wrapper


@app.command()
@guarded
def build(
    guest_os: Optional[str] = typer.Argument(None, help="Guest OS: ubuntu (default) or debian."),
    release: Optional[str] = typer.Argument(None, help="Guest release, e.g. noble (default), jammy, bionic, bookworm."),
    dev_mode: Optional[str] = typer.Argument(None, help="true: agent code synced from the controller at boot "
                                                        "(default false)."),
    guest_username: Optional[str] = typer.Argument(None, help="User that owns and runs the guest agent (default ubuntu)."),
    output: Optional[Path] = typer.Argument(
        None, help="Image path; default images/trove-guest-<os>-<release>[-dev].qcow2. "
                   "A .raw extension selects the raw format."),
    size: int = typer.Option(5, "--size", envvar="GUEST_IMAGESIZE", help="Virtual disk size in GB."),
    agent_version: Optional[str] = typer.Option(
        None, "--agent-version", help="Trove release for the agent (default: the release profile's)."),
    agent_source: Optional[str] = typer.Option(
        None, "--agent-source", help="pip requirement or path to install instead of trove==VERSION."),
    mirror: Optional[str] = typer.Option(None, "--mirror", envvar="DIB_DISTRIBUTION_MIRROR",
                                         help="Distribution archive mirror URL."),
    hooks_dir: Optional[Path] = typer.Option(None, "--hooks-dir", help="Directory of <phase>.d/ hooks."),
    runtime: str = typer.Option("docker", "--runtime", help="docker, podman, or none (this host)."),
    builder_image: str = typer.Option(DEFAULT_BUILDER_IMAGE, "--builder-image",
                                      envvar="TROVE_BUILDER_IMAGE", help="Builder container image."),
    fmt: Optional[str] = typer.Option(None, "--format", help="qcow2 (default) or raw."),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="Scratch directory (default: in the cache)."),
    keep_work_dir: bool = typer.Option(False, "--keep-work-dir", help="Keep the scratch directory."),
    cache_dir: Path = typer.Option(default_cache_dir(), "--cache-dir", envvar="TROVE_BUILDER_CACHE",
                                   help="Download cache, logs and scratch space."),
    controller_user: str = typer.Option("stack", "--controller-user", envvar="HOST_SCP_USERNAME",
                                        help="Dev mode: controller account the guest rsyncs from."),
    controller_path: str = typer.Option("/opt/stack/trove", "--controller-path",
                                        help="Dev mode: trove checkout on the controller."),
    dev_ssh_key: Optional[Path] = typer.Option(None, "--dev-ssh-key",
                                               help="Dev mode: private deploy key baked into the image."),
    sync_logs: str = typer.Option("false", "--sync-logs", envvar="SYNC_LOG_TO_CONTROLLER",
                                  help="Dev mode: copy guest logs to the controller."),
    ca_bundle: Optional[Path] = typer.Option(None, "--ca-bundle",
                                             help="CA bundle for HTTPS during the build (never kept)."),
    pip_index_url: str = typer.Option("https://pypi.org/simple", "--pip-index-url", envvar="PIP_INDEX_URL",
                                      help="Python package index for the agent venv."),
    docker_source: str = typer.Option("distro", "--docker-source", help="distro (docker.io) or docker-ce."),
    compression: Optional[str] = typer.Option(
        None, "--compression", help="qcow2 compression: zstd, zlib or none (default: the release profile's; "
                                    "zlib for clouds with QEMU < 5.1)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not reuse or store stage checkpoints "
                                                            "(downloads are still shared)."),
    cache_limit: str = typer.Option("20G", "--cache-limit", envvar="TROVE_BUILDER_CACHE_LIMIT",
                                    help="Stage cache size kept after a build (least recently used go)."),
    json_summary: bool = typer.Option(False, "--json", help="Print a JSON summary (stage timings, cache use, "
                                                            "sha256) on stdout; progress goes to stderr."),
    output_option: Optional[Path] = typer.Option(None, "--output", "-o", help="Image path (instead of the "
                                                 "fifth argument; handy with --lock)."),
    lock: Optional[Path] = typer.Option(None, "--lock", help="Install exactly what this lock file names "
                                                            "(see `trove-builder lock`)."),
    offline: bool = typer.Option(False, "--offline", help="With --lock: no network in the builder container; "
                                                          "every file comes from the cache (`trove-builder fetch`)."),
    allow_other_builder: bool = typer.Option(False, "--allow-other-builder",
                                             help="With --lock: build even if the builder image is not the "
                                                  "one the lock was made with (warns)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show every command's output."),
) -> None:
    """Build a Trove guest image (same positional arguments as `trovestack build-image`)."""
    if offline and runtime == "none":
        raise UsageError("--offline needs a container runtime (it takes the builder container's network away)")
    if output_option is not None:
        if output is not None and output != output_option:
            raise UsageError(f"two outputs given: {output} and --output {output_option}")
        output = output_option
    locked = None
    epoch = os.environ.get("SOURCE_DATE_EPOCH", str(DEFAULT_SOURCE_DATE_EPOCH))
    if lock is not None:
        from .lockfile import Lock

        locked = Lock.load(lock)
        target = locked.target
        given = {"OS": (guest_os, target["os"]), "release": (release, target["release"]),
                 "DEV_MODE": (None if dev_mode is None else parse_bool(dev_mode, "DEV_MODE"), target["dev_mode"]),
                 "guest user": (guest_username, target["guest_user"])}
        for what, (value, want) in given.items():
            if value is not None and value != want:
                raise UsageError(f"the lock {lock} is for {what} {want}, not {value}")
        guest_os, release, guest_username = target["os"], target["release"], target["guest_user"]
        dev_mode = str(target["dev_mode"])
        agent_version, agent_source, mirror = target["agent_version"], target["agent_source"], target["mirror"]
        docker_source, pip_index_url = target["docker_source"], target["pip_index_url"]
        controller_user, controller_path = target["controller_user"], target["controller_path"]
        sync_logs = str(target["sync_logs"])
        epoch = str(locked.source_date_epoch)
    guest_os, release = guest_os or "ubuntu", release or "noble"
    guest_username = guest_username or "ubuntu"
    dev = parse_bool(dev_mode or "false", "DEV_MODE")
    if fmt is None:
        fmt = "raw" if output is not None and output.suffix == ".raw" else "qcow2"
    if output is None:
        output = default_output(guest_os, release, dev, fmt)
        output.parent.mkdir(parents=True, exist_ok=True)
    if not epoch.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH must be a whole number of seconds, not '{epoch}'")
    spec = BuildSpec(
        os=guest_os, release=release, dev_mode=dev, guest_user=guest_username, output=output,
        fmt=fmt, size_gb=size, agent_version=agent_version, agent_source=agent_source, mirror=mirror,
        hooks_dir=hooks_dir, runtime=runtime, builder_image=builder_image, work_dir=work_dir,
        keep_work_dir=keep_work_dir, cache_dir=cache_dir, controller_user=controller_user,
        controller_path=controller_path, dev_ssh_key=dev_ssh_key,
        sync_logs=parse_bool(sync_logs, "SYNC_LOG_TO_CONTROLLER"), ca_bundle=ca_bundle,
        pip_index_url=pip_index_url, docker_source=docker_source, source_date_epoch=int(epoch), verbose=verbose,
        compression=compression, stage_cache=not no_cache, cache_limit=cache_limit,
        lock_file=lock, lock_digest=locked.digest if locked else None, offline=offline,
        allow_other_builder=allow_other_builder,
    ).validate()
    _run(spec, json_summary)


def _run(spec: BuildSpec, json_summary: bool = False) -> None:
    """Run the pipeline for `spec` in its runtime, holding its output; exit with the build's status."""
    from . import hooks, preflight

    hooks.validate(spec.hooks_dir)
    from .interrupt import terminate_as_interrupt
    from .output_lock import hold_output
    from .progress import Reporter

    reporter = Reporter(sys.stderr if json_summary else sys.stdout)
    # One build per output, held to the end; SIGTERM unwinds like Ctrl-C so the container is stopped.
    with terminate_as_interrupt(), hold_output(spec.output):
        preflight.run(spec, sys.stderr if json_summary else sys.stdout)
        try:
            if spec.runtime == "none":
                from .runtime import host

                host.build(spec, reporter)
                status = 0
            else:
                from .runtime import container

                status = container.build(spec, spec.runtime, reporter)
        finally:
            reporter.close()
        if status == 0 and spec.lock_out is None:
            _write_sboms(spec.output)
    if status != 0:
        raise typer.Exit(status)
    if json_summary:
        print(json.dumps(reporter.summary, indent=2, sort_keys=True))


def _write_sboms(image: Path) -> None:
    """SPDX and CycloneDX SBOMs beside the image, from its manifest (builder/sbom/).

    The host CLI has the SBOM libraries (package dependencies); the builder image does not (Debian has
    no spdx-tools), so `--runtime none` inside it says so loudly and leaves the image without SBOMs."""
    from .sbom.paths import cyclonedx_path, spdx_path
    from .stages.export import manifest_path

    try:
        from .sbom import publish
    except ImportError as exc:
        for stale in (spdx_path(image), cyclonedx_path(image)):  # an earlier build's would describe another image
            stale.unlink(missing_ok=True)
        print(f"trove-builder: warning: no SBOMs written for {image.name}: {exc} "
              f"(pip install spdx-tools cyclonedx-python-lib)", file=sys.stderr)
        return
    try:
        publish.write(image, manifest_path(image))
    except (OSError, ValueError) as exc:
        raise BuilderError(f"the image was built but its SBOMs could not be written: {exc}") from None


@app.command("_run-spec", hidden=True)
@guarded
def run_spec(spec_json: str) -> None:
    """Inside the builder container: run the pipeline for a spec the host CLI resolved."""
    from .runtime import host
    from .watchdog import watch_owner

    with watch_owner():  # the CLI that started this container dies -> the build stops and cleans up
        host.build(BuildSpec.from_json(spec_json))


@app.command("lock")
@guarded
def lock_command(
    guest_os: str = typer.Argument("ubuntu", help="Guest OS: ubuntu or debian."),
    release: str = typer.Argument("noble", help="Guest release."),
    dev_mode: str = typer.Argument("false", help="true: a dev-mode image."),
    guest_username: str = typer.Argument("ubuntu", help="User that owns and runs the guest agent."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Lock file; default images/trove-guest-<os>-<release>[-dev].lock.json."),
    agent_version: Optional[str] = typer.Option(None, "--agent-version", help="Trove release for the agent."),
    agent_source: Optional[str] = typer.Option(None, "--agent-source", help="pip requirement instead of trove==VERSION."),
    mirror: Optional[str] = typer.Option(None, "--mirror", envvar="DIB_DISTRIBUTION_MIRROR", help="Archive mirror (http)."),
    hooks_dir: Optional[Path] = typer.Option(None, "--hooks-dir", help="Hooks whose packages are locked too."),
    runtime: str = typer.Option("docker", "--runtime", help="docker, podman, or none (this host)."),
    builder_image: str = typer.Option(DEFAULT_BUILDER_IMAGE, "--builder-image", envvar="TROVE_BUILDER_IMAGE"),
    cache_dir: Path = typer.Option(default_cache_dir(), "--cache-dir", envvar="TROVE_BUILDER_CACHE",
                                   help="Where the locked files are stored (cas/sha256/)."),
    controller_user: str = typer.Option("stack", "--controller-user", envvar="HOST_SCP_USERNAME"),
    controller_path: str = typer.Option("/opt/stack/trove", "--controller-path"),
    ca_bundle: Optional[Path] = typer.Option(None, "--ca-bundle", help="CA bundle for HTTPS (never kept)."),
    pip_index_url: str = typer.Option("https://pypi.org/simple", "--pip-index-url", envvar="PIP_INDEX_URL"),
    no_cache: bool = typer.Option(False, "--no-cache", help="Resolve from scratch, reusing no checkpoint."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show every command's output."),
) -> None:
    """Resolve a build's inputs into a lock file: packages, Python files, builder image, SOURCE_DATE_EPOCH.

    Runs the build up to its hooks (reusing checkpoints), reads back what was installed, and fills
    the cache with every file the lock names, so that `build --lock FILE --offline` works here."""
    dev = parse_bool(dev_mode, "DEV_MODE")
    if output is None:
        from .lockfile import default_lock_path

        output = default_lock_path(default_output(guest_os, release, dev))
        output.parent.mkdir(parents=True, exist_ok=True)
    epoch = os.environ.get("SOURCE_DATE_EPOCH", str(DEFAULT_SOURCE_DATE_EPOCH))
    if not epoch.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH must be a whole number of seconds, not '{epoch}'")
    if agent_source and (agent_source.startswith((".", "/")) or Path(agent_source).exists()):
        raise UsageError(f"--agent-source {agent_source} is a local path: only releases on a package index "
                         f"can be locked")
    chosen_mirror = mirror or profiles.load(guest_os, release).mirror
    if not chosen_mirror.startswith("http://"):
        raise UsageError(f"mirror {chosen_mirror}: locks replay apt through an http proxy; use an http:// mirror")
    spec = BuildSpec(
        os=guest_os, release=release, dev_mode=dev, guest_user=guest_username, output=output,
        agent_version=agent_version, agent_source=agent_source, mirror=mirror, hooks_dir=hooks_dir,
        runtime=runtime, builder_image=builder_image, cache_dir=cache_dir, controller_user=controller_user,
        controller_path=controller_path, ca_bundle=ca_bundle, pip_index_url=pip_index_url,
        source_date_epoch=int(epoch), verbose=verbose, stage_cache=not no_cache, lock_out=output,
    ).validate()
    _run(spec)
    from .cas import ContentStore
    from .fetch import fetch
    from .lockfile import Lock
    from .spec import host_ca_bundle_path

    locked = Lock.load(output)
    try:
        fetch(locked, ContentStore(cache_dir), host_ca_bundle_path(ca_bundle), print)
    except BuilderError as exc:  # e.g. a checkpoint's indexes that the mirror no longer serves
        raise BuilderError(f"{exc} (`lock --no-cache` resolves against the mirror as it is now)") from None
    print(f"lock written: {output} ({len(locked.packages)} packages, {len(locked.python_files)} Python files); "
          f"every locked file is in {cache_dir / 'cas'}")


@app.command("fetch")
@guarded
def fetch_command(
    lock: Path = typer.Option(..., "--lock", help="Lock file whose files to download."),
    cache_dir: Path = typer.Option(default_cache_dir(), "--cache-dir", envvar="TROVE_BUILDER_CACHE"),
    ca_bundle: Optional[Path] = typer.Option(None, "--ca-bundle", help="CA bundle for HTTPS."),
) -> None:
    """Download every file a lock names into the content-addressed cache, checking each sha256."""
    from .cas import ContentStore
    from .fetch import check_complete, fetch
    from .lockfile import Lock
    from .spec import host_ca_bundle_path

    locked = Lock.load(lock)
    if ca_bundle is not None and not ca_bundle.is_file():
        raise UsageError(f"CA bundle {ca_bundle} is not a file")
    store = ContentStore(cache_dir)
    count, size = fetch(locked, store, host_ca_bundle_path(ca_bundle), print)
    check_complete(locked, store, offline=True)
    total = len({a.sha256 for a in locked.artifacts()})
    print(f"{total} locked files in {cache_dir / 'cas'} ({count} downloaded, {size / 2**20:.0f} MiB)")


@app.command("profiles")
@guarded
def list_profiles() -> None:
    """List the guest OS releases this builder knows, with their default agent version."""
    for os_name, releases in profiles.available().items():
        for release in releases:
            prof = profiles.load(os_name, release)
            print(f"{os_name:<8} {release:<10} python {prof.python:<5} trove {prof.agent_version}")


@app.command()
@guarded
def version(
    builder_image: str = typer.Option(DEFAULT_BUILDER_IMAGE, "--builder-image", envvar="TROVE_BUILDER_IMAGE"),
) -> None:
    """Print the trove-builder version and the builder image's ID (the digest guest manifests and locks name)."""
    from .builderimage.identity import describe

    print(__version__)
    print(describe(builder_image))


@app.command()
@guarded
def check(
    image: Path = typer.Argument(..., help="Image to check (qcow2 or raw)."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="Default: IMAGE.manifest.json beside it."),
    forbid: list[str] = typer.Option([], "--forbid", help="Fail if any file holds this string "
                                     "(build-host paths, host name); repeatable."),
) -> None:
    """Check a built image against the Trove guest contract, offline (no boot)."""
    from .contract import check_image

    if not image.is_file():
        raise UsageError(f"no image at {image}")
    results = check_image(image, manifest, forbid)
    for result in results:
        print(f"{'PASS' if result.passed else 'FAIL'}  {result.name:<34} {result.detail}")
    failed = [r for r in results if not r.passed]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


@app.command("boot-test")
@guarded
def boot_test(
    image: Path = typer.Argument(..., help="Image to boot (never modified: a copy-on-write overlay is used)."),
    datastore: str = typer.Option("mysql", "--datastore", help="datastore_manager in guest_info.conf."),
    datastore_version: str = typer.Option("8.4", "--datastore-version"),
    guest_user: str = typer.Option("ubuntu", "--guest-user", help="Owner of the injected config files."),
    firmware: str = typer.Option("bios", "--firmware", help="bios (SeaBIOS) or uefi (OVMF)."),
    timeout: float = typer.Option(900.0, "--timeout", help="Seconds for the whole test (TCG is slow)."),
    data_disk_gb: float = typer.Option(2.0, "--data-disk-gb", help="Blank second disk for the data volume."),
    controller_source: Optional[Path] = typer.Option(
        None, "--controller-source", help="Dev-mode image: trove source tree the guest syncs from."),
    controller_key: Optional[Path] = typer.Option(
        None, "--controller-key", help="Dev mode: the private key the image was built with (--dev-ssh-key)."),
    controller_user: str = typer.Option("stack", "--controller-user", envvar="HOST_SCP_USERNAME"),
    controller_path: str = typer.Option("/opt/stack/trove", "--controller-path"),
    console_log: Optional[Path] = typer.Option(None, "--console-log", help="Keep the serial console here."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON here."),
) -> None:
    """Boot an image under QEMU as Trove would and check the guest agent answers RPC."""
    if not image.is_file():
        raise UsageError(f"no image at {image}")
    if firmware not in ("bios", "uefi"):
        raise UsageError(f"firmware must be bios or uefi, not '{firmware}'")
    if controller_source is not None:
        if not controller_source.is_dir():
            raise UsageError(f"controller source {controller_source} is not a directory")
        if controller_key is None or not controller_key.is_file():
            raise UsageError("--controller-source needs --controller-key, the private key the dev image was built with")
    from .verify import render_result_table, run_boot_test

    result = run_boot_test(
        image, datastore=datastore, datastore_version=datastore_version, guest_user=guest_user,
        firmware=firmware, timeout=timeout, data_disk_gb=data_disk_gb,
        controller_source=controller_source, controller_key=controller_key,
        controller_user=controller_user, controller_path=controller_path, console_log=console_log,
        progress=lambda line: print(line, flush=True),
    )
    print(render_result_table(result))
    if json_out is not None:
        json_out.write_text(result.to_json() + "\n")
    if not result.passed:
        print(f"trove-builder: boot test failed: {result.reason}", file=sys.stderr)
        raise typer.Exit(1)


cache_app = typer.Typer(help="The stage cache: checkpoints reused by later builds.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
CACHE_DIR_OPTION = typer.Option(default_cache_dir(), "--cache-dir", envvar="TROVE_BUILDER_CACHE")


@cache_app.command("ls")
@guarded
def cache_ls(cache_dir: Path = CACHE_DIR_OPTION) -> None:
    """List checkpoints, most recently used first, with their size."""
    import time as _time

    from .stagecache import StageCache

    entries = sorted(StageCache(cache_dir).entries(), key=lambda e: e.last_used, reverse=True)
    for entry in entries:
        used = _time.strftime("%Y-%m-%d %H:%M", _time.localtime(entry.last_used))
        print(f"{entry.path.name:<36} {entry.bytes / 2**20:9.1f} MiB  last used {used}")
    print(f"{len(entries)} entries, {sum(e.bytes for e in entries) / 2**20:.1f} MiB in {cache_dir / 'stages'}")


@cache_app.command("prune")
@guarded
def cache_prune(
    max_size: str = typer.Option("20G", "--max-size", envvar="TROVE_BUILDER_CACHE_LIMIT",
                                 help="Keep the most recently used checkpoints within this size."),
    cache_dir: Path = CACHE_DIR_OPTION,
) -> None:
    """Remove least recently used checkpoints until the cache fits in --max-size."""
    from .stagecache import StageCache, parse_size

    cache = StageCache(cache_dir)
    cache.sweep()
    removed = cache.prune(parse_size(max_size))
    for entry in removed:
        print(f"removed {entry.path.name} ({entry.bytes / 2**20:.1f} MiB)")
    print(f"{len(removed)} removed; {cache.total_bytes() / 2**20:.1f} MiB kept")


@cache_app.command("clear")
@guarded
def cache_clear(cache_dir: Path = CACHE_DIR_OPTION) -> None:
    """Remove every checkpoint (downloaded packages are kept)."""
    from .stagecache import StageCache

    cache = StageCache(cache_dir)
    cache.sweep()
    removed = cache.clear()
    print(f"{len(removed)} removed ({sum(e.bytes for e in removed) / 2**20:.1f} MiB)")


@app.command()
@guarded
def diff(
    image_a: Path = typer.Argument(..., help="First image (qcow2 or raw)."),
    image_b: Path = typer.Argument(..., help="Second image."),
    json_out: bool = typer.Option(False, "--json", help="Print the whole comparison as JSON."),
    diffoscope: bool = typer.Option(False, "--diffoscope", help="Run diffoscope on changed files (when installed)."),
) -> None:
    """Say which files, and failing that which bytes, differ between two images (exit 0 same, 1 different)."""
    import json
    import shutil

    from .diff import diff_images
    from .diffreport import render, render_diffoscope

    if diffoscope and shutil.which("diffoscope") is None:
        print("trove-builder: diffoscope is not installed: listing the differences without it", file=sys.stderr)
    report = diff_images(image_a, image_b, with_diffoscope=diffoscope)
    if json_out:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
        if report.get("diffoscope"):
            print(render_diffoscope(report["diffoscope"]))
    if not report["identical"]:
        raise typer.Exit(1)
