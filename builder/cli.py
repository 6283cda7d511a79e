"""The trove-builder command line (thin: parse, validate, hand over to a runtime)."""

from __future__ import annotations

import errno
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from builder import __version__, defaults
from builder import profile as profiles
from builder.choices import Compression, DockerSource, Firmware, Format, Runtime
from builder.errors import BuilderError, UsageError
from builder.spec import BuildSpec, default_cache_dir

app = typer.Typer(
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Build OpenStack Trove guest images in a pinned container, identically on any host.",
)


# Arguments and options shared by build, lock and boot-test: declared once, defaults from builder.defaults.
GuestOS = Annotated[str | None, typer.Argument(help=f"Guest OS: {defaults.OS} (default) or debian.")]
Release = Annotated[str | None, typer.Argument(
    help=f"Guest release, e.g. {defaults.RELEASE} (default), jammy, bionic, bookworm.")]
DevMode = Annotated[str | None, typer.Argument(
    help="true: agent code synced from the controller at boot (default false).")]
GuestUser = Annotated[str | None, typer.Argument(
    help=f"User that owns and runs the guest agent (default {defaults.GUEST_USER}).")]
AgentVersion = Annotated[str | None, typer.Option(
    "--agent-version", help="Trove release for the agent (default: the release profile's).")]
AgentSource = Annotated[str | None, typer.Option(
    "--agent-source", help="pip requirement or path to install instead of trove==VERSION.")]
Mirror = Annotated[str | None, typer.Option("--mirror", envvar="DIB_DISTRIBUTION_MIRROR",
                                            help="Distribution archive mirror URL.")]
HooksDir = Annotated[Path | None, typer.Option(
    "--hooks-dir", help="Directory of <phase>.d/ hooks (a lock names their packages too).")]
RuntimeOption = Annotated[Runtime, typer.Option(
    "--runtime", envvar="TROVE_BUILDER_RUNTIME",
    help="Where the pipeline runs: the builder container through docker or podman, or none (this host; "
         "the default inside the builder image).")]
BuilderImage = Annotated[str, typer.Option("--builder-image", envvar="TROVE_BUILDER_IMAGE",
                                           help="Builder container image.")]
CacheDir = Annotated[Path, typer.Option("--cache-dir", envvar=["TROVE_BUILDER_CACHE", "GUEST_CACHEDIR"],
                                        help="Download cache, stage checkpoints, locked files, logs "
                                             "(trovestack's GUEST_CACHEDIR is honoured; it is not wiped).")]
ControllerUser = Annotated[str, typer.Option("--controller-user", envvar="HOST_SCP_USERNAME",
                                             help="Dev mode: controller account the guest rsyncs from.")]
ControllerPath = Annotated[str, typer.Option("--controller-path", envvar="PATH_TROVE",
                                             help="Dev mode: trove checkout on the controller.")]
CABundle = Annotated[Path | None, typer.Option("--ca-bundle",
                                               help="CA bundle for HTTPS during the build (never kept).")]
PipIndexURL = Annotated[str, typer.Option("--pip-index-url", envvar="PIP_INDEX_URL",
                                          help="Python package index for the agent venv.")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Do not reuse or store stage checkpoints "
                                                          "(downloads are still shared).")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show every command's output.")]
# One meaning everywhere: the command's result as JSON on stdout, everything else on stderr.
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout "
                                                         "(build: stage timings, cache use, sha256); "
                                                         "progress and tables go to stderr.")]
PreloadImage = Annotated[list[Path] | None, typer.Option(
    "--preload-image", help="A `docker save` archive of a datastore image to bake into the guest (repeatable); "
                            "the guest's Docker loads it before the agent starts. Its sha256 is locked.")]
CACHE_DIR = default_cache_dir()
DEFAULT_RUNTIME = Runtime(defaults.RUNTIME)
DEFAULT_DOCKER_SOURCE = DockerSource(defaults.DOCKER_SOURCE)


