"""The ``dir`` driver: volumes are plain directories below the pool's path; copies and snapshots
are full copies (reflinked where the filesystem can), made by several cp at once
(host/tree_copy.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import ClassVar

from stapes.api.errors import BadRequest, Conflict, NotFound
from stapes.config import validate as v
from stapes.host.run import run
from stapes.host.tree_copy import copy_tree
from stapes.storage.drivers.block_file import make_block_file, resize_block_file
from stapes.storage.drivers.driver import BLOCK, FILESYSTEM, DriverInfo, StorageDriver

USAGE_CACHE_SECONDS = 60.0

log = logging.getLogger(__name__)


def _tree_usage(root: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


VOLUME_DIRS = (
    "containers",
    "containers-snapshots",
    "virtual-machines",
    "virtual-machines-snapshots",
    "images",
    "custom",
    "custom-snapshots",
)


async def sync_tree(source: Path, target: Path) -> None:
    """Make the tree at ``target`` (which exists) a copy of ``source``, moving what differs
    (times compared to the nanosecond: two writes of the same size in one second differ)."""
    argv = ["rsync", "-aHAX", "--delete", "--numeric-ids", "--modify-window=-1"]
    await run([*argv, f"{source}/", f"{target}/"])


def is_abs_dir(value: str) -> None:
    if not value.startswith("/") or "\0" in value:
        raise ValueError(f"{value!r} is not an absolute path")


class DirDriver(StorageDriver):
    """Volumes are directories below the pool's path: ``$STAPES_DIR/storage-pools/NAME`` or, with
    ``source``, a host directory that path links to."""

    POOL_KEYS: ClassVar[dict[str, v.Validator]] = {
        "source": is_abs_dir,
        "rsync.bwlimit": v.any_value,
        "rsync.compression": v.is_bool,
    }
    LIVE_POOL_KEYS = ("rsync.bwlimit", "rsync.compression")
    _reflink = False

    def __init__(
        self, pool_name: str, pool_path: Path, config: dict[str, str], disks: Path
    ) -> None:
        super().__init__(pool_name, pool_path, config, disks)
        self._usage: dict[tuple[str, str], tuple[float, int]] = {}

    @classmethod
    def info(cls) -> DriverInfo:
        return DriverInfo(name="dir", version="1", block_volumes=True)

    @classmethod
    def probe(cls) -> None:
        return None

    def _source(self) -> Path:
        return Path(self.config.get("source") or self.pool_path)

    async def create_pool(self) -> dict[str, str]:
        source = self._source()
        if source == self.pool_path:
            self.pool_path.mkdir(mode=0o711, parents=True, exist_ok=True)
        else:
            if source.is_symlink() or (source.exists() and not source.is_dir()):
                raise BadRequest(f"Source path {str(source)!r} is not a directory")
            if source.exists() and any(source.iterdir()):
                raise BadRequest(
                    f"Source path {str(source)!r} isn't empty: give an empty or new directory"
                )
            source.mkdir(mode=0o711, parents=True, exist_ok=True)
            self.pool_path.parent.mkdir(parents=True, exist_ok=True)
            self.pool_path.symlink_to(source)
        try:
            await self.mount_pool()
        except BaseException:
            await self.delete_pool()
            raise
        return {"source": str(source)}

    async def mount_pool(self) -> None:
        source = self._source()
        if not source.is_dir():
            raise BadRequest(
                f"The source {str(source)!r} of storage pool {self.pool_name!r} is missing"
            )
        if source != self.pool_path and not self.pool_path.is_symlink():
            self.pool_path.parent.mkdir(parents=True, exist_ok=True)
            self.pool_path.symlink_to(source)
        for vol_type in VOLUME_DIRS:
            path = self.pool_path / vol_type
            path.mkdir(exist_ok=True)
            path.chmod(0o711)
        self._reflink = await self._probe_reflink()

    async def delete_pool(self) -> None:
        for vol_type in VOLUME_DIRS:
            await asyncio.to_thread(shutil.rmtree, self.pool_path / vol_type, True)
        for probe in self.pool_path.glob(".reflink-probe*"):
            probe.unlink(missing_ok=True)
        if self.pool_path.is_symlink():
            self.pool_path.unlink()
        elif self.pool_path.is_dir():
            with contextlib.suppress(OSError):
                self.pool_path.rmdir()

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

    async def _copy_tree(self, source: Path, target: Path) -> None:
        """Copy a tree to a path that must not exist; a failed copy leaves nothing behind."""
        if target.exists():
            raise Conflict(f"{target.name!r} already exists on pool {self.pool_name!r}")
        partial = target.with_name(target.name + ".partial")
        await asyncio.to_thread(shutil.rmtree, partial, True)
        try:
            await copy_tree(source, partial, reflink=self._reflink)
            partial.rename(target)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, partial, True)
            raise

    async def _clone(self, source: Path, target: Path, readonly: bool = False) -> None:
        """A copy of a volume or snapshot at a new path: copy, snapshot and restore are built
        on it (the dir driver copies the tree; btrfs snapshots the subvolume)."""
        await self._copy_tree(source, target)

    async def _remove(self, path: Path) -> None:
        """Remove a volume or snapshot made by ``_clone`` or ``create_volume``, if there."""
        if path.exists():
            await asyncio.to_thread(shutil.rmtree, path)

    async def create_volume(
        self, vol_type: str, name: str, content_type: str = FILESYSTEM, size: int | None = None
    ) -> Path:
        path = self.volume_path(vol_type, name)
        try:
            path.mkdir(mode=0o711)
        except FileExistsError:
            raise Conflict(
                f"Storage volume {vol_type}/{name} already exists on pool {self.pool_name!r}"
            ) from None
        if content_type == BLOCK:
            try:
                make_block_file(self.block_path(vol_type, name), size)
            except BaseException:
                await self.delete_volume(vol_type, name)
                raise
        return path

    async def set_quota(
        self, vol_type: str, name: str, size: int | None, content_type: str = FILESYSTEM
    ) -> None:
        if content_type == BLOCK:
            resize_block_file(self.block_path(vol_type, name), size)
            return
        if size is not None:  # as Incus's dir driver where the filesystem has no quotas
            log.warning(
                "dir pool %s: size %d of %s/%s recorded, not enforced (no project quotas on "
                "this filesystem: a btrfs pool enforces sizes)",
                self.pool_name, size, vol_type, name,
            )  # fmt: skip

    async def copy_volume(self, src_type: str, src: str, dst_type: str, dst: str) -> Path:
        target = self.volume_path(dst_type, dst)
        await self._clone(self.volume_path(src_type, src), target)
        return target

    async def move_volume(self, src_type: str, src: str, dst_type: str, dst: str) -> Path:
        target = self.volume_path(dst_type, dst)
        if target.exists():
            raise Conflict(
                f"Storage volume {dst_type}/{dst} already exists on pool {self.pool_name!r}"
            )
        self.volume_path(src_type, src).rename(target)
        return target

    async def refresh_volume(self, src_type: str, src: str, dst_type: str, dst: str) -> None:
        await sync_tree(self.volume_path(src_type, src), self.volume_path(dst_type, dst))

    async def fill_volume(self, vol_type: str, name: str, tree: Path) -> None:
        path = self.volume_path(vol_type, name)
        if self.volume_exists(vol_type, name):
            await sync_tree(tree, path)
            return
        path.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
        tree.rename(path)  # the tree is on the pool: a move, not a copy

    async def delete_volume(self, vol_type: str, name: str) -> None:
        for path in (self.volume_path(vol_type, name), self._snapshots_dir(vol_type, name)):
            if path.exists():
                await asyncio.to_thread(shutil.rmtree, path)

    async def rename_volume(self, vol_type: str, name: str, new_name: str) -> Path:
        target = self.volume_path(vol_type, new_name)
        self.volume_path(vol_type, name).rename(target)
        snapshots = self._snapshots_dir(vol_type, name)
        if snapshots.exists():
            snapshots.rename(self._snapshots_dir(vol_type, new_name))
        return target

    async def volume_usage(self, vol_type: str, name: str) -> int | None:
        """The blocks of every file of the volume, counted at most once a minute (a walk of
        the tree: the dir driver has no quota accounting to ask)."""
        key = (vol_type, name)
        cached = self._usage.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < USAGE_CACHE_SECONDS:
            return cached[1]
        path = self.volume_path(vol_type, name)
        if not path.is_dir():
            return None
        used = await asyncio.to_thread(_tree_usage, path)
        self._usage[key] = (now, used)
        return used

    # -- snapshots ------------------------------------------------------------------------------

    def _snapshots_dir(self, vol_type: str, name: str) -> Path:
        return self.snapshot_path(vol_type, name, "x").parent

    def _existing_snapshot(self, vol_type: str, name: str, snap: str) -> Path:
        path = self.snapshot_path(vol_type, name, snap)
        if not path.is_dir():
            raise NotFound(f"Snapshot {name}/{snap} has no volume on pool {self.pool_name!r}")
        return path

    async def create_snapshot(self, vol_type: str, name: str, snap: str) -> Path:
        target = self.snapshot_path(vol_type, name, snap)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        await self._clone(self.volume_path(vol_type, name), target, readonly=True)
        return target

    async def delete_snapshot(self, vol_type: str, name: str, snap: str) -> None:
        path = self.snapshot_path(vol_type, name, snap)
        await self._remove(path)
        parent = path.parent
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()

    async def rename_snapshot(self, vol_type: str, name: str, snap: str, new_snap: str) -> None:
        target = self.snapshot_path(vol_type, name, new_snap)
        if target.exists():
            raise Conflict(f"Snapshot {name}/{new_snap} already exists on pool {self.pool_name!r}")
        self._existing_snapshot(vol_type, name, snap).rename(target)

    async def restore_snapshot(self, vol_type: str, name: str, snap: str) -> None:
        """Copy the snapshot beside the volume, then swap the two: a failed copy leaves the
        volume as it was."""
        volume = self.volume_path(vol_type, name)
        restored = volume.with_name(name + ".restoring")
        old = volume.with_name(name + ".replaced")
        await self._remove(restored)
        await self._clone(self._existing_snapshot(vol_type, name, snap), restored)
        await self._remove(old)
        volume.rename(old)
        restored.rename(volume)
        await self._remove(old)

    async def volume_from_snapshot(
        self, vol_type: str, name: str, snap: str, dst_type: str, dst: str
    ) -> Path:
        target = self.volume_path(dst_type, dst)
        await self._clone(self._existing_snapshot(vol_type, name, snap), target)
        return target

    async def copy_snapshot(self, vol_type: str, name: str, snap: str, dst: str) -> None:
        target = self.snapshot_path(vol_type, dst, snap)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        source = self._existing_snapshot(vol_type, name, snap)
        await self._clone(source, target, readonly=True)
