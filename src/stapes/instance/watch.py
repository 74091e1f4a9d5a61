"""Notices when an instance's init exits behind the daemon's back (poweroff inside, a crash),
through a pidfd per running instance: no polling, no thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

Key = tuple[str, str]


class InitWatcher:
    def __init__(self, on_exit: Callable[[str, str], Coroutine[Any, Any, None]]) -> None:
        self._on_exit = on_exit
        self._fds: dict[Key, int] = {}
        self._pids: dict[Key, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def watch(self, project: str, name: str, pid: int) -> None:
        self.unwatch(project, name)
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return
        key = (project, name)
        self._fds[key], self._pids[key] = fd, pid
        asyncio.get_running_loop().add_reader(fd, self._exited, key, fd)

    def alive(self, project: str, name: str) -> int:
        """The pid of the instance's init when it is watched and has not exited (its pidfd
        is not readable yet: exact, whatever the event loop has handled); else 0."""
        key = (project, name)
        fd = self._fds.get(key)
        if fd is None:
            return 0
        exited, _, _ = select.select([fd], [], [], 0)
        return 0 if exited else self._pids[key]

    def unwatch(self, project: str, name: str) -> None:
        self._pids.pop((project, name), None)
        fd = self._fds.pop((project, name), None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    def _exited(self, key: Key, fd: int) -> None:
        if self._fds.get(key) != fd:
            return
        self.unwatch(*key)
        task = asyncio.get_running_loop().create_task(self._on_exit(*key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        for project, name in list(self._fds):
            self.unwatch(project, name)
