"""An instance's metadata.yaml and templates/ (``incus config metadata`` and ``incus config
template``): what the image brought, editable per instance. Both live in the instance's volume
beside its rootfs; every access resolves inside the volume (host/in_root.py), so a symlink an
image shipped as metadata.yaml or templates/ cannot lead to a host file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from stapes.api.errors import BadRequest, NotFound
from stapes.api.image import ImageMetadata
from stapes.config.validate import name_problem
from stapes.host import in_root
from stapes.images.formats import load_yaml
from stapes.storage.backups.index import dump_yaml

METADATA = "/metadata.yaml"
TEMPLATES = "/templates"
LIMIT = 16 * 1024 * 1024
"""The largest metadata.yaml or template read or written."""


def _checked(op: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except OSError as exc:
        raise BadRequest(f"Could not {op}: {exc.strerror or exc}") from None


async def read(volume: Path) -> dict[str, Any]:
    """metadata.yaml as the wire shows it (an instance without one: empty fields)."""
    raw = await asyncio.to_thread(
        _checked, "read metadata.yaml", in_root.read_file, volume, METADATA, LIMIT
    )
    try:
        data = load_yaml(raw) if raw else {}
        meta = ImageMetadata.model_validate(data if isinstance(data, dict) else {})
    except (yaml.YAMLError, ValueError) as exc:
        raise BadRequest(f"The instance's metadata.yaml is not valid: {exc}") from None
    return meta.model_dump()


async def write(volume: Path, meta: ImageMetadata) -> None:
    for name, entry in (meta.templates or {}).items():
        if entry.template and name_problem(entry.template) is not None:
            raise BadRequest(f"Template {name!r}: {entry.template!r} is not a file of templates/")
    text = dump_yaml(meta.model_dump()).encode()
    await asyncio.to_thread(
        _checked, "write metadata.yaml", in_root.write_file, volume, METADATA, text, 0, 0o644
    )


def _template_name(name: str) -> str:
    problem = name_problem(name)
    if problem is not None:
        raise BadRequest(f"Invalid template filename {name!r}: {problem}")
    return name


async def list_templates(volume: Path) -> list[str]:
    return await asyncio.to_thread(in_root.list_dir, volume, TEMPLATES)


async def get_template(volume: Path, name: str) -> bytes:
    path = f"{TEMPLATES}/{_template_name(name)}"
    data = await asyncio.to_thread(
        _checked, "read the template", in_root.read_file, volume, path, LIMIT
    )
    if data is None:
        raise NotFound(f'Template "{name}" not found')
    return bytes(data)


async def put_template(volume: Path, name: str, content: bytes) -> None:
    path = f"{TEMPLATES}/{_template_name(name)}"
    await asyncio.to_thread(_checked, "make templates/", in_root.make_dirs, volume, TEMPLATES, 0)
    await asyncio.to_thread(
        _checked, "write the template", in_root.write_file, volume, path, content, 0, 0o644
    )


async def delete_template(volume: Path, name: str) -> None:
    removed = await asyncio.to_thread(
        _checked,
        "delete the template",
        in_root.remove_file,
        volume,
        TEMPLATES,
        _template_name(name),
    )
    if not removed:
        raise NotFound(f'Template "{name}" not found')
