"""The lock stage: read a finished guest tree back into the lock that rebuilds it.

Runs after the hooks stage of every build, before normalize scrubs apt's lists: the signed
InRelease files apt verified, the Packages indexes they name, every package dpkg installed at any
point of the build (build-only packages purged again included), and the exact Python files the
agent venv was made from. Those come from the guest's own pip (`install --dry-run --report` of
the venv's exact versions: pip's choice of file, its index URL and sha256, from the index pages
and the wheels' metadata files, no wheel downloaded). The wheels themselves go into the content
store (for `build --lock --offline` on this host) from pip's HTTP cache, checked by hash; what the
cache lacks (pip itself, fetched by python3-venv's older pip; everything when the index or a proxy
sends no caching headers) and the store does not hold yet is downloaded once more. A pip too old
to report (bionic's pip<22) or a requirement built from source falls back to downloading each file
again with the guest's pip.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import ssl
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from builder.cache import aptcache
from builder.cache.aptcache import apt_caches
from builder.cache.cas import ContentStore, HashMismatch, sha256_file
from builder.context import PRELOAD_DIR, BuildContext
from builder.errors import BuilderError
from builder.guest import dpkg
from builder.guest.chroot import Chroot
from builder.guest.pip import PIP_CACHE, downloaded, lend_host_ca, run_pip
from builder.lock.lockfile import FORMAT, TARGET_FIELDS, Lock, normalize_name, unlockable
from builder.spec import host_ca_bundle_path

PY_DOWNLOADS = "/var/cache/trove-builder-lock-py"
PIP_REPORT = "/tmp/trove-builder-pip-report.json"
PIP_PINS = "/tmp/trove-builder-pip-pins.txt"
REPORT_PIP = (22, 2)  # the first pip with `install --report`
INDEX_COMPRESSIONS = (".xz", ".gz", "")
_DPKG_INSTALLED = re.compile(r"^\S+ \S+ status installed (\S+?):(\S+) (\S+)$")


def installed_during_build(root: Path) -> set[tuple[str, str, str]]:
    """(name, arch, version) of every package dpkg installed, from its log, plus what is installed now."""
    seen: set[tuple[str, str, str]] = set()
    log = root / "var/log/dpkg.log"
    if log.is_file():
        for line in log.read_text(errors="replace").splitlines():
            match = _DPKG_INSTALLED.match(line)
            if match:
                seen.add((match[1], match[2], match[3]))
    seen |= {(p["name"], p["arch"], p["version"]) for p in dpkg.installed(root)}
    return seen


def release_hashes(inrelease: str) -> dict[str, tuple[str, int]]:
    """path -> (sha256, size) from the SHA256 section of a (signed) Release file."""
    found, inside = {}, False
    for line in inrelease.splitlines():
        if line.startswith("SHA256:"):
            inside = True
        elif inside and line.startswith(" "):
            parts = line.split()
            if len(parts) == 3:
                found[parts[2]] = (parts[0], int(parts[1]))
        elif inside:
            inside = False
    return found


def _packages_stanzas(text: str):
    for stanza in text.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if "Package" in fields:
            yield fields


def _index_targets(ctx: BuildContext, chroot: Chroot) -> list[dict[str, Any]]:
    fmt = "$(SITE)\t$(RELEASE)\t$(METAKEY)\t$(FILENAME)\t$(IDENTIFIER)"
    out = chroot.run(["apt-get", "indextargets", "--format", fmt], capture=True).stdout
    targets = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 5 and parts[4] == "Packages":
            site, release, metakey, filename, _ = parts
            targets.append({"site": site.rstrip("/"), "release": release, "metakey": metakey,
                            "list": ctx.rootfs / filename.lstrip("/")})
    if not targets:
        raise BuilderError("apt knows no package indexes in the guest: nothing to lock")
    return targets


def collect_apt(ctx: BuildContext, chroot, store: ContentStore) -> dict[str, Any]:
    """The signed indexes and every installed .deb, by URL and sha256; local copies go into the store."""
    indexes: dict[str, dict[str, Any]] = {}
    available: dict[tuple[str, str, str], dict[str, Any]] = {}
    for target in _index_targets(ctx, chroot):
        site, release, metakey = target["site"], target["release"], target["metakey"]
        mangled = metakey.replace("/", "_")
        inrelease_file = Path(str(target["list"])[: -len(mangled)] + "InRelease")
        if not inrelease_file.is_file():
            raise BuilderError(f"{site} {release} has no InRelease file; only signed-inline mirrors can be locked")
        text = inrelease_file.read_text(errors="replace")
        url = f"{site}/dists/{release}/InRelease"
        indexes[url] = {"url": url, "sha256": store.add_bytes(inrelease_file.read_bytes()),
                        "size": inrelease_file.stat().st_size}
        hashes = release_hashes(text)
        by_hash = re.search(r"^Acquire-By-Hash:\s*yes", text, re.M | re.I) is not None
        for ext in INDEX_COMPRESSIONS:
            if metakey + ext in hashes:
                sha, size = hashes[metakey + ext]
                url = f"{site}/dists/{release}/{metakey}{ext}"
                entry = {"url": url, "sha256": sha, "size": size}
                if by_hash:
                    entry["fetch_url"] = f"{site}/dists/{release}/{os.path.dirname(metakey)}/by-hash/SHA256/{sha}"
                indexes[url] = entry
                break
        else:
            raise BuilderError(f"{site} {release}: {metakey} is not listed in its InRelease")
        for fields in _packages_stanzas(target["list"].read_text(errors="replace")):
            key = (fields["Package"], fields.get("Architecture", ""), fields.get("Version", ""))
            url = f"{site}/{fields.get('Filename', '')}"
            if key not in available:
                available[key] = {"url": url, "also": [], **fields}
            elif fields.get("SHA256") == available[key].get("SHA256") and url != available[key]["url"]:
                available[key]["also"].append(url)  # the same file in another pocket: apt may ask there
    archive = aptcache.private_dir(ctx.cache_dir, ctx.work_dir)
    packages = []
    for name, arch, version in sorted(installed_during_build(ctx.rootfs)):
        fields = available.get((name, arch, version))
        if fields is None or "SHA256" not in fields:
            raise BuilderError(f"package {name} {version} ({arch}) was installed but no apt index offers it "
                               f"(a hook installed a local .deb?): it cannot be locked")
        deb = archive / f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
        if deb.is_file():
            try:
                store.add_file(deb, fields["SHA256"])
            except HashMismatch:
                pass  # fetch downloads the real one
        entry = {"name": name, "arch": arch, "version": version, "sha256": fields["SHA256"],
                 "size": int(fields.get("Size", 0)), "url": fields["url"]}
        if fields["also"]:
            entry["also_at"] = sorted(set(fields["also"]))
        packages.append(entry)
    return {"indexes": sorted(indexes.values(), key=lambda e: e["url"]), "packages": packages}


def _dist_of(filename: str) -> tuple[str, str]:
    """(normalized name, version) from a wheel or sdist file name."""
    if filename.endswith(".whl"):
        name, version = filename.split("-")[:2]
        return normalize_name(name), version
    stem = re.sub(r"\.(tar\.gz|tar\.bz2|zip|tgz)$", "", filename)
    name, _, version = stem.rpartition("-")
    return normalize_name(name), version


def _index_url_of(index_url: str, name: str, filename: str, ca: Path | None) -> str:
    """Where `filename` lives on the index (PEP 503 simple page), for fetch on another host."""
    page_url = f"{index_url.rstrip('/')}/{normalize_name(name)}/"
    context = ssl.create_default_context(cafile=ca) if ca else None
    with urllib.request.urlopen(page_url, timeout=30, context=context) as response:
        page = response.read().decode(errors="replace")
    for href in re.findall(r'href="([^"]+)"', page):
        link = urllib.parse.urljoin(page_url, href.replace("&amp;", "&")).split("#")[0]
        if urllib.parse.unquote(link.rsplit("/", 1)[-1]) == filename:
            return link
    raise BuilderError(f"python package {filename} is not listed on {page_url}: it cannot be locked")


_NOT_FOUND = re.compile(r"(?:No matching distribution found for|Could not find a version that satisfies "
                        r"the requirement) ([A-Za-z0-9_.\-\[\]<>=!~,]+)")


# pip got as far as running the package's own build (so every build requirement was found).
_BUILD_STARTED = re.compile(r"Failed building wheel for|running build_ext|running bdist_wheel")


def _build_requirements(ctx: BuildContext, chroot, dest: Path, sdists: list[str],
                        store: ContentStore) -> list[dict[str, Any]]:
    """Wheels an sdist needs to build (setuptools, pbr, ...): found by building it with no index,
    adding what pip says is missing, until it builds. Locked as role 'build' (not in the venv)."""
    found: list[dict[str, Any]] = []
    trial = "/tmp/trove-builder-lock-trial"
    for sdist in sdists:
        for _ in range(12):
            result = run_pip(ctx, chroot, "wheel", "--no-index", "--find-links", PY_DOWNLOADS, "--no-deps",
                             "--wheel-dir", trial, f"{PY_DOWNLOADS}/{sdist}", check=False, capture=True)
            if result.returncode == 0:
                break
            text = result.stdout + result.stderr
            match = _NOT_FOUND.search(text)
            if not match:
                if _BUILD_STARTED.search(text):
                    break  # its build tools were all there; only the compiler, purged by now, was not
                raise BuilderError(f"{sdist} does not build from the locked files alone; see the build log")
            before = set(dest.iterdir())
            run_pip(ctx, chroot, "download", "--only-binary", ":all:", "--dest", PY_DOWNLOADS, match.group(1))
            for path in sorted(set(dest.iterdir()) - before):
                name, version = _dist_of(path.name)
                sha = sha256_file(path)
                store.add_file(path, sha)
                found.append({"name": name, "version": version, "filename": path.name, "sha256": sha, "role": "build"})
        else:
            raise BuilderError(f"{sdist}: its build requirements could not be resolved")
    shutil.rmtree(ctx.rootfs / trial.lstrip("/"), ignore_errors=True)
    return found


def collect_python(ctx: BuildContext, chroot, store: ContentStore) -> list[dict[str, Any]]:
    """The files the venv was made from: downloaded again by the guest's pip (same tags, same choice)."""
    freeze = downloaded(ctx, ctx.results.get("pip_freeze") or [])
    if not freeze:
        return []
    pins = {normalize_name(line.split("==")[0]): line.split("==", 1)[1] for line in freeze}
    dest = ctx.rootfs / PY_DOWNLOADS.lstrip("/")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    try:
        with lend_host_ca(ctx):
            run_pip(ctx, chroot, "download", "--no-deps", "--dest", PY_DOWNLOADS,
                    *[f"{n}=={v}" for n, v in sorted(pins.items())])
            files = []
            for path in sorted(dest.iterdir()):
                name, version = _dist_of(path.name)
                if pins.get(name) != version:
                    raise BuilderError(f"pip downloaded {path.name}, which is not in the venv's freeze")
                sha = sha256_file(path)
                store.add_file(path, sha)
                files.append({"name": name, "version": version, "filename": path.name, "sha256": sha})
            if len(files) != len(pins):
                missing = sorted(set(pins) - {f["name"] for f in files})
                raise BuilderError(f"pip downloaded no file for {', '.join(missing)}")
            files += _build_requirements(ctx, chroot, dest, [f["filename"] for f in files
                                                             if not f["filename"].endswith(".whl")], store)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    ca = host_ca_bundle_path(ctx.spec.ca_bundle)
    with ThreadPoolExecutor(max_workers=8) as pool:
        urls = list(pool.map(lambda f: _index_url_of(ctx.spec.pip_index_url, f["name"], f["filename"], ca), files))
    for item, url in zip(files, urls, strict=True):
        item["url"] = url
    return files


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def _reported_files(ctx: BuildContext, chroot, pins: dict[str, str]) -> list[dict[str, Any]] | None:
    """name, version, file, URL and sha256 of each pin as the guest's pip chooses it, from its report
    (None where the report cannot say: no sha256 from the index, or a source distribution)."""
    (ctx.rootfs / PIP_PINS.lstrip("/")).write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
    only = [] if ctx.results.get("build_tools") else ["--only-binary", ":all:"]
    try:
        with lend_host_ca(ctx):
            run_pip(ctx, chroot, "install", "--dry-run", "--ignore-installed", "--no-deps", "--quiet",
                    *only, "--report", PIP_REPORT, "-r", PIP_PINS)
        report = json.loads((ctx.rootfs / PIP_REPORT.lstrip("/")).read_text())
    finally:
        for path in (PIP_PINS, PIP_REPORT):
            (ctx.rootfs / path.lstrip("/")).unlink(missing_ok=True)
    return files_of_report(report, pins)


