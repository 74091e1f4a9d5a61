"""Storage volumes: custom volumes (rows of their own) and the instance and image volumes a pool
holds (described by their instance and image rows). Create, copy, move, rename, update (size,
description), restore, delete; what uses a volume; attaching custom volumes to instances."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from stapes.api.errors import BadRequest, Conflict, NotFound
from stapes.api.lifecycle import StorageVolumeAction
from stapes.api.storage import StorageVolumePost, StorageVolumePut, StorageVolumesPost
from stapes.api.times import now, timestamp
from stapes.api.urls import instance_url, profile_url, volume_snapshot_url, volume_url
from stapes.config.validate import parse_size
from stapes.db import storage as q
from stapes.db.connection import Database
from stapes.db.images import list_images
from stapes.db.instances import find_instance, get_instance, list_instances, set_volume_settings
from stapes.db.projects import expand_profiles, feature_project, list_profiles
from stapes.db.server_config import get_config
from stapes.db.snapshots import list_snapshots
from stapes.host.paths import instance_entry
from stapes.host.run import run
from stapes.runtime.events import EventBus
from stapes.runtime.operations import Operation, Operations, Runner
from stapes.storage import volume_migration
from stapes.storage.config import check_volume_name, validate_volume_config, volume_defaults
from stapes.storage.drivers.dir import sync_tree
from stapes.storage.drivers.driver import (
    BLOCK,
    BLOCK_FILE,
    FILESYSTEM,
    ISO,
    ISO_FILE,
    StorageDriver,
)
from stapes.storage.pool import Pools

log = logging.getLogger(__name__)

# API volume types and the directory each keeps its volumes in on a pool
TYPE_DIRS = {
    "custom": "custom",
    "container": "containers",
    "virtual-machine": "virtual-machines",
    "image": "images",
}
CONTENT_TYPES = (FILESYSTEM, BLOCK)

INSTANCE_TYPES = ("container", "virtual-machine")
"""Volume types that hold an instance."""


def vol_dir(instance_type: str) -> str:
    """Where an instance's volume lives on its pool: containers/ or virtual-machines/."""
    return TYPE_DIRS[instance_type]


class InstanceLike(Protocol):
    type: str
    project: str
    name: str


def instance_volume(row: InstanceLike) -> tuple[str, str]:
    """(type directory, name on the pool) of an instance's volume: ``<project>_<name>``
    outside the default project, as Incus keeps them (so two projects' instances of the same
    name never share a volume)."""
    return vol_dir(row.type), instance_entry(row.project, row.name)


def disk_name(project: str, name: str) -> str:
    """A custom volume's name on its pool: Incus's ``<project>_<name>``."""
    return f"{project}_{name}"


@dataclass(frozen=True)
class AttachedVolume:
    """What an instance's disk device needs of a custom volume."""

    path: Path
    content_type: str
    block: Path | None = None
    """A block volume's device or image file."""


def _size(config: dict[str, str]) -> int | None:
    return parse_size(config["size"]) if config.get("size") else None


