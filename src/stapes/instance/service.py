"""Instance orchestration: validate (pure) -> check prerequisites (read-only) -> act, with an undo
for every side effect. Owns the instance rows; drivers see only InstanceSpec."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import platform
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from stapes.api.base import StatusCode
from stapes.api.errors import BadRequest, Conflict, NotFound
from stapes.api.instance import InstanceSource, InstancesPost
from stapes.api.lifecycle import InstanceAction
from stapes.api.times import now, timestamp
from stapes.api.urls import instance_url
from stapes.config.keys import effective_config, validate_instance_config, value_of, without_empty
from stapes.config.server_keys import server_value
from stapes.config.validate import parse_bool
from stapes.db import instances as q
from stapes.db.connection import Database
from stapes.db.projects import expand_profiles, get_profile, get_project, get_target_project
from stapes.db.server_config import get_config
from stapes.host.idmap import IdMap, current_map
from stapes.host.paths import Paths, instance_entry, move_instance_dir
from stapes.images import remote_fetch
from stapes.images.store import ImageStore
from stapes.instance import (
    admission,
    copy,
    create,
    idmaps,
    migrate,
    names,
    power,
    root_disk,
)
from stapes.instance import rebuild as rebuilding
from stapes.instance import types as instance_types
from stapes.instance.devices import plan as device_plan
from stapes.instance.devices.device import DeviceContext
from stapes.instance.devices.nic import fill_volatile
from stapes.instance.driver import InstanceDriver, InstanceSpec, RuntimeState
from stapes.instance.power import READY_KEY
from stapes.instance.registry import InstanceDrivers
from stapes.instance.watch import InitWatcher
from stapes.migration.sink import InstanceSink
from stapes.network.service import Networks, ProjectNetworks
from stapes.runtime.events import EventBus
from stapes.runtime.locks import InstanceLocks
from stapes.runtime.membership import Membership, shown_location
from stapes.runtime.operations import Operation, Operations
from stapes.storage.backups.records import BackupRecords
from stapes.storage.drivers.driver import StorageDriver
from stapes.storage.pool import Pools
from stapes.storage.volumes import AttachedVolume, Volumes, instance_volume

log = logging.getLogger(__name__)

AUTORESTART_MAX = 10
"""Restarts boot.autorestart makes within a minute before it gives up."""

Undo = Callable[[], Awaitable[None]]


url = instance_url

DELETABLE = (StatusCode.STOPPED, StatusCode.ERROR)
MAX_KEPT_PATHS = 100_000
"""Instances whose paths are kept at most (the names of deleted ones are forgotten then)."""
"""Error: the driver cannot read the instance's state (an unloadable liblxc config), so it
cannot be running under it; it may still go."""


class InstanceService:
    def __init__(
        self,
        *,
        db: Database,
        paths: Paths,
        events: EventBus,
        operations: Operations,
        locks: InstanceLocks,
        images: ImageStore,
        pools: Pools,
        drivers: InstanceDrivers,
        membership: Membership | None = None,
    ) -> None:
        self.db = db
        self.membership = membership or Membership()
        """This daemon's cluster member: where the instances it creates live."""
        self.paths = paths
        self.events = events
        self.operations = operations
        self.locks = locks
        self.images = images
        self.pools = pools
        self.volumes: Volumes | None = None
        """Custom volumes, for disk devices (set once both services exist)."""
        self.networks: Networks | None = None
        """Managed networks, for nic devices with network= (set once both exist)."""
        self._paths: dict[tuple[StorageDriver, str, str, str], tuple[Path, Path]] = {}
        self.drivers = drivers
        self.watcher = InitWatcher(self._init_exited)
        self.started_hooks: list[Callable[[q.InstanceRow], Awaitable[None]]] = []
        """Run after each start, the instance's lock held (snapshots.schedule @startup)."""
        self.starting_hooks: list[Callable[[q.InstanceRow, InstanceSpec], Awaitable[None]]] = []
        """Run just before the driver starts an instance, its lock held; they may add to what
        the start needs (``spec.run``: the guest API's mount)."""
        self.stopped_hooks: list[Callable[[q.InstanceRow], Awaitable[None]]] = []
        """Run once an instance has stopped, asked to or on its own (or failed to start)."""
        self.changed_hooks: list[
            Callable[[q.InstanceRow, InstanceSpec, InstanceSpec], Awaitable[None]]
        ] = []
        """Run after a config or device change has reached an instance (before, after)."""
        self._restarts: dict[tuple[str, str], list[float]] = {}
        """When boot.autorestart last restarted each instance (the last minute's)."""

    # -- reading ----------------------------------------------------------------------------

    def get(self, project: str, name: str) -> q.InstanceRow:
        get_project(self.db, project)
        return q.get_instance(self.db, project, name)

    def list_instances(self, project: str | None) -> list[q.InstanceRow]:
        if project is not None:
            get_project(self.db, project)
        return q.list_instances(self.db, project)

    def local_instances(self) -> list[q.InstanceRow]:
        """The instances of every project that live on this server (this cluster member)."""
        return q.instances_at(self.db, self.membership.name)

    def expand(self, row: q.InstanceRow) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        return self.expand_parts(row.project, row.profiles, row.config, row.devices)

    def expand_parts(
        self,
        project: str,
        profiles: list[str],
        local_config: dict[str, str],
        local_devices: dict[str, dict[str, str]],
    ) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        """Profiles in order, then the instance's own config and devices on top."""
        return expand_profiles(self.db, project, profiles, local_config, local_devices)

    def spec(self, row: q.InstanceRow) -> InstanceSpec:
        config, devices = self.expand(row)
        return InstanceSpec(
            project=row.project,
            name=row.name,
            type=row.type,
            architecture=row.architecture,
            config=config,
            devices=devices,
            volume=self.pools.driver(row.pool).volume_path(*instance_volume(row)),
            log_dir=self.paths.instance_logs(row.project, row.name),
            idmap=current_map(row.config),
        )

    def status_spec(self, row: q.InstanceRow) -> InstanceSpec:
        """What drivers' status() reads (where the instance lives: project, name, paths),
        without expanding its profiles: for lists."""
        volume, log_dir = self._instance_paths(row)
        return InstanceSpec(
            project=row.project,
            name=row.name,
            type=row.type,
            architecture=row.architecture,
            config=row.config,
            devices=row.devices,
            volume=volume,
            log_dir=log_dir,
            idmap=None,
        )

    def _instance_paths(self, row: q.InstanceRow) -> tuple[Path, Path]:
        """The instance's volume and log directory, kept once made: they follow from its pool
        (the driver object: a pool made again has another), project, name and type alone, and
        lists ask them for every instance."""
        driver = self.pools.driver(row.pool)
        key = (driver, row.project, row.name, row.type)
        found = self._paths.get(key)
        if found is None:
            if len(self._paths) > MAX_KEPT_PATHS:
                self._paths.clear()
            volume = driver.volume_path(*instance_volume(row))
            found = self._paths[key] = (volume, self.paths.instance_logs(row.project, row.name))
        return found

    def choose_idmap(self, row: q.InstanceRow, config: dict[str, str]) -> IdMap | None:
        """The map the instance should run with: the driver's shared one, or an isolated range
        no other instance holds (security.idmap.isolated)."""
        shared = self.drivers.get(row.type).idmap_for(config)

        def held_by_others() -> Iterator[IdMap]:
            """Read only if the instance is isolated (choose iterates it then): not on every
            start of an instance that shares the map."""
            for other in self.local_instances():
                if other.id == row.id and row.id:
                    continue
                held = IdMap.from_volatile(other.config.get("volatile.idmap.next", "[]"))
                held = held.with_raw(()) if held is not None else None
                if held is not None and held != shared:
                    yield held

        chosen = idmaps.choose(config, shared, shared, held_by_others())
        idmaps.check_delegated(chosen)
        return chosen

    async def status(self, row: q.InstanceRow) -> RuntimeState:
        return (await self.statuses([row]))[0]

    async def statuses(self, rows: list[q.InstanceRow]) -> list[RuntimeState]:
        """status() of each row, each driver asked once for all its instances."""
        found: dict[int, RuntimeState] = {}
        by_type: dict[str, list[int]] = {}
        for index, row in enumerate(rows):
            pid = self.watcher.alive(row.project, row.name)
            quick = self.drivers.get(row.type).running_status(pid) if pid else None
            if quick is not None:
                found[index] = quick
                continue
            by_type.setdefault(row.type, []).append(index)
        for kind, indexes in by_type.items():
            driver = self.drivers.get(kind)
            glanced = driver.at_a_glance([(rows[i].project, rows[i].name) for i in indexes])
            asked = [i for i, seen in zip(indexes, glanced, strict=True) if seen is None]
            found.update(
                (i, seen) for i, seen in zip(indexes, glanced, strict=True) if seen is not None
            )
            if asked:
                answers = await driver.statuses([self.status_spec(rows[i]) for i in asked])
                found.update(zip(asked, answers, strict=True))
        return [found[i] for i in range(len(rows))]

    @staticmethod
    def shown(row: q.InstanceRow, status: RuntimeState) -> RuntimeState:
        """The state as clients see it: a running instance whose guest said so is Ready."""
        if status.status == StatusCode.RUNNING and row.config.get(READY_KEY) == "true":
            return dataclasses.replace(status, status=StatusCode.READY)
        return status

    def render(self, row: q.InstanceRow, status: RuntimeState) -> dict[str, Any]:
        config, devices = self.expand(row)
        status = self.shown(row, status)
        return {
            **self.writable(row),
            "created_at": row.created_at,
            "expanded_config": config,
            "expanded_devices": devices,
            "name": row.name,
            "status": status.status.text,
            "status_code": int(status.status),
            "last_used_at": row.last_used_at or "0001-01-01T00:00:00Z",
            "location": shown_location(row.location),
            "type": row.type,
            "project": row.project,
        }

    async def render_full(
        self, row: q.InstanceRow, status: RuntimeState | None = None
    ) -> dict[str, Any]:
        """With the runtime state, but without disk usage: the dir pool can only count it by
        walking the volume, too much for every instance of a list (GET .../state has it).
        ``status``: the instance's, when the caller asked all of a list's at once; a stopped
        instance has no more state than that."""
        if status is not None and status.status == StatusCode.STOPPED:
            runtime = status
        else:
            runtime = await self.drivers.get(row.type).state(self.spec(row))
        state = self.shown(row, runtime)
        full = self.render(row, state)
        full["backups"] = None
        full["state"] = state.render({})
        return full

    async def state(self, row: q.InstanceRow) -> dict[str, Any]:
        state = self.shown(row, await self.drivers.get(row.type).state(self.spec(row)))
        return state.render(await self._disk_usage(row))

    async def _disk_usage(self, row: q.InstanceRow) -> dict[str, dict[str, int]]:
        """The root disk's usage, as Incus reports it (total 0: no quota on the pool)."""
        used = await self.pools.driver(row.pool).volume_usage(*instance_volume(row))
        if used is None:
            return {}
        root = (root_disk.find(self.expand(row)[1]) or ("root", {}))[0]
        return {root: {"usage": used, "total": 0}}

    async def counters(self, row: q.InstanceRow) -> dict[str, float]:
        """The kernel counters metrics add to the state (InstanceDriver.counters)."""
        return await self.drivers.get(row.type).counters(self.spec(row))

    async def filesystems(self, row: q.InstanceRow) -> dict[str, tuple[int, int]]:
        """A container's root filesystem as its metrics give it: (size, available), its
        quota's when the pool applies one, else the filesystem's that holds it."""
        if row.type != "container":
            return {}
        spec = self.spec(row)
        root = (root_disk.find(spec.devices) or ("root", {}))[0]
        quota = (await self._disk_usage(row)).get(root, {})
        if quota.get("total"):
            return {root: (quota["total"], max(quota["total"] - quota.get("usage", 0), 0))}
        try:
            found = await asyncio.to_thread(os.statvfs, spec.volume / "rootfs")
        except OSError:
            return {}
        return {root: (found.f_blocks * found.f_frsize, found.f_bavail * found.f_frsize)}

    @staticmethod
    def writable(row: q.InstanceRow) -> dict[str, Any]:
        """What an ETag covers: the fields PUT can write."""
        return {
            "architecture": row.architecture,
            "config": row.config,
            "devices": row.devices,
            "ephemeral": row.ephemeral,
            "profiles": row.profiles,
            "stateful": row.stateful,
            "description": row.description,
        }

    def instance_operation(
        self, act: Callable[[Operation], Awaitable[None]], description: str, project: str, name: str
    ) -> Operation:
        """A background operation on one instance (its URL as the resource)."""
        return self.operations.start(
            act,
            description=description,
            project=project,
            resources={"instances": [url(name, project)]},
        )

    # -- create -----------------------------------------------------------------------------

    def check_project(
        self,
        project: str,
        name: str,
        instance_type: str,
        profiles: list[str],
        config: dict[str, str],
        devices: dict[str, dict[str, str]],
    ) -> None:
        """A new instance admitted (admission.py: keys, devices, restrictions, limits)."""
        admission.admit(self, project, name, instance_type, profiles, config, devices, new=True)

    def _check_profiles(self, project: str, profiles: list[str]) -> None:
        for profile in profiles:
            try:
                get_profile(self.db, project, profile)
            except NotFound:
                raise BadRequest(f"Requested profile {profile!r} doesn't exist") from None
        if len(set(profiles)) != len(profiles):
            raise BadRequest("A profile is listed more than once")

    def device_context(self, row: q.InstanceRow, config: dict[str, str]) -> DeviceContext:
        return DeviceContext(
            instance=row.name,
            instance_type=row.type,
            config=config,
            idmap=current_map(config),
            devices_dir=self.paths.instance_devices(row.project, row.name),
            volume=self._volume_lookup(row.project),
            network=self._network_lookup(row.project),
            nic_host_names=server_value(get_config(self.db), "instances.nic.host_name"),
        )

    def _volume_lookup(self, project: str) -> Callable[[str, str], AttachedVolume] | None:
        volumes = self.volumes
        if volumes is None:
            return None
        return lambda pool, name: volumes.attached(pool, project, name)

    def _network_lookup(self, project: str) -> ProjectNetworks | None:
        return self.networks.in_project(project) if self.networks is not None else None

    def check_devices(
        self, devices: dict[str, dict[str, str]], instance_type: str, project: str = "default"
    ) -> None:
        """Every device well formed (type, keys, values), naming the one that is not."""
        ctx = DeviceContext(
            "",
            instance_type,
            {},
            None,
            self.paths.devices,
            self._volume_lookup(project),
            self._network_lookup(project),
        )
        device_plan.validate(devices, ctx)

    def devices_on_pool(
        self, devices: dict[str, Any], profiles: list[str], project: str, pool: str
    ) -> dict[str, dict[str, str]]:
        """An instance's own devices with its root disk on ``pool`` (root_disk.moved_to)."""
        local = {str(n): {str(k): str(v) for k, v in d.items()} for n, d in devices.items()}
        inherited = self.expand_parts(project, profiles, {}, local)[1]
        return root_disk.moved_to(local, inherited, pool)

    async def create(self, req: InstancesPost, project: str) -> Operation:
        source: copy.CopySource | None = None
        sink: InstanceSink | None = None
        if req.source.type == "migration":
            sink = InstanceSink(req.source, req.type or "container")
            target = q.find_instance(self.db, project, req.name) if req.name else None
            if target is not None and req.source.refresh:
                return await migrate.refresh(self, sink, target)
        if req.source.type == "copy":
            get_project(self.db, project)
            source = copy.resolve(self.db, req, project)
            target = q.find_instance(self.db, project, req.name) if req.name else None
            if target is not None and req.source.refresh:
                return await self._refresh(source, target)
        if source is not None and source.instance.project != project:
            # across projects the source's root disk comes along as a device of its own (the
            # target's profiles may give none, or another pool), as Incus copies it
            found = root_disk.find(self.expand(source.instance)[1])
            if found is not None and root_disk.find(req.devices) is None:
                req.devices = {**req.devices, found[0]: dict(found[1])}
        # validate (pure)
        instance_type = req.type or "container"
        driver = self.drivers.get(instance_type)
        name = req.name or names.generate({r.name for r in q.list_instances(self.db, project)})
        names.validate(name)
        profiles = ["default"] if req.profiles is None else req.profiles
        req.config = without_empty(req.config)
        if req.instance_type:
            for key, value in instance_types.limits(req.instance_type).items():
                req.config.setdefault(key, value)
        kept = {k: v for k, v in req.config.items() if k in copy.KEPT_VOLATILE and source}
        validate_instance_config(req.config, instance_type, current=kept)
        self.check_devices(req.devices, instance_type, project)
        if req.source.type not in ("image", "none", "copy", "migration"):
            raise BadRequest(
                f"Instance source type {req.source.type!r} is not supported "
                "(use image, copy, migration or none)"
            )
        # prerequisites (read-only)
        get_project(self.db, project)
        self._check_profiles(project, profiles)
        if q.find_instance(self.db, project, name) is not None:
            raise Conflict(f"Instance {name!r} already exists")
        self.check_project(project, name, instance_type, profiles, req.config, req.devices)
        image = (
            await remote_fetch.source_image(
                self.images,
                project,
                req.source,
                req.architecture
                or server_value(get_config(self.db), "images.default_architecture")
                or _host_arch(),
            )
            if req.source.type == "image"
            else None
        )
        if image is not None and image.type != instance_type:
            raise BadRequest(
                f"Image {image.fingerprint[:12]} is a {image.type} image, not a {instance_type} one"
            )
        if image is not None and image.type == "virtual-machine":
            create.check_vm_root_size(self, project, image, profiles, req.config, req.devices)
        if image is not None and req.profiles is None and image.profiles:
            profiles = list(image.profiles)  # the image's profiles, when none are asked for
            self._check_profiles(project, profiles)
            self.check_project(project, name, instance_type, profiles, req.config, req.devices)
        row = q.InstanceRow(
            id=0,
            project=project,
            name=name,
            type=instance_type,
            architecture=req.architecture or (image.architecture if image else _host_arch()),
            pool="",
            created_at=timestamp(now()),
            description=req.description,
            ephemeral=req.ephemeral,
            stateful=req.stateful,
            config=effective_config(req.config, {}),
            devices=req.devices,
            profiles=profiles,
        )
        config, devices = self.expand(row)
        row.config |= fill_volatile(row.config, devices)
        row.pool = root_disk.pool(devices)
        self.pools.driver(row.pool)  # the pool must exist
        shared_idmap = driver.idmap_for(config)
        idmap = self.choose_idmap(row, config)

        if image is not None:
            fill = create.from_image(self, image, idmap, shared_idmap)
        elif source is not None:
            fill = create.from_copy(self, source, idmap)
        elif sink is not None:
            fill = migrate.fill(self, sink)
        else:
            fill = create.empty(self, idmap)
        create.add_volatile(row, image, idmap)
        trigger = "copy" if source is not None or sink is not None else "create"

        then = sink.arrive_live(self) if sink is not None and sink.live else None

        async def act(op: Operation) -> None:
            async with self.locks(project, name):
                await create.create_instance(
                    self, op, row, fill, trigger=trigger, start=req.start, then=then
                )

        if sink is not None:
            return await migrate.receive_operation(self, sink, act, project, name)
        return self.instance_operation(act, "Creating instance", project, name)

    async def _refresh(self, source: copy.CopySource, target: q.InstanceRow) -> Operation:
        if (await self.status(target)).status != StatusCode.STOPPED:
            raise BadRequest(f"Instance {target.name!r} is running: stop it to refresh it")

        async def act(op: Operation) -> None:
            async with self.locks(target.project, target.name):
                current = self.get(target.project, target.name)
                await copy.refresh(self, source, current)
                self.events.lifecycle(
                    InstanceAction.UPDATED, url(target.name, target.project), project=target.project
                )

        return self.instance_operation(act, "Refreshing instance", target.project, target.name)

    # -- rebuild (power: power.py; edits: update.py) ------------------------------------------

    async def rebuild(self, row: q.InstanceRow, source: InstanceSource) -> Operation:
        """POST /1.0/instances/NAME/rebuild: a fresh root volume from an image (type image)
        or an empty one (type none)."""
        if source.type not in ("image", "none"):
            raise BadRequest(f"Invalid rebuild source type {source.type!r}: use image or none")
        image = (
            await remote_fetch.source_image(
                self.images, row.project, source, row.architecture or _host_arch()
            )
            if source.type == "image"
            else None
        )

        async def act(op: Operation) -> None:
            async with self.locks(row.project, row.name):
                await rebuilding.rebuild(self, op, self.get(row.project, row.name), image)

        return self.instance_operation(act, "Rebuilding instance", row.project, row.name)

    # -- rename, moves, delete --------------------------------------------------------------

    async def is_running(self, row: q.InstanceRow) -> bool:
        return (await self.status(row)).status != StatusCode.STOPPED

    async def rename(self, row: q.InstanceRow, new_name: str) -> Operation:
        names.validate(new_name)
        if q.find_instance(self.db, row.project, new_name) is not None:
            raise Conflict(f"Name {new_name!r} already in use")
        if (await self.status(row)).status != StatusCode.STOPPED:
            raise BadRequest("Renaming of running instance not allowed")

        async def act(op: Operation) -> None:
            async with self.locks(row.project, row.name):
                driver = await self._relocate(row, row.project, new_name)
                old = row.name
                row.name = new_name
                with self.db.transaction():
                    q.update_instance(self.db, row)
                await driver.adopt(self.spec(row))
                self.events.lifecycle(
                    InstanceAction.RENAMED,
                    url(new_name, row.project),
                    project=row.project,
                    context={"old_name": old},
                )

        return self.instance_operation(act, "Renaming instance", row.project, row.name)

    async def _relocate(self, row: q.InstanceRow, project: str, name: str) -> InstanceDriver:
        """A stopped instance's volume, logs and device files moved to where ``project`` and
        ``name`` keep them (a rename or a project move), the driver told to forget the old
        place; its record is the caller's to update."""
        driver = self.drivers.get(row.type)
        await driver.forget(self.spec(row))
        await self.pools.driver(row.pool).rename_volume(
            *instance_volume(row), instance_entry(project, name)
        )
        for place in (self.paths.instance_logs, self.paths.instance_devices):
            await asyncio.to_thread(
                move_instance_dir, place(row.project, row.name), place(project, name)
            )
        return driver

    async def move_to_project(self, row: q.InstanceRow, project: str, new_name: str) -> Operation:
        """incus move NAME --target-project PROJECT (instance_project_move): a stopped instance,
        its volume, snapshots and backups, into another project; its root disk becomes a
        device of its own when the target's profiles do not give it one, as Incus keeps it."""
        name = new_name or row.name
        names.validate(name)
        get_target_project(self.db, project)
        if (await self.status(row)).status != StatusCode.STOPPED:
            raise BadRequest("Instance must be stopped to be moved across projects")
        if q.find_instance(self.db, project, name) is not None:
            raise Conflict(f"Instance {name!r} already exists in project {project!r}")
        self._check_profiles(project, row.profiles)
        devices = self.devices_on_pool(row.devices, row.profiles, row.project, row.pool)
        inherited = self.expand_parts(project, row.profiles, {}, {})[1]
        if root_disk.find(devices) is None and root_disk.find(inherited) is None:
            found = root_disk.find(self.expand(row)[1])
            if found is not None:
                devices[found[0]] = dict(found[1])
        admission.admit(self, project, name, row.type, row.profiles, row.config, devices,
                        new=True)  # fmt: skip

        async def act(op: Operation) -> None:
            async with self.locks(row.project, row.name):
                driver = await self._relocate(row, project, name)
                old_project, old_name = row.project, row.name
                row.name, row.devices = name, devices
                with self.db.transaction():
                    q.update_instance(self.db, row)
                    q.set_project(self.db, row.id, project)
                row.project = project
                await driver.adopt(self.spec(row))
                self.events.lifecycle(InstanceAction.CREATED, url(name, project), project=project)
                self.events.lifecycle(
                    InstanceAction.DELETED, url(old_name, old_project), project=old_project
                )

        return self.instance_operation(act, "Moving instance", row.project, row.name)

    async def move_to_pool(self, row: q.InstanceRow, pool: str) -> Operation:
        self.pools.usable_driver(pool)  # a pool that does not exist is a 404
        if await self.is_running(row):
            raise BadRequest("Moving a running instance to another pool is not possible: stop it")

        async def act(op: Operation) -> None:
            async with self.locks(row.project, row.name):
                current = self.get(row.project, row.name)
                if await self.is_running(current):
                    raise BadRequest("The instance started: stop it to move it")
                await copy.move_to_pool(self, current, pool)
            self.events.lifecycle(
                InstanceAction.UPDATED, url(row.name, row.project), project=row.project
            )

        return self.instance_operation(act, "Moving instance", row.project, row.name)

    async def delete(self, row: q.InstanceRow) -> Operation:
        if (await self.status(row)).status not in DELETABLE:
            raise BadRequest("Instance is running")
        if parse_bool(value_of(self.expand(row)[0], "security.protection.delete")):
            raise BadRequest(
                "Instance is protected from deletion: unset security.protection.delete first"
            )

        async def act(op: Operation) -> None:
            async with self.locks(row.project, row.name):
                await self.remove_unlocked(row)

        return self.instance_operation(act, "Deleting instance", row.project, row.name)

    async def remove_unlocked(self, row: q.InstanceRow) -> None:
        """Everything of a stopped instance goes: driver state, volume, logs, device files,
        backups, its row; the caller holds its lock."""
        spec = self.spec(row)
        if (await self.drivers.get(row.type).status(spec)).status not in DELETABLE:
            raise BadRequest("Instance is running")
        await self.drivers.get(row.type).forget(spec)
        await self.pools.driver(row.pool).delete_volume(*instance_volume(row))
        await asyncio.to_thread(shutil.rmtree, spec.log_dir, True)
        await asyncio.to_thread(
            shutil.rmtree, self.paths.instance_devices(row.project, row.name), True
        )
        await BackupRecords(self.db, self.paths, "instance").forget_owner(row.id)
        with self.db.transaction():
            q.delete_instance(self.db, row.id)
        self.events.lifecycle(
            InstanceAction.DELETED, url(row.name, row.project), project=row.project
        )

    # -- init exits ---------------------------------------------------------------------

    async def _init_exited(self, project: str, name: str) -> None:
        """An instance's init exited without the daemon stopping it: record it and tell."""
        async with self.locks(project, name):
            row = q.find_instance(self.db, project, name)
            if row is None or row.config.get("volatile.last_state.power") != "RUNNING":
                return
            spec = self.spec(row)
            driver = self.drivers.get(row.type)
            for _ in range(50):  # liblxc's monitor notices a moment after init is gone
                status = await driver.status(spec)
                if status.status == StatusCode.STOPPED:
                    break
                if status.pid > 0:
                    self.watcher.watch(project, name, status.pid)  # restarted from inside
                    return
                await asyncio.sleep(0.1)
            await driver.after_stop(spec)
            await device_plan.clean_up(spec.devices, self.device_context(row, spec.config))
            await power.run_stopped_hooks(self, row)
            await power.set_power(self, row, "STOPPED")
            reason = driver.exit_reason(spec)
            self.events.lifecycle(
                InstanceAction.SHUTDOWN,
                url(name, project),
                project=project,
                context={"reason": reason} if reason else None,
            )
            if row.ephemeral:
                await self.remove_unlocked(row)
            elif parse_bool(spec.config.get("boot.autorestart", "false")):
                await self._autorestart(row)

    async def _autorestart(self, row: q.InstanceRow) -> None:
        """boot.autorestart, as Incus: up to AUTORESTART_MAX restarts within a minute after
        the instance stops on its own; then it stays stopped (a crash loop)."""
        key = (row.project, row.name)
        now_s = time.monotonic()
        recent = [t for t in self._restarts.get(key, []) if now_s - t < 60]
        if len(recent) >= AUTORESTART_MAX:
            log.warning(
                "instance %s stopped %d times within a minute: boot.autorestart gives up",
                row.name,
                len(recent),
            )
            self._restarts.pop(key, None)
            return
        self._restarts[key] = [*recent, now_s]
        try:
            await power.start_unlocked(self, self.get(row.project, row.name))
        except Exception as exc:
            log.warning("boot.autorestart could not start instance %s: %s", row.name, exc)


def _host_arch() -> str:
    return platform.machine()
