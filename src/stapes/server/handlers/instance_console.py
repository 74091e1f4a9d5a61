"""/1.0/instances/{name}/console (attach over websockets, the console log, clearing it) and
/1.0/instances/{name}/logs (the instance's log files)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Awaitable, Callable

from aiohttp import web

from stapes.api.base import StatusCode
from stapes.api.errors import BadRequest, NotFound
from stapes.api.instance import InstanceConsolePost
from stapes.instance.driver import Console, InstanceDriver, InstanceSpec
from stapes.instance.service import url
from stapes.instance.vm.qemu import QemuDriver
from stapes.runtime.operations import Operation
from stapes.server.endpoint import Action, Endpoint, body_as, instance_row, state
from stapes.server.response import Async, Result, Sync
from stapes.server.ws_pipes import (
    TerminalBridge,
    WebsocketSession,
    resize_terminal,
)

CONNECT_TIMEOUT = 30.0


class ConsoleSession(WebsocketSession):
    """One client attached to an instance's console: data on websocket 0, resizes on control.
    It ends when either websocket closes or the console hangs up (the instance stopped)."""

    def __init__(
        self,
        driver: InstanceDriver,
        spec: InstanceSpec,
        req: InstanceConsolePost,
        attach: Callable[[], Awaitable[Console]],
    ):
        super().__init__()
        self.driver = driver
        self.spec = spec
        self.req = req
        self.attach = attach
        self.control_closed = asyncio.Event()

    def prepare(self, op: Operation) -> None:
        op.metadata = {"fds": self.open_sockets(op, ("0", "control"))}

    def on_control_closed(self) -> None:
        self.control_closed.set()

    async def run(self, op: Operation) -> None:
        try:
            await self.wait_connected(CONNECT_TIMEOUT, "console")
            console = await self.attach()
            self.master = console.master
            resize_terminal(self.master, self.req.width, self.req.height)
            try:
                async with TerminalBridge(self.master, self.sockets["0"]) as bridge:
                    control = asyncio.ensure_future(self.control_closed.wait())
                    ended = asyncio.ensure_future(bridge.either_side_ends())
                    await asyncio.wait({control, ended}, return_when=asyncio.FIRST_COMPLETED)
                    control.cancel()
                    ended.cancel()
            finally:
                os.close(self.master)
                self.master = -1
                await console.release()
        finally:
            await self.finish()


async def post_console(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    req = await body_as(request, InstanceConsolePost)
    driver, spec = st.instances.drivers.get(row.type), st.instances.spec(row)
    attach = functools.partial(driver.console, spec)
    if req.type == "vga" and isinstance(driver, QemuDriver):
        attach = functools.partial(driver.vga, spec)  # the VNC display, as raw bytes
    elif req.type not in ("", "console"):
        raise BadRequest(
            f"Console type {req.type!r} is not available for a {row.type}: use type console"
        )
    if (await st.instances.status(row)).status != StatusCode.RUNNING:
        raise BadRequest("Instance is not running")
    session = ConsoleSession(driver, spec, req, attach)
    op = st.operations.start(
        session.run,
        description="Showing console",
        project=row.project,
        cls="websocket",
        resources={"instances": [url(row.name, row.project)]},
        prepare=session.prepare,
    )
    return Async(op)


def _console_log(request: web.Request) -> str:
    st = state(request)
    row = instance_row(request)
    if request.query.get("type", "console") != "console":
        raise BadRequest("Only the text console log (type=console) exists for a container")
    return str(st.instances.drivers.get(row.type).console_log(st.instances.spec(row)))


async def get_console_log(request: web.Request) -> Result:
    path = _console_log(request)
    try:
        with open(path, "rb") as log:
            body = await asyncio.to_thread(log.read)
    except FileNotFoundError:
        body = b""
    return web.Response(body=body, content_type="application/octet-stream")


async def delete_console_log(request: web.Request) -> Result:
    path = _console_log(request)
    with contextlib.suppress(FileNotFoundError):
        os.truncate(path, 0)
    return Sync()


def _log_files(request: web.Request) -> tuple[str, dict[str, str]]:
    st = state(request)
    row = instance_row(request)
    files = st.instances.drivers.get(row.type).log_files(st.instances.spec(row))
    # a container's lxc.log is listed (empty) before its first start too, as Incus lists it
    always = {"lxc.log"} if row.type == "container" else set()
    return url(row.name, row.project), {
        k: str(v) for k, v in files.items() if v.is_file() or k in always
    }


async def list_logs(request: web.Request) -> Result:
    base, files = _log_files(request)
    path, _, query = base.partition("?")
    return Sync([f"{path}/logs/{name}" + (f"?{query}" if query else "") for name in files])


def _log_file(request: web.Request) -> str:
    name = request.match_info["file"]
    _, files = _log_files(request)
    if name not in files:
        raise NotFound(f"Log file {name!r} not found")
    return files[name]


async def get_log(request: web.Request) -> Result:
    path = _log_file(request)
    if not os.path.exists(path):  # not written yet: empty
        return web.Response(body=b"", content_type="application/octet-stream")
    return web.FileResponse(path)


async def delete_log(request: web.Request) -> Result:
    _log_file(request)
    raise BadRequest(
        f"{request.match_info['file']} is kept while the instance exists: "
        "only exec output logs (logs/exec-output) can be deleted"
    )


ENDPOINTS = [
    Endpoint(
        "/instances/{name}/console",
        get=Action(get_console_log),
        post=Action(post_console),
        delete=Action(delete_console_log),
    ),
    Endpoint("/instances/{name}/logs", get=Action(list_logs)),
    Endpoint("/instances/{name}/logs/{file}", get=Action(get_log), delete=Action(delete_log)),
]
