"""Entering another process's namespaces (setns(2) through libc): the daemon's netlink reader
(netns_interfaces.py) and the helpers that run in a container's namespaces (sftp_server,
proxy, mount_inject, mount_remove) use this. Only the standard library: the helpers import it
at their start."""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int, nstype: int, what: str = "setns") -> None:
    """This thread (the process, for the mount and user namespaces) into the namespace the
    descriptor ``fd`` holds (opened from ``/proc/PID/ns/...``); OSError when it cannot."""
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def enter(path: str, nstype: int) -> None:
    """setns() into the namespace ``path`` names; OSError saying which when it cannot."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, nstype, f"setns {path}")
    finally:
        os.close(fd)
