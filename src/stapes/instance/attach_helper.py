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

A command is forked by the container's exec parent (exec_parent.py, class Parents), which the
first exec attaches and later ones reuse: the cgroup attach, most of an exec's time, is paid
once. Where a parent cannot start (an architecture without a known clone, a seccomp policy
that denies setns) each command is attached as before. Op "release" ends a container's parent
before the daemon stops it. Standard library and the lxc bindings only."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from typing import Any

import lxc

from stapes.host import rootfs_io, sftp_server
from stapes.instance import exec_parent
from stapes.instance.attach_child import Command, attach_options, exec_child, pty_child

PR_SET_PDEATHSIG = 1
PARENT_TIMEOUT = 5.0
"""Seconds an exec parent has to get ready, or to answer a request."""
CLONE_NEWCGROUP = 0x02000000
NAMESPACES = (
    lxc.CLONE_NEWNS | lxc.CLONE_NEWUTS | lxc.CLONE_NEWIPC | lxc.CLONE_NEWNET
    | lxc.CLONE_NEWUSER | CLONE_NEWCGROUP
)  # fmt: skip
"""Where an exec parent is attached: all of the container's namespaces but its pid one."""
MODULES = {"rootfs_io": rootfs_io.main, "sftp_server": sftp_server.main}
"""What op "run" may run: the file helpers, by name."""
MAX_FDS = 8