def files_of_report(report: dict[str, Any], pins: dict[str, str]) -> list[dict[str, Any]] | None:
    """The lock's Python entries from a pip installation report (None: a file it cannot lock so)."""
    files = []
    for item in report.get("install", []):
        info = item.get("download_info", {})
        url = info.get("url", "")
        archive = info.get("archive_info", {})
        sha = (archive.get("hashes") or {}).get("sha256") or archive.get("hash", "").partition("sha256=")[2]
        filename = urllib.parse.unquote(url.rsplit("/", 1)[-1])
        if not sha or not filename.endswith(".whl"):
            return None
        files.append({"name": normalize_name(item["metadata"]["name"]), "version": item["metadata"]["version"],
                      "filename": filename, "sha256": sha, "url": url})
    if {(f["name"], f["version"]) for f in files} != set(pins.items()):
        raise BuilderError("pip's report does not name exactly the venv's distributions")
    return sorted(files, key=lambda f: f["name"])


def _pip_cache_body(cache: Path, url: str) -> Path:
    """Where pip (>= 23.3) keeps the body of a download it cached (its http-v2 layout: sha224 of the URL)."""
    key = hashlib.sha224(url.split("#")[0].encode()).hexdigest()
    return cache / "http-v2" / Path(*key[:5]) / f"{key}.body"