def _show_version(wanted: bool) -> None:
    if wanted:
        print(f"trove-builder {__version__}")
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the version and exit (`trove-builder version` also "
                                               "names the builder image).")] = False,
) -> None:
    """Build OpenStack Trove guest images in a pinned container, identically on any host."""


def main() -> None:
    """The console script: Typer's app, with the parser's errors (a bad choice, an unknown option) as
    one line on stderr like every other error, instead of Click's usage box."""
    # Click's exception class as Typer raises it: Typer's own copy of Click (0.2x) or the click package
    # (the builder image's Debian typer 0.15); both are the base of typer.BadParameter.
    click_exception: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    try:
        code = app(standalone_mode=False)
    except click_exception as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # no arguments shows the help (Click >= 8.2)
            exc.show()
        else:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            message = exc.format_message().replace("Value error, ", "")  # pydantic's prefix (Typer 0.2x)
            print(f"trove-builder: error: {message}{hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("trove-builder: aborted", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


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
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: still one line, with a way to see more
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # a full disk outside the stages
                fail(BuilderError(f"no space left on device{f' in {exc.filename}' if exc.filename else ''}"))
            if os.environ.get("TROVE_BUILDER_DEBUG"):
                traceback.print_exc()
            print(f"trove-builder: internal error: {type(exc).__name__}: {exc} "
                  f"(set TROVE_BUILDER_DEBUG=1 for a traceback)", file=sys.stderr)
            raise typer.Exit(70) from None
    return wrapper


@app.command()
@guarded
def build(
    guest_os: GuestOS = None,
    release: Release = None,
    dev_mode: DevMode = None,
    guest_username: GuestUser = None,
    output: Annotated[Path | None, typer.Argument(
        help="Image path; default images/trove-guest-<os>-<release>[-dev].qcow2. "
             "A .raw extension selects the raw format.")] = None,
    size: Annotated[int | None, typer.Option(
        "--size", envvar="GUEST_IMAGESIZE",
        help=f"Virtual disk size in GB (default {defaults.SIZE_GB}, or the lock's).")] = None,
    agent_version: AgentVersion = None,
    agent_source: AgentSource = None,
    mirror: Mirror = None,
    hooks_dir: HooksDir = None,
    runtime: RuntimeOption = DEFAULT_RUNTIME,
    builder_image: BuilderImage = defaults.BUILDER_IMAGE,
    fmt: Annotated[Format | None, typer.Option("--format", envvar="GUEST_IMAGETYPE",
                                               help="Default: qcow2, or raw for a .raw output.")] = None,
    work_dir: Annotated[Path | None, typer.Option("--work-dir",
                                                  help="Scratch directory (default: in the cache).")] = None,
    keep_work_dir: Annotated[bool, typer.Option("--keep-work-dir", help="Keep the scratch directory.")] = False,
    cache_dir: CacheDir = CACHE_DIR,
    controller_user: ControllerUser = defaults.CONTROLLER_USER,
    controller_path: ControllerPath = defaults.CONTROLLER_PATH,
    dev_ssh_key: Annotated[Path | None, typer.Option(
        "--dev-ssh-key", help="Dev mode: private deploy key baked into the image.")] = None,
    sync_logs: Annotated[str, typer.Option("--sync-logs", envvar="SYNC_LOG_TO_CONTROLLER",
                                           help="Dev mode: copy guest logs to the controller.")] = "false",
    ca_bundle: CABundle = None,
    pip_index_url: PipIndexURL = defaults.PIP_INDEX_URL,
    docker_source: Annotated[DockerSource, typer.Option(
        "--docker-source", help="distro: Debian's/Ubuntu's docker.io; docker-ce: Docker's own packages.")
    ] = DEFAULT_DOCKER_SOURCE,
    compression: Annotated[Compression | None, typer.Option(
        "--compression", help="qcow2 compression (default: the release profile's; "
                              "zlib for clouds with QEMU < 5.1).")] = None,
    no_cache: NoCache = False,
    cache_limit: Annotated[str, typer.Option(
        "--cache-limit", envvar="TROVE_BUILDER_CACHE_LIMIT",
        help="Stage cache size kept after a build (least recently used go).")] = defaults.CACHE_LIMIT,
    json_summary: JsonOption = False,
    output_option: Annotated[Path | None, typer.Option("--output", "-o", help="Image path (instead of the "
                                                       "fifth argument; handy with --lock).")] = None,
    lock: Annotated[Path | None, typer.Option("--lock", help="Install exactly what this lock file names "
                                                             "(see `trove-builder lock`).")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="With --lock: no network in the builder container; "
                                                            "every file comes from the cache "
                                                            "(`trove-builder fetch`).")] = False,
    allow_other_builder: Annotated[bool, typer.Option(
        "--allow-other-builder", help="With --lock: build even if the builder image is not the one the lock "
                                      "was made with (warns).")] = False,
    preload_image: PreloadImage = None,
    verbose: Verbose = False,
) -> None:
    """Build a Trove guest image (same positional arguments as `trovestack build-image`)."""
    spec = BuildSpec.for_build(
        guest_os=guest_os, release=release, dev_mode=dev_mode, guest_user=guest_username, output=output,
        output_option=output_option, fmt=fmt and fmt.value, lock_file=lock, offline=offline,
        runtime=runtime.value, sync_logs=sync_logs, no_cache=no_cache, size_gb=size, agent_version=agent_version,
        agent_source=agent_source, mirror=mirror, hooks_dir=hooks_dir, builder_image=builder_image,
        work_dir=work_dir, keep_work_dir=keep_work_dir, cache_dir=cache_dir, controller_user=controller_user,
        controller_path=controller_path, dev_ssh_key=dev_ssh_key, ca_bundle=ca_bundle,
        pip_index_url=pip_index_url, docker_source=docker_source.value, verbose=verbose,
        compression=compression and compression.value,
        cache_limit=cache_limit, allow_other_builder=allow_other_builder,
        preload_images=preload_image or [])
    _run(spec, json_summary)