class Volumes:
    def __init__(
        self,
        db: Database,
        pools: Pools,
        events: EventBus,
        operations: Operations,
        instance_running: Callable[[str, str], Awaitable[bool]],
    ) -> None:
        """``instance_running(project, name)`` tells whether an instance runs."""
        self.instance_running = instance_running
        self.db = db
        self.pools = pools
        self.events = events
        self.operations = operations
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self.deleted_hooks: list[Callable[[int], Awaitable[None]]] = []
        """Called with the id of each deleted custom volume (its backups go with it)."""

    @staticmethod
    def size_of(row: q.VolumeRow) -> int | None:
        """A volume's size limit in bytes (None: none set)."""
        return _size(row.config)

    @staticmethod
    def disk_of(row: q.VolumeRow) -> str:
        return disk_name(row.project, row.name)

    def lock(self, pool: str, project: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((pool, project, name), asyncio.Lock())

    def driver(self, pool: str) -> StorageDriver:
        return self.pools.usable_driver(pool)

    def get(self, pool: str, project: str, vol_type: str, name: str) -> q.VolumeRow:
        if vol_type not in TYPE_DIRS:
            raise BadRequest(
                f"Invalid storage volume type {vol_type!r}: use one of {', '.join(TYPE_DIRS)}"
            )
        q.get_pool(self.db, pool)
        if vol_type == "custom":
            return q.get_volume(self.db, pool, project, vol_type, name)
        found = [v for v in self._derived(pool, project) if v.type == vol_type and v.name == name]
        if not found:
            raise NotFound(f"Storage volume {vol_type}/{name} not found on pool {pool!r}")
        return found[0]

    # -- listing ------------------------------------------------------------------------------

    def _derived(self, pool: str, project: str | None) -> list[q.VolumeRow]:
        """Instance and image volumes, described from their rows (they have none of their own)."""
        rows = [
            q.VolumeRow(
                id=0,
                pool=pool,
                project=i.project,
                name=i.name,
                type=i.type,
                content_type=FILESYSTEM if i.type == "container" else BLOCK,
                created_at=i.created_at,
                description=i.volume_description,
                config=dict(i.volume_config),
            )
            for i in list_instances(self.db, project)
            if i.pool == pool
        ]
        images = self.pools.pool_path(pool) / "images"
        if self.pools.keeps_image_volumes(pool):
            on_pool = {p.name.split(".", 1)[0] for p in images.iterdir()}
            rows += [
                q.VolumeRow(
                    id=0,
                    pool=pool,
                    project=image.project,
                    name=image.fingerprint,
                    type="image",
                    content_type=FILESYSTEM,
                    created_at=image.created_at,
                )
                for image in list_images(self.db, project or "default")
                if image.fingerprint in on_pool
            ]
        return rows

    def list_volumes(self, pool: str, project: str | None) -> list[q.VolumeRow]:
        q.get_pool(self.db, pool)
        return self._derived(pool, project) + q.list_volumes(self.db, pool, project)

    def urls(self, pool: str, project: str | None) -> list[str]:
        """Volume URLs, snapshots included, as Incus lists them."""
        result = []
        for vol in self.list_volumes(pool, project):
            result.append(volume_url(pool, vol.type, vol.name, vol.project))
            result += [
                volume_snapshot_url(pool, vol.type, vol.name, s.name, vol.project)
                for s in self.snapshots_of(vol)
            ]
        return sorted(result)

    def snapshots_of(self, vol: q.VolumeRow) -> list[q.VolumeSnapshotRow]:
        """A volume's snapshots: a custom volume's own, or an instance's snapshots seen as
        snapshots of its volume (as Incus lists them: name, creation time, nothing else)."""
        if vol.id:
            return q.list_volume_snapshots(self.db, vol.id)
        if vol.type not in INSTANCE_TYPES:
            return []
        instance = find_instance(self.db, vol.project, vol.name)
        if instance is None:
            return []
        return [
            q.VolumeSnapshotRow(id=0, volume_id=0, name=snap.name, created_at=snap.created_at)
            for snap in list_snapshots(self.db, instance.id)
        ]

    def render(self, vol: q.VolumeRow) -> dict[str, Any]:
        return {
            "name": vol.name,
            "type": vol.type,
            "content_type": vol.content_type,
            "description": vol.description,
            "config": vol.config,
            "created_at": vol.created_at,
            "project": vol.project,
            "location": "none",
            "used_by": self.used_by(vol),
        }

    def writable(self, vol: q.VolumeRow) -> dict[str, Any]:
        return {"config": vol.config, "description": vol.description}

    # -- users --------------------------------------------------------------------------------

    def used_by(self, vol: q.VolumeRow) -> list[str]:
        if vol.type in INSTANCE_TYPES:
            return [instance_url(vol.name, vol.project)]
        if vol.type == "image":
            return [f"/1.0/images/{vol.name}"]
        used = []
        for inst in list_instances(self.db, vol.project):
            _, devices = expand_profiles(self.db, inst.project, inst.profiles, {}, inst.devices)
            if any(_uses(d, vol) for d in devices.values()):
                used.append(instance_url(inst.name, inst.project))
        used += [
            profile_url(p.name, p.project)
            for p in list_profiles(self.db, vol.project)
            if any(_uses(d, vol) for d in p.devices.values())
        ]
        return used

    def attached(self, pool: str, project: str, name: str) -> AttachedVolume:
        """A custom volume a disk device names (``pool=``, ``source=``)."""
        if "/" in name:
            raise BadRequest(
                f"{name!r}: attaching a volume snapshot is not supported: copy it to a volume"
            )
        vol = q.find_volume(self.db, pool, project, "custom", name)
        if vol is None:
            raise NotFound(f"Storage volume {name!r} not found on pool {pool!r}")
        drv = self.driver(pool)
        on_disk = disk_name(vol.project, name)  # the project that holds it
        path = drv.volume_path("custom", on_disk)
        block = drv.block_path("custom", on_disk) if vol.content_type == BLOCK else None
        if vol.content_type == ISO:
            block = path / ISO_FILE
        return AttachedVolume(path, vol.content_type, block)

    def check_unused(self, vol: q.VolumeRow, doing: str) -> None:
        users = self.used_by(vol)
        if vol.project == "default":  # storage.backups_volume / storage.images_volume
            config = get_config(self.db)
            users += [
                f"the server's {key}"
                for key in ("storage.backups_volume", "storage.images_volume")
                if config.get(key) == f"{vol.pool}/{vol.name}"
            ]
        if users:
            raise BadRequest(
                f"Cannot {doing} storage volume {vol.name!r}: it is in use by "
                f"{', '.join(users)} (detach it first)"
            )

    # -- create -------------------------------------------------------------------------------

    def operation(
        self, act: Runner, description: str, pool: str, project: str, name: str
    ) -> Operation:
        """Background work on one custom volume (its URL as the operation's resource)."""
        return self.operations.start(
            act,
            description=description,
            project=project,
            resources={"storage_volumes": [volume_url(pool, "custom", name, project)]},
        )

    def new_row(self, pool: str, project: str, req: StorageVolumesPost) -> q.VolumeRow:
        if req.type != "custom":
            raise BadRequest(
                f"Only custom volumes can be created directly (not {req.type!r}): instance and "
                "image volumes come with their instances and images"
            )
        check_volume_name(req.name)
        if req.content_type == ISO:
            raise BadRequest("Size cannot be zero")  # Incus's words: an ISO volume is imported
        if req.content_type not in CONTENT_TYPES:
            raise BadRequest(f"Invalid content type {req.content_type!r}: use filesystem or block")
        row = q.get_pool(self.db, pool)
        drv = self.driver(pool)
        config = {**volume_defaults(row.config), **req.config}
        if req.content_type == BLOCK:
            config.pop("security.shifted", None)
            config.pop("security.unmapped", None)
            if not drv.info().block_volumes:
                raise BadRequest(f"Storage pool {pool!r} cannot hold block volumes")
        validate_volume_config(type(drv), config, req.content_type)
        if q.find_volume(self.db, pool, project, "custom", req.name) is not None:
            raise Conflict(f"Storage volume {req.name!r} already exists on pool {pool!r}")
        return q.VolumeRow(
            id=0,
            pool=pool,
            # the project that holds it: the default one's when this one shares its volumes
            # (its name on the pool is <that project>_<name>, as the row will say)
            project=feature_project(self.db, project, "storage.volumes"),
            name=req.name,
            type="custom",
            content_type=req.content_type,
            created_at=timestamp(now()),
            description=req.description,
            config=config,
        )

    async def create(self, pool: str, project: str, req: StorageVolumesPost) -> Operation | None:
        """An empty volume (sync, as Incus), or a copy of another (an operation)."""
        if req.source.type == "copy":
            return self._copy(pool, project, req)
        if req.source.type == "migration":
            return await volume_migration.receive(self, pool, project, req)
        if req.source.type not in ("", "none"):
            raise BadRequest(
                f"Unknown volume source type {req.source.type!r}: use copy or migration "
                "(backups are imported by uploading them)"
            )
        row = self.new_row(pool, project, req)
        async with self.lock(pool, project, req.name):
            await self._make_empty(row)
        return None

    async def import_iso(self, pool: str, project: str, name: str, upload: Path) -> Operation:
        """``storage volume import POOL FILE NAME --type=iso``: a custom volume of content type
        iso holding the uploaded image (its size recorded), for VMs to use as a CD-ROM."""
        req = StorageVolumesPost(name=name, content_type=FILESYSTEM)
        try:
            row = self.new_row(pool, project, req)
        except BaseException:
            upload.unlink(missing_ok=True)
            raise
        row.content_type = ISO
        row.config = {"size": str(upload.stat().st_size)}

        async def act(op: Operation) -> None:
            try:
                async with self.lock(pool, row.project, name):
                    drv = self.driver(pool)
                    on_pool = disk_name(row.project, name)
                    path = await drv.create_volume("custom", on_pool, FILESYSTEM)
                    try:
                        await asyncio.to_thread(shutil.move, upload, path / ISO_FILE)
                        (path / ISO_FILE).chmod(0o400)
                        await self.record(row, [])
                    except BaseException:
                        await drv.delete_volume("custom", on_pool)
                        raise
            finally:
                upload.unlink(missing_ok=True)

        return self.operation(act, "Importing ISO storage volume", pool, project, name)

    async def _make_empty(self, row: q.VolumeRow) -> None:
        drv = self.driver(row.pool)
        on_pool = disk_name(row.project, row.name)
        await drv.create_volume("custom", on_pool, row.content_type, _size(row.config))
        await self.record(row, [])

    async def record(self, row: q.VolumeRow, snaps: list[q.VolumeSnapshotRow]) -> None:
        """A new volume made on its pool gets its size, its rows and its event; if that
        fails, the volume goes (nothing half-made)."""
        drv = self.driver(row.pool)
        on_pool = disk_name(row.project, row.name)
        try:
            if row.content_type == FILESYSTEM and _size(row.config) is not None:
                await drv.set_quota("custom", on_pool, _size(row.config))
            with self.db.transaction():
                q.insert_volume(self.db, row)
                for snap in snaps:
                    q.insert_volume_snapshot(
                        self.db,
                        q.VolumeSnapshotRow(
                            id=0,
                            volume_id=row.id,
                            name=snap.name,
                            created_at=snap.created_at,
                            expires_at=snap.expires_at,
                            description=snap.description,
                            config=snap.config,
                        ),
                    )
        except BaseException:
            await drv.delete_volume("custom", on_pool)
            raise
        self.events.lifecycle(
            StorageVolumeAction.CREATED,
            volume_url(row.pool, "custom", row.name, row.project),
            project=row.project,
            context={"type": "custom"},
        )

    def _origin(self, vol: q.VolumeRow, snap: str) -> Path:
        """Where a custom volume's content (or one snapshot's) is on its pool."""
        drv = self.driver(vol.pool)
        on_pool = disk_name(vol.project, vol.name)
        if snap:
            return drv.snapshot_path("custom", on_pool, snap)
        return drv.volume_path("custom", on_pool)

    def _copy(self, pool: str, project: str, req: StorageVolumesPost) -> Operation:
        src_pool = req.source.pool or pool
        src_project = req.source.project or project
        src_name, _, src_snap = req.source.name.partition("/")
        source = q.get_volume(self.db, src_pool, src_project, "custom", src_name)
        if src_snap and q.find_volume_snapshot(self.db, source.id, src_snap) is None:
            raise NotFound(f"Snapshot {src_snap!r} of volume {src_name!r} not found")
        req = req.model_copy(
            update={
                "content_type": source.content_type,
                "config": {
                    k: val
                    for k, val in {**source.config, **req.config}.items()
                    if not k.startswith("volatile.")
                },
            }
        )
        existing = q.find_volume(self.db, pool, project, "custom", req.name)
        if req.source.refresh and existing is not None:
            return self._refresh(existing, source, src_snap)
        row = self.new_row(pool, project, req)
        snaps = (
            []
            if (req.source.volume_only or src_snap)
            else q.list_volume_snapshots(self.db, source.id)
        )

        async def act(op: Operation) -> None:
            async with self.lock(pool, project, req.name):
                await self._copy_into(row, source, src_snap, snaps)

        return self.operation(act, "Copying storage volume", pool, project, req.name)

    async def _copy_into(
        self,
        row: q.VolumeRow,
        source: q.VolumeRow,
        src_snap: str,
        snaps: list[q.VolumeSnapshotRow],
    ) -> None:
        src_drv = self.driver(source.pool)
        drv = self.driver(row.pool)
        src_disk = disk_name(source.project, source.name)
        dst_disk = disk_name(row.project, row.name)
        try:
            if src_drv is drv:
                if src_snap:
                    await drv.volume_from_snapshot("custom", src_disk, src_snap, "custom", dst_disk)
                else:
                    await drv.copy_volume("custom", src_disk, "custom", dst_disk)
                for snap in snaps:
                    await drv.copy_snapshot("custom", src_disk, snap.name, dst_disk)
            else:
                await drv.create_volume("custom", dst_disk, row.content_type, _size(row.config))
                target = drv.volume_path("custom", dst_disk)
                for snap in snaps:
                    await transfer(self._origin(source, snap.name), target, row.content_type)
                    await drv.create_snapshot("custom", dst_disk, snap.name)
                await transfer(self._origin(source, src_snap), target, row.content_type)
        except BaseException:
            await drv.delete_volume("custom", dst_disk)
            raise
        await self.record(row, snaps)

    def _refresh(self, target: q.VolumeRow, source: q.VolumeRow, src_snap: str) -> Operation:
        self.check_unused(target, "refresh")

        async def act(op: Operation) -> None:
            async with self.lock(target.pool, target.project, target.name):
                dest = self._origin(target, "")
                await transfer(self._origin(source, src_snap), dest, target.content_type)
            self.events.lifecycle(
                StorageVolumeAction.UPDATED,
                volume_url(target.pool, "custom", target.name, target.project),
                project=target.project,
            )

        return self.operation(
            act, "Refreshing storage volume", target.pool, target.project, target.name
        )

    # -- update, rename, move, delete -------------------------------------------------------

    async def update(self, vol: q.VolumeRow, put: StorageVolumePut) -> None:
        if vol.type in INSTANCE_TYPES:
            self._update_instance_volume(vol, put)
            return
        if vol.type != "custom":
            raise BadRequest(
                f"{vol.type} volumes are changed through their {vol.type.replace('-', ' ')}"
            )
        if put.restore:
            await self.restore(vol, put.restore)
            return
        config = {k: val for k, val in put.config.items() if val != ""}  # "" unsets
        for key in ("volatile.uuid", "volatile.idmap.last", "volatile.idmap.next"):
            if key in vol.config:
                config.setdefault(key, vol.config[key])
        drv = self.driver(vol.pool)
        validate_volume_config(type(drv), config, vol.content_type)
        async with self.lock(vol.pool, vol.project, vol.name):
            if _size(config) != _size(vol.config):
                await drv.set_quota(
                    "custom", disk_name(vol.project, vol.name), _size(config), vol.content_type
                )
            vol.config, vol.description = config, put.description
            with self.db.transaction():
                q.update_volume(self.db, vol)
        self.events.lifecycle(
            StorageVolumeAction.UPDATED,
            volume_url(vol.pool, "custom", vol.name, vol.project),
            project=vol.project,
        )

    def _update_instance_volume(self, vol: q.VolumeRow, put: StorageVolumePut) -> None:
        """An instance's volume takes user.* keys and a description, as in Incus; the rest of
        it follows the instance (its size is the root disk device's)."""
        if put.restore:
            raise BadRequest(f"Restore {vol.type} volumes through their instance's snapshots")
        config = {k: val for k, val in put.config.items() if val != ""}
        for key in sorted(set(config) | set(vol.config)):
            if not key.startswith("user.") and config.get(key) != vol.config.get(key):
                if key not in config:
                    config[key] = vol.config[key]  # not the client's to drop
                    continue
                raise BadRequest(
                    f"Invalid option for volume {vol.name!r} option {key!r}: an instance's "
                    "volume takes user.* keys (its size is set on the root disk device)"
                )
        with self.db.transaction():
            row = get_instance(self.db, vol.project, vol.name)
            set_volume_settings(self.db, row.id, put.description, config)
        vol.config, vol.description = config, put.description
        self.events.lifecycle(
            StorageVolumeAction.UPDATED,
            volume_url(vol.pool, vol.type, vol.name, vol.project),
            project=vol.project,
        )

    async def restore(self, vol: q.VolumeRow, snap: str) -> None:
        found = q.find_volume_snapshot(self.db, vol.id, snap)
        if found is None:
            raise NotFound(f"Snapshot {snap!r} of volume {vol.name!r} not found")
        await self._check_running_users(vol, "restore")
        async with self.lock(vol.pool, vol.project, vol.name):
            await self.driver(vol.pool).restore_snapshot(
                "custom", disk_name(vol.project, vol.name), snap
            )
        self.events.lifecycle(
            StorageVolumeAction.RESTORED,
            volume_url(vol.pool, "custom", vol.name, vol.project),
            project=vol.project,
        )

    async def _check_running_users(self, vol: q.VolumeRow, doing: str) -> None:
        """A volume an instance has mounted cannot be swapped under it."""
        users = set(self.used_by(vol))
        running = [
            instance_url(inst.name, inst.project)
            for inst in list_instances(self.db, vol.project)
            if instance_url(inst.name, inst.project) in users
            and await self.instance_running(inst.project, inst.name)
        ]
        if running:
            raise BadRequest(
                f"Cannot {doing} storage volume {vol.name!r} while {', '.join(running)} "
                "is running with it attached: stop it first"
            )

    def rename_or_move(
        self, vol: q.VolumeRow, req: StorageVolumePost, requested_in: str
    ) -> Operation:
        """``requested_in``: the project the request named (the operation's)."""
        if vol.type != "custom":
            raise BadRequest(f"{vol.type} volumes are renamed through their instance or image")
        new_name = req.name or vol.name
        pool = req.pool or vol.pool
        project = req.project or vol.project
        if (new_name, pool, project) == (vol.name, vol.pool, vol.project):
            raise BadRequest("Nothing to do: give a new name, pool or project")
        check_volume_name(new_name)
        q.get_pool(self.db, pool)
        if q.find_volume(self.db, pool, project, "custom", new_name) is not None:
            raise Conflict(f"Storage volume {new_name!r} already exists on pool {pool!r}")
        self.check_unused(vol, "rename or move")
        holder = feature_project(self.db, project, "storage.volumes")
        if holder != vol.project and pool != vol.pool:
            raise BadRequest("Move a volume to another pool or to another project, not both")

        async def act(op: Operation) -> None:
            async with self.lock(vol.pool, vol.project, vol.name):
                if holder != vol.project:
                    await self._to_project(vol, holder, new_name)
                elif pool == vol.pool:
                    await self._rename(vol, new_name)
                else:
                    await self._move(vol, pool, new_name, req.volume_only)

        return self.operation(act, "Moving storage volume", vol.pool, requested_in, vol.name)

    async def _to_project(self, vol: q.VolumeRow, project: str, new_name: str) -> None:
        """storage_volume_project_move: the volume (and its snapshots) renamed on its pool to
        the other project's <project>_<name>, and its row given to that project."""
        old_project, old_name = vol.project, vol.name
        await self.driver(vol.pool).rename_volume(
            "custom", disk_name(old_project, old_name), disk_name(project, new_name)
        )
        vol.name = new_name
        try:
            with self.db.transaction():
                q.update_volume(self.db, vol)
                q.set_volume_project(self.db, vol.id, project)
        except BaseException:
            await self.driver(vol.pool).rename_volume(
                "custom", disk_name(project, new_name), disk_name(old_project, old_name)
            )
            raise
        vol.project = project
        self.events.lifecycle(
            StorageVolumeAction.CREATED,
            volume_url(vol.pool, "custom", new_name, project),
            project=project,
        )
        self.events.lifecycle(
            StorageVolumeAction.DELETED,
            volume_url(vol.pool, "custom", old_name, old_project),
            project=old_project,
        )

    async def _rename(self, vol: q.VolumeRow, new_name: str) -> None:
        old_name = vol.name
        await self.driver(vol.pool).rename_volume(
            "custom", disk_name(vol.project, old_name), disk_name(vol.project, new_name)
        )
        vol.name = new_name
        with self.db.transaction():
            q.update_volume(self.db, vol)
        self.events.lifecycle(
            StorageVolumeAction.RENAMED,
            volume_url(vol.pool, "custom", new_name, vol.project),
            project=vol.project,
            context={"old_name": old_name},
        )

    async def _move(self, vol: q.VolumeRow, pool: str, new_name: str, volume_only: bool) -> None:
        """Copy to the other pool, then delete the source: a failed copy leaves it intact."""
        snaps = [] if volume_only else q.list_volume_snapshots(self.db, vol.id)
        row = q.VolumeRow(
            id=0,
            pool=pool,
            project=vol.project,
            name=new_name,
            type="custom",
            content_type=vol.content_type,
            created_at=vol.created_at,
            description=vol.description,
            config=dict(vol.config),
        )
        await self._copy_into(row, vol, "", snaps)
        await self._delete(vol)

    async def delete(self, vol: q.VolumeRow) -> None:
        if vol.type != "custom":
            raise BadRequest(
                f"{vol.type} volumes are deleted with their instance or image, not directly"
            )
        self.check_unused(vol, "delete")
        async with self.lock(vol.pool, vol.project, vol.name):
            await self._delete(vol)

    async def _delete(self, vol: q.VolumeRow) -> None:
        with self.db.transaction():
            q.delete_volume(self.db, vol.id)
        for hook in self.deleted_hooks:
            await hook(vol.id)
        await self.driver(vol.pool).delete_volume("custom", disk_name(vol.project, vol.name))
        self.events.lifecycle(
            StorageVolumeAction.DELETED,
            volume_url(vol.pool, "custom", vol.name, vol.project),
            project=vol.project,
        )

    async def state(self, vol: q.VolumeRow) -> dict[str, Any]:
        drv = self.driver(vol.pool)
        if vol.type == "custom":
            vol_dir, on_pool = "custom", disk_name(vol.project, vol.name)
        else:
            vol_dir, on_pool = TYPE_DIRS[vol.type], vol.name
        if vol.content_type == BLOCK:
            path = drv.block_path(vol_dir, on_pool)
            used: int | None = path.stat().st_blocks * 512 if path.exists() else None
        else:
            used = await drv.volume_usage(vol_dir, on_pool)
        if used is None:
            return {"usage": None}
        return {"usage": {"used": used, "total": _size(vol.config) or 0}}


def _uses(device: dict[str, str], vol: q.VolumeRow) -> bool:
    return (
        device.get("type") == "disk"
        and device.get("pool") == vol.pool
        and device.get("source") == vol.name
        and device.get("path") != "/"
    )


async def transfer(source: Path, target: Path, content_type: str) -> None:
    """Make ``target`` (an existing volume) hold what ``source`` holds, across pools."""
    if content_type == BLOCK:
        await run(["cp", "--sparse=always", str(source / BLOCK_FILE), str(target / BLOCK_FILE)])
        return
    if not source.is_dir():
        raise NotFound(f"{source} is missing")
    await sync_tree(source, target)
