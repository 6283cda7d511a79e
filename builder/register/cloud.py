"""Connecting to the cloud (clouds.yaml, OS_* variables, --os-cloud: openstacksdk's usual rules) and
turning the client libraries' exceptions into the one line an operator needs."""

from __future__ import annotations

import logging
import re
from typing import Any

from builder.register.errors import MissingExtra, RegisterError

NEEDS_ADMIN = "registering needs the admin role"


def connect(os_cloud: str | None) -> Any:
    """An authenticated openstacksdk connection (the token is fetched now, so bad credentials fail here)."""
    try:
        import openstack
        import troveclient  # noqa: F401 - checked up front: a missing client must not strike after the upload
    except ImportError as exc:
        raise MissingExtra(exc.name or "openstacksdk") from None
    # keystoneauth logs its retries and version-discovery fallbacks; the one error line says it all.
    logging.getLogger("keystoneauth").setLevel(logging.CRITICAL)
    try:
        conn = openstack.connect(cloud=os_cloud, load_yaml_config=True, load_envvars=True)
        conn.authorize()
    except Exception as exc:
        raise translate(exc, "keystone") from None
    return conn


def translate(exc: Exception, service: str) -> RegisterError:
    """One line for the usual ways a cloud says no; anything else keeps its type name and message."""
    from keystoneauth1 import exceptions as ka
    from openstack import exceptions as sdk

    text = " ".join(str(exc).split()) or type(exc).__name__
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:  # the keystoneauth error beneath the SDK's
        if isinstance(cause, ka.ClientException):
            break
        cause = cause.__cause__ or cause.__context__ or cause
    if isinstance(cause, ka.ClientException) and cause is not exc:
        exc = cause  # a ClientException is an Exception
    status = getattr(exc, "status_code", None) or getattr(exc, "http_status", None) or getattr(exc, "code", None)
    if not isinstance(status, int):
        found = re.search(r"\(HTTP (\d{3})\)", text)
        status = int(found.group(1)) if found else None
    if isinstance(exc, sdk.ConfigException):
        return RegisterError(f"cloud configuration: {text}")
    if isinstance(exc, (ka.MissingAuthPlugin, ka.MissingRequiredOptions, ka.auth_plugins.NoMatchingPlugin)):
        return RegisterError("no OpenStack credentials: set OS_CLOUD (clouds.yaml) or OS_AUTH_URL, OS_USERNAME, "
                             "OS_PASSWORD, OS_PROJECT_NAME..., or pass --os-cloud")
    if isinstance(exc, (ka.ConnectFailure, ka.ConnectTimeout, ka.DiscoveryFailure)):
        return RegisterError(f"cannot reach {service}: {text}")
    if isinstance(exc, ka.EndpointNotFound):
        return RegisterError(f"no {service} endpoint in the service catalog: {text}")
    if service != "keystone" and status == 401:  # trove-api answers a non-admin token with 401
        return RegisterError(f"{service} refused (401: {text}): {NEEDS_ADMIN}")
    if isinstance(exc, ka.Unauthorized) or status == 401:
        return RegisterError(f"{service} refused the credentials (401): {text}")
    if status == 403:
        return RegisterError(f"{service} forbids it (403): {NEEDS_ADMIN}")
    return RegisterError(f"{service}: {type(exc).__name__}: {text}")