def _run(spec: BuildSpec, json_summary: bool = False, progress_to_stderr: bool = False) -> None:
    """Run the pipeline for `spec` in its runtime, holding its output; exit with the build's status."""
    from builder import preflight
    from builder.guest import hooks

    hooks.validate(spec.hooks_dir)
    from builder.claims.output import hold_output
    from builder.interrupt import terminate_as_interrupt
    from builder.progress import Reporter

    stream = sys.stderr if json_summary or progress_to_stderr else sys.stdout
    reporter = Reporter(stream)
    # One build per output, held to the end; SIGTERM unwinds like Ctrl-C so the container is stopped.
    with terminate_as_interrupt(), hold_output(spec.output):
        preflight.run(spec, stream)
        try:
            if spec.runtime == "none":
                from builder.runtime import host

                host.build(spec, reporter)
                status = 0
            else:
                from builder.runtime import container

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
    from builder.publish import manifest_path
    from builder.sbom.paths import cyclonedx_path, spdx_path

    try:
        from builder.sbom import publish
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
    from builder.claims.watchdog import watch_owner
    from builder.runtime import host

    with watch_owner():  # the CLI that started this container dies -> the build stops and cleans up
        host.build(BuildSpec.from_json(spec_json))


@app.command("lock")
@guarded
def lock_command(
    guest_os: GuestOS = None,
    release: Release = None,
    dev_mode: DevMode = None,
    guest_username: GuestUser = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Lock file; default images/trove-guest-<os>-<release>[-dev].lock.json.")] = None,
    agent_version: AgentVersion = None,
    agent_source: AgentSource = None,
    mirror: Mirror = None,
    hooks_dir: HooksDir = None,
    runtime: RuntimeOption = DEFAULT_RUNTIME,
    builder_image: BuilderImage = defaults.BUILDER_IMAGE,
    cache_dir: CacheDir = CACHE_DIR,
    controller_user: ControllerUser = defaults.CONTROLLER_USER,
    controller_path: ControllerPath = defaults.CONTROLLER_PATH,
    ca_bundle: CABundle = None,
    pip_index_url: PipIndexURL = defaults.PIP_INDEX_URL,
    no_cache: NoCache = False,
    preload_image: PreloadImage = None,
    verbose: Verbose = False,
) -> None:
    """Resolve a build's inputs into a lock file: packages, Python files, builder image, SOURCE_DATE_EPOCH.

    Runs the build up to its lock stage (reusing checkpoints), reads back what was installed, and fills
    the cache with every file the lock names, so that `build --lock FILE --offline` works here."""
    spec = BuildSpec.for_lock(
        guest_os=guest_os, release=release, dev_mode=dev_mode, guest_user=guest_username, output=output,
        no_cache=no_cache, agent_version=agent_version, agent_source=agent_source, mirror=mirror,
        hooks_dir=hooks_dir, runtime=runtime.value, builder_image=builder_image, cache_dir=cache_dir,
        controller_user=controller_user, controller_path=controller_path, ca_bundle=ca_bundle,
        pip_index_url=pip_index_url, verbose=verbose, preload_images=preload_image or [])
    output = spec.output
    _run(spec)
    from builder.cache.cas import ContentStore
    from builder.lock.fetch import fetch
    from builder.lock.lockfile import Lock
    from builder.spec import host_ca_bundle_path

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
    lock: Annotated[Path, typer.Option("--lock", help="Lock file whose files to download.")],
    cache_dir: CacheDir = CACHE_DIR,
    ca_bundle: CABundle = None,
) -> None:
    """Download every file a lock names into the content-addressed cache, checking each sha256."""
    from builder.cache.cas import ContentStore
    from builder.lock.fetch import check_complete, fetch
    from builder.lock.lockfile import Lock
    from builder.spec import host_ca_bundle_path

    locked = Lock.load(lock)
    if ca_bundle is not None and not ca_bundle.is_file():
        raise UsageError(f"CA bundle {ca_bundle} is not a file")
    store = ContentStore(cache_dir)
    count, size = fetch(locked, store, host_ca_bundle_path(ca_bundle), print)
    check_complete(locked, store, offline=True)
    total = len({a.sha256 for a in locked.artifacts()})
    print(f"{total} locked files in {cache_dir / 'cas'} ({count} downloaded, {size / 2**20:.0f} MiB)")


