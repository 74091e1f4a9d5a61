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
        raise BadRequest(
            f"Copying from pool {src.pool!r} to pool {row.pool!r} is not supported yet: "
            "copy within one pool"
        )
    if source.snapshot is not None:
        await drv.volume_from_snapshot(
            "containers", src.name, source.snapshot.name, "containers", row.name
        )
    else:
        async with service.locks(src.project, src.name), service.frozen(src):
            await drv.copy_volume("containers", src.name, "containers", row.name)
    rootfs = drv.volume_path("containers", row.name) / "rootfs"
    old = current_map((source.snapshot or src).config)
    await asyncio.to_thread(reshift_tree, rootfs, old, idmap)


async def copy_snapshots(service: InstanceService, source: CopySource, row: q.InstanceRow) -> None:
    """Give the new instance the source's snapshots (unless instance-only)."""
    if source.instance_only:
        return
    src = source.instance
    for snap in sq.list_snapshots(service.db, src.id):
        await _copy_snapshot(service, src, snap, row)


async def _copy_snapshot(
    service: InstanceService, src: q.InstanceRow, snap: sq.SnapshotRow, row: q.InstanceRow
) -> None:
    drv = service.pools.driver(row.pool)
    await drv.copy_snapshot("containers", src.name, snap.name, row.name)
    copied = sq.SnapshotRow(**{**snap.__dict__, "id": 0, "instance_id": row.id})
    copied.config = {
        **local_config(snap.config),
        **{k: v for k, v in row.config.items() if k.startswith(VOLATILE_PREFIX)},
    }
    try:
        with service.db.transaction():
            sq.insert_snapshot(service.db, copied)
    except BaseException:
        await drv.delete_snapshot("containers", row.name, snap.name)
        raise
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
    if target.pool != src.pool:
        raise BadRequest("Refreshing a copy on another pool is not supported yet")
    drv = service.pools.driver(target.pool)
    if not source.instance_only:
        wanted = {s.name: s for s in sq.list_snapshots(service.db, src.id)}
        have = {s.name: s for s in sq.list_snapshots(service.db, target.id)}
        for name, snap in have.items():
            if name not in wanted:
                with service.db.transaction():
                    sq.delete_snapshot(service.db, snap.id)
                await drv.delete_snapshot("containers", target.name, name)
        for name, snap in wanted.items():
            if name not in have:
                await _copy_snapshot(service, src, snap, target)
    async with service.locks(src.project, src.name), service.frozen(src):
        await drv.refresh_volume("containers", src.name, "containers", target.name)
    rootfs = drv.volume_path("containers", target.name) / "rootfs"
    await asyncio.to_thread(
        reshift_tree, rootfs, current_map(src.config), current_map(target.config)
    )
