"""POST /1.0/instances/{name}/exec and the exec output logs: websockets as Incus does them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from aiohttp import web

from stapes.api.base import StatusCode
from stapes.api.errors import BadRequest, InternalError, NotFound
from stapes.api.instance import InstanceExecPost
from stapes.instance.driver import ExecRequest, InstanceDriver, InstanceSpec
from stapes.instance.exec import (
    ExecFailed,
    exec_environment,
    send_signal,
    valid_signal,
)
from stapes.instance.service import url
from stapes.runtime.operations import Operation
from stapes.server.endpoint import Action, Endpoint, body_as, instance_row, state
from stapes.server.response import Async, Result, Sync
from stapes.server.ws_pipes import (
    TerminalBridge,
    WebsocketSession,
    pump_input,
    pump_output,
    resize_terminal,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 30.0
DRAIN_AFTER_EXIT = 2.0


class ExecSession(WebsocketSession):
    def __init__(
        self,
        driver: InstanceDriver,
        spec: InstanceSpec,
        req: InstanceExecPost,
        env: dict[str, str],
        record_dir: Path,
    ) -> None:
        super().__init__()
        self.driver = driver
        self.spec = spec
        self.req = req
        self.env = env
        self.record_dir = record_dir
        self.pid = 0

    # -- websockets -------------------------------------------------------------------------

    def prepare(self, op: Operation) -> None:
        fds: dict[str, str] = {}
        if self.req.wait_for_websocket:
            wanted = ["0", "control"] if self.req.interactive else ["0", "1", "2", "control"]
            fds = self.open_sockets(op, wanted)
        op.metadata = {
            "command": self.req.command,
            "environment": self.env,
            "fds": fds,
            "interactive": self.req.interactive,
        }

    def on_control(self, command: dict[str, Any]) -> None:
        super().on_control(command)
        if command.get("command") == "signal":
            signum = valid_signal(command.get("signal"))
            if signum is not None and self.pid > 0:
                send_signal(self.pid, signum)

    # -- running ----------------------------------------------------------------------------

    def _exec_request(self) -> ExecRequest:
        return ExecRequest(
            command=self.req.command,
            environment=self.env,
            cwd=self.req.cwd,
            uid=self.req.user,
            gid=self.req.group,
        )

    async def run(self, op: Operation) -> None:
        try:
            if self.req.wait_for_websocket:
                await self.wait_connected(CONNECT_TIMEOUT, "exec")
            if self.req.interactive and self.req.wait_for_websocket:
                try:
                    code = await self._run_pty()
                except ExecFailed as exc:
                    op.update_metadata({"return": exc.code})  # and the operation fails
                    raise
                op.update_metadata({"return": code})
            else:
                try:
                    code, output = await self._run_pipes(op.id)
                except ExecFailed as exc:
                    op.update_metadata({"return": exc.code})
                    raise
                metadata: dict[str, Any] = {"return": code}
                if output:
                    metadata["output"] = output
                op.update_metadata(metadata)
        finally:
            await self.finish()

    async def _run_pty(self) -> int:
        self.pid, self.master = await self.driver.spawn_pty(self.spec, self._exec_request())
        resize_terminal(self.master, self.req.width, self.req.height)
        try:
            async with TerminalBridge(self.master, self.sockets["0"]) as bridge:
                code = await self.driver.wait_exec(self.pid)
                await bridge.drain(DRAIN_AFTER_EXIT)
        finally:
            os.close(self.master)
            self.master = -1
        return code

    async def _run_pipes(self, op_id: str) -> tuple[int, dict[str, str]]:
        sockets = self.req.wait_for_websocket
        record = self.req.record_output and not sockets
        opened: list[int] = []
        output: dict[str, str] = {}
        try:
            if sockets:
                stdin_r, stdin_w = os.pipe()
                out_r, out_w = os.pipe()
                err_r, err_w = os.pipe()
                opened += [stdin_r, stdin_w, out_r, out_w, err_r, err_w]
                child = (stdin_r, out_w, err_w)
            else:
                null = os.open(os.devnull, os.O_RDWR)
                opened.append(null)
                out_fd = err_fd = null
                if record:
                    self.record_dir.mkdir(parents=True, exist_ok=True)
                    names = {"1": f"exec_{op_id}.stdout", "2": f"exec_{op_id}.stderr"}
                    out_fd = os.open(self.record_dir / names["1"], os.O_WRONLY | os.O_CREAT, 0o600)
                    err_fd = os.open(self.record_dir / names["2"], os.O_WRONLY | os.O_CREAT, 0o600)
                    opened += [out_fd, err_fd]
                    base = f"/1.0/instances/{self.spec.name}/logs/exec-output/"
                    output = {k: base + v for k, v in names.items()}
                child = (null, out_fd, err_fd)
            self.pid = await self.driver.spawn(self.spec, self._exec_request(), *child)
            if not sockets:
                return await self.driver.wait_exec(self.pid), output
            for fd in child:
                os.close(fd)
                opened.remove(fd)
            # From here each remaining pipe end belongs to the task that pumps it (a second close
            # here could hit an unrelated fd that reused the number, such as a pidfd).
            for fd in (out_r, err_r, stdin_w):
                opened.remove(fd)
            loop = asyncio.get_running_loop()
            readers = [
                loop.create_task(pump_output(self.sockets["1"], out_r)),
                loop.create_task(pump_output(self.sockets["2"], err_r)),
            ]
            writer = loop.create_task(pump_input(self.sockets["0"], stdin_w, close_on_eof=True))
            code = await self.driver.wait_exec(self.pid)
            _, pending = await asyncio.wait(readers, timeout=DRAIN_AFTER_EXIT)
            for task in pending:
                task.cancel()
            writer.cancel()
            for name in ("1", "2"):
                with contextlib.suppress(Exception):
                    await self.sockets[name].close()
            return code, output
        finally:
            for fd in opened:
                with contextlib.suppress(OSError):
                    os.close(fd)


async def post_exec(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    req = await body_as(request, InstanceExecPost)
    if not req.command:
        raise BadRequest("The command to execute can't be empty")
    status = (await st.instances.status(row)).status
    if status == StatusCode.FROZEN:
        raise BadRequest("Instance is frozen")
    if status != StatusCode.RUNNING:
        raise BadRequest("Instance is not running")
    spec = st.instances.spec(row)
    instance_env = {
        k.removeprefix("environment."): v
        for k, v in spec.config.items()
        if k.startswith("environment.")
    }
    env = exec_environment(instance_env, req.environment, req.user)
    session = ExecSession(
        st.instances.drivers.get(row.type),
        spec,
        req,
        env,
        exec_output_dir(st.paths.instance_logs(row.project, row.name)),
    )
    op = st.operations.start(
        session.run,
        description="Executing command",
        project=row.project,
        cls="websocket" if req.wait_for_websocket else "task",
        resources={
            "containers": [url(row.name, row.project)],
            "instances": [url(row.name, row.project)],
        },
        prepare=session.prepare,
    )
    return Async(op)


def exec_output_dir(log_dir: Path) -> Path:
    return log_dir / "exec-output"


def _output_file(request: web.Request) -> Path:
    st = state(request)
    row = instance_row(request)
    name = request.match_info["file"]
    if "/" in name or name.startswith("."):
        raise BadRequest(f"Invalid log file name {name!r}")
    path = exec_output_dir(st.paths.instance_logs(row.project, row.name)) / name
    if not path.is_file():
        raise NotFound(f"Log file {name!r} not found")
    return path


async def get_exec_output(request: web.Request) -> Result:
    return web.FileResponse(_output_file(request))


async def delete_exec_output(request: web.Request) -> Result:
    try:
        _output_file(request).unlink()
    except OSError as exc:
        raise InternalError(f"Failed to delete the log file: {exc}") from None
    return Sync()


async def list_exec_output(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    directory = exec_output_dir(st.paths.instance_logs(row.project, row.name))
    files = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    return Sync([f"{url(row.name, row.project)}/logs/exec-output/{f}" for f in files])


ENDPOINTS = [
    Endpoint("/instances/{name}/exec", post=Action(post_exec)),
    Endpoint("/instances/{name}/logs/exec-output", get=Action(list_exec_output)),
    Endpoint(
        "/instances/{name}/logs/exec-output/{file}",
        get=Action(get_exec_output),
        delete=Action(delete_exec_output),
    ),
]