@app.command("verify")
@guarded
def verify_command(
    image: Annotated[Path, typer.Argument(help="Image to verify (qcow2 or raw); never modified.")],
    lock: Annotated[Path | None, typer.Option("--lock", help="Lock to rebuild from (default: IMAGE.lock.json "
                                                             "beside the image, written by its build).")] = None,
    builder_image: Annotated[str | None, typer.Option(
        "--builder-image", envvar="TROVE_BUILDER_IMAGE",
        help="Builder image (default: the one the lock names).")] = None,
    runtime: Annotated[str, typer.Option("--runtime", help="docker or podman (the rebuild has no network).")
                       ] = defaults.RUNTIME,
    cache_dir: CacheDir = CACHE_DIR,
    ca_bundle: CABundle = None,
    hooks_dir: Annotated[Path | None, typer.Option("--hooks-dir", help="The hooks the image was built with.")] = None,
    dev_ssh_key: Annotated[Path | None, typer.Option(
        "--dev-ssh-key", help="Dev image: the deploy key it was built with.")] = None,
    preload_image: Annotated[list[Path] | None, typer.Option(
        "--preload-image", help="The datastore archives the image was built with (repeatable; its lock names "
                                "their sha256).")] = None,
    keep: Annotated[Path | None, typer.Option("--keep", help="Keep the rebuilt image at this path.")] = None,
    reuse_checkpoints: Annotated[bool, typer.Option(
        "--reuse-checkpoints", help="Restore checkpoints of earlier rebuilds from a lock with the same inputs "
                                    "(faster; proves only the stages that run again).")] = False,
) -> None:
    """Rebuild an image from its lock, offline: exit 0 reproduced, 1 not (with diff's summary), 2 bad input."""
    from builder.verify.reproduce import verify

    def build(spec: BuildSpec) -> None:
        try:
            _run(spec, progress_to_stderr=True)
        except typer.Exit as exc:
            if exc.exit_code == 130:
                raise
            print(f"not reproduced: the rebuild from {spec.lock_file} failed (see above)")
            raise typer.Exit(1) from None

    if not verify(image, lock, build, runtime=runtime, cache_dir=cache_dir, builder_image=builder_image,
                  ca_bundle=ca_bundle, keep=keep, reuse_checkpoints=reuse_checkpoints, hooks_dir=hooks_dir,
                  dev_ssh_key=dev_ssh_key, preload_images=preload_image or []):
        raise typer.Exit(1)


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
def version(builder_image: BuilderImage = defaults.BUILDER_IMAGE) -> None:
    """Print the trove-builder version and the builder image's ID (the digest guest manifests and locks name)."""
    from builder.builderimage.identity import describe

    print(__version__)
    print(describe(builder_image))


