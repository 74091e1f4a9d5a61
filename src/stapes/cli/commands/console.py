"""console: attach to an instance's console (ctrl+a q detaches), or print its log."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
from types import FrameType

import click
import websocket

from stapes.cli.main import run
from stapes.cli.terminal import join, pump_output, pump_stdin, raw_terminal, start_thread
from stapes.client.instance_server import InstanceServer


def _attach(server: InstanceServer, name: str) -> None:
    width, height = shutil.get_terminal_size()
    op = server.console(name, width, height)
    control = op.websocket("control")
    terminal = op.websocket("0")

    def resize(_signum: int, _frame: FrameType | None) -> None:
        columns, lines = shutil.get_terminal_size()
        size = {"width": str(columns), "height": str(lines)}
        with contextlib.suppress(websocket.WebSocketException, OSError):
            control.send(json.dumps({"command": "window-resize", "args": size}))

    def detach() -> None:
        for ws in (terminal, control):
            with contextlib.suppress(websocket.WebSocketException, OSError):
                ws.close()

    signal.signal(signal.SIGWINCH, resize)
    with raw_terminal():
        click.echo("To detach from the console, press: <ctrl>+a q\r")
        start_thread(pump_stdin, terminal, False, detach)
        join([start_thread(pump_output, terminal, 1)])
        detach()
        op.wait()
    click.echo("")


def _show_log(server: InstanceServer, name: str) -> None:
    click.echo(server.console_log(name).decode(errors="replace"))


@click.command()
@click.argument("name")
@click.option("--show-log", is_flag=True, help="Print the console's log instead of attaching")
def console(name: str, show_log: bool) -> None:
    """Attach to an instance's console (detach with ctrl+a q)."""
    run(lambda s: _show_log(s, name) if show_log else _attach(s, name))


COMMANDS = [console]