def _store_from_pip_cache(ctx: BuildContext, store: ContentStore, files: list[dict[str, Any]]) -> None:
    """The wheels pip's HTTP cache holds go into the content store (checked by hash)."""
    for item in files:
        body = _pip_cache_body(ctx.cache_dir / "pip", item["url"])
        if store.has(item["sha256"]) or not body.is_file():
            continue
        try:
            store.add_file(body, item["sha256"])
        except HashMismatch:
            pass  # not that file after all: downloaded like any other missing one


def _store_the_rest(ctx: BuildContext, store: ContentStore, lock: Lock) -> None:
    """What the store still lacks, downloaded once (each checked), so `build --lock --offline` works
    here: Packages.xz (apt keeps its lists uncompressed) and wheels pip's cache did not keep."""
    from builder.lock.fetch import download, missing

    todo = missing(lock, store)
    if todo:
        count, size = download(todo, store, host_ca_bundle_path(ctx.spec.ca_bundle))
        ctx.log.write(f"lock: {count} locked files not in the build's caches downloaded ({size / 2**20:.1f} MiB): "
                      f"{', '.join(a.url.rsplit('/', 1)[-1] for a in todo)}\n")


def collect_python_of_build(ctx: BuildContext, chroot, store: ContentStore) -> list[dict[str, Any]]:
    """The venv's files from pip's report when the guest's pip can give one, else downloaded again."""
    freeze = downloaded(ctx, ctx.results.get("pip_freeze") or [])
    if not freeze:
        return []
    pins = {normalize_name(line.split("==")[0]): line.split("==", 1)[1] for line in freeze}
    pip_version = next((v for n, v in pins.items() if n == "pip"), None) or next(
        (line.split("==", 1)[1] for line in ctx.results.get("pip_freeze", []) if line.lower().startswith("pip==")), "0")
    files = _reported_files(ctx, chroot, pins) if _version_tuple(pip_version) >= REPORT_PIP else None
    if files is None:
        ctx.log.write("lock: the guest's pip cannot report its files: downloading each once more\n")
        return collect_python(ctx, chroot, store)
    _store_from_pip_cache(ctx, store, files)
    return files


