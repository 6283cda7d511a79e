"""Probe the distribution mirror before the slow build, so a typo or an outage costs seconds, not minutes."""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from builder.errors import BuilderError, UsageError
from builder.retry import Backoff, with_backoff

SCHEMES = ("http", "https", "file")
# Answers worth asking again: the mirror is there but busy, or the network hiccuped.
TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}
RELEASE_FILES = ("InRelease", "Release")


class MirrorDown(BuilderError):
    """The mirror did not answer (retried)."""


class Transient(Exception):
    """One failed attempt that may succeed if asked again."""


def net_timeout() -> float:
    text = os.environ.get("TROVE_BUILDER_NET_TIMEOUT", "")
    try:
        return float(text) if text else 20.0
    except ValueError:
        return 20.0


def net_failure(exc: BaseException) -> str:
    """The cause in a few words: 'Connection refused', 'HTTP 503 Service Unavailable', 'timed out'."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _fetch_status(url: str, context: ssl.SSLContext | None) -> int:
    """GET the headers of `url` (the body is not needed): its status, or Transient/HTTPError."""
    try:
        with urllib.request.urlopen(url, timeout=net_timeout(), context=context) as resp:
            return getattr(resp, "status", 200) or 200
    except urllib.error.HTTPError as exc:
        if exc.code in TRANSIENT_HTTP:
            raise Transient(net_failure(exc)) from None
        return exc.code
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        if isinstance(exc, urllib.error.URLError) and url.startswith("file:"):
            return 404
        raise Transient(net_failure(exc)) from None


def probe(mirror: str, release: str, ca_bundle: Path | None = None, backoff: Backoff | None = None,
          say=lambda text: None) -> str:
    """Return the URL of the release's (In)Release file on `mirror`; raise one clear error if there is none."""
    scheme = mirror.split(":", 1)[0].lower() if ":" in mirror else ""
    if scheme not in SCHEMES:
        raise UsageError(f"mirror '{mirror}' is not an http://, https:// or file:// URL")
    context = ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle and scheme == "https" else None
    backoff = backoff or Backoff.from_env()
    base = f"{mirror.rstrip('/')}/dists/{release}"

    def once() -> tuple[str, int]:
        status = 0
        for name in RELEASE_FILES:
            status = _fetch_status(f"{base}/{name}", context)
            if status < 400:
                return f"{base}/{name}", status
        return base, status

    def retrying(exc: Exception, attempt: int, delay: float) -> None:
        say(f"mirror {mirror}: {exc}; trying again in {delay:g}s ({attempt + 1}/{backoff.attempts})")

    try:
        url, status = with_backoff(once, lambda exc: isinstance(exc, Transient), backoff, retrying)
    except Transient as exc:
        tries = f"{backoff.attempts} attempts" if backoff.attempts > 1 else "1 attempt"
        raise MirrorDown(f"mirror {mirror} is unreachable ({exc}, {tries}): check the URL, "
                         f"the network and any proxy (http_proxy)") from None
    if status >= 400:
        shown = f"HTTP {status}" if scheme != "file" else "no such file"
        raise MirrorDown(f"mirror {mirror} has no {release} release ({base}/InRelease and Release: "
                         f"{shown}): is it the right archive URL for this OS?")
    return url
