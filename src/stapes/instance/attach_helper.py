"""The attach helper: a small process that attaches commands to containers for the daemon.

    python -m stapes.instance.attach_helper FD

It also runs the file helpers host/rootfs_io.py and host/sftp_server.py (op "run"): a child
forked from this small process does what a new Python did each time (it chroots or enters the
container's namespaces itself). After the first such request it keeps one spare child forked
ahead for the next (class Spare).

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
        self.spare: Spare | None = None

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
        the request's arguments and exits with its code: the spare forked ahead, if any."""
        MODULES[request["module"]]  # KeyError: not one of ours
        spare, self.spare = self.spare or Spare(), None
        try:
            socket.send_fds(spare.channel, [json.dumps(request).encode()], fds)
        except OSError:
            os.kill(spare.pid, signal.SIGKILL)
            os.waitpid(spare.pid, 0)
            raise
        finally:
            spare.channel.close()
        return spare.pid

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
            if request.get("op") == "run" and self.spare is None:
                self.spare = Spare()  # the next file operation need not wait for a fork


class Spare:
    """A child forked ahead of the next "run" request (a fork of this process costs ~0.7 ms,
    which each file operation waited for): it holds nothing but its end of a socket pair,
    on which it gets the request and its descriptors, and exits if the helper goes."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            keep = theirs.fileno()
            os.closerange(3, keep)
            os.closerange(keep + 1, 1 << 16)
            os._exit(_run_one(theirs))
        theirs.close()
        self.pid = pid
        self.channel = ours


def _run_one(channel: socket.socket) -> int:
    """In a spare: wait for the request, then become it."""
    code = 2
    try:
        # The first pass through the argument parser after a fork writes to pages shared
        # with the helper (reference counts): copied now, not while a client waits (~0.3 ms).
        sftp_server.PARSER.parse_args(["--root", "/"])
        data, fds, _, _ = socket.recv_fds(channel, 1 << 20, MAX_FDS)
        if not data:
            code = 0  # the helper is gone
            return code
        request = json.loads(data)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, 1 << 16)
        code = MODULES[request["module"]]([str(a) for a in request["argv"]])
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def main(argv: list[str]) -> int:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Helper(socket.socket(fileno=int(argv[0]))).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