@app.command()
@guarded
def check(
    image: Annotated[Path, typer.Argument(help="Image to check (qcow2 or raw).")],
    manifest: Annotated[Path | None, typer.Option("--manifest",
                                                  help="Default: IMAGE.manifest.json beside it.")] = None,
    forbid: Annotated[list[str] | None, typer.Option("--forbid", help="Fail if any file holds this string "
                                                     "(build-host paths, host name); repeatable.")] = None,
) -> None:
    """Check a built image against the Trove guest contract, offline (no boot)."""
    from builder.image.contract import check_image

    if not image.is_file():
        raise UsageError(f"no image at {image}")
    results = check_image(image, manifest, forbid or [])
    for result in results:
        print(f"{'PASS' if result.passed else 'FAIL'}  {result.name:<34} {result.detail}")
    failed = [r for r in results if not r.passed]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


@app.command("boot-test")
@guarded
def boot_test(
    image: Annotated[Path, typer.Argument(
        help="Image to boot (never modified: a copy-on-write overlay is used).")],
    datastore: Annotated[str, typer.Option("--datastore", help="datastore_manager in guest_info.conf.")] = "mysql",
    datastore_version: Annotated[str | None, typer.Option(
        "--datastore-version", help=f"Default {defaults.DATASTORE_VERSION}; with --prepare the tag of "
                                    "--datastore-image.")] = None,
    guest_user: Annotated[str, typer.Option("--guest-user", help="Owner of the injected config files.")
                          ] = defaults.GUEST_USER,
    firmware: Annotated[Firmware, typer.Option("--firmware", help="bios: SeaBIOS; uefi: OVMF.")] = Firmware.bios,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds for the whole test (TCG is slow).")] = 900.0,
    data_disk_gb: Annotated[float, typer.Option("--data-disk-gb",
                                                help="Blank second disk for the data volume.")] = 2.0,
    controller_source: Annotated[Path | None, typer.Option(
        "--controller-source", help="Dev-mode image: trove source tree the guest syncs from.")] = None,
    controller_key: Annotated[Path | None, typer.Option(
        "--controller-key", help="Dev mode: the private key the image was built with (--dev-ssh-key).")] = None,
    controller_user: ControllerUser = defaults.CONTROLLER_USER,
    controller_path: ControllerPath = defaults.CONTROLLER_PATH,
    console_log: Annotated[Path | None, typer.Option("--console-log", help="Keep the serial console here.")] = None,
    json_out: JsonOption = False,
    guest_report: Annotated[bool, typer.Option(
        "--guest-report", help="Debug: the guest prints systemd-analyze (time, blame, critical chain, unit times) "
        "to the console once booted (a config-drive toggle; the image is unchanged).")] = False,
    prepare: Annotated[bool, typer.Option(
        "--prepare", help="Then cast prepare, wait for the datastore to report healthy and run SELECT 1 "
                          "through a forwarded port.")] = False,
    datastore_image: Annotated[str, typer.Option(
        "--datastore-image", help="With --prepare: the image the agent runs (NAME:TAG; the tag is the datastore "
                                  "version), preloaded or pullable by the guest.")] = defaults.DATASTORE_IMAGE,
) -> None:
    """Boot an image under QEMU as Trove would and check the guest agent answers RPC.

    The report includes the boot timeline: kernel, initrd, systemd targets, cloud-init stages,
    network, docker, agent unit, first broker connection, first rpc_ping (seconds since QEMU
    started). --json carries it all."""
    if not image.is_file():
        raise UsageError(f"no image at {image}")
    request = None
    if prepare:
        from builder.verify.prepare import PrepareRequest

        name, _, tag = datastore_image.rpartition(":")
        if not name or not tag or "/" in tag:
            raise UsageError(f"--datastore-image {datastore_image} must be NAME:TAG (the agent runs "
                             f"<docker_image>:<datastore version>)")
        if datastore_version is not None and datastore_version != tag:
            raise UsageError(f"--datastore-version {datastore_version} differs from the tag of --datastore-image "
                             f"{datastore_image}: the agent would run {name}:{datastore_version}")
        if datastore != "mysql":
            raise UsageError(f"--prepare drives the mysql manager (MySQL-compatible images), not '{datastore}'")
        datastore_version, request = tag, PrepareRequest(docker_image=name)
    if controller_source is not None:
        if not controller_source.is_dir():
            raise UsageError(f"controller source {controller_source} is not a directory")
        if controller_key is None or not controller_key.is_file():
            raise UsageError("--controller-source needs --controller-key, the private key the dev image was built with")
    from builder.verify.extra import require_verify_extra

    require_verify_extra()
    from builder.verify import render_result_table, run_boot_test

    human = sys.stderr if json_out else sys.stdout
    result = run_boot_test(
        image, datastore=datastore, datastore_version=datastore_version or defaults.DATASTORE_VERSION,
        guest_user=guest_user,
        firmware=firmware.value, timeout=timeout, data_disk_gb=data_disk_gb,
        controller_source=controller_source, controller_key=controller_key,
        controller_user=controller_user, controller_path=controller_path, console_log=console_log,
        guest_report=guest_report, progress=lambda line: print(line, file=human, flush=True),
        prepare=request,
    )
    print(render_result_table(result), file=human)
    if json_out:
        print(result.to_json())
    if not result.passed:
        print(f"trove-builder: boot test failed: {result.reason}", file=sys.stderr)
        raise typer.Exit(1)


