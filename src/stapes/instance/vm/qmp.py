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
from qemu.qmp.protocol import ConnectError
from qemu.qmp.qmp_client import GreetingError

from stapes.api.errors import InternalError

_locks: collections.defaultdict[Path, asyncio.Lock] = collections.defaultdict(asyncio.Lock)


GREETING_TRIES = 3


@contextlib.asynccontextmanager
async def session(socket: Path, timeout: float = 10) -> AsyncIterator[QMPClient]:
    async with _locks[socket]:
        client = await _connect(socket, timeout)
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()


async def _connect(socket: Path, timeout: float) -> QMPClient:
    """A client past QMP's greeting and negotiation. A connection whose first message was
    not a greeting is tried again: CI once saw one start with something else during a live
    migration (under load, a reply QEMU still owed an earlier connection is the likely
    cause), and the next connection gets its greeting."""
    attempt = 1
    while True:
        client = QMPClient(f"stapesd:{socket.parent.name}")
        try:
            await asyncio.wait_for(client.connect(str(socket)), timeout)
            return client
        except (OSError, QMPError, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                await client.disconnect()
            greeting = isinstance(exc, ConnectError) and isinstance(exc.exc, GreetingError)
            if not greeting or attempt == GREETING_TRIES:
                raise InternalError(
                    f"Cannot reach the VM's QEMU monitor ({socket}): {exc}"
                ) from None
        attempt += 1
        await asyncio.sleep(0.1)


async def execute(socket: Path, command: str, arguments: dict[str, Any] | None = None) -> Any:
    async with session(socket) as client:
        try:
            return await asyncio.wait_for(client.execute(command, arguments), 30)
        except (QMPError, TimeoutError) as exc:
            raise InternalError(f"QEMU refused {command}: {exc}") from None
