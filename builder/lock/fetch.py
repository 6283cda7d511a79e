"""`trove-builder fetch`: put every file a lock names into the content-addressed store.

Each download is checked against the lock's sha256 before it is kept, so a mirror that serves
something else (or a lock that was edited) is reported by package name and nothing bad is cached.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from builder.cache.cas import ContentStore, HashMismatch
from builder.errors import BuilderError
from builder.lock.lockfile import Artifact, Lock
from builder.mirror import net_failure, net_timeout
from builder.retry import Backoff, with_backoff

WORKERS = 6


def missing(lock: Lock, store: ContentStore) -> list[Artifact]:
    seen, out = set(), []
    for art in lock.artifacts():
        if art.sha256 not in seen and not store.has(art.sha256):
            out.append(art)
        seen.add(art.sha256)
    return out


def _transient(exc: Exception) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code == 429
    return isinstance(exc, (urllib.error.URLError, OSError)) and not isinstance(exc, HashMismatch)


def _download(art: Artifact, store: ContentStore, context: ssl.SSLContext | None) -> int:
    tmp = store.new_temp(art.sha256 + f"-{id(art)}")

    def once() -> int:
        with urllib.request.urlopen(art.url, timeout=net_timeout(), context=context) as response, open(tmp, "wb") as fh:
            size = 0
            while block := response.read(1 << 20):
                fh.write(block)
                size += len(block)
        return size

    try:
        try:
            size = with_backoff(once, _transient, Backoff.from_env())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise BuilderError(f"{art.label}: {art.url} is gone from its server (404); a snapshot mirror, "
                                   f"or the cache of the host that made the lock, still has it") from None
            raise BuilderError(f"{art.label}: cannot download {art.url}: {net_failure(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise BuilderError(f"{art.label}: cannot download {art.url}: {net_failure(exc)}") from None
        try:
            store.add_file(tmp, art.sha256)
        except HashMismatch as exc:
            raise BuilderError(f"{art.label}: {art.url} has sha256 {exc.actual}, "
                               f"the lock says {exc.expected}") from None
        return size
    finally:
        tmp.unlink(missing_ok=True)


def fetch(lock: Lock, store: ContentStore, ca_bundle: Path | None,
          say: Callable[[str], None] = lambda text: None) -> tuple[int, int]:
    """Download what the store lacks; return (files fetched, bytes). Stops at the first bad file."""
    todo = missing(lock, store)
    if not todo:
        return 0, 0
    say(f"fetching {len(todo)} of {sum(1 for _ in lock.artifacts())} locked files")
    return download(todo, store, ca_bundle, say)


def download(todo: list[Artifact], store: ContentStore, ca_bundle: Path | None,
             say: Callable[[str], None] = lambda text: None) -> tuple[int, int]:
    """Download `todo` into the store, each checked against its sha256; return (files, bytes)."""
    context = ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else None
    done, fetched_bytes = 0, 0
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for size in pool.map(lambda art: _download(art, store, context), todo):
            done += 1
            fetched_bytes += size
            if done % 50 == 0 or done == len(todo):
                say(f"fetched {done}/{len(todo)} ({fetched_bytes / 2**20:.0f} MiB)")
    return done, fetched_bytes


def check_complete(lock: Lock, store: ContentStore, offline: bool) -> None:
    """Every locked file present and whole (damaged ones are dropped), else name the first missing one."""
    absent = [art for art in lock.artifacts() if not store.verify(art.sha256)]
    if absent:
        first = absent[0]
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        hint = "run 'trove-builder fetch --lock FILE' first" if offline else "fetch it again"
        raise BuilderError(f"{first.label} is not in the cache (sha256 {first.sha256}){more}: {hint}")
