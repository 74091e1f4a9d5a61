"""The local side of exec and console sessions: the user's terminal and the websockets
(websocket-client's, or the fast commands' client/lite.py ones: both have send_binary,
recv_data and close, and end a session with an exception)."""

from __future__ import annotations

import contextlib
import os
import termios
import threading
import tty

TYPE_CHECKING = False  # not typing's: it imports re, a few ms of every fast command
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

DETACH = b"\x01q"
"""ctrl+a q, as in incus console."""
TEXT, BINARY, CLOSE = 1, 2, 8
"""RFC 6455's opcodes, as either websocket client's recv_data gives them."""


def pump_stdin(ws: Any, close_on_eof: bool, on_detach: Callable[[], None] | None = None) -> None:
    """stdin -> websocket, in a daemon thread (ttys, pipes, files and /dev/null alike). With
    ``on_detach``, ctrl+a q is not sent but calls it."""
    pending = b""
    while True:
        try:
            data = os.read(0, 65536)
        except OSError:
            data = b""
        try:
            if not data:
                if close_on_eof:
                    ws.close()
                return
            if on_detach is not None:
                data = pending + data
                pending = b""
                if DETACH in data:
                    before = data[: data.index(DETACH)]
                    if before:
                        ws.send_binary(before)
                    on_detach()
                    return
                if data.endswith(DETACH[:1]):
                    data, pending = data[:-1], DETACH[:1]
                if not data:
                    continue
            ws.send_binary(data)
        except Exception:  # the websocket closed or failed (either client's error): done
            return


def pump_output(ws: Any, fd: int) -> None:
    """websocket -> fd until the daemon closes the stream."""
    while True:
        try:
            opcode, data = ws.recv_data()
        except Exception:  # the websocket closed or failed (either client's error): done
            return
        if opcode in (BINARY, TEXT):
            os.write(fd, data)
        elif opcode == CLOSE:
            return


def start_thread(target: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)  # short joins keep the main thread able to take signals


@contextlib.contextmanager
def raw_terminal(enabled: bool = True) -> Iterator[None]:
    """Put stdin, when it is a terminal, in raw mode for the duration."""
    saved = termios.tcgetattr(0) if enabled and os.isatty(0) else None
    if saved is not None:
        tty.setraw(0)
    try:
        yield
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
