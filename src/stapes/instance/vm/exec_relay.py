"""One command run in a VM, as a local process: stdin, stdout and stderr (or a terminal) are
relayed to the guest agent through stapesd's agent hub, signals sent to this process are sent
to the command, and this process exits with the command's exit code. So the exec code that
runs container commands (pids, fds, signals, exit codes) runs VM commands unchanged.

usage: python -m stapes.instance.vm.exec_relay MUX_SOCKET REQUEST_JSON"""

from __future__ import annotations

import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import sys
import termios
import tty

from stapes.agent import protocol as p

FORWARDED = (
    signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
    signal.SIGUSR2, signal.SIGCONT, signal.SIGTSTP,
)  # fmt: skip


def main() -> int:
    mux, request = sys.argv[1], json.loads(sys.argv[2])
    interactive = bool(request.get("interactive"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(mux)
    if interactive and os.isatty(0):
        # our terminal: controlling (its resizes reach us as SIGWINCH) and raw (the guest's
        # terminal does echo and line editing)
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        tty.setraw(0)
        request["width"], request["height"] = _size()
    sock.sendall(p.pack_json(0, p.OPEN, request))

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    pending: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        pending.append(signum)
        os.write(wake_w, b"!")

    for forwarded in (*FORWARDED, signal.SIGWINCH):
        signal.signal(forwarded, on_signal)

    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, "agent")
    selector.register(wake_r, selectors.EVENT_READ, "signal")
    stdin_open = True
    try:
        selector.register(0, selectors.EVENT_READ, "stdin")
    except PermissionError:  # a file or /dev/null (no websocket): epoll refuses, always ready
        while data := os.read(0, 64 * 1024):
            sock.sendall(p.pack(0, p.STDIN, data))
        sock.sendall(p.pack(0, p.STDIN, b""))
        stdin_open = False
    frames = p.Reader()
    outputs = {p.STDOUT: 1, p.STDERR: 2 if not interactive else 1}
    while True:
        for key, _ in selector.select():
            if key.data == "signal":
                os.read(wake_r, 64)
                while pending:
                    signum = pending.pop(0)
                    if signum == signal.SIGWINCH:
                        width, height = _size()
                        sock.sendall(p.pack_json(0, p.RESIZE, {"width": width, "height": height}))
                    else:
                        sock.sendall(p.pack_json(0, p.SIGNAL, {"signal": int(signum)}))
            elif key.data == "stdin" and stdin_open:
                try:
                    data = os.read(0, 64 * 1024)
                except OSError:
                    data = b""
                sock.sendall(p.pack(0, p.STDIN, data))
                if not data:
                    stdin_open = False
                    selector.unregister(0)
            elif key.data == "agent":
                data = sock.recv(256 * 1024)
                if not data:
                    return 255
                for _, kind, payload in frames.feed(data):
                    if kind in outputs:
                        _write_all(outputs[kind], payload)
                    elif kind == p.EXIT:
                        result = json.loads(payload)
                        if "error" in result:
                            os.write(2, f"Error: {result['error']}\n".encode())
                            return 1
                        return int(result.get("code", 0))


def _size() -> tuple[int, int]:
    try:
        raw = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return 80, 24
    height, width = struct.unpack("HHHH", raw)[:2]
    return width or 80, height or 24


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            selectors.DefaultSelector().select(0.05)
        except BrokenPipeError:
            return


if __name__ == "__main__":
    sys.exit(main())
