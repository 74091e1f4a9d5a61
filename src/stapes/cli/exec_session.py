"""An exec session from the user's side, without click: the command started with its
websockets (stdin/stdout/stderr, or one terminal), signals and window size forwarded on the
control socket, the exit status returned. `stapes exec` runs it with the full client
(client/instance_server.py), cli/fast.py with client/lite.py's."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from stapes.api.errors import RemoteError
from stapes.cli.terminal import join, pump_output, pump_stdin, raw_terminal, start_thread
from stapes.client.lite import dumps

TYPE_CHECKING = False  # not typing's: it imports re, a few ms of every fast command
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, Protocol

    class ExecServer(Protocol):
        def exec(self, name: str, body: dict[str, Any]) -> Any: ...


def terminal_size() -> tuple[int, int]:
    """(columns, lines) as shutil.get_terminal_size gives them (COLUMNS/LINES first, then the
    terminal, else 80x24), without importing shutil: ~2 ms of every exec."""
    sizes = []
    for name in ("COLUMNS", "LINES"):
        try:
            sizes.append(int(os.environ.get(name, "0")))
        except ValueError:
            sizes.append(0)
    if min(sizes) <= 0:
        try:
            found = os.get_terminal_size(sys.__stdout__.fileno())  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            found = os.terminal_size((0, 0))
        sizes = [mine if mine > 0 else theirs for mine, theirs in zip(sizes, found, strict=True)]
    return sizes[0] or 80, sizes[1] or 24


FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def run_exec(
    server: ExecServer,
    name: str,
    command: tuple[str, ...],
    env: dict[str, str],
    interactive: bool,
    cwd: str,
    user: int,
    group: int,
) -> int:
    width, height = terminal_size()
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
        with contextlib.suppress(Exception):  # the session is over (either client's error)
            control.send(dumps(message))

    def forward(signum: int, _frame: FrameType | None) -> None:
        send_control({"command": "signal", "signal": int(signum)})

    def resize(_signum: int, _frame: FrameType | None) -> None:
        columns, lines = terminal_size()
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
                sys.stderr.write(f"Error: {exc.message}\n")
                return code
        finally:
            with contextlib.suppress(Exception):
                control.close()
    return int((result.get("metadata") or {}).get("return", 0))


def _failed_return(op: Any) -> int:
    with contextlib.suppress(RemoteError):
        return int(((op.current().get("metadata") or {}).get("return")) or 0)
    return 0
