"""Recovery after a database loss (``stapes admin recover``, ``incus admin recover``): scan the
pools for instance and custom volumes the database does not know, then record them again, the
instances from the backup.yaml each volume keeps (see backup_file.py), the custom volumes with
their snapshots. Nothing on the pools is changed: a failed recovery only leaves rows out."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import yaml

from stapes.api.base import StatusCode
from stapes.api.errors import BadRequest, NotFound, StapesError
from stapes.api.lifecycle import InstanceAction
from stapes.api.times import timestamp
from stapes.api.urls import instance_url
from stapes.db import instances as q
from stapes.db import snapshots as sq
from stapes.db import storage as vq
from stapes.db.projects import get_project
from stapes.host.idmap import current_map
from stapes.host.paths import instance_entry
from stapes.instance import power
from stapes.instance.backups import BACKUP_FILE, InstanceBackups
from stapes.storage.backups import index as backup_index
from stapes.storage.drivers.driver import StorageDriver
from stapes.storage.volumes import disk_name

if TYPE_CHECKING:
    from stapes.storage.volumes import Volumes

log = logging.getLogger(__name__)


@dataclass
class Found:
    """A volume on a pool that the database lacks."""

    pool: str
    project: str
    type: str  # container | custom
    name: str
    snapshots: list[str]
    backup: backup_index.BackupIndex | None = None
    """For an instance: its backup.yaml, read as a backup index."""

    def render(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "pool": self.pool,
            "project": self.project,
            "snapshotCount": len(self.snapshots),
        }


@dataclass
class Scan:
    found: list[Found] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def render(self) -> dict[str, Any]:
        return {
            "unknownVolumes": [f.render() for f in self.found],
            "dependencyErrors": self.errors,
        }


class Recovery:
    def __init__(self, backups: InstanceBackups, volumes: Volumes) -> None:
        self.backups = backups
        self.instances = backups.instances
        self.volumes = volumes
        self.db = backups.db

    def _has_project(self, name: str) -> bool:
        try:
            get_project(self.db, name)
        except NotFound:
            return False
        return True

    def scan(self, extra: list[StorageDriver] | None = None) -> Scan:
        """Every pool's unknown volumes, and what stops each from being recovered. ``extra``:
        pools the database lost, mounted for the scan."""
        scan = Scan()
        drivers = list(extra or [])
        for pool in vq.list_pools(self.db):
            try:
                drivers.append(self.instances.pools.usable_driver(pool.name))
            except BadRequest as exc:
                scan.errors.append(f"Storage pool {pool.name!r} is unavailable: {exc.message}")
        for drv in drivers:
            self._scan_instances(drv, scan, recorded=drv not in (extra or []))
            self._scan_custom(drv.pool_name, drv, scan)
        return scan

    def _scan_instances(self, drv: StorageDriver, scan: Scan, *, recorded: bool) -> None:
        pool = drv.pool_name
        known = {
            instance_entry(r.project, r.name)
            for r in q.list_instances(self.db, None)
            if r.pool == pool
        }
        for entry in _entries(drv.pool_path / "containers"):
            if entry in known:
                continue
            path = drv.volume_path("containers", entry) / BACKUP_FILE
            try:
                config = yaml.safe_load(path.read_text())
                index = backup_index.parse({"name": entry, "type": "container", "config": config})
                container = index.config["container"]
                project = str(container.get("project") or "default")
                name = str(container.get("name") or entry)
                if instance_entry(project, name) != entry:  # the volume is keyed by both
                    raise BadRequest(f"it describes {name!r} of project {project!r}")
            except (OSError, yaml.YAMLError, BadRequest, ValueError) as exc:
                scan.errors.append(
                    f"Instance volume {entry!r} on pool {pool!r} has no usable {BACKUP_FILE} "
                    f"({exc}): it cannot be recovered"
                )
                continue
            snaps = [
                str(s.get("name"))
                for s in index.config.get("snapshots") or []
                if drv.snapshot_path("containers", entry, str(s.get("name"))).exists()
            ]
            index.snapshots = snaps
            found = Found(pool, project, "container", name, snaps, index)
            error = self._instance_problem(found, recorded)
            if error:
                scan.errors.append(error)
            else:
                scan.found.append(found)

    def _instance_problem(self, found: Found, pool_recorded: bool) -> str:
        assert found.backup is not None
        if not self._has_project(found.project):
            return f"Instance {found.name!r} needs project {found.project!r}: create it first"
        try:
            self.backups.import_row(
                found.backup,
                found.project,
                found.name,
                found.pool,
                keep_ids=True,
                pool_recorded=pool_recorded,
            )
        except StapesError as exc:
            return f"Instance {found.name!r} on pool {found.pool!r}: {exc.message}"
        return ""

    def _scan_custom(self, pool: str, drv: StorageDriver, scan: Scan) -> None:
        known = {(v.project, v.name) for v in vq.list_volumes(self.db, pool, None)}
        for disk in _entries(drv.pool_path / "custom"):
            project, sep, name = disk.partition("_")
            if not sep or (project, name) in known:
                continue
            if not self._has_project(project):
                scan.errors.append(f"Custom volume {name!r} needs project {project!r}")
                continue
            snaps = _entries(drv.pool_path / "custom-snapshots" / disk)
            scan.found.append(Found(pool, project, "custom", name, snaps))

    async def recover(self, extra: list[StorageDriver] | None = None) -> Scan:
        """Record the ``extra`` pools and every volume the scan found (refusing all if
        anything has a problem)."""
        scan = self.scan(extra)
        if scan.errors:
            raise BadRequest("Cannot recover: " + "; ".join(scan.errors))
        for drv in extra or []:
            self.instances.pools.record_existing(drv)
        for found in scan.found:
            if found.type == "container":
                await self._recover_instance(found)
            else:
                await self._recover_volume(found)
        return scan

    async def _recover_instance(self, found: Found) -> None:
        assert found.backup is not None
        svc = self.instances
        row = self.backups.import_row(
            found.backup, found.project, found.name, found.pool, keep_ids=True
        )
        snaps = [
            self.backups.snapshot_row(found.backup, s, row, current_map(row.config), keep_ids=True)
            for s in found.snapshots
        ]
        row.location = svc.membership.name
        with self.db.transaction():
            q.insert_instance(self.db, row)
            for snap in snaps:
                snap.instance_id = row.id
                sq.insert_snapshot(self.db, snap)
        spec = svc.spec(row)
        driver = svc.drivers.get(row.type)
        await driver.adopt(spec)
        state = await driver.status(spec)
        running = state.status != StatusCode.STOPPED
        await power.set_power(svc, row, "RUNNING" if running else "STOPPED")
        if running:
            svc.watcher.watch(row.project, row.name, state.pid)
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
        log.info("recovered instance %s (project %s) from pool %s", row.name, row.project, row.pool)

    async def _recover_volume(self, found: Found) -> None:
        drv = self.instances.pools.driver(found.pool)
        disk = disk_name(found.project, found.name)
        row = vq.VolumeRow(
            id=0,
            pool=found.pool,
            project=found.project,
            name=found.name,
            type="custom",
            content_type="block" if drv.block_path("custom", disk).exists() else "filesystem",
            created_at=_mtime(drv.volume_path("custom", disk)),
        )
        snaps = [
            vq.VolumeSnapshotRow(
                id=0,
                volume_id=0,
                name=s,
                created_at=_mtime(drv.snapshot_path("custom", disk, s)),
            )
            for s in found.snapshots
        ]
        with self.db.transaction():
            vq.insert_volume(self.db, row)
            for snap in snaps:
                snap.volume_id = row.id
                vq.insert_volume_snapshot(self.db, snap)
        log.info("recovered custom volume %s (project %s) on %s", row.name, row.project, row.pool)


def _entries(directory: Any) -> list[str]:
    """The volume names in a pool directory, oldest first (work in progress, named with a
    leading dot or a ``.partial`` suffix, left out)."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    usable = [
        e
        for e in entries
        if e.is_dir(follow_symlinks=False)
        and not e.name.startswith(".")
        and not e.name.endswith(".partial")
    ]
    return [e.name for e in sorted(usable, key=lambda e: (e.stat().st_mtime, e.name))]


def _mtime(path: Any) -> str:
    return timestamp(datetime.fromtimestamp(os.stat(path).st_mtime, UTC))
