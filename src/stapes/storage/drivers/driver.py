"""The storage driver interface: the lifecycle core, with optional abilities as DriverInfo flags.

A driver works on one pool's backend and never sees the database. Volumes are addressed by a
type directory (``containers``, ``virtual-machines``, ``images``, ``custom``) and a name, and
hold either a filesystem (a directory the driver mounts at ``volume_path``) or a block device
(``block_path``)."""

from __future__ import annotations

import abc
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from stapes.api.errors import BadRequest, MissingHostFeature
from stapes.config import validate as v
from stapes.config.snapshots import is_expiry, is_schedule

FILESYSTEM = "filesystem"
BLOCK = "block"
ISO = "iso"
"""An imported ISO image, read-only: a VM's CD-ROM (kept as a file in a filesystem volume)."""
BLOCK_FILE = "root.img"
ISO_FILE = "root.iso"


@dataclass(frozen=True)
class DriverInfo:
    name: str
    version: str
    remote: bool = False
    optimized_images: bool = False
    optimized_snapshots: bool = False
    optimized_copy: bool = False
    optimized_backups: bool = False
    quotas: bool = False
    block_volumes: bool = False


@dataclass(frozen=True)
class PoolResources:
    space_total: int
    space_used: int
    inodes_total: int
    inodes_used: int


# Keys every driver accepts on a volume (and, as ``volume.KEY``, on the pool as a default).
COMMON_VOLUME_KEYS: dict[str, v.Validator] = {
    "size": v.is_size,
    "security.shifted": v.is_bool,
    "security.unmapped": v.is_bool,
    "snapshots.schedule": is_schedule,
    "snapshots.expiry": is_expiry,
    "snapshots.pattern": v.any_value,
}


class StorageDriver(abc.ABC):
    """One pool's backend. Subclasses list the pool and volume keys they understand."""

    POOL_KEYS: ClassVar[dict[str, v.Validator]] = {}
    VOLUME_KEYS: ClassVar[dict[str, v.Validator]] = {}

    def __init__(
        self, pool_name: str, pool_path: Path, config: dict[str, str], disks: Path
    ) -> None:
        self.pool_name = pool_name
        self.pool_path = pool_path
        self.config = config
        self.disks = disks

    @classmethod
    @abc.abstractmethod
    def info(cls) -> DriverInfo: ...

    @classmethod
    @abc.abstractmethod
    def probe(cls) -> None:
        """Raise MissingHostFeature when the host cannot run this driver."""

    @staticmethod
    def require(device: str, missing_device: str, binaries: tuple[str, ...], package: str) -> None:
        """The probe of a driver that needs a kernel device and some tools: MissingHostFeature
        naming the first thing absent."""
        if not Path(device).exists():
            raise MissingHostFeature(missing_device)
        absent = [b for b in binaries if shutil.which(b) is None]
        if absent:
            raise MissingHostFeature(f"{', '.join(absent)} not found: apt-get install {package}")

    def owned_loop_file(self) -> Path | None:
        """The loop file this pool made in ``disks`` (and so may grow and delete)."""
        source = Path(self.config.get("source") or "")
        return source if source.parent == self.disks and source.suffix == ".img" else None

    @classmethod
    def volume_keys(cls) -> dict[str, v.Validator]:
        return {**COMMON_VOLUME_KEYS, **cls.VOLUME_KEYS}

    # -- the pool ---------------------------------------------------------------------------------

    @abc.abstractmethod
    async def create_pool(self) -> dict[str, str]:
        """Make the pool's backend from ``config``; return the keys to store with the pool
        (the ``source`` it settled on, a ``size`` it chose). A failure leaves nothing behind."""

    @abc.abstractmethod
    async def mount_pool(self) -> None:
        """Make the pool usable at ``pool_path`` (at creation and at each daemon start)."""

    @abc.abstractmethod
    async def delete_pool(self) -> None:
        """Remove what the pool made; never data it does not own (a source directory it was
        given keeps its other contents)."""

    async def update_pool(self, changed: dict[str, str | None]) -> None:
        """Apply changed pool keys (already validated). Keys fixed at creation are refused."""
        fixed = sorted(set(changed) & {"source", *self.POOL_KEYS} - set(self.LIVE_POOL_KEYS))
        if fixed:
            raise BadRequest(
                f"Pool key {fixed[0]!r} cannot be changed once the {self.info().name} pool "
                "exists (delete and re-create the pool)"
            )

    LIVE_POOL_KEYS: ClassVar[tuple[str, ...]] = ()

    def resources(self) -> PoolResources:
        st = os.statvfs(self.pool_path)
        return PoolResources(
            space_total=st.f_blocks * st.f_frsize,
            space_used=(st.f_blocks - st.f_bfree) * st.f_frsize,
            inodes_total=st.f_files,
            inodes_used=st.f_files - st.f_ffree,
        )

    # -- volumes ----------------------------------------------------------------------------------

    def volume_path(self, vol_type: str, name: str) -> Path:
        return self.pool_path / vol_type / name

    def block_path(self, vol_type: str, name: str) -> Path:
        """Where a block volume's device (or image file) is."""
        return self.volume_path(vol_type, name) / BLOCK_FILE

    def volume_exists(self, vol_type: str, name: str) -> bool:
        return self.volume_path(vol_type, name).exists()

    @abc.abstractmethod
    async def create_volume(
        self, vol_type: str, name: str, content_type: str = FILESYSTEM, size: int | None = None
    ) -> Path:
        """An empty volume (a block volume needs a size); returns its mount path."""

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
    async def fill_volume(self, vol_type: str, name: str, tree: Path) -> None:
        """Make the volume (created when missing) hold exactly the files of ``tree``, a directory
        on the pool's filesystem that may be consumed."""

    @abc.abstractmethod
    async def delete_volume(self, vol_type: str, name: str) -> None:
        """Delete a volume and its snapshots; a missing volume is not an error."""

    @abc.abstractmethod
    async def rename_volume(self, vol_type: str, name: str, new_name: str) -> Path:
        """Rename a volume and its snapshots along with it."""

    async def volume_usage(self, vol_type: str, name: str) -> int | None:
        """Bytes a volume uses on the pool (None: this driver cannot tell)."""
        return None

    async def set_quota(
        self, vol_type: str, name: str, size: int | None, content_type: str = FILESYSTEM
    ) -> None:
        """Limit a volume to ``size`` bytes (None: no limit). Refuse a size below what the
        volume already uses."""
        if size is not None:
            raise BadRequest(
                f"The {self.info().name} pool {self.pool_name!r} cannot limit a volume's size"
            )

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

    # -- optimized backups: the driver's own stream format (btrfs send, zfs send) -----------------

    async def send_streams(
        self,
        vol_type: str,
        name: str,
        snapshots: list[str],
        exclude: tuple[str, ...],
        files: dict[str | None, Path],
    ) -> dict[str | None, str]:
        """Write the driver's send stream of each snapshot (oldest first, incremental from the
        one before) and of the volume (key None) into ``files``, leaving out the ``exclude``
        files where the driver can; return the id each stream's volume is known by."""
        raise BadRequest(f"The {self.info().name} driver has no optimized backup format")

    async def receive_streams(
        self, vol_type: str, name: str, streams: list[tuple[str | None, Path]]
    ) -> None:
        """Make a volume and its snapshots from files made by ``send_streams``: (snapshot
        name, file) oldest first, then (None, the volume's file)."""
        raise BadRequest(f"The {self.info().name} driver has no optimized backup format")
