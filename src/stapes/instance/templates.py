"""Image templates (metadata.yaml ``templates``), rendered into a container's rootfs as Incus
renders them: a new instance is marked ``volatile.apply_template=create`` (a copy ``copy``) and
those templates are written at its first start; ``start`` templates at every start. A
template's ``create_only`` file is written only when missing; its ``properties`` are given to
it, with the instance, its config, its devices, the trigger and the target path."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from stapes.api.errors import BadRequest
from stapes.host.in_root import exists_in_root
from stapes.images.formats import load_yaml
from stapes.instance import template_language
from stapes.instance.rootfs_write import write_file

log = logging.getLogger(__name__)

APPLY_KEY = "volatile.apply_template"


def _instance(name: str, instance_type: str, config: dict[str, str], arch: str) -> dict[str, str]:
    return {
        "name": name,
        "type": instance_type,
        "architecture": arch,
        "ephemeral": "false",
        "privileged": config.get("security.privileged", "false"),
    }


def rendered(
    volume: Path,
    name: str,
    instance_type: str,
    config: dict[str, str],
    devices: dict[str, dict[str, str]],
    trigger: str,
    *,
    architecture: str = "",
) -> list[tuple[str, str, bool]]:
    """(target path, content, create_only) of the templates that fire on ``trigger``. The
    metadata and the templates live beside the rootfs, where the instance cannot change them."""
    meta_path = volume / "metadata.yaml"
    if not meta_path.is_file():
        return []
    meta = load_yaml(meta_path.read_text()) or {}
    files = []
    base = (volume / "templates").resolve()
    instance = _instance(name, instance_type, config, architecture)
    for target, tpl in (meta.get("templates") or {}).items():
        if not isinstance(tpl, dict) or trigger not in (tpl.get("when") or []):
            continue
        # the template must be a file of the image's templates/ (no .., no symlink out)
        source = (base / str(tpl.get("template", ""))).resolve()
        if not source.is_relative_to(base) or not source.is_file():
            log.warning("template %s of %s skipped: not a file of templates/", target, name)
            continue
        path = "/" + str(target).lstrip("/")
        context: dict[str, Any] = {
            "trigger": trigger,
            "path": path,
            "instance": instance,
            "container": instance,
            "config": dict(config),
            "devices": {k: dict(v) for k, v in devices.items()},
            "properties": {str(k): str(v) for k, v in (tpl.get("properties") or {}).items()},
        }
        try:
            content = template_language.render(source.read_text(), context)
        except BadRequest as exc:
            raise BadRequest(f"Template {path} of the image: {exc.message}") from None
        files.append((path, content, bool(tpl.get("create_only", False))))
    return files


async def apply(
    volume: Path,
    name: str,
    instance_type: str,
    config: dict[str, str],
    devices: dict[str, dict[str, str]],
    trigger: str,
    root_id: int,
    *,
    architecture: str = "",
) -> None:
    """Write the templates of ``trigger``; one whose directory is missing is skipped, a
    create_only one whose file exists is left."""
    rootfs = volume / "rootfs"
    for target, content, create_only in rendered(
        volume, name, instance_type, config, devices, trigger, architecture=architecture
    ):
        if create_only and exists_in_root(rootfs, target):
            continue
        try:
            await write_file(rootfs, target, content.encode(), root_id)
        except BadRequest as exc:
            log.warning("template %s of %s not written: %s", target, name, exc.message)
