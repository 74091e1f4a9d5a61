"""exec: run a command in an instance, over the exec websockets, with a real tty when asked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import termios
import threading
import tty
from typing import Any

import aiohttp
import click

from stapes.cli.main import run
from stapes.client.instance_server import InstanceServer
from stapes.client.operation import RemoteOperation

FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def _stdin_reader(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes]) -> None:
    """Read stdin in a daemon thread (works for ttys, pipes, files and /dev/null)."""

    def pump() -> None:
        while True:
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            loop.call_soon_threadsafe(queue.put_nowait, data)
            if not data:
                return

    threading.Thread(target=pump, daemon=True).start()


async def _send_stdin(
    ws: aiohttp.ClientWebSocketResponse, queue: asyncio.Queue[bytes], close_on_eof: bool
) -> None:
    while True:
        data = await queue.get()
        if not data:
            if close_on_eof:
                await ws.close()
            return
        await ws.send_bytes(data)


async def _copy_out(ws: aiohttp.ClientWebSocketResponse, fd: int) -> None:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.BINARY:
            os.write(fd, msg.data)
        elif msg.type == aiohttp.WSMsgType.TEXT:
            os.write(fd, msg.data.encode())
        else:
            break


async def _exec(
    server: InstanceServer,
    name: str,
    command: tuple[str, ...],
    env: dict[str, str],
    interactive: bool,
    cwd: str,
    user: int,
    group: int,
) -> int:
    width, height = shutil.get_terminal_size()
    if interactive:
        env.setdefault("TERM", os.environ.get("TERM", "xterm"))
    op: RemoteOperation = await server.exec(
        name,
        {
            "command": list(command),
            "environment": env,
            "interactive": interactive,
            "wait-for-websocket": True,
            "record-output": False,
            "width": width,
            "height": height,
            "cwd": cwd,
            "user": user,
            "group": group,
        },
    )
    loop = asyncio.get_running_loop()
    control = await op.websocket("control")

    async def send_control(message: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await control.send_str(json.dumps(message))

    pending: set[asyncio.Task[None]] = set()

    def control_soon(message: dict[str, Any]) -> None:
        task = loop.create_task(send_control(message))
        pending.add(task)
        task.add_done_callback(pending.discard)

    def window_resize() -> None:
        columns, lines = shutil.get_terminal_size()
        control_soon(
            {"command": "window-resize", "args": {"width": str(columns), "height": str(lines)}}
        )

    for signum in FORWARDED_SIGNALS:
        loop.add_signal_handler(signum, control_soon, {"command": "signal", "signal": int(signum)})
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    saved = None
    if interactive:
        ws = await op.websocket("0")
        loop.add_signal_handler(signal.SIGWINCH, window_resize)
        if os.isatty(0):
            saved = termios.tcgetattr(0)
            tty.setraw(0)
        outputs = [loop.create_task(_copy_out(ws, 1))]
        inputs = loop.create_task(_send_stdin(ws, queue, close_on_eof=False))
    else:
        stdin, stdout, stderr = [await op.websocket(n) for n in ("0", "1", "2")]
        outputs = [loop.create_task(_copy_out(stdout, 1)), loop.create_task(_copy_out(stderr, 2))]
        inputs = loop.create_task(_send_stdin(stdin, queue, close_on_eof=True))
    _stdin_reader(loop, queue)
    try:
        await asyncio.gather(*outputs)
        result = await op.wait()
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        inputs.cancel()
        await control.close()
    return int((result.get("metadata") or {}).get("return", 0))


@click.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--env", "env", multiple=True, help="Environment variable KEY=VALUE (repeatable)")
@click.option("-t", "force_tty", is_flag=True, help="Force a pseudo-terminal")
@click.option("-T", "no_tty", is_flag=True, help="Disable the pseudo-terminal")
@click.option("--cwd", default="", help="Directory to run the command in")
@click.option("--user", default=0, help="User ID to run the command as")
@click.option("--group", default=0, help="Group ID to run the command as")
def exec_command(
    name: str,
    command: tuple[str, ...],
    env: tuple[str, ...],
    force_tty: bool,
    no_tty: bool,
    cwd: str,
    user: int,
    group: int,
) -> None:
    """Run COMMAND in instance NAME; its exit status becomes this command's."""
    environment = {}
    for pair in env:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--env")
        environment[key] = value
    interactive = force_tty or (not no_tty and os.isatty(0) and os.isatty(1))

    async def go(server: InstanceServer) -> int:
        return await _exec(server, name, command, environment, interactive, cwd, user, group)

    code = run(go)
    sys.stdout.flush()
    sys.exit(code)


COMMANDS = [exec_command]
