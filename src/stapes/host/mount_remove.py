"""Unmount a path inside a running container, as a short-lived helper process:

    python -m stapes.host.mount_remove PID TARGET

The counterpart of mount_inject: ``setns`` enters the container's mount namespace and
``umount2(MNT_DETACH)`` takes every mount stacked at TARGET away, without any tool of the
container's (an image may have no umount). A directory mount point left empty goes too, as
Incus leaves none behind.
Errors: exit 2 with a message on stderr."""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import platform
import stat
import sys

from stapes.host import namespaces

MNT_DETACH = 0x00000002
UMOUNT_NOFOLLOW = 0x00000008
MAX_STACKED = 64
"""Mounts taken from one target at most (a stack left by earlier failed removals)."""

_libc = ctypes.CDLL(None, use_errno=True)


def _umount(target: str) -> bool:
    """One mount away; False when nothing is mounted there any more."""
    if _libc.umount2(target.encode(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EINVAL:  # not a mount point
        return False
    raise OSError(err, f"umount {target}: {os.strerror(err)}")


def _remove_if_empty(target: str) -> None:
    try:
        if stat.S_ISDIR(os.lstat(target).st_mode):
            os.rmdir(target)
    except OSError:
        pass  # not empty, or already gone: it stays as it is


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stapes.host.mount_remove")
    parser.add_argument("pid")
    parser.add_argument("target")
    args = parser.parse_args(argv)
    if platform.system() != "Linux":
        sys.stderr.write("mount removal needs Linux\n")
        return 2
    try:
        namespaces.enter(f"/proc/{args.pid}/ns/mnt", namespaces.CLONE_NEWNS)
        os.chdir("/")
        removed = 0
        while removed < MAX_STACKED and _umount(args.target):
            removed += 1
        if removed:
            _remove_if_empty(args.target)
    except OSError as exc:
        sys.stderr.write(f"cannot unmount {args.target}: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
