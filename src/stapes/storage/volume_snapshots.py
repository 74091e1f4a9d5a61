"""Snapshots of custom volumes: take, list, update expiry, rename, delete; and the minute round's
share of the work (snapshots.schedule and snapshots.expiry of volumes)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from stapes.api.errors import BadRequest, Conflict, NotFound
from stapes.api.lifecycle import StorageVolumeAction
from stapes.api.times import ZERO_TIME, now, timestamp
from stapes.api.urls import volume_snapshot_url
from stapes.config import snapshots as policy
from stapes.config.snapshots import parse_expiry_time, validate_name
from stapes.db import storage as q
from stapes.storage.volumes import Volumes, disk_name

log = logging.getLogger(__name__)


class VolumeSnapshots:
    def __init__(self, volumes: Volumes) -> None:
        self.volumes = volumes
        self.db = volumes.db
        self.events = volumes.events

    def _url(self, vol: q.VolumeRow, snap: str) -> str:
        return volume_snapshot_url(vol.pool, vol.type, vol.name, snap, vol.project)

    @staticmethod
    def check_custom(vol: q.VolumeRow) -> None:
        if vol.type != "custom":
            raise BadRequest(f"Snapshots of {vol.type} volumes are the snapshots of their instance")

    def list(self, vol: q.VolumeRow) -> list[q.VolumeSnapshotRow]:
        return self.volumes.snapshots_of(vol)

    def get(self, vol: q.VolumeRow, name: str) -> q.VolumeSnapshotRow:
        if vol.id:
            found = q.find_volume_snapshot(self.db, vol.id, name)
        else:
            found = next((s for s in self.list(vol) if s.name == name), None)
        if found is None:
            raise NotFound(f"Snapshot {name!r} of volume {vol.name!r} not found")
        return found

    def render(
        self, vol: q.VolumeRow, snap: q.VolumeSnapshotRow, listed: bool = False
    ) -> dict[str, Any]:
        """As Incus: a snapshot without expiry lists with null, shows with the zero time."""
        never = None if listed else ZERO_TIME
        return {
            "name": snap.name,
            "description": snap.description,
            "config": snap.config,
            "content_type": vol.content_type,
            "created_at": snap.created_at,
            "expires_at": snap.expires_at or never,
        }

    def writable(self, snap: q.VolumeSnapshotRow) -> dict[str, Any]:
        return {"description": snap.description, "expires_at": snap.expires_at or ZERO_TIME}

    async def create(
        self, vol: q.VolumeRow, name: str, expires_at: str | None, when: datetime | None = None
    ) -> q.VolumeSnapshotRow:
        self.check_custom(vol)
        taken = when or now()
        existing = [s.name for s in self.list(vol)]
        if not name:
            pattern = vol.config.get("snapshots.pattern", "snap%d")
            name = policy.next_name(pattern, existing, taken)
        validate_name(name)
        if name in existing:
            raise Conflict(f"Snapshot {name!r} of volume {vol.name!r} already exists")
        if expires_at is None:
            expiry = vol.config.get("snapshots.expiry", "")
            expires = timestamp(taken + policy.expiry(expiry)) if expiry else ""
        else:
            expires = parse_expiry_time(expires_at)
        snap = q.VolumeSnapshotRow(
            id=0,
            volume_id=vol.id,
            name=name,
            created_at=timestamp(taken),
            expires_at=expires,
            description=vol.description,
            config={k: v for k, v in vol.config.items() if not k.startswith("volatile.")},
        )
        drv = self.volumes.driver(vol.pool)
        on_pool = disk_name(vol.project, vol.name)
        async with self.volumes.lock(vol.pool, vol.project, vol.name):
            await drv.create_snapshot("custom", on_pool, name)
            try:
                with self.db.transaction():
                    q.insert_volume_snapshot(self.db, snap)
            except BaseException:
                await drv.delete_snapshot("custom", on_pool, name)
                raise
        self.events.lifecycle(
            StorageVolumeAction.SNAPSHOT_CREATED, self._url(vol, name), project=vol.project
        )
        return snap

    def update(
        self, vol: q.VolumeRow, snap: q.VolumeSnapshotRow, description: str, expires_at: str | None
    ) -> None:
        self.check_custom(vol)
        snap.description = description
        if expires_at is not None:
            snap.expires_at = parse_expiry_time(expires_at)
        with self.db.transaction():
            q.update_volume_snapshot(self.db, snap)
        self.events.lifecycle(
            StorageVolumeAction.SNAPSHOT_UPDATED, self._url(vol, snap.name), project=vol.project
        )

    async def rename(self, vol: q.VolumeRow, snap: q.VolumeSnapshotRow, new_name: str) -> None:
        self.check_custom(vol)
        validate_name(new_name)
        if q.find_volume_snapshot(self.db, vol.id, new_name) is not None:
            raise Conflict(f"Snapshot {new_name!r} of volume {vol.name!r} already exists")
        async with self.volumes.lock(vol.pool, vol.project, vol.name):
            await self.volumes.driver(vol.pool).rename_snapshot(
                "custom", disk_name(vol.project, vol.name), snap.name, new_name
            )
            old = snap.name
            snap.name = new_name
            with self.db.transaction():
                q.update_volume_snapshot(self.db, snap)
        self.events.lifecycle(
            StorageVolumeAction.SNAPSHOT_RENAMED,
            self._url(vol, new_name),
            project=vol.project,
            context={"old_name": old},
        )

    async def delete(self, vol: q.VolumeRow, snap: q.VolumeSnapshotRow) -> None:
        self.check_custom(vol)
        async with self.volumes.lock(vol.pool, vol.project, vol.name):
            with self.db.transaction():
                q.delete_volume_snapshot(self.db, snap.id)
            await self.volumes.driver(vol.pool).delete_snapshot(
                "custom", disk_name(vol.project, vol.name), snap.name
            )
        self.events.lifecycle(
            StorageVolumeAction.SNAPSHOT_DELETED, self._url(vol, snap.name), project=vol.project
        )

    # -- the minute round -------------------------------------------------------------------

    async def scheduled(self, minute: datetime) -> None:
        """Take the snapshots due this minute, then delete the expired ones."""
        volumes = q.list_volumes(self.db, None, None)
        for vol in volumes:
            schedule = vol.config.get("snapshots.schedule", "")
            if not schedule or not policy.due(schedule, minute):
                continue
            try:
                await self.create(vol, "", None, minute)
            except Exception:
                log.exception("scheduled snapshot of volume %s failed", vol.name)
        for volume_id, name in q.expired_volume_snapshots(self.db, now()):
            owner = next((v for v in volumes if v.id == volume_id), None)
            snap = q.find_volume_snapshot(self.db, volume_id, name)
            if owner is None or snap is None:
                continue
            try:
                await self.delete(owner, snap)
            except Exception:
                log.exception("expired snapshot %s of volume %s not deleted", name, owner.name)
