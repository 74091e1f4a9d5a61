"""Instance backups: export an instance (and its snapshots) as an Incus backup tarball, keep it
until deleted or expired, and make a new instance from such a tarball (``stapes import``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stapes.api.architecture import architecture_name
from stapes.api.backup import BackupsPost
from stapes.api.errors import BadRequest, Conflict, NotFound
from stapes.api.lifecycle import InstanceAction
from stapes.api.times import ZERO_TIME, now, timestamp
from stapes.api.urls import instance_url
from stapes.config.keys import VOLATILE_PREFIX, valid, validate_instance_config
from stapes.db import backups as bq
from stapes.db import instances as q
from stapes.db import snapshots as sq
from stapes.db.projects import get_profile, get_project
from stapes.db.storage import find_pool, get_pool
from stapes.host.idmap import IdMap, current_map
from stapes.instance import create, names
from stapes.project import restrictions
from stapes.runtime.membership import shown_location
from stapes.runtime.operations import Operation
from stapes.storage.backups import index as backup_index
from stapes.storage.backups import tarball, volume_io
from stapes.storage.backups.index import block_yaml, dump_yaml
from stapes.storage.backups.records import BackupRecords
from stapes.storage.volumes import instance_volume

if TYPE_CHECKING:
    from stapes.instance.profiles import ProfileService
    from stapes.instance.service import InstanceService
    from stapes.instance.snapshots import SnapshotService
    from stapes.storage.volumes import Volumes

DAEMON_FILES = ("config",)
"""What stapesd keeps in an instance volume besides the instance's own files: liblxc's config
(another daemon's liblxc would read it as the container's)."""
BACKUP_FILE = "backup.yaml"
IDMAP_KEYS = ("volatile.idmap.base", "volatile.idmap.current", "volatile.idmap.next")


def backup_url(instance: str, backup: str, project: str = "default") -> str:
    suffix = "" if project == "default" else f"?project={project}"
    return f"/1.0/instances/{instance}/backups/{backup}{suffix}"


class InstanceBackups:
    def __init__(
        self,
        instances: InstanceService,
        snapshots: SnapshotService,
        profiles: ProfileService,
        volumes: Volumes,
    ) -> None:
        self.instances = instances
        self.snapshots = snapshots
        self.profiles = profiles
        self.volumes = volumes
        self.db = instances.db
        self.records = BackupRecords(instances.db, instances.paths, "instance")

    # -- reading ------------------------------------------------------------------------------

    def list_backups(self, row: q.InstanceRow) -> list[bq.BackupRow]:
        return self.records.list_backups(row.id)

    def get(self, row: q.InstanceRow, name: str) -> bq.BackupRow:
        return self.records.get(row.id, name)

    def render(self, backup: bq.BackupRow) -> dict[str, Any]:
        return self.records.render(backup)

    def _operation(self, act: Any, description: str, row: q.InstanceRow, backup: str) -> Operation:
        return self.instances.operations.start(
            act,
            description=description,
            project=row.project,
            resources={
                "instances": [instance_url(row.name, row.project)],
                "backups": [backup_url(row.name, backup, row.project)],
            },
        )

    def _event(self, action: InstanceAction, row: q.InstanceRow, backup: str, **ctx: str) -> None:
        self.instances.events.lifecycle(
            action, backup_url(row.name, backup, row.project), project=row.project, context=ctx
        )

    # -- export -------------------------------------------------------------------------------

    def create(self, row: q.InstanceRow, req: BackupsPost) -> Operation:
        restrictions.check_backup(self.instances.db, row.project)
        if row.type != "container":
            raise BadRequest("Backups of VMs are not supported by this stapesd yet")
        drv = self.instances.pools.usable_driver(row.pool)
        optimized = req.optimized_storage and drv.info().optimized_backups
        backup = self.records.new_row(row.id, req, optimized)

        async def act(op: Operation) -> None:
            async with self.instances.locks(row.project, row.name):
                current = self.instances.get(row.project, row.name)
                self.records.insert(backup)
                try:
                    await self._write(current, backup)
                except BaseException:
                    await self.records.delete(backup)
                    raise
            self._event(InstanceAction.BACKUP_CREATED, current, backup.name)

        return self._operation(act, "Backing up instance", row, backup.name)

    async def _write(self, row: q.InstanceRow, backup: bq.BackupRow) -> None:
        drv = self.instances.pools.driver(row.pool)
        snaps = [] if backup.without_snapshots else self.snapshots.list_snapshots(row)
        config = await self.index_config(row, snaps)
        index = backup_index.BackupIndex(
            name=row.name,
            backend=drv.info().name,
            pool=row.pool,
            type=row.type,
            snapshots=[s.name for s in snaps],
            optimized=backup.optimized,
            optimized_header=backup.optimized,
            config=config,
        )
        vol_type, on_pool = instance_volume(row)
        source = volume_io.VolumeSource(
            driver=drv,
            vol_type=vol_type,
            name=on_pool,
            idmap=current_map(row.config),
            snapshots=[(s.name, current_map(s.config)) for s in snaps],
            exclude=DAEMON_FILES,
        )
        extra = {} if backup.optimized else self._backup_files(config, snaps)
        await volume_io.export(source, index, self.records.file(backup), backup.compression, extra)

    @staticmethod
    def _backup_files(config: dict[str, Any], snaps: list[sq.SnapshotRow]) -> dict[str, str]:
        """backup.yaml in the instance's tree and in each snapshot's, as Incus writes them."""
        files = {f"backup/container/{BACKUP_FILE}": dump_yaml(config)}
        for snap, rendered in zip(snaps, config.get("snapshots") or [], strict=False):
            container = config["container"]
            own = {
                "container": {**container, **rendered, "name": container["name"]},
                "pool": config["pool"],
                "profiles": config["profiles"],
                "volume": config["volume"],
            }
            member = f"backup/snapshots/{snap.name}/{BACKUP_FILE}"
            files[member] = dump_yaml(own)
        return files

    async def index_config(self, row: q.InstanceRow, snaps: list[sq.SnapshotRow]) -> dict[str, Any]:
        """The instance, its snapshots, pool, profiles and volume as the wire shows them: what
        a later import rebuilds the instance from."""
        container = self.instances.render(row, await self.instances.status(row))
        volume = {
            "config": {},
            "description": "",
            "name": row.name,
            "type": row.type,
            "used_by": [],
            "location": shown_location(row.location),
            "content_type": "filesystem",
            "project": row.project,
            "created_at": row.created_at,
        }
        config: dict[str, Any] = {"container": container}
        if snaps:
            config["snapshots"] = self.snapshots.render_each(row, snaps)
        config["pool"] = self.instances.pools.render(get_pool(self.db, row.pool))
        config["profiles"] = [
            self.profiles.render(get_profile(self.db, row.project, p)) for p in row.profiles
        ]
        config["volume"] = volume
        if snaps:
            config["volume_snapshots"] = [
                {
                    "description": "",
                    "expires_at": s.expires_at or ZERO_TIME,
                    "name": s.name,
                    "config": {},
                    "content_type": "filesystem",
                    "created_at": s.created_at,
                }
                for s in snaps
            ]
        return config

    async def write_backup_file(self, row: q.InstanceRow) -> None:
        """backup.yaml in the instance's volume, as Incus keeps it: what ``recover`` reads
        back after a database loss. Replaced whole (a reader never sees half a file)."""
        volume = self.instances.pools.driver(row.pool).volume_path(*instance_volume(row))
        if not volume.is_dir():
            return
        data = await self.index_config(row, sq.snapshots_to_show(self.db, row.id))
        text = await asyncio.to_thread(block_yaml, data)  # 3,000 snapshots: PyYAML took 1.5 s
        partial = volume / f".{BACKUP_FILE}.partial"
        partial.write_text(text)
        partial.chmod(0o600)
        partial.rename(volume / BACKUP_FILE)

    def export_file(self, row: q.InstanceRow, backup: bq.BackupRow) -> Path:
        path = self.records.existing_file(backup)
        self._event(InstanceAction.BACKUP_RETRIEVED, row, backup.name)
        return path

    # -- rename, delete, expiry -----------------------------------------------------------------

    def rename(self, row: q.InstanceRow, backup: bq.BackupRow, new_name: str) -> Operation:
        self.records.check_name(row.id, new_name)

        async def act(op: Operation) -> None:
            self.records.rename(backup, new_name)
            self._event(InstanceAction.BACKUP_RENAMED, row, new_name, old_name=backup.name)

        return self._operation(act, "Renaming instance backup", row, backup.name)

    def delete(self, row: q.InstanceRow, backup: bq.BackupRow) -> Operation:
        async def act(op: Operation) -> None:
            await self.records.delete(backup)
            self._event(InstanceAction.BACKUP_DELETED, row, backup.name)

        return self._operation(act, "Deleting instance backup", row, backup.name)

    # -- import -------------------------------------------------------------------------------

    async def import_archive(self, archive: Path, project: str, name: str, pool: str) -> Operation:
        """Check the tarball and what it needs here (before anything is made), then make the
        instance in the background; the archive is removed when done either way."""
        try:
            index = backup_index.parse(await tarball.read_index(archive))
            row = self.import_row(index, project, name, pool, keep_ids=index.optimized)
            # what the backup asks for is admitted as if the client had asked it directly
            self.instances.check_project(
                project, row.name, row.type, row.profiles, row.config, row.devices
            )
            volume_io.check_restorable(self.instances.pools.usable_driver(row.pool), index)
        except BaseException:
            archive.unlink(missing_ok=True)
            raise
        svc = self.instances
        config = svc.expand(row)[0]
        idmap: IdMap | None
        if index.optimized:  # the streams keep the ids they were sent with
            idmap = current_map(row.config)
        else:
            idmap = svc.choose_idmap(row, config)
            create.set_idmap(row, idmap)
        snapshot_rows = {
            s: self.snapshot_row(index, s, row, idmap, keep_ids=index.optimized)
            for s in index.snapshots
        }

        async def add_snapshot(target: q.InstanceRow, snap: str) -> None:
            snap_row = snapshot_rows[snap]
            snap_row.instance_id = target.id
            with self.db.transaction():
                sq.insert_snapshot(self.db, snap_row)

        async def fill(op: Operation, target: q.InstanceRow) -> None:
            op.progress("create_instance_from_backup", 0, 0, "Restoring backup")
            drv = svc.pools.usable_driver(target.pool)
            await volume_io.restore(
                drv,
                *instance_volume(target),
                index,
                archive,
                idmap,
                lambda snap: add_snapshot(target, snap),
            )

        async def act(op: Operation) -> None:
            try:
                async with svc.locks(project, row.name):
                    await create.create_instance(svc, op, row, fill, trigger=None, start=False)
            finally:
                archive.unlink(missing_ok=True)

        return svc.instance_operation(act, "Restoring backup", project, row.name)

    def import_row(
        self,
        index: backup_index.BackupIndex,
        project: str,
        name: str,
        pool: str,
        *,
        keep_ids: bool,
        pool_recorded: bool = True,
    ) -> q.InstanceRow:
        """The instance a backup (or a volume's backup.yaml) describes, checked against this
        server (name free, pool, profiles, config). ``keep_ids``: its files still have the ids
        its volatile.idmap keys say (optimized streams, recovered volumes); otherwise they are
        dropped, for a new map. ``pool_recorded`` False: the pool is being recovered too."""
        if index.type != "container":
            raise BadRequest(
                f"This is a backup of a {index.type}: stapesd imports container backups "
                "(virtual machines are not supported yet)"
            )
        svc = self.instances
        get_project(self.db, project)
        source: dict[str, Any] = index.config["container"]
        name = name or index.name
        names.validate(name)
        if q.find_instance(self.db, project, name) is not None:
            raise Conflict(f"Instance {name!r} already exists")
        pool = pool or index.pool
        if pool_recorded and find_pool(self.db, pool) is None:
            raise BadRequest(
                f"Storage pool {pool!r} (where the backup came from) does not exist here: "
                "choose one with --storage"
            )
        profiles = [str(p) for p in source.get("profiles") or []]
        for profile in profiles:
            try:
                get_profile(self.db, project, profile)
            except NotFound:
                raise BadRequest(
                    f"The backup uses profile {profile!r}, which project {project!r} lacks: "
                    "create it first"
                ) from None
        config = {str(k): str(v) for k, v in (source.get("config") or {}).items()}
        config["volatile.last_state.power"] = "STOPPED"
        local = {k: v for k, v in config.items() if not k.startswith(VOLATILE_PREFIX)}
        volatile = {
            k: v for k, v in config.items() if k.startswith(VOLATILE_PREFIX) and valid(k, v)
        }  # the state Incus records that stapesd does not know (or a forged value) is dropped
        validate_instance_config(local, "container")
        try:
            architecture = architecture_name(str(source.get("architecture") or ""))
        except ValueError as exc:
            raise BadRequest(f"Invalid backup: {exc}") from None
        row = q.InstanceRow(
            id=0,
            project=project,
            name=name,
            type="container",
            architecture=architecture,
            pool=pool,
            created_at=str(source.get("created_at") or timestamp(now())),
            description=str(source.get("description") or ""),
            ephemeral=bool(source.get("ephemeral")),
            stateful=False,
            config={**local, **volatile},
            devices=self.instances.devices_on_pool(
                source.get("devices") or {}, profiles, project, pool
            ),
            profiles=profiles,
        )
        svc.check_devices(row.devices, "container", project)
        if not row.architecture:
            raise BadRequest("Invalid backup: the instance has no architecture")
        if not keep_ids:
            for key in IDMAP_KEYS:
                row.config.pop(key, None)
        return row

    def snapshot_row(
        self,
        index: backup_index.BackupIndex,
        snap: str,
        row: q.InstanceRow,
        idmap: IdMap | None,
        *,
        keep_ids: bool,
    ) -> sq.SnapshotRow:
        entry = index.snapshot_config("snapshots", snap)
        config = {str(k): str(v) for k, v in (entry.get("config") or row.config).items()}
        if not keep_ids:
            for key in IDMAP_KEYS:
                config.pop(key, None)
            config |= create.idmap_keys(idmap)
        devices = entry.get("devices") or {}
        return sq.SnapshotRow(
            id=0,
            instance_id=0,
            name=snap,
            architecture=_architecture(entry.get("architecture"), row.architecture),
            created_at=str(entry.get("created_at") or timestamp(now())),
            expires_at=BackupRecords.stored_time(entry.get("expires_at")),
            description=str(entry.get("description") or ""),
            stateful=False,
            config=config,
            devices=self.instances.devices_on_pool(devices, row.profiles, row.project, row.pool),
            profiles=[str(p) for p in entry.get("profiles") or row.profiles],
        )


def _architecture(value: object, fallback: str) -> str:
    """A snapshot's architecture from a backup, as a name (the instance's when it names none
    that is known)."""
    try:
        return architecture_name(str(value or "")) or fallback
    except ValueError:
        return fallback
