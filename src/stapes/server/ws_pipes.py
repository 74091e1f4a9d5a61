"""Moving bytes between websockets and file descriptors (pipes, terminal masters), for exec and
the console."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import struct
import termios
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any

from aiohttp import WSMsgType, web

from stapes.api.errors import BadRequest
from stapes.runtime.operations import Operation

CHUNK = 64 * 1024


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(fd, data) :]


async def pump_input(ws: web.WebSocketResponse, fd: int, *, close_on_eof: bool) -> None:
    """Websocket -> fd. An empty message or a close means end of input."""
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                data = msg.data
            elif msg.type == WSMsgType.TEXT:
                data = msg.data.encode()
            else:
                break
            if not data:
                break
            await asyncio.to_thread(_write_all, fd, data)
    finally:
        if close_on_eof:
            with contextlib.suppress(OSError):
                os.close(fd)


async def pump_output(ws: web.WebSocketResponse, fd: int) -> None:
    """fd -> websocket until end of file; owns ``fd`` (closed through the pipe transport)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    pipe = os.fdopen(fd, "rb", 0)
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
    except BaseException:
        pipe.close()
        raise
    try:
        while data := await reader.read(CHUNK):
            await ws.send_bytes(data)
    finally:
        transport.close()


MAX_MESSAGE = 16 * 1024 * 1024
"""The largest websocket message a client may send (clients send stdin in small chunks)."""


class TerminalBridge:
    """Both directions between a terminal master and one websocket, while in the ``async with``.
    The master stays open (its owner closes it); ``output`` ends when the terminal hangs up,
    ``input`` when the websocket closes."""

    def __init__(self, master: int, ws: web.WebSocketResponse) -> None:
        self.master = master
        self.ws = ws
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()

    def _readable(self) -> None:
        try:
            data = os.read(self.master, CHUNK)
        except OSError:  # EIO: the other side of the terminal is gone
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
        self._chunks.put_nowait(data)

    async def _send(self) -> None:
        while data := await self._chunks.get():
            await self.ws.send_bytes(data)

    async def __aenter__(self) -> TerminalBridge:
        loop = asyncio.get_running_loop()
        os.set_blocking(self.master, False)
        loop.add_reader(self.master, self._readable)
        self.output = loop.create_task(self._send())
        self.input = loop.create_task(pump_input(self.ws, self.master, close_on_eof=False))
        return self

    async def drain(self, timeout: float) -> None:
        """Let the output already written reach the websocket (up to ``timeout`` seconds)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.output), timeout)

    async def either_side_ends(self) -> None:
        await asyncio.wait({self.output, self.input}, return_when=asyncio.FIRST_COMPLETED)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        self.output.cancel()
        self.input.cancel()


def resize_terminal(master: int, width: int, height: int) -> None:
    if master >= 0 and width > 0 and height > 0:
        with contextlib.suppress(OSError):
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


async def control_messages(ws: web.WebSocketResponse) -> AsyncIterator[dict[str, Any]]:
    """The JSON commands of a control websocket (window-resize, signal...), until it closes."""
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            continue
        try:
            command = json.loads(msg.data)
        except json.JSONDecodeError:
            continue
        if isinstance(command, dict):
            yield command


def window_size(command: dict[str, Any]) -> tuple[int, int] | None:
    """(width, height) of a window-resize command."""
    args = command.get("args") or {}
    try:
        return int(args.get("width", 0)), int(args.get("height", 0))
    except (TypeError, ValueError, AttributeError):
        return None


def all_required_connected(connected: Iterable[str], wanted: Iterable[str]) -> bool:
    """Whether a session can begin: every websocket but control (optional, as in Incus: pylxd
    never opens it) is connected."""
    return set(wanted) - {"control"} <= set(connected)


class WebsocketSession:
    """The websockets of one operation, each named (``0``, ``1``, ``2``, ``control``) and
    reached through its secret. Subclasses handle control messages and run the session."""

    def __init__(self) -> None:
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.names: dict[str, str] = {}
        self.connected = asyncio.Event()
        self.finished = asyncio.Event()
        self.master = -1
        """The terminal master, while one is attached (for window-resize)."""

    def open_sockets(self, op: Operation, wanted: Iterable[str]) -> dict[str, str]:
        """Make a secret per websocket and route their connections here; returns the fds."""
        fds = {}
        for name in wanted:
            fds[name] = op.new_secret(name)
            self.names[fds[name]] = name
        op.websocket_connector = self.connect
        return fds

    async def connect(self, secret: str, request: web.Request) -> web.StreamResponse:
        name = self.names[secret]
        if name in self.sockets:
            raise BadRequest(f"Websocket {name} is already connected")
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        self.sockets[name] = ws
        if all_required_connected(self.sockets, self.names.values()):
            self.connected.set()
        if name == "control":
            async for command in control_messages(ws):
                self.on_control(command)
            self.on_control_closed()
        await self.finished.wait()
        return ws

    def on_control(self, command: dict[str, Any]) -> None:
        """A control message; window-resize applies to the terminal, if any."""
        if command.get("command") == "window-resize":
            size = window_size(command)
            if size is not None:
                resize_terminal(self.master, *size)

    def on_control_closed(self) -> None:
        return None

    async def wait_connected(self, timeout: float, what: str) -> None:
        try:
            await asyncio.wait_for(self.connected.wait(), timeout)
        except TimeoutError:
            raise BadRequest(f"Timed out waiting for the {what} websockets to connect") from None

    async def finish(self) -> None:
        """The session is over: release the connection handlers and close every websocket."""
        self.finished.set()
        for ws in self.sockets.values():
            with contextlib.suppress(Exception):
                await ws.close()
