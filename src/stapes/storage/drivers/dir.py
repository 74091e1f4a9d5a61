"""The ``dir`` driver: volumes are plain directories below the pool's path."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from stapes.api.errors import Conflict
from stapes.host.run import run
from stapes.storage.drivers.driver import DriverInfo, StorageDriver


class DirDriver(StorageDriver):
    _reflink = False

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
        self._reflink = await self._probe_reflink()

    async def _probe_reflink(self) -> bool:
        """Whether the pool's filesystem clones files (btrfs, xfs). Asking cp for reflinks where
        they cannot work costs a failed ioctl per file: 7x slower on ext4 here."""
        source = self.pool_path / ".reflink-probe"
        target = self.pool_path / ".reflink-probe.copy"
        try:
            source.write_bytes(b"probe")
            rc, _, _ = await run(["cp", "--reflink=always", str(source), str(target)], check=False)
            return rc == 0
        finally:
            source.unlink(missing_ok=True)
            target.unlink(missing_ok=True)

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
        reflink = ["--reflink=auto"] if self._reflink else []
        await run(["cp", "-a", *reflink, str(source), str(target)])
        return target

    async def move_volume(self, src_type: str, src: str, dst_type: str, dst: str) -> Path:
        target = self.volume_path(dst_type, dst)
        if target.exists():
            raise Conflict(
                f"Storage volume {dst_type}/{dst} already exists on pool {self.pool_name!r}"
            )
        self.volume_path(src_type, src).rename(target)
        return target

    async def delete_volume(self, vol_type: str, name: str) -> None:
        path = self.volume_path(vol_type, name)
        if path.exists():
            await asyncio.to_thread(shutil.rmtree, path)

    async def rename_volume(self, vol_type: str, name: str, new_name: str) -> Path:
        target = self.volume_path(vol_type, new_name)
        self.volume_path(vol_type, name).rename(target)
        return target
