"""Making a new instance, all or nothing: its row, its volume (filled from an image, a copy, a
backup or nothing), its templates and its driver state, each with an undo run if a later step
fails. ``Fill`` is the one seam between the kinds of source."""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from stapes.api.errors import BadRequest
from stapes.api.lifecycle import InstanceAction
from stapes.api.urls import instance_url
from stapes.config.keys import VOLATILE_PREFIX, lookup, validate_instance_config
from stapes.config.validate import parse_size
from stapes.db import instances as q
from stapes.db.images import ImageRow
from stapes.host.idmap import IdMap, reshift_tree
from stapes.images import oci
from stapes.images.formats import qcow2_virtual_size
from stapes.instance import cloudinit, copy, power, root_disk, templates
from stapes.instance.vm import disk as vm_disk
from stapes.runtime.operations import Operation
from stapes.storage.volumes import instance_volume

if TYPE_CHECKING:
    from stapes.instance.service import InstanceService

log = logging.getLogger(__name__)

Undo = Callable[[], Awaitable[None]]
Then = Callable[[q.InstanceRow], Awaitable[None]]
Fill = Callable[[Operation, q.InstanceRow], Awaitable[None]]
"""Makes the new instance's volume (``containers/<name>`` on its pool), and its snapshots if the
source has some; the row is already stored."""


async def create_instance(
    svc: InstanceService,
    op: Operation,
    row: q.InstanceRow,
    fill: Fill,
    *,
    trigger: str | None,
    start: bool,
    then: Then | None = None,
) -> None:
    """Store ``row`` (marked to apply its image's ``trigger`` templates at its first start:
    "create", "copy"; None for an import, which keeps its own mark), fill its volume, register
    it with its driver and start it if asked (or run ``then``: a live migration's arrival,
    which starts it itself); on failure undo every step taken."""
    undo: list[Undo] = []
    if trigger is not None and row.type == "container":
        row.config[templates.APPLY_KEY] = trigger
    row.location = svc.membership.name
    try:
        with svc.db.transaction():
            q.insert_instance(svc.db, row)

        async def drop_row() -> None:
            with svc.db.transaction():
                q.delete_instance(svc.db, row.id)

        undo.append(drop_row)
        drv = svc.pools.driver(row.pool)

        async def drop_volume() -> None:
            await drv.delete_volume(*instance_volume(row))

        undo.append(drop_volume)
        await fill(op, row)
        await root_disk.apply_size(svc.pools.driver(row.pool), row, None, svc.expand(row)[1])
        spec = svc.spec(row)
        driver = svc.drivers.get(row.type)
        await driver.adopt(spec)

        async def forget() -> None:
            await driver.forget(spec)
            shutil.rmtree(spec.log_dir, ignore_errors=True)

        undo.append(forget)
        svc.events.lifecycle(
            InstanceAction.CREATED,
            instance_url(row.name, row.project),
            project=row.project,
            context={
                "location": svc.membership.location,
                "storage-pool": row.pool,
                "type": row.type,
            },
        )

        async def announce_removal() -> None:
            svc.events.lifecycle(
                InstanceAction.DELETED, instance_url(row.name, row.project), project=row.project
            )

        undo.append(announce_removal)
        if then is not None:
            await then(row)
        elif start:
            await power.start_unlocked(svc, row)
    except BaseException:
        for step in reversed(undo):
            try:
                await step()
            except Exception:
                log.exception("undo of a failed create of %s failed", row.name)
        raise


def check_vm_root_size(
    svc: InstanceService,
    project: str,
    image: ImageRow,
    profiles: list[str],
    config: dict[str, str],
    devices: dict[str, dict[str, str]],
) -> None:
    """A root disk smaller than a VM image's disk is a 400 before anything is made."""
    _, rootfs = svc.images.files(image)
    if rootfs is None:
        return  # a unified image: its disk size is known once unpacked
    devices = svc.expand_parts(project, profiles, config, devices)[1]
    size = root_disk.size(devices)
    if size:
        vm_disk.check_root_size(parse_size(size), qcow2_virtual_size(str(rootfs)))


