"""The attach helper: a small process that attaches commands to containers for the daemon.

    python -m stapes.instance.attach_helper FD

It also runs the file helpers host/rootfs_io.py and host/sftp_server.py (op "run"): a child
forked from this small process does what a new Python did each time (it chroots or enters the
container's namespaces itself).

liblxc attaches by forking the calling process, and a fork costs in proportion to the
caller's memory: from the daemon (80+ MiB) an exec took ~11 ms to start, from this process
~3.5 ms. The daemon sends each request on FD (a SOCK_SEQPACKET socket) as JSON with the
command's descriptors; the helper answers {"id", "pid"} (or {"id", "error"}), and when the
command ends {"exited": PID, "status": STATUS} (waitpid's status): the command is the
helper's child, so the helper reaps it. It dies with the daemon (PR_SET_PDEATHSIG).
Standard library and the lxc bindings only."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import sys
import threading
from typing import Any

import lxc

from stapes.host import rootfs_io, sftp_server
from stapes.instance.attach_child import Command, attach_options, exec_child, pty_child

PR_SET_PDEATHSIG = 1
MODULES = {"rootfs_io": rootfs_io.main, "sftp_server": sftp_server.main}
"""What op "run" may run: the file helpers, by name."""
MAX_FDS = 8


class Helper:
    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.channel.send(json.dumps(message).encode())

    def reap(self, pid: int) -> None:
        _, status = os.waitpid(pid, 0)
        self.send({"exited": pid, "status": status})

    def attach(self, request: dict[str, Any], fds: list[int]) -> int:
        command = Command(**request["command"])
        container = lxc.Container(request["name"], request["lxcpath"])
        options = attach_options(lxc, command, request["pty"])
        if request["pty"]:
            return int(container.attach(pty_child, command, stdin=fds[0], **options))
        stdin, stdout, stderr, report = fds
        return int(
            container.attach(
                exec_child, (command, report), stdin=stdin, stdout=stdout, stderr=stderr,
                **options,
            )
        )  # fmt: skip

    def run(self, request: dict[str, Any], fds: list[int]) -> int:
        """A child with the request's stdin, stdout and stderr that runs one of MODULES with
        the request's arguments and exits with its code."""
        entry = MODULES[request["module"]]
        pid = os.fork()
        if pid == 0:
            code = 2
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                os.closerange(3, 1 << 16)
                code = entry([str(a) for a in request["argv"]])
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
        return pid

    def serve(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.channel, 1 << 20, MAX_FDS)
            except OSError:
                return
            if not data:
                return  # the daemon is gone
            for fd in fds:  # received descriptors come inheritable: an exec must close them
                os.set_inheritable(fd, False)
            request: dict[str, Any] = {}
            try:
                request = json.loads(data)
                op = self.run if request.get("op") == "run" else self.attach
                pid = op(request, fds)
            except Exception as exc:
                self.send({"id": request.get("id", 0), "error": f"{type(exc).__name__}: {exc}"})
                continue
            finally:
                for fd in fds:
                    os.close(fd)
            self.send({"id": request["id"], "pid": pid})
            if pid > 0:
                threading.Thread(target=self.reap, args=(pid,), daemon=True).start()


def main(argv: list[str]) -> int:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Helper(socket.socket(fileno=int(argv[0]))).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
