"""console: attach to an instance's console (ctrl+a q detaches), or print its log."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
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


VIEWERS = (("remote-viewer", "vnc://{address}"), ("vncviewer", "{address}"))


def _vga(server: InstanceServer, name: str) -> None:
    """The VM's display (VNC) on a local TCP port: a viewer found on PATH is started on it,
    else the address is printed for one. Ends when the viewer disconnects."""
    op = server.console(name, 0, 0, "vga")
    control, display = op.websocket("control"), op.websocket("0")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        host, port = listener.getsockname()[:2]
        address = f"{host}:{port}"
        viewer = next((v for v in VIEWERS if shutil.which(v[0])), None)
        if viewer is not None:
            subprocess.Popen([viewer[0], viewer[1].format(address=address)])
        else:
            click.echo(f"The VGA console of {name} is a VNC display at {address}: connect a "
                       "viewer (remote-viewer, vncviewer); ctrl+c ends it")  # fmt: skip
        client, _ = listener.accept()
    with client:

        def to_viewer() -> None:
            with contextlib.suppress(websocket.WebSocketException, OSError):
                while True:
                    data = display.recv()
                    if not data:
                        return
                    client.sendall(data if isinstance(data, bytes) else data.encode())

        start_thread(to_viewer)
        with contextlib.suppress(OSError, websocket.WebSocketException):
            while data := client.recv(65536):
                display.send_binary(data)
    for ws in (display, control):
        with contextlib.suppress(websocket.WebSocketException, OSError):
            ws.close()
    op.wait()


def _show_log(server: InstanceServer, name: str) -> None:
    click.echo(server.console_log(name).decode(errors="replace"))


@click.command()
@click.argument("name")
@click.option("--show-log", is_flag=True, help="Print the console's log instead of attaching")
@click.option(
    "--type",
    "kind",
    type=click.Choice(["console", "vga"]),
    default="console",
    help="console (text) or vga (a VM's display, over VNC)",
)
def console(name: str, show_log: bool, kind: str) -> None:
    """Attach to an instance's console (detach with ctrl+a q)."""
    if show_log:
        run(lambda s: _show_log(s, name))
    elif kind == "vga":
        run(lambda s: _vga(s, name))
    else:
        run(lambda s: _attach(s, name))


COMMANDS = [console]