def from_image(
    svc: InstanceService, image: ImageRow, idmap: IdMap | None, shared: IdMap | None
) -> Fill:
    """CoW-clone the pool's image volume (unpacked once, kept shifted to the ``shared`` map)."""

    async def fill(op: Operation, row: q.InstanceRow) -> None:
        op.progress("create_instance_from_image_unpack", 0, 0, "Unpacking image: 0%")
        volume = await svc.pools.image_volume(
            row.pool, image.fingerprint, shared, lambda target: svc.images.unpack(image, target)
        )
        await svc.pools.instance_from_image(row.pool, volume, *instance_volume(row))
        if row.type == "container":
            path = svc.pools.driver(row.pool).volume_path(*instance_volume(row))
            await reshift(path, shared, idmap)
        op.progress("create_instance_from_image_unpack", 100, 0, "Unpacking image: 100%")
        svc.images.mark_used(image)

    return fill


def from_copy(svc: InstanceService, source: copy.CopySource, idmap: IdMap | None) -> Fill:
    async def fill(op: Operation, row: q.InstanceRow) -> None:
        op.progress("create_instance_from_copy", 0, 0, f"Copying {source.label}")
        await copy.copy_volume(svc, source, row, idmap)
        await copy.copy_snapshots(svc, source, row)

    return fill


def empty(svc: InstanceService, idmap: IdMap | None) -> Fill:
    """An empty rootfs (source type none)."""

    async def fill(op: Operation, row: q.InstanceRow) -> None:
        path = await svc.pools.driver(row.pool).create_volume(*instance_volume(row))
        (path / "rootfs").mkdir(mode=0o755)
        await reshift(path, None, idmap)

    return fill


async def reshift(volume: Path, old: IdMap | None, new: IdMap | None) -> None:
    """Move a volume's rootfs from one map to another."""
    await asyncio.to_thread(reshift_tree, volume / "rootfs", old, new)


def add_volatile(row: q.InstanceRow, image: ImageRow | None, idmap: IdMap | None) -> None:
    """The daemon-owned keys of a new instance: its UUID, power state, idmap, base image."""
    instance_uuid = str(uuid.uuid4())
    row.config.update(
        {
            "volatile.uuid": instance_uuid,
            "volatile.uuid.generation": instance_uuid,
            "volatile.last_state.power": "STOPPED",
            "volatile.last_state.idmap": "[]",
            cloudinit.INSTANCE_ID: cloudinit.new_instance_id(),
        }
    )
    set_idmap(row, idmap)
    if image is not None:
        row.config["volatile.base_image"] = image.fingerprint
        row.config.update(image_keys(image, row.config, row.type))


def image_keys(image: ImageRow, config: dict[str, str], instance_type: str) -> dict[str, str]:
    """What an instance takes from its image's properties: ``image.*`` copies of them (those
    whose names can be keys), and an OCI image's process. Properties are anyone's who may
    edit the image, so what they become is checked as if a client had sent it."""
    keys = {
        "image." + key: value
        for key, value in image.properties.items()
        if lookup("image." + key) is not None and "image." + key not in config
    }
    keys.update(oci.instance_keys(image.properties, config))
    try:
        validate_instance_config(
            {k: val for k, val in keys.items() if not k.startswith(VOLATILE_PREFIX)},
            instance_type,
        )
    except BadRequest as exc:
        raise BadRequest(f"Image {image.fingerprint[:12]} cannot be used: {exc.message}") from None
    return keys


def set_idmap(row: q.InstanceRow, idmap: IdMap | None) -> None:
    row.config |= idmap_keys(idmap)


def idmap_keys(idmap: IdMap | None) -> dict[str, str]:
    """The volatile keys that record an instance's (or snapshot's) map (none: unshifted)."""
    if idmap is None:
        return {}
    return {
        "volatile.idmap.base": str(idmap.base),
        "volatile.idmap.current": idmap.volatile(),
        "volatile.idmap.next": idmap.volatile(),
    }
