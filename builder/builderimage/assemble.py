"""`make builder`: the builder image from its lock, the same bytes on any host and any day.

Every locked .deb comes from the content store (fetched from the archive by its pool path when
missing, and checked against the lock's sha256). mmdebstrap installs them from a local flat
repository that holds only those files, under the lock's SOURCE_DATE_EPOCH; the tree is packed into
one sorted tar layer with clamped times and numeric owners, described by a fixed config, and loaded
with `docker load`. The image ID is the sha256 of that config, so it names the lock and the code.
Why not `docker build`: its layers carry build times and the live archive's versions."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from builder.cache.cas import ContentStore, sha256_file

SOURCES_LIST = "deb http://deb.debian.org/debian {suite} main\n"
ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C.UTF-8", "LANG=C.UTF-8",
       "TROVE_BUILDER_RUNTIME=none"]  # inside its own image the CLI builds in place (see the Containerfile)
LOCK_LABEL = "io.trove-builder.builder-lock"


def fetch_debs(lock: dict, store: ContentStore) -> None:
    """Every locked .deb in the store; a missing one is downloaded and must match the lock's sha256."""
    for pkg in lock["packages"]:
        if store.verify(pkg["sha256"]):
            continue
        url = f"{lock['mirror']}/{pkg['filename']}"
        try:
            with urllib.request.urlopen(url, timeout=120) as resp:
                data = resp.read()
        except OSError as exc:
            raise OSError(f"{pkg['name']} {pkg['version']} is not in the cache and {url} failed ({exc}): "
                          f"the archive keeps only current versions; refresh with `make builder-lock`") from None
        store.add_bytes(data, pkg["sha256"])


def _flat_repo(lock: dict, store: ContentStore, repo: Path) -> None:
    """A flat apt repository of exactly the locked .debs; its Release names the lock's suite, which
    mmdebstrap's minbase selection asks for."""
    repo.mkdir()
    for pkg in lock["packages"]:
        os.link(store.path(pkg["sha256"]), repo / Path(pkg["filename"]).name)
    index = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=repo, check=True,
                           capture_output=True).stdout
    (repo / "Packages").write_bytes(index)
    digest = hashlib.sha256(index).hexdigest()
    (repo / "Release").write_text(f"Origin: trove-builder\nSuite: {lock['suite']}\nCodename: {lock['suite']}\n"
                                  f"Architectures: amd64\nSHA256:\n {digest} {len(index)} Packages\n")