class Helper:
    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.lock = threading.Lock()
        self.spare: Spare | None = None
        self.parents = Parents(self)

    def send(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.channel.send(json.dumps(message).encode())

    def reap(self, pid: int) -> None:
        _, status = os.waitpid(pid, 0)
        self.send({"exited": pid, "status": status})

    def attach(self, request: dict[str, Any], fds: list[int]) -> int:
        """The command forked by the container's exec parent, or attached anew where it
        cannot have one."""
        pid = self.parents.fork(request, fds)
        if pid is not None:
            return pid
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
                op = {"run": self.run, "release": self.parents.release}.get(
                    request.get("op", ""), self.attach
                )
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


class ParentGone(Exception):
    """The exec parent cannot be asked (it had not read the request: attach instead)."""


class Parent:
    """One exec parent (exec_parent.py), the helper's child: its socket, its container's
    init (a pidfd: readable once init exited) and when it was last asked."""

    def __init__(self, pid: int, channel: socket.socket, init: int, init_fd: int) -> None:
        self.pid = pid
        self.init = init
        self.pidfd = os.pidfd_open(pid)  # ours until reaped: a kill cannot hit another
        self.channel = channel
        self.init_fd = init_fd
        self.used = time.monotonic()
        self.gone = threading.Event()

    @classmethod
    def start(cls, container: Any, init: int) -> Parent | None:
        """A parent attached to the running ``container`` (init ``init``); None if it could
        not start."""
        if init <= 0:
            return None
        try:
            init_fd = os.pidfd_open(init)
        except OSError:
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = 0
        try:
            pid = _attach_parent(container, init, init_fd, theirs.fileno())
            ours.settimeout(PARENT_TIMEOUT)
            if pid > 0 and ours.recv(64) == exec_parent.READY:
                return cls(pid, ours, init, init_fd)
        except OSError:
            pass
        finally:
            theirs.close()
        if pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        ours.close()
        os.close(init_fd)
        return None

    def fork(self, request: dict[str, Any], fds: list[int]) -> int:
        """The pid of the command it forked. ParentGone when it surely did not (the caller
        may attach instead); RuntimeError when it may have."""
        try:
            socket.send_fds(self.channel, [json.dumps(request).encode()], fds)
        except OSError:
            raise ParentGone from None
        self.used = time.monotonic()
        try:
            reply = json.loads(self.channel.recv(1 << 16) or b"{}")
        except (OSError, ValueError):
            reply = {}
        if "error" in reply:
            raise ParentGone(reply["error"])
        if "pid" not in reply:
            raise RuntimeError("The container's exec parent went away")
        return int(reply["pid"])

    def usable(self) -> bool:
        """Alive, its container's init too, and not about to leave for idleness."""
        fresh = time.monotonic() - self.used < exec_parent.IDLE_SECONDS - PARENT_TIMEOUT
        return fresh and not self.gone.is_set() and not _ready(self.init_fd)

    def end(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        self.gone.wait(PARENT_TIMEOUT)
        self.channel.close()
        os.close(self.init_fd)
        os.close(self.pidfd)


class Parents:
    """The exec parents of the containers commands were run in, by (lxcpath, name). The
    daemon hears of each ({"parent": [lxcpath, name], "pid": PID}, then "gone": PID): it is
    not one of the container's processes."""

    def __init__(self, helper: Helper) -> None:
        self.helper = helper
        self.by_container: dict[tuple[str, str], Parent] = {}
        self.refused: dict[tuple[str, str], int] = {}
        """Containers whose parent failed to start or to fork, with the init it failed
        under."""

    def fork(self, request: dict[str, Any], fds: list[int]) -> int | None:
        """The pid of the command forked by the container's parent (started if need be), or
        None when there is none to ask."""
        if not exec_parent.supported():
            return None
        key = (request["lxcpath"], request["name"])
        parent = self.by_container.get(key)
        if parent is not None and not parent.usable():
            self._end(key)
            parent = None
        if parent is None:
            container = lxc.Container(request["name"], request["lxcpath"])
            init = container.init_pid
            if self.refused.get(key) == init:
                return None  # this run of the container cannot have one (its seccomp policy)
            parent = Parent.start(container, init)
            if parent is None:
                self.refused[key] = init
                return None
            self.by_container[key] = parent
            threading.Thread(target=self._reap, args=(key, parent), daemon=True).start()
            self.helper.send({"parent": list(key), "pid": parent.pid})
        try:
            return parent.fork(
                {"id": request["id"], "pty": request["pty"], "command": request["command"]}, fds
            )
        except ParentGone as gone:
            self._end(key)
            if gone.args:  # it could not fork one (the container's policy): do not ask again
                self.refused[key] = parent.init
            return None
        except RuntimeError:
            self._end(key)
            raise

    def release(self, request: dict[str, Any], fds: list[int]) -> int:
        """End the container's parent before it is stopped (it is in its cgroups)."""
        self._end((request["lxcpath"], request["name"]))
        return 0

    def _end(self, key: tuple[str, str]) -> None:
        parent = self.by_container.pop(key, None)
        if parent is not None:
            parent.end()

    def _reap(self, key: tuple[str, str], parent: Parent) -> None:
        os.waitpid(parent.pid, 0)
        parent.gone.set()
        self.helper.send({"parent": list(key), "gone": parent.pid})


def _attach_parent(container: Any, init: int, init_fd: int, channel: int) -> int:
    """liblxc attaches a process running exec_parent.serve to ``container`` (init ``init``);
    its pid, or 0."""
    if _ready(init_fd):
        return 0  # init exited: its pid and namespace may be another's already
    pidns = os.open(f"/proc/{init}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return int(
            container.attach(
                exec_parent.serve, (channel, pidns, init_fd), namespaces=NAMESPACES,
                env_policy=lxc.LXC_ATTACH_CLEAR_ENV,
            )
        )  # fmt: skip
    finally:
        os.close(pidns)


def _ready(fd: int) -> bool:
    """Whether ``fd`` is readable now (a pidfd: its process exited)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class Spare:
    """A child forked ahead of the next "run" request (a fork of this process costs ~0.7 ms,
    which each file operation waited for): it holds nothing but its end of a socket pair,
    on which it gets the request and its descriptors, and exits if the helper goes."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            exec_parent.close_all_but(theirs.fileno())
            os._exit(_run_one(theirs))
        theirs.close()
        self.pid = pid
        self.channel = ours


def _run_one(channel: socket.socket) -> int:
    """In a spare: wait for the request, then become it."""
    code = 2
    try:
        sftp_server.warm()  # what a session starts with, made before a client waits for it
        data, fds, _, _ = socket.recv_fds(channel, 1 << 20, MAX_FDS)
        if not data:
            code = 0  # the helper is gone
            return code
        request = json.loads(data)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        exec_parent.close_all_but()
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
