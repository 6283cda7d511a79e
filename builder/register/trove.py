"""The Trove side, through python-troveclient's management API (admin only): the datastore version
and its configuration parameters, each created or updated only where it differs from the plan.

The API creates a datastore together with its first version, so there is no separate datastore step.
troveclient's v1 Client does not expose its MgmtConfigurationParameters manager as an attribute, so
it is built here on the same client (the management calls trove-manage's loader has an API for).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from builder.register.errors import RegisterError
from builder.register.plan import Plan
from builder.register.rules import Parameter


@dataclass
class VersionResult:
    id: str
    changes: list[str] = field(default_factory=list)


def trove_client(conn: Any) -> Any:
    """A troveclient on the openstacksdk connection's keystone session (same auth, region, interface)."""
    import warnings

    with warnings.catch_warnings():  # troveclient imports eventlet, which warns about itself on import
        warnings.simplefilter("ignore")
        from troveclient import client as troveclient

    return troveclient.Client("1.0", session=conn.session, service_type="database",
                              region_name=conn.config.get_region_name(),
                              endpoint_type=conn.config.get_interface())


def find_version(tc: Any, plan: Plan) -> Any | None:
    for version in tc.mgmt_ds_versions.list():
        if version.datastore_name == plan.datastore and version.name == plan.version:
            return version
    return None


def _listed(value: Any) -> list[str]:
    """Trove shows empty image_tags/packages as [''] and stores them comma-joined."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [item for item in items if item]


def _json(flag: bool) -> str:
    return "true" if flag else "false"


def _differences(version: Any, plan: Plan, image_id: str) -> dict[str, Any]:
    """The edit call's arguments for what the existing version lacks."""
    wanted: dict[str, Any] = {}
    if version.datastore_manager != plan.manager:
        wanted["datastore_manager"] = plan.manager
    if plan.by_tags:
        if _listed(getattr(version, "image_tags", None)) != list(plan.by_tags) or getattr(version, "image", None):
            wanted["image_tags"] = list(plan.by_tags)
    elif getattr(version, "image", None) != image_id:
        wanted["image"] = image_id
    if ",".join(_listed(getattr(version, "packages", None))) != plan.packages:
        wanted["packages"] = plan.packages
    if bool(version.active) != plan.active:
        wanted["active"] = _json(plan.active)
    if plan.default and not getattr(version, "default", False):
        wanted["default"] = _json(True)
    return wanted


def ensure_version(tc: Any, plan: Plan, image_id: str, log) -> VersionResult:
    label = f"datastore version {plan.datastore} {plan.version}"
    version = find_version(tc, plan)
    if version is None:
        tc.mgmt_ds_versions.create(  # troveclient parses active/default with json.loads
            plan.version, plan.datastore, plan.manager, "" if plan.by_tags else image_id,
            packages=plan.packages, active=_json(plan.active), default=_json(plan.default),
            image_tags=list(plan.by_tags), version=plan.version_number)
        version = find_version(tc, plan)
        if version is None:
            raise RegisterError(f"{label}: Trove accepted the new version but does not list it")
        source = f"image tags {','.join(plan.by_tags)}" if plan.by_tags else f"image {image_id}"
        return VersionResult(version.id, [f"{label} created ({source})"])
    wanted = _differences(version, plan, image_id)
    if not wanted:
        return VersionResult(version.id)
    tc.mgmt_ds_versions.edit(version.id, **wanted)
    return VersionResult(version.id, [f"{label} updated: {', '.join(sorted(wanted))}"])


def _same(existing: Any, param: Parameter) -> bool:
    def num(value):
        return None if value in (None, "") else float(value)

    return (existing.type == param.data_type and bool(existing.restart_required) == param.restart_required
            and num(getattr(existing, "min_size", None)) == num(param.min_size)
            and num(getattr(existing, "max_size", None)) == num(param.max_size))


def ensure_parameters(tc: Any, plan: Plan, version_id: str) -> list[str]:
    """What db_load_datastore_config_parameters does, through the API: create or modify each rule."""
    from troveclient.v1.management import MgmtConfigurationParameters

    configs = MgmtConfigurationParameters(tc)
    existing = {p.name: p for p in configs.list_all_parameter_by_version(version_id)}
    created, modified = [], []
    for param in plan.api_parameters:
        args = dict(restart_required=param.restart_required, data_type=param.data_type,
                    max_size=param.max_size, min_size=param.min_size)
        current = existing.get(param.name)
        if current is None:
            configs.create(version_id, param.name, **args)
            created.append(param.name)
        elif not _same(current, param):
            configs.modify(version_id, param.name, **args)
            modified.append(param.name)
    changes = []
    if created:
        changes.append(f"{len(created)} configuration parameters created")
    if modified:
        changes.append(f"{len(modified)} configuration parameters updated ({', '.join(modified[:5])}"
                       f"{'...' if len(modified) > 5 else ''})")
    return changes