@contextlib.contextmanager
def _serve(root: Path) -> Iterator[str]:
    """The repository over http on the loopback (apt copies from it like from a mirror); its URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass


def _source_tree(code: Path, dest: Path) -> None:
    """The trove-builder sources the image installs (no caches, no build leftovers)."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(code / name, dest / name)
    shutil.copytree(code / "builder", dest / "builder", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _rootfs(lock: dict, repo_url: str, src: Path, rootfs: Path) -> None:
    epoch = str(lock["source_date_epoch"])
    hooks = [
        f'printf "{SOURCES_LIST.format(suite=lock["suite"])}" > "$1/etc/apt/sources.list"',
        'rm -f "$1/etc/apt/sources.list.d/"*',
        'printf "" > "$1/etc/resolv.conf"; printf "trove-builder\\n" > "$1/etc/hostname"',
        'mkdir -p "$1/tmp/src"', f"sync-in {src} /tmp/src",
        'chroot "$1" env PYTHONDONTWRITEBYTECODE=1 SOURCE_DATE_EPOCH=' + epoch + ' pip install --quiet --no-deps '
        "--no-build-isolation --no-index --no-compile --no-cache-dir --break-system-packages --root-user-action=ignore "
        "/tmp/src",
        'rm -rf "$1/tmp/src" "$1/root/.cache"',
        'chroot "$1" dpkg-query -W -f "\\${Package} \\${Version} \\${Architecture}\\n" > "$1/../installed"',
    ]
    cmd = ["mmdebstrap", "--quiet", "--mode=root", "--variant=minbase", f"--include={','.join(lock['include'])}",
           *(f"--customize-hook={h}" for h in hooks), lock["suite"], str(rootfs), f"deb [trusted=yes] {repo_url} ./"]
    subprocess.run(cmd, check=True, env={**os.environ, "SOURCE_DATE_EPOCH": epoch, "TZ": "UTC", "LC_ALL": "C.UTF-8"})
    installed = sorted(tuple(line.split()) for line in (rootfs.parent / "installed").read_text().splitlines())
    locked = sorted((p["name"], p["version"], p["arch"]) for p in lock["packages"])
    if installed != locked:
        extra, missing = set(installed) - set(locked), set(locked) - set(installed)
        raise ValueError(f"the builder root is not what the lock names: extra {sorted(extra)[:5]}, "
                         f"missing {sorted(missing)[:5]}")


def _layer(rootfs: Path, epoch: int, out: Path) -> str:
    subprocess.run(["tar", "--sort=name", f"--mtime=@{epoch}", "--clamp-mtime", "--numeric-owner",
                    "--format=posix", "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
                    "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
                    "-C", str(rootfs), "-cf", str(out), "."], check=True, env={**os.environ, "TZ": "UTC"})
    return sha256_file(out)


def config(lock_sha256: str, layer_sha256: str, epoch: int) -> bytes:
    """The image config: fixed but for the layer digest and the lock it came from."""
    created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = {"architecture": "amd64", "os": "linux", "created": created,
            "config": {"Env": ENV, "Entrypoint": ["trove-builder"], "Cmd": ["--help"],
                       "Labels": {LOCK_LABEL: f"sha256:{lock_sha256}"}},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_sha256}"]},
            "history": [{"created": created, "created_by": "make builder (containerfiles/builder.lock.json)"}]}
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, path: Path | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.mode = 0, 0o644
    if path is not None:
        info.size = path.stat().st_size
        with path.open("rb") as fh:
            tar.addfile(info, fh)
    else:
        assert data is not None
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def build(lock_path: Path, code: Path, store: ContentStore, tag: str, archive: Path | None, load: bool = True,
          engine: str = "docker") -> str:
    """Assemble the builder image from `lock_path` and the code in `code`; return its ID (sha256:...)."""
    lock = json.loads(lock_path.read_text())
    epoch = int(lock["source_date_epoch"])
    fetch_debs(lock, store)
    with tempfile.TemporaryDirectory(prefix="trove-builder-image-", dir=os.environ.get("TMPDIR")) as tmp:
        work = Path(tmp)
        _flat_repo(lock, store, work / "repo")
        _source_tree(code, work / "src")
        with _serve(work / "repo") as url:
            _rootfs(lock, url, work / "src", work / "rootfs")
        layer_sha = _layer(work / "rootfs", epoch, work / "layer.tar")
        conf = config(sha256_file(lock_path), layer_sha, epoch)
        image_id = hashlib.sha256(conf).hexdigest()
        out = archive or work / "image.tar"
        with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, f"{image_id}.json", conf)
            _add(tar, f"{layer_sha}/layer.tar", path=work / "layer.tar")
            _add(tar, "manifest.json", json.dumps([{"Config": f"{image_id}.json", "RepoTags": [tag],
                                                     "Layers": [f"{layer_sha}/layer.tar"]}]).encode())
        if load:
            subprocess.run([engine, "load", "-q", "-i", str(out)], check=True, stdout=subprocess.DEVNULL)
            loaded = subprocess.run([engine, "image", "inspect", "-f", "{{.Id}}", tag], check=True,
                                    capture_output=True, text=True).stdout.strip()
            if loaded.removeprefix("sha256:") != image_id:  # podman prints the ID without its prefix
                raise ValueError(f"{engine} loaded {tag} as {loaded}, not sha256:{image_id}")
    return f"sha256:{image_id}"
