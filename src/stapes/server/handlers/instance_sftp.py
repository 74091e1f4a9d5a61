"""GET /1.0/instances/{name}/sftp: the connection upgrades to raw SFTP (``Upgrade: sftp``), served
by a helper process in the instance's filesystem (host/sftp_server.py). `incus file` uses it.
A unix-socket connection is handed to the helper; a TLS one is relayed to it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable

from aiohttp import web

from stapes.api.base import StatusCode
from stapes.api.errors import BadRequest, InternalError
from stapes.instance.attach_client import HelperProcess, shared_helper
from stapes.server.endpoint import Action, Endpoint, instance_row, state
from stapes.server.plain_socket import flushed, plain_unix_socket
from stapes.server.raw_stream import RawStream
from stapes.server.response import Result

CHUNK = 64 * 1024


async def sftp(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    if request.headers.get("Upgrade", "").lower() != "sftp":
        raise BadRequest("Missing or invalid upgrade header: send Upgrade: sftp")
    spec = st.instances.spec(row)
    status = await st.instances.status(row)
    idmap = spec.idmap
    argv: list[str] = []
    if status.status != StatusCode.STOPPED and status.pid > 0:
        argv += ["--pid", str(status.pid)] + (["--userns"] if idmap else [])
    else:
        argv += [
            "--root",
            str(spec.volume / "rootfs"),
            "--id-base",
            str(idmap.base if idmap else 0),
        ]
    stream = RawStream()
    request.protocol.set_parser(stream)  # type: ignore[arg-type]
    connection = plain_unix_socket(request)
    if connection is not None and request.transport is not None and stream.queue.empty():
        request.transport.pause_reading()  # nothing read past the request: the socket can go
        return await _handed_over(request, argv, connection.fileno())
    return await _relayed(request, argv, stream)


def _upgraded() -> web.StreamResponse:
    return web.StreamResponse(status=101, headers={"Connection": "Upgrade", "Upgrade": "sftp"})


async def _handed_over(request: web.Request, argv: list[str], connection: int) -> Result:
    """A unix-socket connection is served by the helper itself: the daemon stops reading it
    and closes its end when the helper is done (nothing to relay, nothing to copy twice).
    The server starts before the 101 goes out: it enters the instance while the client reads
    the 101, and the client's first packet (what it may send only after the 101) finds it
    ready."""
    transport = request.transport
    assert transport is not None
    null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        try:
            helper = shared_helper()
            pid = await helper.run_on("sftp_server", argv, [connection, connection, null])
            done = asyncio.ensure_future(helper.wait(pid))
            kill: Callable[[], None] = functools.partial(os.kill, pid, signal.SIGKILL)
        except InternalError:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "stapes.host.sftp_server", *argv,
                stdin=connection, stdout=connection, stderr=null,
            )  # fmt: skip
            done, kill = asyncio.ensure_future(process.wait()), process.kill
    finally:
        os.close(null)
    try:
        response = _upgraded()
        await response.prepare(request)
        await flushed(request)
    except BaseException:
        if not done.done():  # no 101 went out: the client will not speak, so it must go
            with contextlib.suppress(ProcessLookupError):
                kill()
        raise
    finally:
        await done  # the server ends at the client's EOF
        transport.close()
    return response


async def _relayed(request: web.Request, argv: list[str], stream: RawStream) -> Result:
    """A TLS connection is relayed between the client and the helper's stdin and stdout."""
    helper: HelperProcess | asyncio.subprocess.Process
    try:  # forked by the attach helper: no new Python for each transfer
        helper = await shared_helper().run("sftp_server", argv)
        discard = asyncio.ensure_future(helper.stderr.read())  # its complaints, unread
        discard.add_done_callback(lambda _: None)
    except InternalError:
        helper = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stapes.host.sftp_server", *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    response = _upgraded()
    await response.prepare(request)
    transport = request.transport
    stdin, stdout = helper.stdin, helper.stdout
    assert stdin is not None and stdout is not None and transport is not None

    async def to_helper() -> None:
        while data := await stream.queue.get():
            stdin.write(data)
            await stdin.drain()
        stdin.close()

    async def to_client() -> None:
        while data := await stdout.read(CHUNK):
            transport.write(data)

    pumps = [asyncio.ensure_future(to_helper()), asyncio.ensure_future(to_client())]
    try:
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pump in pumps:
            pump.cancel()
        with contextlib.suppress(ProcessLookupError):
            helper.kill()
        await helper.wait()
        transport.close()
    return response


ENDPOINTS = [Endpoint("/instances/{name}/sftp", get=Action(sftp))]
