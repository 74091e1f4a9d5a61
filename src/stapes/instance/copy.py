"""Copying an instance or one of its snapshots to a new instance on the same host, and refreshing
an earlier copy (``stapes copy --refresh``): source resolution, volume and snapshot copies."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stapes.api.errors import BadRequest, NotFound
from stapes.api.instance import InstancesPost
from stapes.api.lifecycle import InstanceAction
from stapes.config.keys import VOLATILE_PREFIX
from stapes.db import instances as q
from stapes.db import snapshots as sq
from stapes.db.connection import Database
from stapes.host.idmap import IdMap, current_map, reshift_tree
from stapes.instance import power, root_disk
from stapes.storage.drivers.dir import sync_tree
from stapes.storage.volumes import instance_volume

if TYPE_CHECKING:
    from stapes.instance.service import InstanceService

KEPT_VOLATILE = ("volatile.base_image",)
"""The daemon-owned keys a copy inherits (the rest describe the source itself)."""


@dataclass
class CopySource:
    instance: q.InstanceRow
    snapshot: sq.SnapshotRow | None
    instance_only: bool

    @property
    def label(self) -> str:
        name = self.instance.name
        return f"{name}/{self.snapshot.name}" if self.snapshot else name


def local_config(config: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in config.items() if not k.startswith(VOLATILE_PREFIX)}


def resolve(db: Database, req: InstancesPost, project: str) -> CopySource:
    """Find the source of a copy and fill the request from it, as Incus does: the source's
    config, devices and profiles, with what the request sets on top."""
    if not req.source.source:
        raise BadRequest("A copy needs source.source: the instance (c1) or snapshot (c1/snap0)")
    name, _, snap_name = req.source.source.partition("/")
    source_project = req.source.project or project
    instance = q.find_instance(db, source_project, name)
    if instance is None:
        raise NotFound(f"Source instance {name!r} not found in project {source_project!r}")
    snapshot = sq.get_snapshot(db, instance.id, name, snap_name) if snap_name else None
    base = snapshot or instance
    if req.type and req.type != instance.type:
        raise BadRequest(f"Cannot copy a {instance.type} to a {req.type}")
    req.type = instance.type  # type: ignore[assignment]
    req.config = {
        **local_config(base.config),
        **{k: v for k, v in base.config.items() if k in KEPT_VOLATILE},
        **local_config(req.config),
    }
    req.devices = {**base.devices, **req.devices}
    if req.profiles is None:
        req.profiles = list(base.profiles)
    req.architecture = req.architecture or base.architecture
    return CopySource(instance, snapshot, req.source.instance_only or snapshot is not None)


async def copy_volume(
    service: InstanceService, source: CopySource, row: q.InstanceRow, idmap: IdMap | None
) -> None:
    """The new instance's volume: a copy of the snapshot, or of the instance (held frozen if it
    runs), shifted when the new instance's idmap differs."""
    src = source.instance
    drv = service.pools.driver(row.pool)
    if src.pool != row.pool:
        await _copy_across_pools(service, source, row)
    elif source.snapshot is not None:
        await drv.volume_from_snapshot(
            *instance_volume(src), source.snapshot.name, *instance_volume(row)
        )
    else:
        async with service.locks(src.project, src.name), power.frozen(service, src):
            await drv.copy_volume(*instance_volume(src), *instance_volume(row))
    if row.type == "container":
        rootfs = drv.volume_path(*instance_volume(row)) / "rootfs"
        old = current_map((source.snapshot or src).config)
        await asyncio.to_thread(reshift_tree, rootfs, old, idmap)


async def _copy_across_pools(
    service: InstanceService, source: CopySource, row: q.InstanceRow
) -> None:
    """The new volume on another pool, its snapshots first (oldest first, each taken after
    its files were synced in, so CoW pools share what did not change), then the volume."""
    src = source.instance
    src_drv = service.pools.usable_driver(src.pool)
    drv = service.pools.usable_driver(row.pool)
    target = await drv.create_volume(*instance_volume(row))
    if not source.instance_only and source.snapshot is None:
        for snap in sq.list_snapshots(service.db, src.id):
            await sync_tree(src_drv.snapshot_path(*instance_volume(src), snap.name), target)
            await drv.create_snapshot(*instance_volume(row), snap.name)
            _record_snapshot(service, snap, row)
    if source.snapshot is not None:
        await sync_tree(src_drv.snapshot_path(*instance_volume(src), source.snapshot.name), target)
    else:
        async with service.locks(src.project, src.name), power.frozen(service, src):
            await sync_tree(src_drv.volume_path(*instance_volume(src)), target)


