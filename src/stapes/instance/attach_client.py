"""The daemon's side of the attach helper (attach_helper.py): started on the first exec,
asked over a SOCK_SEQPACKET socket, its answers dispatched on the event loop. A command it
attached is its child: the exit status comes from it (``wait``). Started again when it died."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
import subprocess
import sys
from typing import Any

from stapes.api.errors import InternalError
from stapes.instance.attach_child import Command

log = logging.getLogger(__name__)


class AttachHelper:
    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}

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
        if "exited" in message:
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

    async def attach(
        self, lxcpath: str, name: str, command: Command, pty: bool, fds: list[int]
    ) -> int:
        """The pid of the command attached in container ``name`` (0 if liblxc failed)."""
        sock = self._sock or self._start()
        request_id = next(self._ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = waiter
        request = {
            "id": request_id,
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
        try:
            socket.send_fds(sock, [json.dumps(request).encode()], fds)
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
