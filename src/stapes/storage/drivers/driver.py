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
    async def refresh_volume(self, src_type: str, src: str, dst_type: str, dst: str) -> None:
        """Make an existing volume (not in use) a copy of another, moving only what differs."""

    @abc.abstractmethod
    async def delete_volume(self, vol_type: str, name: str) -> None:
        """Delete a volume and its snapshots; a missing volume is not an error."""

    @abc.abstractmethod
    async def rename_volume(self, vol_type: str, name: str, new_name: str) -> Path:
        """Rename a volume and its snapshots along with it."""

    async def volume_usage(self, vol_type: str, name: str) -> int | None:
        """Bytes a volume uses on the pool (None: this driver cannot tell)."""
        return None

    # -- snapshots: read-only point-in-time copies of a volume, named ``<name>/<snap>`` --------

    def snapshot_path(self, vol_type: str, name: str, snap: str) -> Path:
        return self.pool_path / f"{vol_type}-snapshots" / name / snap

    @abc.abstractmethod
    async def create_snapshot(self, vol_type: str, name: str, snap: str) -> Path: ...

    @abc.abstractmethod
    async def delete_snapshot(self, vol_type: str, name: str, snap: str) -> None:
        """A missing snapshot is not an error."""

    @abc.abstractmethod
    async def rename_snapshot(self, vol_type: str, name: str, snap: str, new_snap: str) -> None: ...

    @abc.abstractmethod
    async def restore_snapshot(self, vol_type: str, name: str, snap: str) -> None:
        """Make the volume's content that of the snapshot (the volume is not in use)."""

    @abc.abstractmethod
    async def volume_from_snapshot(
        self, vol_type: str, name: str, snap: str, dst_type: str, dst: str
    ) -> Path:
        """A new volume holding a copy of a snapshot."""

    @abc.abstractmethod
    async def copy_snapshot(self, vol_type: str, name: str, snap: str, dst: str) -> None:
        """Copy one snapshot of a volume to a snapshot of the same name of volume ``dst``."""
