"""The public images as a simplestreams tree (``streams/v1/index.json``, ``images.json`` and
the files under ``streams/images/<fingerprint>/``), the format Incus's simplestreams client
reads: one product per os/release/architecture/variant, one version per image, items typed as Incus
expects (``incus_combined.tar.gz`` for a unified image; ``incus.tar.xz`` plus ``squashfs`` or
``root.tar.xz`` for a split one, with the combined hash that is the image's fingerprint)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from stapes.db.images import ImageRow
from stapes.images.formats import SQUASHFS_MAGIC, file_magic

ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "i686": "i386", "armv7l": "armhf"}
"""Kernel names -> the Debian names simplestreams products use."""

Files = Callable[[ImageRow], tuple[Path, Path | None]]


def _sha256(path: Path, cache: dict[str, str]) -> str:
    key = f"{path}:{path.stat().st_mtime_ns}"
    if key not in cache:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        cache[key] = digest.hexdigest()
    return cache[key]


def item_files(row: ImageRow, files: Files) -> dict[str, Path]:
    """Item name -> file of one image (the names its URLs end with)."""
    meta, rootfs = files(row)
    if rootfs is None:
        return {"incus_combined.tar.gz": meta}
    rootfs_name = "root.squashfs" if file_magic(str(rootfs)) == SQUASHFS_MAGIC else "root.tar.xz"
    return {"incus.tar.xz": meta, rootfs_name: rootfs}


def _items(row: ImageRow, files: Files, cache: dict[str, str]) -> dict[str, Any]:
    found = item_files(row, files)
    items: dict[str, Any] = {}
    for name, path in found.items():
        item = {
            "ftype": "squashfs" if name == "root.squashfs" else name,
            "path": f"streams/images/{row.fingerprint}/{name}",
            "size": path.stat().st_size,
            "sha256": _sha256(path, cache),
        }
        if name == "incus.tar.xz":
            combined = "root.squashfs" if "root.squashfs" in found else "root.tar.xz"
            squashfs = combined == "root.squashfs"
            item["combined_squashfs_sha256" if squashfs else "combined_rootxz_sha256"] = (
                row.fingerprint
            )
        items[name] = item
    return items


def product_key(row: ImageRow) -> tuple[str, str, str, str]:
    props = row.properties
    arch = ARCHITECTURES.get(row.architecture, row.architecture)
    return (
        props.get("os", "unknown").lower(),
        props.get("release", "unknown"),
        arch,
        props.get("variant", "default"),
    )


def images_json(
    rows: list[ImageRow], aliases: dict[str, list[str]], files: Files, cache: dict[str, str]
) -> dict[str, Any]:
    products: dict[str, Any] = {}
    for row in rows:
        if row.type != "container" and not row.split:
            continue
        os_name, release, arch, variant = product_key(row)
        name = f"{os_name}:{release}:{arch}:{variant}"
        product = products.setdefault(
            name,
            {
                "aliases": "",
                "arch": arch,
                "os": row.properties.get("os", os_name),
                "release": release,
                "release_title": row.properties.get("release", release),
                "variant": variant,
                "versions": {},
            },
        )
        names = [f"{os_name}/{release}/{variant}"]
        if variant == "default":
            names.append(f"{os_name}/{release}")
        names += aliases.get(row.fingerprint, [])
        known = [a for a in product["aliases"].split(",") if a]
        product["aliases"] = ",".join(dict.fromkeys(known + names))
        version = datetime.fromisoformat(row.created_at.replace("Z", "+00:00"))
        uploaded = datetime.fromisoformat(row.uploaded_at.replace("Z", "+00:00"))
        # builds made within the same second (creation dates are whole seconds) sort by upload
        key = version.strftime("%Y%m%d_%H%M%S") + uploaded.strftime("_%Y%m%d%H%M%S%f")
        product["versions"][key] = {"items": _items(row, files, cache)}
    return {
        "content_id": "images",
        "datatype": "image-downloads",
        "format": "products:1.0",
        "products": products,
    }


def index_json(products: list[str]) -> dict[str, Any]:
    return {
        "format": "index:1.0",
        "index": {
            "images": {
                "datatype": "image-downloads",
                "path": "streams/v1/images.json",
                "format": "products:1.0",
                "products": products,
            }
        },
    }
