"""The pool orchestrator: pool rows, drivers, image volumes (unpacked once per pool) and instance
volumes cloned from them. Drivers never see the database; this module does."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from stapes.api.errors import BadRequest, Conflict
from stapes.api.lifecycle import StoragePoolAction
from stapes.api.urls import instance_url, pool_url, profile_url, volume_url
from stapes.db.connection import Database
from stapes.db.instances import list_instances
from stapes.db.projects import list_profiles, list_projects
from stapes.db.storage import (
    MEMBER_POOL_KEYS,
    PoolRow,
    create_pool,
    delete_pool,
    find_pool,
    get_pool,
    list_pools,
    list_volumes,
    set_pool_status,
    update_pool,
)
from stapes.host.idmap import IdMap, shift_tree
from stapes.host.paths import Paths
from stapes.runtime.events import EventBus
from stapes.storage.config import check_volume_name, validate_pool_config
from stapes.storage.drivers.driver import StorageDriver
from stapes.storage.drivers.registry import driver_class

log = logging.getLogger(__name__)

Unpacker = Callable[[Path], Awaitable[None]]


def cluster_pool_config(
    name: str, driver: str, config: dict[str, str], *, member: bool
) -> dict[str, str]:
    """A cluster pool's config as given per member (``member``: its member keys only) or for
    all members (the others), checked as the driver takes it; "" values unset."""
    check_volume_name(name)
    cls = driver_class(driver)
    cls.probe()
    wrong = sorted(k for k in config if (k in MEMBER_POOL_KEYS) != member)
    if wrong and member:
        raise BadRequest(
            f"Config key {wrong[0]!r} is not specific to a member: give it when the pool is "
            "created on every member (without --target)"
        )
    if wrong:
        raise BadRequest(
            f"Config key {wrong[0]!r} is specific to each cluster member: give it per member "
            "with --target (?target=MEMBER) first"
        )
    kept = {k: v for k, v in config.items() if v != ""}
    validate_pool_config(cls, kept)
    return kept


class Pools:
    def __init__(self, db: Database, paths: Paths, events: EventBus) -> None:
        self.db = db
        self.paths = paths
        self.events = events
        self._drivers: dict[str, StorageDriver] = {}
        self._unavailable: dict[str, str] = {}
        self._image_locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._refills: dict[tuple[str, str], asyncio.Task[None]] = {}

    def pool_path(self, name: str) -> Path:
        return self.paths.storage_pools / name

    def _make_driver(self, name: str, driver: str, config: dict[str, str]) -> StorageDriver:
        return driver_class(driver)(name, self.pool_path(name), dict(config), self.paths.disks)

    async def mount_all(self) -> bool:
        """Mount every pool (a pool whose source is gone is marked Unavailable, the others
        still come up). A fresh daemon has none until ``admin init`` makes one, as incusd;
        but a ``default`` dir pool on disk that the database does not know (the database was
        lost) is recorded again, keeping its data: True then."""
        restored = False
        if not list_pools(self.db) and self.pool_path("default").is_dir():
            log.warning("recording the existing default pool again (stapes admin recover)")
            self.record_existing(await self.mount_existing("default", "dir", {}))
            restored = True
        for row in list_pools(self.db):
            try:
                await self.driver(row.name).mount_pool()
            except Exception as exc:
                log.error("storage pool %s is unavailable: %s", row.name, exc)
                self._unavailable[row.name] = str(exc)
        return restored

    async def prepare_member(self, settled: dict[str, dict[str, str]]) -> None:
        """A server that joined a cluster: the cluster's pools, each mounted where this member
        keeps it (``settled``: its member keys, by pool) or made here with the driver's
        defaults; one that fails is unavailable, as at start."""
        self._drivers.clear()
        self._unavailable.clear()
        for row in list_pools(self.db):
            try:
                # the values the joining request gave are checked as a create's are
                validate_pool_config(driver_class(row.driver), row.config)
                if row.name in settled:
                    await self.driver(row.name).mount_pool()
                    continue
                drv = self._make_driver(row.name, row.driver, row.config)
                made = await drv.create_pool()
                drv.config.update(made)
                row.config = {**row.config, **made}
                with self.db.transaction():
                    update_pool(self.db, row)
                self._drivers[row.name] = drv
            except Exception as exc:
                log.error("storage pool %s is unavailable on this member: %s", row.name, exc)
                self._unavailable[row.name] = str(exc)

    def driver(self, pool: str) -> StorageDriver:
        drv = self._drivers.get(pool)
        if drv is None:
            row = get_pool(self.db, pool)
            drv = self._make_driver(row.name, row.driver, row.config)
            self._drivers[pool] = drv
        return drv

    def usable_driver(self, pool: str) -> StorageDriver:
        """The driver of a pool that must be mounted to be used."""
        drv = self.driver(pool)
        if pool in self._unavailable:
            raise BadRequest(f"Storage pool {pool!r} is unavailable: {self._unavailable[pool]}")
        return drv

    # -- pool CRUD --------------------------------------------------------------------------------

    async def create(
        self, name: str, driver: str, description: str, config: dict[str, str]
    ) -> None:
        check_volume_name(name)
        cls = driver_class(driver)
        cls.probe()
        config = {k: val for k, val in config.items() if val != ""}  # "" is unset, as in Incus
        validate_pool_config(cls, config)
        if find_pool(self.db, name) is not None:
            raise Conflict(f"Storage pool {name!r} already exists")
        if self.pool_path(name).exists() or self.pool_path(name).is_symlink():
            raise Conflict(f"{self.pool_path(name)} already exists: a pool left behind?")
        drv = self._make_driver(name, driver, config)
        made = await drv.create_pool()
        try:
            with self.db.transaction():
                create_pool(self.db, name, driver, description, {**config, **made})
        except BaseException:
            await drv.delete_pool()
            raise
        drv.config.update(made)
        self._drivers[name] = drv  # mounted, with what it probed (reflinks)
        self.events.lifecycle(StoragePoolAction.CREATED, pool_url(name))

    # -- on each member of a cluster ---------------------------------------------------------

    def define_pending(self, name: str, driver: str, member_config: dict[str, str]) -> None:
        """A cluster pool's values for this member (``--target``), before the pool is made on
        every member: its row is Pending until then."""
        config = cluster_pool_config(name, driver, member_config, member=True)
        with self.db.transaction():
            row = find_pool(self.db, name)
            if row is None:
                create_pool(self.db, name, driver, "", config)
                set_pool_status(self.db, name, "Pending")
            elif row.status != "Pending" or row.driver != driver:
                raise Conflict(f"Storage pool {name!r} already exists")
            else:
                row.config = {**row.config, **config}
                update_pool(self.db, row)

    async def create_here(self, name: str) -> None:
        """Make a cluster pool's storage on this member (its own values from ``--target``, or
        the driver's defaults) and keep what the driver settled on."""
        row = get_pool(self.db, name)
        if self.pool_path(name).exists() or self.pool_path(name).is_symlink():
            raise Conflict(f"{self.pool_path(name)} already exists: a pool left behind?")
        drv = self._make_driver(name, row.driver, row.config)
        made = await drv.create_pool()
        drv.config.update(made)
        row.config = {**row.config, **made}
        with self.db.transaction():
            update_pool(self.db, row)
        self._drivers[name] = drv
        self._unavailable.pop(name, None)

    async def delete_here(self, name: str) -> None:
        """A cluster pool's storage on this member goes (its row is the cluster's)."""
        if self.pool_path(name).exists() or name in self._drivers:
            await self.driver(name).delete_pool()
        self._drivers.pop(name, None)
        self._unavailable.pop(name, None)

    async def mount_existing(self, name: str, driver: str, config: dict[str, str]) -> StorageDriver:
        """A pool the database lost (recovery): mount what its config names, make nothing."""
        check_volume_name(name)
        cls = driver_class(driver)
        cls.probe()
        config = {k: val for k, val in config.items() if val != ""}  # "" is unset, as in Incus
        validate_pool_config(cls, config)
        if find_pool(self.db, name) is not None:
            raise Conflict(f"Storage pool {name!r} already exists")
        drv = self._make_driver(name, driver, config)
        await drv.mount_pool()
        return drv

    def record_existing(self, drv: StorageDriver, description: str = "") -> None:
        """Record a pool mounted by ``mount_existing``."""
        with self.db.transaction():
            create_pool(self.db, drv.pool_name, drv.info().name, description, drv.config)
        self._drivers[drv.pool_name] = drv
        self.events.lifecycle(StoragePoolAction.CREATED, pool_url(drv.pool_name))

    async def update(self, row: PoolRow, description: str, config: dict[str, str]) -> None:
        cls = driver_class(row.driver)
        config = {k: val for k, val in config.items() if val != ""}  # "" unsets
        # keys the pool settled on at creation stay when a client leaves them out
        for key in ("source", "size"):
            if key in row.config and key not in config and key not in cls.LIVE_POOL_KEYS:
                config[key] = row.config[key]
        validate_pool_config(cls, config)
        changed: dict[str, str | None] = {
            k: config.get(k)
            for k in set(row.config) | set(config)
            if row.config.get(k) != config.get(k)
        }
        driver_changes = {
            k: value for k, value in changed.items() if not k.startswith(("user.", "volume."))
        }
        if driver_changes:
            await self.usable_driver(row.name).update_pool(driver_changes)
        row.config, row.description = config, description
        with self.db.transaction():
            update_pool(self.db, row)
        self.driver(row.name).config = dict(config)
        self.events.lifecycle(StoragePoolAction.UPDATED, pool_url(row.name))

    async def delete(self, name: str) -> None:
        row = get_pool(self.db, name)
        users = [u for u in self.used_by(name) if not u.startswith("/1.0/images/")]
        if users:
            raise BadRequest(
                f"The storage pool is currently in use (by {', '.join(users[:3])}"
                f"{'...' if len(users) > 3 else ''}): delete or move those first"
            )
        await self._cancel_refills(lambda pool, _vol: pool == name)
        await self.driver(name).delete_pool()
        with self.db.transaction():
            delete_pool(self.db, row.id)
        self._drivers.pop(name, None)
        self._unavailable.pop(name, None)
        self.events.lifecycle(StoragePoolAction.DELETED, pool_url(name))

    def used_by(self, name: str) -> list[str]:
        """What uses a pool, as Incus lists it: instances, profiles, custom volumes, and images
        on a pool that keeps image volumes."""
        used = [
            instance_url(i.name, i.project) for i in list_instances(self.db, None) if i.pool == name
        ]
        for project in list_projects(self.db):
            used += [
                profile_url(profile.name, profile.project)
                for profile in list_profiles(self.db, project.name)
                if any(d.get("pool") == name for d in profile.devices.values())
            ]
        used += [
            volume_url(name, "custom", vol.name, vol.project)
            for vol in list_volumes(self.db, name, None)
        ]
        if self.keeps_image_volumes(name):
            images = self.pool_path(name) / "images"
            fingerprints = {p.name.split(".", 1)[0] for p in images.iterdir()}
            used += [f"/1.0/images/{fp}" for fp in sorted(fingerprints) if len(fp) == 64]
        return used

    def keeps_image_volumes(self, name: str) -> bool:
        """A pool whose driver keeps unpacked images as volumes (btrfs), as Incus shows them; a
        dir pool's image cache is stapesd's own and is not listed, as Incus has none."""
        if name in self._unavailable:
            return False
        return (
            self.driver(name).info().optimized_images and (self.pool_path(name) / "images").is_dir()
        )

    def render(self, row: PoolRow) -> dict[str, Any]:
        return {
            "name": row.name,
            "driver": row.driver,
            "description": row.description,
            "config": row.config,
            "status": "Unavailable" if row.name in self._unavailable else row.status,
            "locations": ["none"],
            "used_by": self.used_by(row.name),
        }

    def resources(self, name: str) -> dict[str, Any]:
        res = self.usable_driver(name).resources()
        return {
            "space": {"used": res.space_used, "total": res.space_total},
            "inodes": {"used": res.inodes_used, "total": res.inodes_total},
        }

    async def image_volume(
        self, pool: str, fingerprint: str, idmap: IdMap | None, unpack: Unpacker
    ) -> str:
        """The name of the image volume for this fingerprint and idmap, unpacking it once."""
        name = fingerprint if idmap is None else f"{fingerprint}.{idmap.key}"
        drv = self.driver(pool)
        async with self._image_locks[(pool, name)]:
            if drv.volume_path("images", name).exists():
                return name
            partial = f"{name}.partial"
            await drv.delete_volume("images", partial)
            path = await drv.create_volume("images", partial)
            try:
                await unpack(path)
                if idmap is not None:
                    await asyncio.to_thread(shift_tree, path / "rootfs", idmap.base)
                await drv.rename_volume("images", partial, name)
            except BaseException:
                await drv.delete_volume("images", partial)
                raise
        return name

    async def instance_from_image(
        self, pool: str, image_volume: str, vol_type: str, name: str
    ) -> None:
        """A new instance volume holding a copy of an image volume.

        Drivers without cheap clones keep one spare copy of each image volume ready, made in
        the background after a launch, so that the next launch only renames it."""
        drv = self.driver(pool)
        if drv.info().optimized_images:
            await drv.copy_volume("images", image_volume, vol_type, name)
            return
        spare = f"{image_volume}.spare"
        async with self._image_locks[(pool, image_volume)]:
            taken = drv.volume_path("images", spare).exists()
            if taken:
                await drv.move_volume("images", spare, vol_type, name)
        if not taken:
            await drv.copy_volume("images", image_volume, vol_type, name)
        self._refill_spare(pool, image_volume)

    def _refill_spare(self, pool: str, image_volume: str) -> None:
        key = (pool, image_volume)
        running = self._refills.get(key)
        if running is not None and not running.done():
            return  # (a finished task may not have run its done callback yet)
        task = asyncio.get_running_loop().create_task(self._make_spare(pool, image_volume))
        self._refills[key] = task
        task.add_done_callback(
            lambda t: self._refills.pop(key) if self._refills.get(key) is t else None
        )

    async def _make_spare(self, pool: str, image_volume: str) -> None:
        drv = self.driver(pool)
        spare = f"{image_volume}.spare"
        try:
            async with self._image_locks[(pool, image_volume)]:
                if drv.volume_path("images", spare).exists():
                    return
                if not drv.volume_path("images", image_volume).exists():
                    return
                await drv.copy_volume("images", image_volume, "images", spare)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not prepare a spare copy of image volume %s", image_volume)

    async def close(self) -> None:
        """Stop background work (spare copies) at daemon shutdown."""
        tasks = list(self._refills.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _cancel_refills(self, which: Callable[[str, str], bool]) -> None:
        pending = [t for (pool, vol), t in self._refills.items() if which(pool, vol)]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def delete_image_volumes(self, fingerprint: str) -> None:
        await self._cancel_refills(lambda _pool, vol: vol.startswith(fingerprint))
        for row in list_pools(self.db):
            images = self.pool_path(row.name) / "images"
            for path in images.glob(f"{fingerprint}*"):
                await asyncio.to_thread(shutil.rmtree, path, True)
