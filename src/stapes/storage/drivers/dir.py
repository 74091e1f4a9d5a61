"""The ``dir`` driver: volumes are plain directories below the pool's path."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from stapes.api.errors import Conflict
from stapes.host.run import run
from stapes.storage.drivers.driver import DriverInfo, StorageDriver


class DirDriver(StorageDriver):
    @classmethod
    def info(cls) -> DriverInfo:
        return DriverInfo(name="dir", version="1")

    @classmethod
    def probe(cls) -> None:
        return None

    async def create_pool(self) -> None:
        self.pool_path.mkdir(parents=True, exist_ok=True)
        self.pool_path.chmod(0o711)
        await self.mount_pool()

    async def mount_pool(self) -> None:
        for vol_type in ("containers", "images", "custom"):
            path = self.pool_path / vol_type
            path.mkdir(exist_ok=True)
            path.chmod(0o711)

    async def create_volume(self, vol_type: str, name: str) -> Path:
        path = self.volume_path(vol_type, name)
        try:
            path.mkdir(mode=0o711)
        except FileExistsError:
            raise Conflict(
                f"Storage volume {vol_type}/{name} already exists on pool {self.pool_name!r}"
            ) from None
        return path

    async def copy_volume(self, src_type: str, src: str, dst_type: str, dst: str) -> Path:
        source = self.volume_path(src_type, src)
        target = self.volume_path(dst_type, dst)
        if target.exists():
            raise Conflict(
                f"Storage volume {dst_type}/{dst} already exists on pool {self.pool_name!r}"
            )
        await run(["cp", "-a", "--reflink=auto", str(source), str(target)])
        return target

    async def delete_volume(self, vol_type: str, name: str) -> None:
        path = self.volume_path(vol_type, name)
        if path.exists():
            await asyncio.to_thread(shutil.rmtree, path)

    async def rename_volume(self, vol_type: str, name: str, new_name: str) -> Path:
        target = self.volume_path(vol_type, new_name)
        self.volume_path(vol_type, name).rename(target)
        return target
