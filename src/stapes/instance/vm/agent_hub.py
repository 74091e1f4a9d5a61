"""stapesd's end of a VM's agent port: one connection to QEMU's agent socket carries every
request as a channel of its own (agent/protocol.py). Requests come from the daemon itself
(files, state) or from exec relays (vm/exec_relay.py), separate processes that connect to the
hub's own socket, ``agent-mux.sock``, one connection per command."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from stapes.agent import protocol as p
from stapes.api.errors import BadRequest

log = logging.getLogger(__name__)

AGENT_WAIT = 3.0
"""How long a request waits for the agent to answer a ping before it is refused."""

Frame = tuple[int, bytes]
"""(kind, payload) on one channel."""


class AgentChannel:
    def __init__(self, hub: AgentHub, number: int) -> None:
        self.hub = hub
        self.number = number
        self.frames: asyncio.Queue[Frame | None] = asyncio.Queue()

    async def send(self, kind: int, payload: bytes = b"") -> None:
        await self.hub.write(p.pack(self.number, kind, payload))

    async def send_json(self, kind: int, value: object) -> None:
        await self.send(kind, json.dumps(value).encode())

    async def receive(self, timeout: float | None = None) -> Frame:
        """The next frame; EXIT with an error when the agent went away."""
        frame = await asyncio.wait_for(self.frames.get(), timeout)
        if frame is None:
            return p.EXIT, json.dumps({"error": "the VM agent went away"}).encode()
        return frame

    async def reply(self, timeout: float = 30) -> dict[str, Any]:
        """The REPLY to the request (an EXIT first is the agent's refusal: a 400)."""
        kind, payload = await self.receive(timeout)
        if kind == p.EXIT:
            raise BadRequest(f"VM agent: {json.loads(payload).get('error', 'request refused')}")
        value: dict[str, Any] = json.loads(payload)
        return value


class AgentHub:
    def __init__(self, agent_socket: Path, mux_socket: Path, vsock_cid: int = 0) -> None:
        self.agent_socket = agent_socket
        self.vsock_cid = vsock_cid
        """The guest's vsock CID when the VM has a vsock device (tried before the port)."""
        self.mux_socket = mux_socket
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._server: asyncio.Server | None = None
        self._channels: dict[int, AgentChannel] = {}
        self._numbers = itertools.count(1)
        self._write_lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        self._ready = False

    async def start(self) -> None:
        """Listen for exec relays (idempotent)."""
        if self._server is None:
            self.mux_socket.unlink(missing_ok=True)
            self._server = await asyncio.start_unix_server(self._relay, str(self.mux_socket))
            self.mux_socket.chmod(0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._drop_connection()

    async def _drop_connection(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            self._reader_task = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._ready = False
        for channel in list(self._channels.values()):
            channel.frames.put_nowait(None)
        self._channels.clear()

    async def _connect(self) -> None:
        async with self._connect_lock:
            if self._writer is not None:
                return
            if self.vsock_cid:
                with contextlib.suppress(OSError):
                    sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
                    sock.setblocking(False)
                    try:
                        target = (self.vsock_cid, p.VSOCK_PORT)
                        await asyncio.wait_for(
                            asyncio.get_running_loop().sock_connect(sock, target), 2
                        )
                    except (OSError, TimeoutError):
                        sock.close()
                        raise OSError("no vsock agent") from None
                    reader, writer = await asyncio.open_connection(sock=sock)
                    self._writer = writer
                    self._reader_task = asyncio.get_running_loop().create_task(self._read(reader))
                    return
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.agent_socket))
            except OSError as exc:
                raise BadRequest(f"The VM's agent port cannot be reached: {exc.strerror}") from None
            self._writer = writer
            self._reader_task = asyncio.get_running_loop().create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        frames = p.Reader()
        try:
            while data := await reader.read(256 * 1024):
                for number, kind, payload in frames.feed(data):
                    channel = self._channels.get(number)
                    if channel is None:
                        continue
                    channel.frames.put_nowait((kind, payload))
                    if kind == p.EXIT:
                        self._channels.pop(number, None)
        except (OSError, ValueError) as exc:
            log.warning("VM agent stream from %s ended: %s", self.agent_socket, exc)
        finally:
            self._writer = None
            self._ready = False
            for channel in list(self._channels.values()):
                channel.frames.put_nowait(None)
            self._channels.clear()

    async def write(self, data: bytes) -> None:
        if self._writer is None:
            raise BadRequest("VM agent isn't currently running")
        async with self._write_lock:
            self._writer.write(data)
            await self._writer.drain()

    async def ensure_agent(self) -> None:
        """Connected, and the agent answered a ping (else a 400 saying it is not running)."""
        await self._connect()
        if self._ready:
            return
        channel = self._open_channel()
        try:
            await channel.send_json(p.OPEN, {"type": "ping"})
            await channel.reply(AGENT_WAIT)
        except (TimeoutError, BadRequest):
            self._channels.pop(channel.number, None)
            raise BadRequest(
                "VM agent isn't currently running (the guest is booting, or its image has no agent)"
            ) from None
        self._ready = True

    def _open_channel(self) -> AgentChannel:
        channel = AgentChannel(self, next(self._numbers))
        self._channels[channel.number] = channel
        return channel

    @contextlib.asynccontextmanager
    async def request(self, request: dict[str, Any]) -> AsyncIterator[AgentChannel]:
        """A channel with ``request`` sent on it; closed (forgotten) on the way out."""
        await self.ensure_agent()
        channel = self._open_channel()
        try:
            await channel.send_json(p.OPEN, request)
            yield channel
        finally:
            self._channels.pop(channel.number, None)

    async def call(self, request: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        async with self.request(request) as channel:
            return await channel.reply(timeout)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One exec relay: its frames (channel 0) go out on a channel of the hub's, the guest's
        frames on that channel come back to it, until the command's EXIT."""
        frames = p.Reader()
        channel: AgentChannel | None = None
        try:
            try:
                await self.ensure_agent()
            except BadRequest as exc:
                writer.write(p.pack_json(0, p.EXIT, {"error": exc.message}))
                await writer.drain()
                return
            channel = self._open_channel()
            forward = asyncio.get_running_loop().create_task(self._to_relay(channel, writer))
            try:
                while data := await reader.read(256 * 1024):
                    for _, kind, payload in frames.feed(data):
                        await channel.send(kind, payload)
            finally:
                if not forward.done():  # the relay went away first (killed): so does its command
                    with contextlib.suppress(BadRequest):
                        await channel.send_json(p.SIGNAL, {"signal": 9})
                    forward.cancel()
        except (OSError, ValueError) as exc:
            log.debug("exec relay ended: %s", exc)
        finally:
            if channel is not None:
                self._channels.pop(channel.number, None)
            writer.close()

    @staticmethod
    async def _to_relay(channel: AgentChannel, writer: asyncio.StreamWriter) -> None:
        while True:
            kind, payload = await channel.receive()
            writer.write(p.pack(0, kind, payload))
            await writer.drain()
            if kind == p.EXIT:
                writer.write_eof()
                return