@app.command("register")
@guarded
def register_command(
    image: Annotated[Path, typer.Argument(help="Image built by trove-builder (its .manifest.json beside it).")],
    datastore: Annotated[str, typer.Option("--datastore", help="Datastore name, e.g. mysql.")],
    version: Annotated[str, typer.Option("--version", help="Datastore version name, e.g. 8.4.")],
    manager: Annotated[str | None, typer.Option(
        "--manager", help="Datastore manager (default: the datastore name).")] = None,
    version_number: Annotated[str | None, typer.Option(
        "--version-number", help="The database's image tag (default: the version name).")] = None,
    os_cloud: Annotated[str | None, typer.Option(
        "--os-cloud", "--cloud", help="Cloud in clouds.yaml (default: OS_CLOUD or the OS_* variables).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Glance image name (default: the file's stem).")] = None,
    default: Annotated[bool, typer.Option("--default", help="Make this the datastore's default version.")] = False,
    image_tags: Annotated[str | None, typer.Option(
        "--image-tags", help="Comma-separated: the version picks the newest image with these tags (and trove) "
        "instead of this image's ID.")] = None,
    rules: Annotated[Path | None, typer.Option(
        "--rules", help="validation-rules.json (default: the installed trove package's for the manager).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the calls it would make; change nothing.")] = False,
    emit: Annotated[str | None, typer.Option(
        "--emit", help="trove-manage: print the equivalent `openstack image create` + `trove-manage` commands "
        "instead.")] = None,
) -> None:
    """Upload an image to Glance and register it as a Trove datastore version (safe to run twice)."""
    from builder.register.plan import Request, describe, make_plan

    if emit not in (None, "trove-manage"):
        raise UsageError(f"--emit knows only trove-manage, not '{emit}'")
    tags = tuple(t.strip() for t in (image_tags or "").split(",") if t.strip())
    plan = make_plan(Request(image=image, datastore=datastore, version=version, manager=manager,
                             version_number=version_number, name=name, default=default, image_tags=tags,
                             rules=rules))
    if emit:
        from builder.register.emit import trove_manage_script

        print(trove_manage_script(plan), end="")
    elif dry_run:
        print("\n".join(describe(plan)))
    else:
        from builder.register.run import register

        register(plan, os_cloud, log=lambda line: print(line, flush=True))


