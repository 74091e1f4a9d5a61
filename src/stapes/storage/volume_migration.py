"""A custom volume leaving for or arriving from another server (``incus storage volume copy
local:pool/vol far:pool/vol``, ``--refresh``, ``move``): the operations around
``migration.volume`` for the volume service."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stapes.api.errors import BadRequest
from stapes.api.lifecycle import StorageVolumeAction
from stapes.api.storage import StorageVolumePost, StorageVolumesPost
from stapes.api.urls import volume_url
from stapes.db import storage as q
from stapes.migration.channel import Dial
from stapes.migration.volume import VolumeOnPool, VolumeSink, VolumeSource
from stapes.runtime.operations import Operation, Runner
from stapes.storage.drivers.driver import ISO

if TYPE_CHECKING:
    from stapes.storage.volume_snapshots import VolumeSnapshots
    from stapes.storage.volumes import Volumes


def _resources(pool: str, project: str, name: str) -> dict[str, list[str]]:
    return {"storage_volumes": [volume_url(pool, "custom", name, project)]}


def _on_pool(volumes: Volumes, vol: q.VolumeRow) -> VolumeOnPool:
    return VolumeOnPool(volumes.driver(vol.pool), volumes.disk_of(vol), vol.content_type)


def send(
    volumes: Volumes, shown: VolumeSnapshots, vol: q.VolumeRow, req: StorageVolumePost
) -> Operation:
    """The source's operation (``shown`` renders the snapshots for the index frame)."""
    if vol.type != "custom":
        raise BadRequest(f"{vol.type} volumes move with their instance or image")
    if vol.content_type == ISO:
        raise BadRequest("ISO volumes are not migrated: import the ISO on the other server")
    push = None
    if req.target is not None and req.target.operation:
        push = Dial(req.target.operation, dict(req.target.secrets), req.target.certificate)
    snaps = [] if req.volume_only else q.list_volume_snapshots(volumes.db, vol.id)
    index = {
        "volume": volumes.render(vol),
        "volume_snapshots": [shown.render(vol, s) for s in snaps],
    }
    source = VolumeSource(_on_pool(volumes, vol), snaps, push, index)

    async def act(op: Operation) -> None:
        async with volumes.lock(vol.pool, vol.project, vol.name):
            await source.run(op)

    return volumes.operations.start(
        source.closing(act),
        description="Migrating storage volume",
        project=vol.project,
        resources=_resources(vol.pool, vol.project, vol.name),
        cls="task" if push is not None else "websocket",
        metadata=source.metadata,
        prepare=source.prepare,
    )


async def receive(volumes: Volumes, pool: str, project: str, req: StorageVolumesPost) -> Operation:
    src = req.source
    if src.mode not in ("pull", "push"):
        raise BadRequest('source.mode must be "pull" or "push" for a migration')
    dial = Dial(src.operation, dict(src.secrets), src.certificate) if src.mode == "pull" else None
    sink = VolumeSink(dial, volume_only=src.volume_only, refresh=src.refresh)
    existing = q.find_volume(volumes.db, pool, project, "custom", req.name)
    if existing is not None and src.refresh:
        return await _refresh(volumes, sink, existing)
    row = volumes.new_row(pool, project, req)
    on_pool = _on_pool(volumes, row)

    async def act(op: Operation) -> None:
        async with volumes.lock(pool, row.project, row.name):
            await volumes.driver(pool).create_volume(
                "custom", on_pool.disk, row.content_type, volumes.size_of(row)
            )
            try:
                snaps = await sink.receive(op, on_pool, [])
                await _limit_again(volumes, sink, row)
            except BaseException:
                await volumes.driver(pool).delete_volume("custom", on_pool.disk)
                raise
            await volumes.record(row, snaps)

    await sink.reach()
    return _operation(volumes, sink, act, "Creating storage volume", pool, project, req.name)


async def _refresh(volumes: Volumes, sink: VolumeSink, vol: q.VolumeRow) -> Operation:
    volumes.check_unused(vol, "refresh")
    on_pool = _on_pool(volumes, vol)

    async def act(op: Operation) -> None:
        async with volumes.lock(vol.pool, vol.project, vol.name):
            have = [s.name for s in q.list_volume_snapshots(volumes.db, vol.id)]
            made = await sink.receive(op, on_pool, have)
            await _limit_again(volumes, sink, vol)
            with volumes.db.transaction():
                for snap in made:
                    snap.volume_id = vol.id
                    q.insert_volume_snapshot(volumes.db, snap)
        volumes.events.lifecycle(
            StorageVolumeAction.UPDATED,
            volume_url(vol.pool, "custom", vol.name, vol.project),
            project=vol.project,
        )

    await sink.reach()
    return _operation(
        volumes, sink, act, "Refreshing storage volume", vol.pool, vol.project, vol.name
    )


async def _limit_again(volumes: Volumes, sink: VolumeSink, vol: q.VolumeRow) -> None:
    """A volume received as a send stream is a new subvolume: its size limit set again."""
    size = volumes.size_of(vol)
    if sink.streamed and size is not None:
        disk = _on_pool(volumes, vol).disk
        await volumes.driver(vol.pool).set_quota("custom", disk, size, vol.content_type)


def _operation(
    volumes: Volumes,
    sink: VolumeSink,
    act: Runner,
    description: str,
    pool: str,
    project: str,
    name: str,
) -> Operation:
    return volumes.operations.start(
        sink.closing(act),
        description=description,
        project=project,
        resources=_resources(pool, project, name),
        cls="websocket" if sink.accepting else "task",
        metadata=sink.metadata,
        prepare=sink.prepare,
    )
