"""The storage driver interface: the lifecycle core, with optional abilities as DriverInfo flags."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DriverInfo:
    name: str
    version: str
    remote: bool = False
    optimized_images: bool = False
    optimized_snapshots: bool = False
    optimized_copy: bool = False
    quotas: bool = False
    block_volumes: bool = False


class StorageDriver(abc.ABC):
    """Works on one pool's backend. Volumes are addressed as ``<type>/<name>`` below the pool."""

    def __init__(self, pool_name: str, pool_path: Path, config: dict[str, str]) -> None:
        self.pool_name = pool_name
        self.pool_path = pool_path
        self.config = config

    @classmethod
    @abc.abstractmethod
    def info(cls) -> DriverInfo: ...

    @classmethod
    @abc.abstractmethod
    def probe(cls) -> None:
        """Raise MissingHostFeature when the host cannot run this driver."""

    @abc.abstractmethod
    async def create_pool(self) -> None: ...

    @abc.abstractmethod
    async def mount_pool(self) -> None: ...

    def volume_path(self, vol_type: str, name: str) -> Path:
        return self.pool_path / vol_type / name

    @abc.abstractmethod
    async def create_volume(self, vol_type: str, name: str) -> Path:
        """An empty filesystem volume; returns its mount path."""

    @abc.abstractmethod
    async def copy_volume(self, src_type: str, src: str, dst_type: str, dst: str) -> Path:
        """A new volume holding a copy of another (an image volume, an instance...)."""

    @abc.abstractmethod
    async def move_volume(self, src_type: str, src: str, dst_type: str, dst: str) -> Path:
        """Give a volume another type and name (an atomic rename on the pool)."""

    @abc.abstractmethod
    async def delete_volume(self, vol_type: str, name: str) -> None: ...

    @abc.abstractmethod
    async def rename_volume(self, vol_type: str, name: str, new_name: str) -> Path: ...
