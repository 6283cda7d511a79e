"""Renders the files trove-builder writes into a guest (templates/files.yaml) into a root filesystem."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml

TEMPLATE_DIR = resources.files("builder") / "templates"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def file_table() -> list[dict[str, Any]]:
    return yaml.safe_load((TEMPLATE_DIR / "files.yaml").read_text())


def render(template: str, context: Mapping[str, Any]) -> str:
    return _env.get_template(template).render(**context)


def guest_ids(root: Path, owner: str) -> tuple[int, int]:
    """uid and gid of `user:group` as the guest's own passwd and group files define them."""
    user, _, group = owner.partition(":")

    def lookup(path: str, name: str) -> int:
        for line in (root / path).read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2])
        raise KeyError(f"{name} not in the guest's /{path}")

    return lookup("etc/passwd", user), lookup("etc/group", group or user)


def write_into(root: Path, inner: str, content: str, mode: int = 0o644, owner: str = "root:root") -> Path:
    """Write `content` at guest path `inner` with exact mode and guest-side owner."""
    target = root / inner.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    target.write_text(content)
    uid, gid = guest_ids(root, owner)
    os.chown(target, uid, gid)
    os.chmod(target, mode)
    return target


def stage_files(stage: str, context: Mapping[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    """(guest path, mode, owner, content) of every file of `stage` whose `when` holds, rendered.

    The one reading of files.yaml: the stage writes these, and its cache key digests the same."""
    for entry in file_table():
        if entry["stage"] != stage:
            continue
        when = entry.get("when")
        if when and not _env.compile_expression(when)(**context):
            continue
        values = {**context, **entry.get("vars", {})}  # one template for several files
        yield (_env.from_string(entry["path"]).render(**values), str(entry.get("mode", "0644")),
               _env.from_string(entry.get("owner", "root:root")).render(**values), render(entry["template"], values))


def install_stage_files(root: Path, stage: str, context: Mapping[str, Any]) -> list[str]:
    """Render and write every file of `stage` whose `when` holds; return the guest paths written."""
    written = []
    for path, mode, owner, content in stage_files(stage, context):
        write_into(root, path, content, int(mode, 8), owner)
        written.append(path)
    return written
