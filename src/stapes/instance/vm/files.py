"""Files of a running VM, through its agent: the same operations as a container's rootfs
helper (get, put, delete), with the same errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from stapes.agent import protocol as p
from stapes.api.errors import BadRequest, InternalError, NotFound, StapesError
from stapes.instance.vm.agent_hub import AgentChannel, AgentHub

CHUNK = 256 * 1024


def _error(path: str, result: dict[str, Any]) -> StapesError:
    code, message = result.get("errno", ""), result.get("error", "file operation failed")
    if code == "ENOENT":
        return NotFound(f"Path {path!r} not found in the instance")
    if code:
        return BadRequest(f"Path {path!r}: {message}")
    return InternalError(f"Path {path!r}: {message}")


async def _reply(channel: AgentChannel, path: str) -> dict[str, Any]:
    kind, payload = await channel.receive(60)
    result: dict[str, Any] = json.loads(payload)
    if kind == p.EXIT:
        raise _error(path, result)
    return result


async def _finish(channel: AgentChannel, path: str) -> None:
    while True:
        kind, payload = await channel.receive(600)
        if kind == p.EXIT:
            result = json.loads(payload)
            if "error" in result:
                raise _error(path, result)
            return


async def get(hub: AgentHub, path: str) -> tuple[dict[str, Any], AsyncIterator[bytes]]:
    """The file's description (type, mode, uid, gid, size, mtime, target, entries), then its
    bytes."""
    opened = hub.request({"type": "file-get", "path": path})
    channel = await opened.__aenter__()
    try:
        info = await _reply(channel, path)
    except BaseException:
        await opened.__aexit__(None, None, None)
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            while True:
                kind, payload = await channel.receive(600)
                if kind == p.STDOUT:
                    yield payload
                elif kind == p.EXIT:
                    result = json.loads(payload)
                    if "error" in result:
                        raise _error(path, result)
                    return
        finally:
            await opened.__aexit__(None, None, None)

    return info, body()


async def put(
    hub: AgentHub,
    path: str,
    *,
    kind: str,
    uid: int,
    gid: int,
    mode: int,
    append: bool,
    content: AsyncIterator[bytes],
) -> None:
    request = {
        "type": "file-put", "path": path, "kind": kind, "uid": uid, "gid": gid, "mode": mode,
        "append": append,
    }  # fmt: skip
    async with hub.request(request) as channel:
        await _reply(channel, path)
        async for chunk in content:
            for start in range(0, len(chunk), CHUNK):
                await channel.send(p.STDIN, chunk[start : start + CHUNK])
        await channel.send(p.STDIN, b"")
        await _finish(channel, path)


async def delete(hub: AgentHub, path: str) -> None:
    async with hub.request({"type": "file-delete", "path": path}) as channel:
        await _finish(channel, path)