async def copy_snapshots(service: InstanceService, source: CopySource, row: q.InstanceRow) -> None:
    """Give the new instance the source's snapshots (unless instance-only; a copy to another
    pool took them with its volume)."""
    if source.instance_only or source.instance.pool != row.pool:
        return
    src = source.instance
    for snap in sq.list_snapshots(service.db, src.id):
        await _copy_snapshot(service, src, snap, row)


async def _copy_snapshot(
    service: InstanceService, src: q.InstanceRow, snap: sq.SnapshotRow, row: q.InstanceRow
) -> None:
    drv = service.pools.driver(row.pool)
    await drv.copy_snapshot(*instance_volume(src), snap.name, instance_volume(row)[1])
    try:
        _record_snapshot(service, snap, row)
    except BaseException:
        await drv.delete_snapshot(*instance_volume(row), snap.name)
        raise


def _record_snapshot(service: InstanceService, snap: sq.SnapshotRow, row: q.InstanceRow) -> None:
    """The row of a snapshot copied to ``row`` (with the new instance's volatile keys)."""
    copied = sq.SnapshotRow(**{**snap.__dict__, "id": 0, "instance_id": row.id})
    copied.config = {
        **local_config(snap.config),
        **{k: v for k, v in row.config.items() if k.startswith(VOLATILE_PREFIX)},
    }
    with service.db.transaction():
        sq.insert_snapshot(service.db, copied)
    service.events.lifecycle(
        InstanceAction.SNAPSHOT_CREATED,
        f"/1.0/instances/{row.name}/snapshots/{snap.name}",
        project=row.project,
    )


async def refresh(service: InstanceService, source: CopySource, target: q.InstanceRow) -> None:
    """Bring an earlier copy up to date: its snapshots as the source's (missing ones copied,
    ones the source no longer has deleted), then its volume synced with the source's."""
    src = source.instance
    if source.snapshot is not None:
        raise BadRequest("Refresh copies from an instance, not from one of its snapshots")
    drv = service.pools.usable_driver(target.pool)
    src_drv = service.pools.usable_driver(src.pool)
    volume = drv.volume_path(*instance_volume(target))
    if not source.instance_only:
        wanted = {s.name: s for s in sq.list_snapshots(service.db, src.id)}
        have = {s.name: s for s in sq.list_snapshots(service.db, target.id)}
        for name, snap in have.items():
            if name not in wanted:
                with service.db.transaction():
                    sq.delete_snapshot(service.db, snap.id)
                await drv.delete_snapshot(*instance_volume(target), name)
        for name, snap in wanted.items():
            if name in have:
                continue
            if src_drv is drv:
                await _copy_snapshot(service, src, snap, target)
            else:  # the snapshot's files into the volume, snapshot it (the volume is synced last)
                await sync_tree(src_drv.snapshot_path(*instance_volume(src), name), volume)
                await drv.create_snapshot(*instance_volume(target), name)
                _record_snapshot(service, snap, target)
    async with service.locks(src.project, src.name), power.frozen(service, src):
        if src_drv is drv:
            await drv.refresh_volume(*instance_volume(src), *instance_volume(target))
        else:
            await sync_tree(src_drv.volume_path(*instance_volume(src)), volume)
    rootfs = drv.volume_path(*instance_volume(target)) / "rootfs"
    await asyncio.to_thread(
        reshift_tree, rootfs, current_map(src.config), current_map(target.config)
    )


async def move_to_pool(service: InstanceService, row: q.InstanceRow, pool: str) -> None:
    """Move a stopped instance and its snapshots to another pool (the caller holds its lock):
    copy them over, switch the instance's row and root disk, then delete the old volume. Until
    the switch, a failure removes the copy and leaves the instance as it was."""
    old_drv = service.pools.usable_driver(row.pool)
    drv = service.pools.usable_driver(pool)
    target = await drv.create_volume(*instance_volume(row))
    try:
        for snap in sq.list_snapshots(service.db, row.id):
            await sync_tree(old_drv.snapshot_path(*instance_volume(row), snap.name), target)
            await drv.create_snapshot(*instance_volume(row), snap.name)
        await sync_tree(old_drv.volume_path(*instance_volume(row)), target)
        moved = q.InstanceRow(**{**row.__dict__})
        moved.pool = pool
        moved.devices = service.devices_on_pool(row.devices, row.profiles, row.project, pool)
        await root_disk.apply_size(drv, moved, None, service.expand(moved)[1])
    except BaseException:
        await drv.delete_volume(*instance_volume(row))
        raise
    driver = service.drivers.get(row.type)
    await driver.forget(service.spec(row))
    with service.db.transaction():
        q.update_instance(service.db, moved)
    await driver.adopt(service.spec(moved))
    await old_drv.delete_volume(*instance_volume(row))
