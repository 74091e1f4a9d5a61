"""exec: run a command in an instance, over the exec websockets, with a real tty when asked."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
from types import FrameType
from typing import Any

import click
import websocket

from stapes.api.errors import RemoteError
from stapes.cli.main import parse_key_values, run
from stapes.cli.terminal import join, pump_output, pump_stdin, raw_terminal, start_thread
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


def _exec(
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
    op = server.exec(
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
    control = op.websocket("control")

    def send_control(message: dict[str, Any]) -> None:
        with contextlib.suppress(websocket.WebSocketException, OSError):
            control.send(json.dumps(message))

    def forward(signum: int, _frame: FrameType | None) -> None:
        send_control({"command": "signal", "signal": int(signum)})

    def resize(_signum: int, _frame: FrameType | None) -> None:
        columns, lines = shutil.get_terminal_size()
        send_control(
            {"command": "window-resize", "args": {"width": str(columns), "height": str(lines)}}
        )

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    with raw_terminal(interactive):
        if interactive:
            terminal = op.websocket("0")
            signal.signal(signal.SIGWINCH, resize)
            outputs = [start_thread(pump_output, terminal, 1)]
            start_thread(pump_stdin, terminal, False)
        else:
            stdin, stdout, stderr = (op.websocket(n) for n in ("0", "1", "2"))
            outputs = [start_thread(pump_output, stdout, 1), start_thread(pump_output, stderr, 2)]
            start_thread(pump_stdin, stdin, True)
        try:
            join(outputs)
            try:
                result = op.wait()
            except RemoteError as exc:
                # a command that could not run: the error, and the return Incus gives it (127)
                code = _failed_return(op)
                if not code:
                    raise
                click.echo(f"Error: {exc.message}", err=True)
                return code
        finally:
            with contextlib.suppress(websocket.WebSocketException, OSError):
                control.close()
    return int((result.get("metadata") or {}).get("return", 0))


def _failed_return(op: RemoteOperation) -> int:
    with contextlib.suppress(RemoteError):
        return int(((op.current().get("metadata") or {}).get("return")) or 0)
    return 0


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
    environment = parse_key_values(env, "--env")
    interactive = force_tty or (not no_tty and os.isatty(0) and os.isatty(1))

    def go(server: InstanceServer) -> int:
        return _exec(server, name, command, environment, interactive, cwd, user, group)

    code = run(go)
    sys.stdout.flush()
    sys.exit(code)


COMMANDS = [exec_command]
