"""A VM's root disk: ``root.img`` on its volume, a sparse raw file that only grows."""

from __future__ import annotations

import os
from pathlib import Path

from stapes.api.errors import BadRequest

ROOT_DISK = "root.img"
DEFAULT_ROOT_SIZE = 10 * 1024**3
"""Incus's default size of a VM's root disk."""


def check_root_size(size: int | None, image_size: int) -> None:
    if size is not None and size < image_size:
        raise BadRequest(
            f"Root disk size {size} bytes is below the image's disk ({image_size} bytes): "
            "give the root disk a size of at least the image's"
        )


def grow_root(volume: Path, size: int | None) -> None:
    """``size`` (None: the default, or the image's disk if larger); never shrinks. A VM made
    without an image (``--empty``) gets an empty disk of that size, as in Incus."""
    path = volume / ROOT_DISK
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    current = path.stat().st_size
    check_root_size(size, current)
    wanted = -(-(size or max(DEFAULT_ROOT_SIZE, current)) // 512) * 512
    if wanted > current:
        os.truncate(path, wanted)
