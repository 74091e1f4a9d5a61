"""Sparse image files: block volumes of the dir and btrfs drivers, and the loop files pools are
made on when given no source (btrfs, lvm, zfs)."""

from __future__ import annotations

import os
from pathlib import Path

from stapes.api.errors import BadRequest
from stapes.config import validate as v
from stapes.host import mounts

DEFAULT_BLOCK_SIZE = 10 * 1024**3  # Incus's default for block volumes without a size


def make_block_file(path: Path, size: int | None) -> None:
    """A sparse file of ``size`` bytes (rounded up to 512-byte sectors)."""
    size = DEFAULT_BLOCK_SIZE if size is None else size
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, -(-size // 512) * 512)
    finally:
        os.close(fd)


def resize_block_file(path: Path, size: int | None) -> None:
    """Grow a block volume; shrinking it would cut the filesystem inside, so it is refused."""
    if size is None:
        raise BadRequest("A block volume needs a size: it cannot be unset")
    size = -(-size // 512) * 512
    current = path.stat().st_size
    if size < current:
        raise BadRequest(
            f"Block volumes cannot shrink: {size} bytes is below the current {current} bytes"
        )
    os.truncate(path, size)


MIN_LOOP_SIZE = 5 * 1024**3
MAX_LOOP_SIZE = 30 * 1024**3


def default_loop_size(disks: Path) -> int:
    """Incus's default for a loop-backed pool: a fifth of the free space, 5 to 30 GiB."""
    st = os.statvfs(disks)
    fifth = st.f_bavail * st.f_frsize // 5
    return max(MIN_LOOP_SIZE, min(MAX_LOOP_SIZE, fifth // 1024**3 * 1024**3))


def new_loop_file(disks: Path, pool: str, size_text: str | None) -> tuple[Path, str]:
    """The sparse file a pool without a source lives on: ``disks/POOL.img`` of ``size_text``
    (or the default); returns it and the size to record (as the user wrote it)."""
    disks.mkdir(mode=0o700, parents=True, exist_ok=True)
    size = v.parse_size(size_text) if size_text else default_loop_size(disks)
    image = disks / f"{pool}.img"
    if image.exists():
        raise BadRequest(f"{image} already exists: remove it or choose another pool name")
    make_block_file(image, size)
    return image, size_text or f"{size // 1024**3}GiB"


async def check_wipe(device: str, config: dict[str, str]) -> None:
    """A device that holds a filesystem (or any signature) is only erased with source.wipe."""
    found = await mounts.filesystem_signature(device)
    if found and not v.parse_bool(config.get("source.wipe", "false")):
        raise BadRequest(
            f"{device} holds data (a {found} signature): set source.wipe=true to erase it"
        )
