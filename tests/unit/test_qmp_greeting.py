"""vm/qmp.session: a connection whose first message is not QMP's greeting is tried again
(CI saw one during a live migration under load), up to GREETING_TRIES, and then fails with an
InternalError that names the socket. The server here speaks QMP over a real unix socket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from stapes.api.errors import InternalError
from stapes.instance.vm import qmp

GREETING = {"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""},
                    "capabilities": []}}  # fmt: skip


async def _serve(path: Path, bad_first: int) -> tuple[asyncio.Server, list[int]]:
    """A QMP server whose first ``bad_first`` connections start with a stray reply."""
    seen = [0]

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen[0] += 1
        if seen[0] <= bad_first:
            writer.write(b'{"return": {"status": "running", "running": true}}\r\n')
        writer.write(json.dumps(GREETING).encode() + b"\r\n")
        await writer.drain()
        pending = ""
        while chunk := await reader.read(4096):  # a JSON stream: no line ends needed
            pending += chunk.decode()
            while pending.strip():
                try:
                    request, end = json.JSONDecoder().raw_decode(pending.lstrip())
                except ValueError:
                    break
                pending = pending.lstrip()[end:]
                reply: dict[str, object] = {"return": {}}
                if request["execute"] == "query-status":
                    reply = {"return": {"status": "running", "running": True}}
                if "id" in request:
                    reply["id"] = request["id"]
                writer.write(json.dumps(reply).encode() + b"\r\n")
                await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(talk, path=str(path))
    return server, seen


@pytest.mark.parametrize("bad_first", [0, 1, qmp.GREETING_TRIES - 1])
def test_a_stray_first_message_is_tried_again(tmp_path: Path, bad_first: int) -> None:
    async def scenario() -> tuple[object, int]:
        server, seen = await _serve(tmp_path / "qmp.sock", bad_first)
        async with server:
            status = await qmp.execute(tmp_path / "qmp.sock", "query-status")
        return status, seen[0]

    status, connections = asyncio.run(scenario())
    assert status == {"status": "running", "running": True}
    assert connections == bad_first + 1


def test_it_gives_up_after_the_last_try(tmp_path: Path) -> None:
    async def scenario() -> int:
        server, seen = await _serve(tmp_path / "qmp.sock", qmp.GREETING_TRIES)
        async with server:
            with pytest.raises(InternalError, match="Cannot reach the VM's QEMU monitor"):
                await qmp.execute(tmp_path / "qmp.sock", "query-status")
        return seen[0]

    assert asyncio.run(scenario()) == qmp.GREETING_TRIES
