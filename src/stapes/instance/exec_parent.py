"""A container's exec parent: a process the attach helper leaves attached to a running
container after an exec, from which the next commands are forked instead of attached anew.

Moving a process into a container's cgroups waits, on cgroup v1, for an RCU grace period
(cgroup_threadgroup_rwsem): 10-25 ms of each attach here when execs come tens of ms apart,
half of an `incus exec`. A fork inherits the cgroups without that wait. liblxc attaches the
parent to every namespace of the container but its pid namespace, so it does all liblxc does
for an attached command (cgroups, namespaces, capabilities, seccomp, personality, LSM) and yet
stays out of the container's process list: it joins the pid namespace only for its children
(setns), which are forked with CLONE_PARENT, so they are the helper's children, reaped and
reported by it as attached commands are. The parent exits when it has had nothing to do for
IDLE_SECONDS, when the container's init exits, and when the helper goes; the helper kills it
before the daemon stops the container.

Protocol on its SOCK_SEQPACKET socket, JSON: it sends {"ready": true} once it can fork;
then for each {"id", "pty", "command"} with the command's descriptors (stdin, stdout,
stderr, report; a terminal's command gets one: its channel) it answers {"id", "pid"} or
{"id", "error"}. Standard library only, as attach_child.py."""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import platform
import select
import socket
from typing import Any, NoReturn

from stapes.instance.attach_child import Command, exec_command, pty_child

IDLE_SECONDS = 30.0
MAX_FDS = 8
CLONE_NEWPID = 0x20000000
CLONE_PARENT = 0x00008000
SIGCHLD = 17
PR_SET_DUMPABLE = 4
READY = b'{"ready": true}'
"""What a parent sends first, once it can fork."""
CLONE_SYSCALL = {"x86_64": 56, "aarch64": 220, "riscv64": 220}
"""clone's number where its first argument is the flags (the others are zero here)."""


def supported() -> bool:
    """Whether this architecture's clone is known here (elsewhere every exec attaches)."""
    return platform.machine() in CLONE_SYSCALL


def serve(args: tuple[int, int, int]) -> NoReturn:
    """The parent's life, run by liblxc in the attached process: ``args`` are its socket to
    the helper, the container's pid namespace and a pidfd of its init (the helper's
    descriptors, inherited: all others are closed first)."""
    channel_fd, pidns_fd, init_fd = args
    code = 0
    try:
        close_all_but(*args)
        libc = ctypes.CDLL(None, use_errno=True)
        # Its memory is a copy of the helper's: nothing in the container may read it.
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        if libc.setns(pidns_fd, CLONE_NEWPID) != 0:
            raise OSError(ctypes.get_errno(), "setns of the pid namespace failed")
        os.close(pidns_fd)
        channel = socket.socket(fileno=channel_fd)
        channel.send(READY)
        _loop(libc, channel, init_fd)
    except BaseException:
        code = 1
    os._exit(code)


def _loop(libc: ctypes.CDLL, channel: socket.socket, init_fd: int) -> None:
    poller = select.poll()
    poller.register(channel, select.POLLIN)
    poller.register(init_fd, select.POLLIN)
    while True:
        events = poller.poll(IDLE_SECONDS * 1000)
        if not events or any(fd == init_fd for fd, _ in events):
            return  # idle, or the container is stopping
        data, fds, _, _ = socket.recv_fds(channel, 1 << 20, MAX_FDS)
        if not data:
            return  # the helper is gone
        request = json.loads(data)
        try:
            pid = _fork(libc, request, fds)
        except Exception as exc:
            channel.send(json.dumps({"id": request["id"], "error": str(exc)}).encode())
            continue
        finally:
            for fd in fds:
                os.close(fd)
        channel.send(json.dumps({"id": request["id"], "pid": pid}).encode())


def _fork(libc: ctypes.CDLL, request: dict[str, Any], fds: list[int]) -> int:
    """The host pid of the command, forked as a sibling (the helper's child) into the
    container's pid namespace."""
    command = Command(**request["command"])
    pid = libc.syscall(CLONE_SYSCALL[platform.machine()], CLONE_PARENT | SIGCHLD, 0, 0, 0, 0)
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone failed")
    if pid > 0:
        return int(pid)
    try:  # the command's process
        ours = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds]  # above 0-2
        if request["pty"]:
            os.dup2(ours[0], 0)
            close_all_but()
            pty_child(command)
        for target, fd in enumerate(ours[:3]):
            os.dup2(fd, target)
        report = ours[3]
        close_all_but(report)
        try:
            os.chdir(command.cwd or "/")
        except OSError:
            os.chdir("/")  # as liblxc does with an initial directory that is not there
        try:
            os.setgroups([])
        except OSError:
            if os.getgroups():
                raise  # never a command with groups it was not given
        os.setgid(command.gid)
        os.setuid(command.uid)
        exec_command(command, report)
    finally:
        os._exit(126)


def close_all_but(*keep: int) -> None:
    """Close every descriptor from 3 up but ``keep`` (in a child that holds a copy of
    the helper's)."""
    start = 3
    for fd in sorted(keep):
        os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, 1 << 16)