cache_app = typer.Typer(help="The stage cache: checkpoints reused by later builds.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("ls")
@guarded
def cache_ls(cache_dir: CacheDir = CACHE_DIR) -> None:
    """List checkpoints, most recently used first, with their size."""
    import time as _time

    from builder.cache.stagecache import StageCache

    entries = sorted(StageCache(cache_dir).entries(), key=lambda e: e.last_used, reverse=True)
    for entry in entries:
        used = _time.strftime("%Y-%m-%d %H:%M", _time.localtime(entry.last_used))
        print(f"{entry.path.name:<36} {entry.bytes / 2**20:9.1f} MiB  last used {used}")
    print(f"{len(entries)} entries, {sum(e.bytes for e in entries) / 2**20:.1f} MiB in {cache_dir / 'stages'}")


@cache_app.command("prune")
@guarded
def cache_prune(
    max_size: Annotated[str, typer.Option(
        "--max-size", envvar="TROVE_BUILDER_CACHE_LIMIT",
        help="Keep the most recently used checkpoints within this size.")] = defaults.CACHE_LIMIT,
    cache_dir: CacheDir = CACHE_DIR,
) -> None:
    """Remove least recently used checkpoints until the cache fits in --max-size."""
    from builder.cache.stagecache import StageCache, parse_size

    cache = StageCache(cache_dir)
    cache.sweep()
    removed = cache.prune(parse_size(max_size))
    for entry in removed:
        print(f"removed {entry.path.name} ({entry.bytes / 2**20:.1f} MiB)")
    print(f"{len(removed)} removed; {cache.total_bytes() / 2**20:.1f} MiB kept")


@cache_app.command("clear")
@guarded
def cache_clear(cache_dir: CacheDir = CACHE_DIR) -> None:
    """Remove every checkpoint (downloaded packages are kept)."""
    from builder.cache.stagecache import StageCache

    cache = StageCache(cache_dir)
    cache.sweep()
    removed = cache.clear()
    print(f"{len(removed)} removed ({sum(e.bytes for e in removed) / 2**20:.1f} MiB)")


@app.command()
@guarded
def diff(
    image_a: Annotated[Path, typer.Argument(help="First image (qcow2 or raw).")],
    image_b: Annotated[Path, typer.Argument(help="Second image.")],
    json_out: JsonOption = False,
    diffoscope: Annotated[bool, typer.Option("--diffoscope",
                                             help="Run diffoscope on changed files (when installed).")] = False,
) -> None:
    """Say which files, and failing that which bytes, differ between two images (exit 0 same, 1 different)."""
    import json
    import shutil

    from builder.image.diff import diff_images
    from builder.image.diffreport import render, render_diffoscope

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
