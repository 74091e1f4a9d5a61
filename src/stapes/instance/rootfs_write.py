"""Writing files into an instance's rootfs from stapesd itself (templates, the cloud-init seed):
every path is resolved inside the rootfs (host/in_root.py), so no link the instance made can
send a write to the host."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stapes.api.errors import BadRequest
from stapes.host import in_root

_WRITERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rootfs-write")
"""Threads of their own: writes into instances' files never take the daemon's shared pool,
so no instance's files can starve other requests (the writes themselves never block on
FIFOs or devices: host/in_root.py)."""


async def _in_pool(fn: Callable[..., None], *args: object) -> None:
    await asyncio.get_running_loop().run_in_executor(_WRITERS, fn, *args)


async def write_file(
    rootfs: Path, path: str, content: bytes, root_id: int, *, mode: int | None = None
) -> None:
    """A new file belongs to the instance's root (host id ``root_id``), 0644 unless ``mode``;
    raises BadRequest with the reason when it cannot be written."""
    try:
        await _in_pool(in_root.write_file, rootfs, path, content, root_id, mode)
    except OSError as exc:
        raise BadRequest(f"Could not write {path} in the instance: {exc.strerror}") from None


async def make_dirs(rootfs: Path, path: str, root_id: int, mode: int = 0o755) -> None:
    try:
        await _in_pool(in_root.make_dirs, rootfs, path, root_id, mode)
    except OSError as exc:
        raise BadRequest(f"Could not make {path} in the instance: {exc.strerror}") from None
