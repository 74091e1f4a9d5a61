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

from stapes.db.connection import Database
from stapes.db.storage import PoolRow, create_pool, get_pool, list_pools
from stapes.host.idmap import IdMap, shift_tree
from stapes.host.paths import Paths
from stapes.storage.drivers.driver import StorageDriver
from stapes.storage.drivers.registry import driver_class

log = logging.getLogger(__name__)

Unpacker = Callable[[Path], Awaitable[None]]


class Pools:
    def __init__(self, db: Database, paths: Paths) -> None:
        self.db = db
        self.paths = paths
        self._drivers: dict[str, StorageDriver] = {}
        self._image_locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._refills: dict[tuple[str, str], asyncio.Task[None]] = {}

    def pool_path(self, name: str) -> Path:
        return self.paths.storage_pools / name

    async def ensure_default(self) -> None:
        """Create the ``default`` dir pool on first start; mount every pool."""
        if not list_pools(self.db):
            driver = driver_class("dir")("default", self.pool_path("default"), {})
            await driver.create_pool()
            with self.db.transaction():
                create_pool(
                    self.db, "default", "dir", "", {"source": str(self.pool_path("default"))}
                )
        for row in list_pools(self.db):
            await self.driver(row.name).mount_pool()

    def driver(self, pool: str) -> StorageDriver:
        drv = self._drivers.get(pool)
        if drv is None:
            row = get_pool(self.db, pool)
            drv = driver_class(row.driver)(row.name, self.pool_path(row.name), row.config)
            self._drivers[pool] = drv
        return drv

    def render(self, row: PoolRow, used_by: list[str]) -> dict[str, Any]:
        return {
            "name": row.name,
            "driver": row.driver,
            "description": row.description,
            "config": row.config,
            "status": row.status,
            "locations": ["none"],
            "used_by": used_by,
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

    async def instance_from_image(self, pool: str, image_volume: str, name: str) -> None:
        """A new instance volume holding a copy of an image volume.

        Drivers without cheap clones keep one spare copy of each image volume ready, made in
        the background after a launch, so that the next launch only renames it."""
        drv = self.driver(pool)
        if drv.info().optimized_images:
            await drv.copy_volume("images", image_volume, "containers", name)
            return
        spare = f"{image_volume}.spare"
        async with self._image_locks[(pool, image_volume)]:
            taken = drv.volume_path("images", spare).exists()
            if taken:
                await drv.move_volume("images", spare, "containers", name)
        if not taken:
            await drv.copy_volume("images", image_volume, "containers", name)
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

    async def delete_image_volumes(self, fingerprint: str) -> None:
        pending = [t for (_, vol), t in self._refills.items() if vol.startswith(fingerprint)]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for row in list_pools(self.db):
            images = self.pool_path(row.name) / "images"
            for path in images.glob(f"{fingerprint}*"):
                await asyncio.to_thread(shutil.rmtree, path, True)
