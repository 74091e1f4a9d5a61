"""Custom volume backups: export a volume (and its snapshots) as an Incus backup tarball, keep it
until deleted or expired, and make a new volume from such a tarball
(``stapes storage volume import``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stapes.api.backup import BackupsPost
from stapes.api.errors import BadRequest, Conflict
from stapes.api.lifecycle import StorageVolumeAction
from stapes.api.times import ZERO_TIME, now, timestamp
from stapes.api.urls import volume_url
from stapes.db import backups as bq
from stapes.db import storage as q
from stapes.db.projects import feature_project, get_project
from stapes.host.paths import Paths
from stapes.runtime.operations import Operation
from stapes.storage.backups import index as backup_index
from stapes.storage.backups import tarball, volume_io
from stapes.storage.backups.records import BackupRecords
from stapes.storage.config import check_volume_name, validate_volume_config
from stapes.storage.volume_snapshots import VolumeSnapshots
from stapes.storage.volumes import CONTENT_TYPES, Volumes, disk_name


def backup_url(vol: q.VolumeRow, backup: str) -> str:
    base = volume_url(vol.pool, "custom", vol.name, "default")
    suffix = "" if vol.project == "default" else f"?project={vol.project}"
    return f"{base}/backups/{backup}{suffix}"


class VolumeBackups:
    def __init__(self, volumes: Volumes, snapshots: VolumeSnapshots, paths: Paths) -> None:
        self.volumes = volumes
        self.snapshots = snapshots
        self.db = volumes.db
        self.records = BackupRecords(volumes.db, paths, "volume")

    @staticmethod
    def _check_custom(vol: q.VolumeRow) -> None:
        if vol.type != "custom" or not vol.id:
            raise BadRequest(f"Only custom volumes have backups (not {vol.type} volumes)")

    def list_backups(self, vol: q.VolumeRow) -> list[bq.BackupRow]:
        self._check_custom(vol)
        return self.records.list_backups(vol.id)

    def get(self, vol: q.VolumeRow, name: str) -> bq.BackupRow:
        self._check_custom(vol)
        return self.records.get(vol.id, name)

    def render(self, backup: bq.BackupRow) -> dict[str, Any]:
        return self.records.render(backup)

    def _operation(
        self, act: Any, description: str, vol: q.VolumeRow, backup: str, requested_in: str
    ) -> Operation:
        """The backup's URL among the resources: ``incus storage volume export`` reads the
        new backup's name from there. ``requested_in``: the project the request named (the
        operation's; the volume may be the default project's)."""
        return self.volumes.operations.start(
            act,
            description=description,
            project=requested_in,
            resources={
                "storage_volumes": [volume_url(vol.pool, "custom", vol.name, vol.project)],
                "backups": [backup_url(vol, backup)],
            },
        )

    def _event(self, action: StorageVolumeAction, vol: q.VolumeRow, backup: str) -> None:
        self.volumes.events.lifecycle(action, backup_url(vol, backup), project=vol.project)

    # -- export -------------------------------------------------------------------------------

    def create(self, vol: q.VolumeRow, req: BackupsPost, requested_in: str) -> Operation:
        self._check_custom(vol)
        drv = self.volumes.driver(vol.pool)
        optimized = req.optimized_storage and drv.info().optimized_backups
        backup = self.records.new_row(vol.id, req, optimized)

        async def act(op: Operation) -> None:
            async with self.volumes.lock(vol.pool, vol.project, vol.name):
                self.records.insert(backup)
                try:
                    await self._write(vol, backup)
                except BaseException:
                    await self.records.delete(backup)
                    raise
            self._event(StorageVolumeAction.BACKUP_CREATED, vol, backup.name)

        return self._operation(act, "Backing up storage volume", vol, backup.name, requested_in)

    async def _write(self, vol: q.VolumeRow, backup: bq.BackupRow) -> None:
        drv = self.volumes.driver(vol.pool)
        snaps = [] if backup.without_snapshots else self.snapshots.list(vol)
        config: dict[str, Any] = {"volume": self.volumes.render(vol)}
        config["volume"]["used_by"] = []
        if snaps:
            config["volume_snapshots"] = [
                {**self.snapshots.render(vol, s), "expires_at": s.expires_at or ZERO_TIME}
                for s in snaps
            ]
        index = backup_index.BackupIndex(
            name=vol.name,
            backend=drv.info().name,
            pool=vol.pool,
            type="custom",
            snapshots=[s.name for s in snaps],
            optimized=backup.optimized,
            optimized_header=backup.optimized,
            config=config,
        )
        source = volume_io.VolumeSource(
            driver=drv,
            vol_type="custom",
            name=disk_name(vol.project, vol.name),
            idmap=None,  # custom volumes keep the ids they are written with
            snapshots=[(s.name, None) for s in snaps],
        )
        await volume_io.export(source, index, self.records.file(backup), backup.compression)

    def export_file(self, vol: q.VolumeRow, backup: bq.BackupRow) -> Path:
        path = self.records.existing_file(backup)
        self._event(StorageVolumeAction.BACKUP_RETRIEVED, vol, backup.name)
        return path

    def rename(
        self, vol: q.VolumeRow, backup: bq.BackupRow, new_name: str, requested_in: str
    ) -> Operation:
        self.records.check_name(vol.id, new_name)

        async def act(op: Operation) -> None:
            self.records.rename(backup, new_name)
            self._event(StorageVolumeAction.BACKUP_RENAMED, vol, new_name)

        return self._operation(
            act, "Renaming storage volume backup", vol, backup.name, requested_in
        )

    def delete(self, vol: q.VolumeRow, backup: bq.BackupRow, requested_in: str) -> Operation:
        async def act(op: Operation) -> None:
            await self.records.delete(backup)
            self._event(StorageVolumeAction.BACKUP_DELETED, vol, backup.name)

        return self._operation(
            act, "Deleting storage volume backup", vol, backup.name, requested_in
        )

    async def forget(self, volume_id: int) -> None:
        await self.records.forget_owner(volume_id)

    # -- import -------------------------------------------------------------------------------

    async def import_archive(self, archive: Path, pool: str, project: str, name: str) -> Operation:
        """Check the tarball and the target (before anything is made), then make the volume
        and its snapshots in the background; the archive is removed when done either way."""
        try:
            index = backup_index.parse(await tarball.read_index(archive))
            row = self._import_row(index, pool, project, name)
            drv = self.volumes.driver(pool)
            volume_io.check_restorable(drv, index)
        except BaseException:
            archive.unlink(missing_ok=True)
            raise
        snaps = [self._snapshot_row(index, s) for s in index.snapshots]

        async def act(op: Operation) -> None:
            on_pool = disk_name(row.project, row.name)
            try:
                async with self.volumes.lock(pool, project, row.name):
                    try:
                        await volume_io.restore(
                            drv, "custom", on_pool, index, archive, None, _nothing
                        )
                    except BaseException:
                        await drv.delete_volume("custom", on_pool)
                        raise
                    await self.volumes.record(row, snaps)
            finally:
                archive.unlink(missing_ok=True)

        return self.volumes.operation(
            act, "Restoring custom volume backup", pool, project, row.name
        )

    def _import_row(
        self, index: backup_index.BackupIndex, pool: str, project: str, name: str
    ) -> q.VolumeRow:
        if index.type != "custom":
            raise BadRequest(
                f"This is a backup of a {index.type}, not of a custom volume: import it with "
                "stapes import"
            )
        get_project(self.db, project)
        q.get_pool(self.db, pool)
        source: dict[str, Any] = index.config["volume"]
        name = name or index.name
        check_volume_name(name)
        if q.find_volume(self.db, pool, project, "custom", name) is not None:
            raise Conflict(f"Storage volume {name!r} already exists on pool {pool!r}")
        content_type = str(source.get("content_type") or "filesystem")
        if content_type not in CONTENT_TYPES:
            raise BadRequest(f"Invalid backup: unknown content type {content_type!r}")
        config = {str(k): str(v) for k, v in (source.get("config") or {}).items()}
        validate_volume_config(type(self.volumes.driver(pool)), config, content_type)
        return q.VolumeRow(
            id=0,
            pool=pool,
            project=feature_project(self.db, project, "storage.volumes"),
            name=name,
            type="custom",
            content_type=content_type,
            created_at=str(source.get("created_at") or timestamp(now())),
            description=str(source.get("description") or ""),
            config=config,
        )

    @staticmethod
    def _snapshot_row(index: backup_index.BackupIndex, snap: str) -> q.VolumeSnapshotRow:
        entry = index.snapshot_config("volume_snapshots", snap)
        return q.VolumeSnapshotRow(
            id=0,
            volume_id=0,
            name=snap,
            created_at=str(entry.get("created_at") or timestamp(now())),
            expires_at=BackupRecords.stored_time(entry.get("expires_at")),
            description=str(entry.get("description") or ""),
            config={str(k): str(v) for k, v in (entry.get("config") or {}).items()},
        )


async def _nothing(snap: str) -> None:
    """Volume snapshot rows are written with the volume's, once all is on the pool."""
