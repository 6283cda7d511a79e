"""Why the container engine cannot be reached, in one line that says what to do about it."""

from __future__ import annotations

import errno
import os
import pwd

from builder.errors import BuilderError

NAMES = {"docker": "Docker", "podman": "Podman"}
DEFAULT_URL = {"docker": "unix:///var/run/docker.sock"}


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception (docker wraps requests wraps urllib3 wraps the socket's OSError)."""
    seen: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in seen:
        seen.append(link)
        link = link.__cause__ or link.__context__
    return next((e for e in reversed(seen) if isinstance(e, OSError) and e.strerror), seen[-1])


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def explain(exc: BaseException, engine: str, url: str | None) -> BuilderError:
    """One line for a failed connection to `engine` at `url` (None: the client's default)."""
    name = NAMES.get(engine, engine)
    where = url or os.environ.get("DOCKER_HOST") or DEFAULT_URL.get(engine, "its default socket")
    cause = _root_cause(exc)
    code = getattr(cause, "errno", None)
    if code in (errno.EACCES, errno.EPERM):
        user = _user()
        group = "docker" if engine == "docker" else engine
        return BuilderError(
            f"user '{user}' cannot reach the {name} engine at {where} (permission denied): add the user to "
            f"the '{group}' group (usermod -aG {group} {user}, then log in again) or run a rootless "
            f"{name} and point DOCKER_HOST at its socket")
    if code in (errno.ENOENT, errno.ECONNREFUSED):
        reason = "no such socket" if code == errno.ENOENT else "connection refused"
    elif isinstance(cause, OSError) and cause.strerror:
        reason = cause.strerror
    else:
        reason = str(cause) or type(cause).__name__
    hint = " (set by DOCKER_HOST)" if os.environ.get("DOCKER_HOST") and not url else ""
    return BuilderError(f"cannot reach the {name} engine at {where}{hint}: {reason}; is it running?")
