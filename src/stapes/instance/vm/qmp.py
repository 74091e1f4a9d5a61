"""Short QMP conversations with one QEMU (qemu.qmp): QEMU serves one QMP client at a time, so
every conversation holds the VM's lock and disconnects when done."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient, QMPError

from stapes.api.errors import InternalError

_locks: collections.defaultdict[Path, asyncio.Lock] = collections.defaultdict(asyncio.Lock)


@contextlib.asynccontextmanager
async def session(socket: Path, timeout: float = 10) -> AsyncIterator[QMPClient]:
    async with _locks[socket]:
        client = QMPClient(f"stapesd:{socket.parent.name}")
        try:
            await asyncio.wait_for(client.connect(str(socket)), timeout)
        except (OSError, QMPError, TimeoutError) as exc:
            raise InternalError(f"Cannot reach the VM's QEMU monitor ({socket}): {exc}") from None
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()


async def execute(socket: Path, command: str, arguments: dict[str, Any] | None = None) -> Any:
    async with session(socket) as client:
        try:
            return await asyncio.wait_for(client.execute(command, arguments), 30)
        except (QMPError, TimeoutError) as exc:
            raise InternalError(f"QEMU refused {command}: {exc}") from None