def _lock_data(ctx: BuildContext, apt: dict[str, Any], python: list[dict[str, Any]]) -> dict[str, Any]:
    spec = ctx.spec
    return {
        "trove_builder_lock": FORMAT,
        "target": {name: getattr(spec, name) for name in TARGET_FIELDS} | {
            "agent_version": spec.resolved_agent_version, "mirror": spec.mirror or ctx.profile.mirror},
        "source_date_epoch": spec.source_date_epoch,
        "builder_image": os.environ.get("TROVE_BUILDER_IMAGE_ID"),
        "trove_version": next((f["version"] for f in python if f["name"] == "trove"), None),
        "apt": apt,
        "python": {"index_url": spec.pip_index_url, "files": python},
    }


def image_section(ctx: BuildContext) -> dict[str, Any]:
    """How the disk was written: a rebuild from the lock takes these unless told otherwise."""
    spec = ctx.spec
    return {"format": spec.fmt, "compression": spec.resolved_compression, "size_gb": spec.size_gb}


def collect(ctx: BuildContext) -> Lock | None:
    """The lock of the build in ctx (call after the hooks stage; None when it cannot be locked, see
    `unlockable`). A locked build's is the lock it replayed (it installed exactly that, checked),
    with this builder's image ID; otherwise read from the guest, its files put into the store."""
    spec = ctx.spec
    if ctx.replay is not None:
        data = json.loads(json.dumps(ctx.replay.lock.data))
        data["builder_image"] = os.environ.get("TROVE_BUILDER_IMAGE_ID")
    else:
        if unlockable(spec):
            return None
        store = ContentStore(ctx.cache_dir)
        chroot = ctx.chroot()
        with chroot.session({**apt_caches(ctx), PIP_CACHE: ctx.cache_dir / "pip"}):
            apt = collect_apt(ctx, chroot, store)
            python = collect_python_of_build(ctx, chroot, store)
        data = _lock_data(ctx, apt, python)
        _store_the_rest(ctx, store, Lock(data))
    data["image"] = image_section(ctx)
    if spec.preload_images:  # a build from this lock must be given the same archives
        data["preload_images"] = [a.describe(PRELOAD_DIR) for a in spec.preload_archives]
    return Lock(data)
