"""Image templates (metadata.yaml ``templates``): files rendered into the rootfs on create, copy
and start, as their ``when`` lists say."""

from __future__ import annotations

import logging
from pathlib import Path

from stapes.api.errors import BadRequest
from stapes.images.formats import load_yaml, render_template, template_variables
from stapes.instance.rootfs_write import write_file

log = logging.getLogger(__name__)


def rendered(
    volume: Path, name: str, instance_type: str, config: dict[str, str], trigger: str
) -> dict[str, str]:
    """Target path -> content of the templates that fire on ``trigger``. The metadata and the
    templates live beside the rootfs, where the instance cannot change them."""
    meta_path = volume / "metadata.yaml"
    if not meta_path.is_file():
        return {}
    meta = load_yaml(meta_path.read_text()) or {}
    variables = template_variables(name, instance_type, config)
    variables["trigger"] = trigger
    files = {}
    base = (volume / "templates").resolve()
    for target, tpl in (meta.get("templates") or {}).items():
        if trigger not in (tpl.get("when") or []):
            continue
        # the template must be a file of the image's templates/ (no .., no symlink out)
        source = (base / str(tpl.get("template", ""))).resolve()
        if not source.is_relative_to(base) or not source.is_file():
            log.warning("template %s of %s skipped: not a file of templates/", target, name)
            continue
        files["/" + str(target).lstrip("/")] = render_template(source.read_text(), variables)
    return files


async def apply(
    volume: Path,
    name: str,
    instance_type: str,
    config: dict[str, str],
    trigger: str,
    root_id: int,
) -> None:
    """Write the templates of ``trigger``; one whose directory is missing is skipped."""
    for target, content in rendered(volume, name, instance_type, config, trigger).items():
        try:
            await write_file(volume / "rootfs", target, content.encode(), root_id)
        except BadRequest as exc:
            log.warning("template %s of %s not written: %s", target, name, exc.message)
