"""Rebuilding an instance (instances_rebuild): its root volume replaced by a fresh copy of an
image, or an empty one, its config and devices kept, as ``incus rebuild`` does. As in Incus
6.0 the instance must be stopped and have no snapshots; the old volume is kept aside until the
new one is made, so a failure leaves the instance as it was."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stapes.api.base import StatusCode
from stapes.api.errors import BadRequest
from stapes.api.lifecycle import InstanceAction
from stapes.api.urls import instance_url
from stapes.db import instances as q
from stapes.db.images import ImageRow
from stapes.db.snapshots import list_snapshots
from stapes.host.idmap import current_map
from stapes.instance import create, templates
from stapes.runtime.operations import Operation
from stapes.storage.volumes import instance_volume

if TYPE_CHECKING:
    from stapes.instance.service import InstanceService

IMAGE_VOLATILE = ("volatile.base_image", "volatile.last_state.idmap")


async def rebuild(
    svc: InstanceService, op: Operation, row: q.InstanceRow, image: ImageRow | None
) -> None:
    """The caller holds the instance's lock."""
    doing = "Failed rebuilding instance from image" if image else "Failed rebuilding as an "
    doing += "" if image else "empty instance"
    if (await svc.status(row)).status != StatusCode.STOPPED:
        raise BadRequest("Instance must be stopped to be rebuilt")
    if list_snapshots(svc.db, row.id):
        raise BadRequest(f"{doing}: Cannot remove an instance volume that has snapshots")
    if image is None and row.type != "container":
        raise BadRequest(f"{doing}: an empty rebuild is for containers in this stapesd")
    if image is not None and image.type != row.type:
        raise BadRequest(
            f"Image {image.fingerprint[:12]} is a {image.type} image, not a {row.type} one"
        )
    config = svc.expand(row)[0]
    idmap = current_map(row.config)
    shared = svc.drivers.get(row.type).idmap_for(config)
    drv = svc.pools.driver(row.pool)
    vol_type, vol_name = instance_volume(row)
    aside = vol_name + ".rebuilding"
    await drv.rename_volume(vol_type, vol_name, aside)
    try:
        fill = (
            create.from_image(svc, image, idmap, shared)
            if image is not None
            else create.empty(svc, idmap)
        )
        await fill(op, row)
    except BaseException:
        await drv.delete_volume(vol_type, vol_name)
        await drv.rename_volume(vol_type, aside, vol_name)
        raise
    await drv.delete_volume(vol_type, aside)
    row.config = {
        k: v
        for k, v in row.config.items()
        if not k.startswith("image.") and k not in IMAGE_VOLATILE
    }
    row.config["volatile.last_state.idmap"] = "[]"
    if image is not None:
        row.config["volatile.base_image"] = image.fingerprint
        row.config.update(create.image_keys(image, row.config, row.type))
    if row.type == "container":
        row.config[templates.APPLY_KEY] = "create"
    with svc.db.transaction():
        q.update_instance(svc.db, row)
    svc.events.lifecycle(
        InstanceAction.UPDATED, instance_url(row.name, row.project), project=row.project
    )
