"""What runs inside a container right after liblxc attached to it, up to the exec of the
command: standard library only, as the attach helper (attach_helper.py) loads it without the
daemon."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import platform
import signal
import socket
import termios
from dataclasses import dataclass
from typing import Any, NoReturn

RT_SIGACTION = {"x86_64": 13, "aarch64": 134, "riscv64": 134}
"""rt_sigaction's number (elsewhere libc's signal() does what it can)."""
SIGSET_BYTES = 8


@dataclass(frozen=True)
class Command:
    argv: list[str]
    environment: dict[str, str]
    cwd: str
    uid: int
    gid: int


def attach_options(lxc: Any, command: Command, pty: bool) -> dict[str, Any]:
    """liblxc's attach options: a clean environment (the command's own), its directory and
    ids (a terminal's child sets those itself, after opening the terminal)."""
    options: dict[str, Any] = {
        "env_policy": lxc.LXC_ATTACH_CLEAR_ENV,
        "extra_env_vars": [f"{k}={v}" for k, v in command.environment.items()],
    }
    if not pty:
        options |= {"initial_cwd": command.cwd or "/", "uid": command.uid, "gid": command.gid}
    return options


def exec_command(command: Command, report: int) -> NoReturn:
    """Exec the command; when the exec itself fails, write its errno to ``report`` (a
    close-on-exec descriptor the daemon reads: EOF means the command runs)."""
    default_signals()
    try:
        os.execvpe(command.argv[0], command.argv, command.environment)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.write(report, str(exc.errno or 0).encode())
        os._exit(127 if isinstance(exc, FileNotFoundError) else 126)


def default_signals() -> None:
    """Every signal back to its default action and none blocked, as a command starts under
    Incus: a signal ignored stays ignored across exec, and Python ignores SIGPIPE and SIGXFSZ,
    the helper SIGINT, and a daemon may have been started with others ignored (a command
    would not die of a ^C, nor of a closed pipe). Through rt_sigaction itself: libc refuses
    its own two (32 and 33), which a parent may also have left ignored."""
    libc = ctypes.CDLL(None)
    number = RT_SIGACTION.get(platform.machine())
    action = ctypes.create_string_buffer(64)  # all zero: SIG_DFL, no flags, nothing masked
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    for signum in range(1, signal.NSIG):
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        if number is None:
            libc.signal(signum, None)  # SIG_DFL
        else:
            libc.syscall(number, signum, action, None, SIGSET_BYTES)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def exec_child(args: tuple[Command, int]) -> NoReturn:
    """The attached child of a command without a terminal (attach set its fds, ids, cwd)."""
    exec_command(*args)


def pty_child(command: Command) -> NoReturn:
    """Open a terminal from the container's devpts, hand its master to the daemon over fd 0,
    then exec the command on it."""
    channel = socket.socket(fileno=os.dup(0))  # close-on-exec: EOF tells the exec happened
    master, slave = os.openpty()
    socket.send_fds(channel, [b"m"], [master])
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
    try:
        os.chdir(command.cwd or "/")
    except OSError:
        os.chdir("/")
    if command.gid:
        os.setgid(command.gid)
    if command.uid:
        os.setuid(command.uid)
    exec_command(command, channel.fileno())
