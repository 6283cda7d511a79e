"""`build --lock`: install exactly what a lock names, from the content-addressed store alone.

apt and debootstrap keep their usual sources (so the guest's files are those of any build) and
reach them through a small HTTP proxy on the loopback that answers only with locked files, by URL
or by hash; anything else is a 404. pip runs the unlocked build's own commands (`install
trove==VERSION`), with no index but a directory of the locked files (each checked against its
sha256 in the store) and a constraints file of the locked versions: pip records the same
metadata (REQUESTED, RECORD) as in an unlocked build, which `-r --require-hashes --no-deps` would
not. Works the same with or without a network: `--offline` only takes the network away.
"""

from __future__ import annotations

import re
import shutil
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from builder.cache.aptcache import link_or_copy
from builder.cache.cas import ContentStore
from builder.errors import BuilderError
from builder.lock.lockfile import Lock, normalize_name

INNER_DIR = "/var/cache/trove-builder-lock"
_BY_HASH = re.compile(r"/by-hash/SHA256/([0-9a-f]{64})$")


class _Handler(BaseHTTPRequestHandler):
    server: _Proxy

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.server.resolve(self.path)
        if path is None:
            self.send_error(404, "not in the lock")
            return
        size = path.stat().st_size
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        with open(path, "rb") as fh:
            shutil.copyfileobj(fh, self.wfile, 1 << 20)

    def do_HEAD(self) -> None:  # noqa: N802
        path = self.server.resolve(self.path)
        if path is None:
            self.send_error(404, "not in the lock")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()

    def log_message(self, fmt: str, *args) -> None:
        pass  # apt reports what it could not fetch; a line per request would flood the build's output


class _Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, by_url: dict[str, str], index_hashes: set[str], store: ContentStore):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.by_url, self.index_hashes, self.store = by_url, index_hashes, store

    def resolve(self, url: str) -> Path | None:
        sha = self.by_url.get(url) or self.by_url.get(urllib.parse.unquote(url))  # apt sends '+' as %2b
        if sha is None:
            match = _BY_HASH.search(url)
            if match and match.group(1) in self.index_hashes:
                sha = match.group(1)
        return self.store.path(sha) if sha else None


class Replay:
    """The lock of this build, its proxy and its pip directory, for the pipeline and the chroot."""

    def __init__(self, lock: Lock, store: ContentStore, work_dir: Path):
        self.lock, self.store = lock, store
        self.dir = work_dir / "lock"
        self.proxy: _Proxy | None = None

    # -- set-up and tear-down ------------------------------------------------------------------------
    def start(self) -> None:
        by_url, index_hashes = {}, set()
        for index in self.lock.data["apt"]["indexes"]:
            by_url[index["url"]] = index["sha256"]
            index_hashes.add(index["sha256"])
        for pkg in self.lock.packages:
            for url in [pkg["url"], *pkg.get("also_at", [])]:
                by_url[url] = pkg["sha256"]
        self.proxy = _Proxy(by_url, index_hashes, self.store)
        threading.Thread(target=self.proxy.serve_forever, name="lock-proxy", daemon=True).start()
        self._write_dir()

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.shutdown()
            self.proxy.server_close()
            self.proxy = None

    @property
    def proxy_url(self) -> str:
        assert self.proxy is not None, "the proxy runs between start() and stop()"
        return f"http://127.0.0.1:{self.proxy.server_address[1]}/"

    def _write_dir(self) -> None:
        (self.dir / "python").mkdir(parents=True, exist_ok=True)
        (self.dir / "apt.conf").write_text(
            f'Acquire::http::Proxy "{self.proxy_url}";\n'
            # Locked indexes stay valid however old the lock: their signature is still checked.
            'Acquire::Check-Valid-Until "false";\n'
            'Acquire::Languages "none";\n'
            'Acquire::Retries "0";\n')
        pins: list[str] = []
        for item in self.lock.python_files:
            target = self.dir / "python" / item["filename"]
            link_or_copy(self.store.path(item["sha256"]), target)
            if item.get("role") != "build":  # build requirements are only found there, for an sdist
                pins.append(f"{item['name']}=={item['version']}\n")
        (self.dir / "constraints.txt").write_text("".join(sorted(pins)))

    # -- what the stages use -------------------------------------------------------------------------
    @property
    def chroot_env(self) -> dict[str, str]:
        return {"http_proxy": self.proxy_url, "APT_CONFIG": f"{INNER_DIR}/apt.conf"}

    @property
    def chroot_mounts(self) -> dict[str, Path]:
        return {INNER_DIR: self.dir}

    @property
    def locks_pip(self) -> bool:
        return any(item["name"] == "pip" and item.get("role") != "build" for item in self.lock.python_files)

    @property
    def pip_source_args(self) -> list[str]:
        """What `pip install` adds to an unlocked build's arguments: the locked files, nothing else."""
        return ["--no-index", "--find-links", f"{INNER_DIR}/python", "--constraint", f"{INNER_DIR}/constraints.txt"]

    # -- checks --------------------------------------------------------------------------------------
    def check_python(self, freeze: list[str]) -> None:
        locked = {normalize_name(f["name"]): f["version"] for f in self.lock.python_files if f.get("role") != "build"}
        have = {normalize_name(line.split("==")[0]): line.split("==", 1)[1] for line in freeze}
        for name in sorted(set(locked) | set(have)):
            if locked.get(name) != have.get(name):
                raise BuilderError(_mismatch("python package", name, have.get(name), locked.get(name)))

    def check_packages(self, installed: set[tuple[str, str, str]]) -> None:
        """Every package installed during the build (upgrades included) at a locked version, and all of them."""
        locked = {(p["name"], p["arch"], p["version"]) for p in self.lock.packages}
        versions: dict[tuple[str, str], list[str]] = {}
        for name, arch, version in locked:
            versions.setdefault((name, arch), []).append(version)
        for name, arch, version in sorted(installed - locked):
            other = versions.get((name, arch))
            wanted = " or ".join(sorted(other)) if other else None
            raise BuilderError(_mismatch("package", f"{name} ({arch})", version, wanted))
        for name, arch, version in sorted(locked - installed):
            raise BuilderError(_mismatch("package", f"{name} ({arch})", None, version))


def _mismatch(kind: str, name: str, have: str | None, locked: str | None) -> str:
    if locked is None:
        return f"{kind} {name} {have} was installed but is not in the lock"
    if have is None:
        return f"{kind} {name} {locked} is in the lock but was not installed"
    return f"{kind} {name}: installed {have}, the lock says {locked}"
