"""The pool orchestrator: pool rows, drivers, image volumes (unpacked once per pool) and instance
volumes cloned from them. Drivers never see the database; this module does."""

from __future__ import annotations

import asyncio
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

Unpacker = Callable[[Path], Awaitable[None]]


class Pools:
    def __init__(self, db: Database, paths: Paths) -> None:
        self.db = db
        self.paths = paths
        self._drivers: dict[str, StorageDriver] = {}
        self._image_locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)

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

    async def delete_image_volumes(self, fingerprint: str) -> None:
        for row in list_pools(self.db):
            images = self.pool_path(row.name) / "images"
            for path in images.glob(f"{fingerprint}*"):
                await asyncio.to_thread(shutil.rmtree, path, True)
