"""The daemon's side of the attach helper (attach_helper.py): started on the first exec,
asked over a SOCK_SEQPACKET socket, its answers dispatched on the event loop. A command it
attached is its child: the exit status comes from it (``wait``). Started again when it died."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from stapes.api.errors import InternalError
from stapes.host.socket_splice import PipeBody
from stapes.instance.attach_child import Command
from stapes.instance.exec import exit_code

log = logging.getLogger(__name__)

T = TypeVar("T")

PIPE_SIZE = 1024 * 1024
"""The size asked for the pipes a file's bytes go through (Linux's default is 64 KiB; root
may ask up to /proc/sys/fs/pipe-max-size, 1 MiB by default)."""


async def piped(start: Callable[[int, int], Awaitable[T]]) -> tuple[T, PipeBody, PipeBody]:
    """``start(stdout, stderr)`` a process on the write ends of two new pipes (stdout's asked
    for PIPE_SIZE); what it returned, and the read ends, non-blocking. The write ends are
    closed here once it started (it has its own copies)."""
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(out_read, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    try:
        started = await start(out_write, err_write)
    except BaseException:
        os.close(out_read)
        os.close(err_read)
        raise
    finally:
        os.close(out_write)
        os.close(err_write)
    for fd in (out_read, err_read):
        os.set_blocking(fd, False)
    return started, PipeBody(out_read), PipeBody(err_read)


class AttachHelper:
    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._parents: dict[tuple[str, str], int] = {}

    def owns(self, pid: int) -> bool:
        return pid in self._exits

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "stapes.instance.attach_helper", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        asyncio.get_running_loop().add_reader(ours, self._readable, ours)
        self._sock = ours
        return ours

    def _readable(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._gone(sock)
            return
        message = json.loads(data)
        if "parent" in message:
            key = (str(message["parent"][0]), str(message["parent"][1]))
            if "pid" in message:
                self._parents[key] = int(message["pid"])
            elif self._parents.get(key) == message.get("gone"):
                del self._parents[key]
        elif "exited" in message:
            self._exit_future(int(message["exited"])).set_result(int(message["status"]))
        else:
            waiter = self._replies.pop(int(message["id"]), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)

    def _exit_future(self, pid: int) -> asyncio.Future[int]:
        found = self._exits.get(pid)
        if found is None:
            found = self._exits[pid] = asyncio.get_running_loop().create_future()
        return found

    def _gone(self, sock: socket.socket) -> None:
        """The helper died: what waits on it fails (its commands were orphaned)."""
        asyncio.get_running_loop().remove_reader(sock)
        sock.close()
        self._sock = None
        if self._proc is not None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self._proc.wait(timeout=1)
        self._proc = None
        error = InternalError("The attach helper exited")
        waiters: list[asyncio.Future[Any]] = [*self._replies.values(), *self._exits.values()]
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)
        self._replies.clear()
        self._exits.clear()
        self._parents.clear()

    async def attach(
        self, lxcpath: str, name: str, command: Command, pty: bool, fds: list[int]
    ) -> int:
        """The pid of the command attached in container ``name`` (0 if liblxc failed)."""
        request = {
            "lxcpath": lxcpath,
            "name": name,
            "pty": pty,
            "command": {
                "argv": command.argv,
                "environment": command.environment,
                "cwd": command.cwd,
                "uid": command.uid,
                "gid": command.gid,
            },
        }
        return await self._request(request, fds)

    def has_parent(self, lxcpath: str, name: str) -> bool:
        """Whether the helper keeps an exec parent (exec_parent.py) in container ``name``: a
        process in its cgroups that is not one of its own."""
        return (lxcpath, name) in self._parents

    async def release(self, lxcpath: str, name: str) -> None:
        """End the exec parent of container ``name``, if there is one, before it stops: a
        process left in its cgroups would keep liblxc from removing them."""
        if self._sock is not None and (lxcpath, name) in self._parents:
            await self._request({"op": "release", "lxcpath": lxcpath, "name": name}, [])

    async def _request(self, request: dict[str, Any], fds: list[int]) -> int:
        """Send one request with its descriptors; the pid it started (0: none)."""
        sock = self._sock or self._start()
        request_id = next(self._ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = waiter
        try:
            socket.send_fds(sock, [json.dumps({**request, "id": request_id}).encode()], fds)
        except OSError as exc:
            self._replies.pop(request_id, None)
            raise InternalError(f"Cannot reach the attach helper: {exc}") from None
        reply = await waiter
        if "error" in reply:
            raise InternalError(f"Failed to attach to the container: {reply['error']}")
        pid = int(reply["pid"])
        if pid > 0:
            self._exit_future(pid)
        return pid

    async def run(self, module: str, argv: list[str]) -> HelperProcess:
        """host/``module``.py (rootfs_io, sftp_server) with ``argv``, run by a child of the
        helper, with pipes for its stdin, stdout and stderr, as asyncio's subprocesses."""
        loop = asyncio.get_running_loop()
        pipes = [os.pipe() for _ in range(3)]
        for read_end, _ in pipes[:2]:  # file contents: 1 MiB per wake-up, not 64 KiB
            with contextlib.suppress(OSError):
                fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        theirs = [pipes[0][0], pipes[1][1], pipes[2][1]]
        try:
            pid = await self.run_on(module, argv, theirs)
        except BaseException:
            for fd in (pipes[0][1], pipes[1][0], pipes[2][0]):
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        stdout, stderr = asyncio.StreamReader(), asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stdout), os.fdopen(pipes[1][0], "rb", 0)
        )
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stderr), os.fdopen(pipes[2][0], "rb", 0)
        )
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(pipes[0][1], "wb", 0)
        )
        stdin = asyncio.StreamWriter(transport, protocol, None, loop)
        return HelperProcess(self, pid, stdin, stdout, stderr)

    async def run_piped(
        self, module: str, argv: list[str]
    ) -> tuple[HelperChild, PipeBody, PipeBody]:
        """As ``run``, with nothing on its stdin and its stdout and stderr left as pipes
        (``piped``), for a caller that moves the bytes with splice (host/socket_splice.py)."""
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            pid, stdout, stderr = await piped(
                lambda out, err: self.run_on(module, argv, [null, out, err])
            )
        finally:
            os.close(null)
        return HelperChild(self, pid), stdout, stderr

    async def run_on(self, module: str, argv: list[str], stdio: list[int]) -> int:
        """The pid of host/``module``.py run with ``argv`` by a child of the helper whose
        stdin, stdout and stderr are ``stdio`` (the caller keeps its own copies)."""
        pid = await self._request({"op": "run", "module": module, "argv": argv}, stdio)
        if pid <= 0:
            raise InternalError("The attach helper could not start the file operation")
        return pid

    async def wait(self, pid: int) -> int:
        """The waitpid status of a command the helper attached."""
        try:
            return await self._exit_future(pid)
        finally:
            self._exits.pop(pid, None)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock)
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None


class HelperChild:
    """A command the helper started: its exit, as an asyncio subprocess's."""

    def __init__(self, helper: AttachHelper, pid: int) -> None:
        self.helper = helper
        self.pid = pid
        self.returncode: int | None = None

    async def wait(self) -> int:
        if self.returncode is None:
            self.returncode = exit_code(await self.helper.wait(self.pid))
        return self.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


class HelperProcess(HelperChild):
    """With asyncio streams on its stdin, stdout and stderr, as files.py uses them."""

    def __init__(
        self,
        helper: AttachHelper,
        pid: int,
        stdin: asyncio.StreamWriter,
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
    ) -> None:
        super().__init__(helper, pid)
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr


_shared: AttachHelper | None = None


def shared_helper() -> AttachHelper:
    """The daemon's one helper (containers' exec and file operations)."""
    global _shared
    if _shared is None:
        _shared = AttachHelper()
    return _shared
