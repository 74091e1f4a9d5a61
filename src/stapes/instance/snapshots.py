"""Instance snapshots: take, list, rename, expire, restore, delete; and the once-a-minute round
that takes scheduled snapshots (snapshots.schedule) and prunes expired ones.

A snapshot is a row (the instance's writable fields at that moment) plus a snapshot of the
instance's volume on its pool. A running container is frozen while its volume is copied, so the
snapshot is consistent, as Incus does."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from stapes.api.base import StatusCode
from stapes.api.errors import BadRequest, Conflict, NotFound
from stapes.api.instance import InstanceSnapshotPut, InstanceSnapshotsPost
from stapes.api.lifecycle import InstanceAction
from stapes.api.times import ZERO_TIME, now, timestamp
from stapes.config import snapshots as policy
from stapes.config.keys import VOLATILE_PREFIX, value_of
from stapes.config.snapshots import parse_expiry_time, validate_name
from stapes.config.validate import parse_bool
from stapes.db import instances as iq
from stapes.db import snapshots as q
from stapes.db.projects import find_profile
from stapes.instance import power
from stapes.instance.service import InstanceService, url
from stapes.instance.vm.qemu import STATE_FILE
from stapes.project import restrictions
from stapes.runtime.operations import Operation
from stapes.storage.volumes import instance_volume

log = logging.getLogger(__name__)

STATEFUL_REFUSAL = (
    "Stateful snapshots of containers need CRIU to checkpoint the running processes, and this "
    "stapesd has no CRIU support: take a stateless snapshot (without stateful)"
)


def snapshot_url(instance: str, snap: str, project: str = "default") -> str:
    suffix = "" if project == "default" else f"?project={project}"
    return f"/1.0/instances/{instance}/snapshots/{snap}{suffix}"


class SnapshotService:
    def __init__(self, instances: InstanceService) -> None:
        self.instances = instances
        self.db = instances.db
        self.events = instances.events
        self.operations = instances.operations
        self.locks = instances.locks
        self.pools = instances.pools
        self.minute_hooks: list[Callable[[datetime], Awaitable[None]]] = []
        """More work for the minute round (volume snapshots)."""
        instances.started_hooks.append(self.at_start)

    # -- reading ----------------------------------------------------------------------------

    def list_snapshots(self, row: iq.InstanceRow) -> list[q.SnapshotRow]:
        return q.list_snapshots(self.db, row.id)

    def render_all(self, row: iq.InstanceRow) -> list[dict[str, Any]]:
        """Every snapshot of ``row`` rendered, oldest first, for reading only (see
        render_each)."""
        return self.render_each(row, q.snapshots_to_show(self.db, row.id))

    def render_each(self, row: iq.InstanceRow, snaps: list[q.SnapshotRow]) -> list[dict[str, Any]]:
        """``snaps`` rendered; those that share their config, devices and profiles objects
        (q.snapshots_to_show) share their expansion too, so nothing may change them."""
        expanded: dict[tuple[int, int, int], tuple[dict[str, str], dict[str, Any]]] = {}
        rendered = []
        for snap in snaps:
            key = (id(snap.profiles), id(snap.config), id(snap.devices))
            if key not in expanded:
                expanded[key] = self.instances.expand_parts(
                    row.project, snap.profiles, snap.config, snap.devices
                )
            rendered.append(self._render(snap, *expanded[key]))
        return rendered

    def names(self, row: iq.InstanceRow) -> list[str]:
        return q.snapshot_names(self.db, row.id)

    def get(self, row: iq.InstanceRow, name: str) -> q.SnapshotRow:
        return q.get_snapshot(self.db, row.id, row.name, name)

    def render(self, row: iq.InstanceRow, snap: q.SnapshotRow) -> dict[str, Any]:
        config, devices = self.instances.expand_parts(
            row.project, snap.profiles, snap.config, snap.devices
        )
        return self._render(snap, config, devices)

    @staticmethod
    def _render(
        snap: q.SnapshotRow, config: dict[str, str], devices: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "architecture": snap.architecture,
            "config": snap.config,
            "created_at": snap.created_at,
            "devices": snap.devices,
            "ephemeral": snap.ephemeral,
            "expanded_config": config,
            "expanded_devices": devices,
            "expires_at": snap.expires_at or ZERO_TIME,
            "last_used_at": snap.last_used_at or ZERO_TIME,
            "name": snap.name,
            "profiles": snap.profiles,
            "size": -1,  # the dir driver has no per-volume usage (as Incus's dir without quotas)
            "stateful": snap.stateful,
        }

    @staticmethod
    def writable(snap: q.SnapshotRow) -> dict[str, Any]:
        return {"expires_at": snap.expires_at or ZERO_TIME}

    # -- create -----------------------------------------------------------------------------

    def _operation(
        self,
        act: Callable[[Operation], Awaitable[None]],
        description: str,
        row: iq.InstanceRow,
        snap: str,
    ) -> Operation:
        """A background operation on one snapshot (its instance and its URL as resources)."""
        return self.operations.start(
            act,
            description=description,
            project=row.project,
            resources={
                "instances": [url(row.name, row.project)],
                "instances_snapshots": [snapshot_url(row.name, snap, row.project)],
            },
        )

    def create(self, row: iq.InstanceRow, req: InstanceSnapshotsPost) -> Operation:
        if req.stateful and row.type != "virtual-machine":
            raise BadRequest(STATEFUL_REFUSAL)
        if req.stateful:
            power.check_stateful(self.instances, row)
        restrictions.check_snapshot(self.instances.db, row.project)
        config = self.instances.expand(row)[0]
        name = req.name or policy.next_name(
            value_of(config, "snapshots.pattern"),
            (s.name for s in self.list_snapshots(row)),
            now(),
        )
        validate_name(name)
        if q.find_snapshot(self.db, row.id, name) is not None:
            raise Conflict(f"Snapshot {name!r} of instance {row.name!r} already exists")
        expires_at = None if req.expires_at is None else parse_expiry_time(req.expires_at)

        async def act(op: Operation) -> None:
            async with self.locks(row.project, row.name):
                current = self.instances.get(row.project, row.name)
                if req.stateful and not await self.instances.is_running(current):
                    raise BadRequest(
                        "A stateful snapshot needs the instance running: start it first"
                    )
                await self.take(current, name, expires_at, stateful=req.stateful)

        return self._operation(act, "Snapshotting instance", row, name)

    async def take(
        self,
        row: iq.InstanceRow,
        name: str,
        expires_at: str | None = None,
        *,
        stateful: bool = False,
    ) -> q.SnapshotRow:
        """Snapshot an instance now (the caller holds its lock). ``expires_at`` None applies
        snapshots.expiry. ``stateful`` (VMs): QEMU's state goes into the snapshot too."""
        if q.find_snapshot(self.db, row.id, name) is not None:
            raise Conflict(f"Snapshot {name!r} of instance {row.name!r} already exists")
        taken = now()
        if expires_at is None:
            expiry = value_of(self.instances.expand(row)[0], "snapshots.expiry")
            expires_at = timestamp(taken + policy.expiry(expiry)) if expiry else ""
        snap = q.SnapshotRow(
            id=0,
            instance_id=row.id,
            name=name,
            architecture=row.architecture,
            created_at=timestamp(taken),
            expires_at=expires_at,
            description=row.description,
            ephemeral=row.ephemeral,
            config=dict(row.config),
            devices=row.devices,
            profiles=row.profiles,
            stateful=stateful,
        )
        drv = self.pools.driver(row.pool)
        volume = drv.volume_path(*instance_volume(row))
        async with power.frozen(self.instances, row):
            if stateful:
                await power.save_state(self.instances, row, volume / STATE_FILE)
            try:
                await drv.create_snapshot(*instance_volume(row), name)
            finally:
                (volume / STATE_FILE).unlink(missing_ok=True)
        try:
            with self.db.transaction():
                q.insert_snapshot(self.db, snap)
        except BaseException:
            await drv.delete_snapshot(*instance_volume(row), name)
            raise
        self.events.lifecycle(
            InstanceAction.SNAPSHOT_CREATED,
            snapshot_url(row.name, name, row.project),
            project=row.project,
        )
        return snap

    # -- update, rename, delete -------------------------------------------------------------

    def update(
        self, row: iq.InstanceRow, snap: q.SnapshotRow, put: InstanceSnapshotPut
    ) -> Operation:
        expires_at = None if put.expires_at is None else parse_expiry_time(put.expires_at)

        async def act(op: Operation) -> None:
            async with self.locks(row.project, row.name):
                current = self.get(row, snap.name)
                if expires_at is not None:
                    current.expires_at = expires_at
                with self.db.transaction():
                    q.update_snapshot(self.db, current)
                self.events.lifecycle(
                    InstanceAction.SNAPSHOT_UPDATED,
                    snapshot_url(row.name, snap.name, row.project),
                    project=row.project,
                )

        return self._operation(act, "Updating snapshot", row, snap.name)

    def rename(self, row: iq.InstanceRow, snap: q.SnapshotRow, new_name: str) -> Operation:
        validate_name(new_name)
        if q.find_snapshot(self.db, row.id, new_name) is not None:
            raise Conflict(f"Name '{row.name}/{new_name}' already in use")

        async def act(op: Operation) -> None:
            async with self.locks(row.project, row.name):
                current = self.get(row, snap.name)
                drv = self.pools.driver(row.pool)
                await drv.rename_snapshot(*instance_volume(row), snap.name, new_name)
                current.name = new_name
                try:
                    with self.db.transaction():
                        q.update_snapshot(self.db, current)
                except BaseException:
                    await drv.rename_snapshot(*instance_volume(row), new_name, snap.name)
                    raise
                self.events.lifecycle(
                    InstanceAction.SNAPSHOT_RENAMED,
                    snapshot_url(row.name, new_name, row.project),
                    project=row.project,
                    context={"old_name": f"{row.name}/{snap.name}"},
                )

        return self._operation(act, "Renaming snapshot", row, snap.name)

    def delete(self, row: iq.InstanceRow, snap: q.SnapshotRow) -> Operation:
        async def act(op: Operation) -> None:
            async with self.locks(row.project, row.name):
                await self.remove(row, self.get(row, snap.name))

        return self._operation(act, "Deleting snapshot", row, snap.name)

    async def remove(self, row: iq.InstanceRow, snap: q.SnapshotRow) -> None:
        """Delete a snapshot now (the caller holds the instance's lock)."""
        with self.db.transaction():
            q.delete_snapshot(self.db, snap.id)
        await self.pools.driver(row.pool).delete_snapshot(*instance_volume(row), snap.name)
        self.events.lifecycle(
            InstanceAction.SNAPSHOT_DELETED,
            snapshot_url(row.name, snap.name, row.project),
            project=row.project,
        )

    # -- restore ----------------------------------------------------------------------------

    def restore(self, row: iq.InstanceRow, name: str, stateful: bool) -> Operation:
        """Put the instance back as it was: its volume, config, devices and profiles. A running
        instance is stopped (forced) for it and started again after, as in Incus. ``stateful``
        (a VM's stateful snapshot): it resumes where the snapshot was taken."""
        if stateful and row.type != "virtual-machine":
            raise BadRequest(STATEFUL_REFUSAL)
        owner, _, snap_name = name.rpartition("/")
        if owner and owner != row.name:
            raise BadRequest(f"Snapshot {name!r} belongs to another instance than {row.name!r}")
        name = snap_name
        found = self.get(row, name)  # a missing snapshot is a 404 before any operation
        if stateful and not found.stateful:
            raise BadRequest(f"Snapshot {name!r} is not stateful: restore it without stateful")

        async def act(op: Operation) -> None:
            async with self.locks(row.project, row.name):
                current = self.instances.get(row.project, row.name)
                snap = self.get(current, name)
                was_running = (await self.instances.status(current)).status != StatusCode.STOPPED
                if was_running:
                    await power.stop_unlocked(self.instances, current, force=True, timeout=-1)
                drv = self.pools.driver(current.pool)
                await drv.restore_snapshot(*instance_volume(current), snap.name)
                state = drv.volume_path(*instance_volume(current)) / STATE_FILE
                if not stateful:  # a stateless restore of a stateful snapshot boots afresh
                    state.unlink(missing_ok=True)
                current.config = {
                    **{k: v for k, v in snap.config.items() if not k.startswith(VOLATILE_PREFIX)},
                    **{k: v for k, v in current.config.items() if k.startswith(VOLATILE_PREFIX)},
                }
                # the restored files are shifted as they were when the snapshot was taken
                for key in ("volatile.idmap.current", "volatile.idmap.base"):
                    if key in snap.config:
                        current.config[key] = snap.config[key]
                # its place in time changed: a new generation (a VM's vmgenid tells the guest)
                current.config["volatile.uuid.generation"] = str(uuid.uuid4())
                current.devices = snap.devices
                current.profiles = [
                    p for p in snap.profiles if find_profile(self.db, current.project, p)
                ]
                current.architecture = snap.architecture
                current.ephemeral = snap.ephemeral
                current.description = snap.description
                with self.db.transaction():
                    iq.update_instance(self.db, current)
                self.events.lifecycle(
                    InstanceAction.RESTORED,
                    url(current.name, current.project),
                    project=current.project,
                    context={"snapshot": f"{current.name}/{snap.name}"},
                )
                if was_running or stateful:
                    await power.start_unlocked(self.instances, current)

        return self.instances.instance_operation(act, "Restoring snapshot", row.project, row.name)

    # -- the scheduled round ----------------------------------------------------------------

    async def run_schedule(self) -> None:
        """Every minute, on the minute: scheduled snapshots, then expired ones pruned."""
        while True:
            moment = datetime.now(UTC)
            await asyncio.sleep(60 - moment.second - moment.microsecond / 1e6 + 0.01)
            minute = datetime.now(UTC)
            for tick in (self.tick, *self.minute_hooks):
                try:
                    await tick(minute)
                except Exception:
                    log.exception("the scheduled snapshot round failed")

    async def tick(self, minute: datetime) -> None:
        for row in self.instances.local_instances():
            config = self.instances.expand(row)[0]
            schedule = config.get("snapshots.schedule", "")
            try:
                if not schedule or not policy.due(schedule, minute):
                    continue
            except ValueError:
                continue
            await self._scheduled(row, config)
        for instance_id, name in q.expired(self.db, minute):
            owner = iq.find_instance_by_id(self.db, instance_id)
            if owner is None:
                continue
            async with self.locks(owner.project, owner.name):
                snap = q.find_snapshot(self.db, instance_id, name)
                if snap is not None:
                    log.info("snapshot %s/%s expired: deleting it", owner.name, name)
                    await self.remove(owner, snap)

    async def _scheduled(self, row: iq.InstanceRow, config: dict[str, str]) -> None:
        running = (await self.instances.status(row)).status != StatusCode.STOPPED
        if not running and not parse_bool(value_of(config, "snapshots.schedule.stopped")):
            return
        async with self.locks(row.project, row.name):
            await self._take_scheduled(self.instances.get(row.project, row.name), config)

    async def at_start(self, row: iq.InstanceRow) -> None:
        """snapshots.schedule @startup: a snapshot each time the instance starts (its lock is
        held by the start)."""
        config = self.instances.expand(row)[0]
        if policy.at_startup(config.get("snapshots.schedule", "")):
            await self._take_scheduled(row, config)

    async def _take_scheduled(self, current: iq.InstanceRow, config: dict[str, str]) -> None:
        """A snapshot named by snapshots.pattern; a failure is logged, never raised."""
        try:
            name = policy.next_name(
                value_of(config, "snapshots.pattern"),
                (s.name for s in self.list_snapshots(current)),
                now(),
            )
            validate_name(name)
            await self.take(current, name)
        except (NotFound, BadRequest, Conflict) as exc:
            log.warning("scheduled snapshot of %s skipped: %s", current.name, exc)
        except Exception:
            log.exception("scheduled snapshot of %s failed", current.name)
