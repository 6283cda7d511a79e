"""The Glance side: one image per build (found again by its sha256 property), tagged for Trove.

openstacksdk does the upload; this module only decides whether to upload, and checks afterwards that
Glance holds the same bytes: it compares Glance's os_hash_value with the local file's digest in
Glance's own os_hash_algo (sha512 by default, so the manifest's sha256 cannot be compared directly).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from builder.register.digest import digest_with
from builder.register.errors import RegisterError
from builder.register.plan import SHA256_PROPERTY, Plan


@dataclass
class ImageResult:
    id: str
    created: bool
    changes: list[str] = field(default_factory=list)


def find_uploaded(conn: Any, plan: Plan) -> Any | None:
    """An active image (tagged trove) that earlier runs uploaded from the same bytes, newest first."""
    matches = [img for img in conn.image.images(tag="trove")
               if (img.properties or {}).get(SHA256_PROPERTY) == plan.sha256 and img.status == "active"]
    matches.sort(key=lambda img: img.created_at or "", reverse=True)
    return matches[0] if matches else None


def check_hash(conn: Any, image: Any, plan: Plan, digests: dict[str, str]) -> None:
    """Glance's os_hash_value against the local file's digest in the same algorithm."""
    image = conn.image.get_image(image.id)
    algorithm, glance_value = image.hash_algo, image.hash_value
    if not algorithm or not glance_value:
        raise RegisterError(f"Glance reports no os_hash_value for image {image.id}: cannot check the upload")
    try:
        local = digest_with(plan.image, algorithm, digests)
    except ValueError as exc:
        raise RegisterError(str(exc)) from None
    if local != glance_value:
        raise RegisterError(f"checksum mismatch: Glance's {algorithm} of image {image.id} is "
                            f"{glance_value[:16]}..., {plan.image.name}'s is {local[:16]}...")


def _reconcile(conn: Any, image: Any, plan: Plan) -> list[str]:
    """Tags and properties a reused image lacks (an older register, or an operator's edit)."""
    changes = []
    for tag in plan.tags:
        if tag not in (image.tags or []):
            conn.image.add_tag(image, tag)
            changes.append(f"tag {tag} added to image {image.id}")
    stale = {k: v for k, v in plan.properties.items() if _property(image, k) != v}
    if stale:
        conn.image.update_image(image, **stale)
        changes.append(f"properties {', '.join(sorted(stale))} set on image {image.id}")
    return changes


def _property(image: Any, key: str) -> Any:
    """openstacksdk keeps well-known properties (os_distro, hw_rng_model...) as attributes, others in .properties."""
    props = image.properties or {}
    return props[key] if key in props else getattr(image, key, None)


def ensure_image(conn: Any, plan: Plan, digests: dict[str, str], log) -> ImageResult:
    """Reuse the image uploaded from the same bytes, or upload it; either way check Glance's hash."""
    existing = find_uploaded(conn, plan)
    if existing is not None:
        log(f"glance: image {existing.id} ('{existing.name}') has the same sha256: reused, not uploaded")
        check_hash(conn, existing, plan, digests)
        return ImageResult(existing.id, created=False, changes=_reconcile(conn, existing, plan))
    log(f"glance: uploading {plan.image.name} as '{plan.image_name}' ({plan.image.stat().st_size / 2**20:.0f} MiB)")
    image = conn.image.create_image(
        name=plan.image_name, filename=str(plan.image), disk_format=plan.disk_format, container_format="bare",
        visibility="private", min_disk=plan.min_disk_gb, tags=list(plan.tags),
        md5=digests["md5"], sha256=digests["sha256"], allow_duplicates=True, disable_vendor_agent=False,
        wait=True, **plan.properties)
    try:
        check_hash(conn, image, plan, digests)
    except RegisterError as exc:
        conn.image.delete_image(image, ignore_missing=True)
        raise RegisterError(f"{exc}; the upload {image.id} was deleted, run register again") from None
    return ImageResult(image.id, created=True, changes=[f"image {image.id} uploaded"])
