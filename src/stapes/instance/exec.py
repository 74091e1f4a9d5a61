"""Process helpers for exec: waiting on a pid without a thread, exit codes, the default env."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal

from stapes.api.errors import BadRequest

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def exec_environment(
    instance_env: dict[str, str], requested: dict[str, str], uid: int
) -> dict[str, str]:
    """Incus's defaults, then the instance's environment.*, then what the request asks for."""
    env = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"}
    if uid == 0:
        env.update({"HOME": "/root", "USER": "root"})
    env.update(instance_env)
    env.update(requested)
    return env


class ExecFailed(BadRequest):
    """The command could not be executed at all: Incus fails the operation with this message
    and reports ``code`` as its return (127 when there is no such command, 126 otherwise)."""

    def __init__(self, err: int) -> None:
        if err == errno.ENOENT:
            super().__init__("Command not found")
            self.code = 127
        else:  # a directory, no exec permission, a bad binary...
            super().__init__("Command not executable")
            self.code = 126
        self.errno = err


def exit_code(status: int) -> int:
    """A wait status as a shell would report it (128 + signal for a killed process)."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


REAP_POLL_SECONDS = 1.0


async def wait_pid(pid: int) -> int:
    """Wait for a child process (our own child) and return its shell-style exit code.

    A pidfd wakes us when it exits; we also try to reap it every second, because this kernel
    was seen not to wake a pidfd's waiters when the process is killed while its pid namespace
    is torn down (a force stop), and an unreaped child keeps that namespace from dying."""
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        pidfd = -1
    ready: asyncio.Future[None] = loop.create_future()

    def exited() -> None:
        if not ready.done():
            ready.set_result(None)

    if pidfd >= 0:
        loop.add_reader(pidfd, exited)
    try:
        while True:
            try:
                reaped, status = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 (non-blocking)
            except ChildProcessError:
                return 255
            if reaped:
                return exit_code(status)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(ready), REAP_POLL_SECONDS)
    finally:
        if pidfd >= 0:
            loop.remove_reader(pidfd)
            os.close(pidfd)


def send_signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def valid_signal(value: object) -> int | None:
    try:
        signum = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return signum if signum in {s.value for s in signal.Signals} else None
