"""Block volumes kept as sparse image files (the dir and btrfs drivers)."""

from __future__ import annotations

import os
from pathlib import Path

from stapes.api.errors import BadRequest

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
