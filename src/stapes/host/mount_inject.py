"""Mount a host path into a running container, as a short-lived helper process:

    python -m stapes.host.mount_inject PID SOURCE TARGET [--readonly] [--recursive] [--idmap]

The kernel's mount API does it without the container's help: ``open_tree`` clones the source
(a detached mount, made read-only or idmapped with ``mount_setattr``), ``setns`` enters the
container's mount namespace, and ``move_mount`` attaches the clone at TARGET (created first, as
a directory or an empty file like the source). The helper must be single-threaded to enter a
mount namespace, hence a process of its own. Errors: exit 2 with a message on stderr."""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import sys

from stapes.host import namespaces

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x00000004
MOUNT_ATTR_RDONLY = 0x00000001
MOUNT_ATTR_IDMAP = 0x00100000

# The new mount API has the same numbers on every architecture (from the generic table).
SYSCALLS = {"open_tree": 428, "move_mount": 429, "mount_setattr": 442}

_libc = ctypes.CDLL(None, use_errno=True)


class MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def open_tree(path: str, recursive: bool) -> int:
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    return _check(_libc.syscall(SYSCALLS["open_tree"], AT_FDCWD, path.encode(), flags), "open_tree")


def set_attributes(fd: int, attr_set: int, userns_fd: int, recursive: bool) -> None:
    attr = MountAttr(attr_set, 0, 0, max(userns_fd, 0))
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(
        _libc.syscall(
            SYSCALLS["mount_setattr"], fd, b"", flags, ctypes.byref(attr), ctypes.sizeof(attr)
        ),
        "mount_setattr",
    )


def move_mount(fd: int, target: str) -> None:
    _check(
        _libc.syscall(
            SYSCALLS["move_mount"], fd, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH
        ),
        "move_mount",
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stapes.host.mount_inject")
    parser.add_argument("pid")
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--readonly", action="store_true")
    parser.add_argument("--recursive", action="store_true")
    parser.add_argument("--idmap", action="store_true")
    parser.add_argument(
        "--root-id",
        type=int,
        default=0,
        help="host uid/gid of the container's root: the target is created as it (a tmpfs of "
        "the container's user namespace refuses files of unmapped ids)",
    )
    args = parser.parse_args(argv)
    if platform.system() != "Linux":
        sys.stderr.write("mount injection needs Linux\n")
        return 2
    try:
        is_dir = os.path.isdir(args.source)
        tree = open_tree(args.source, args.recursive)
        flags = MOUNT_ATTR_RDONLY if args.readonly else 0
        userns = -1
        if args.idmap:
            userns = os.open(f"/proc/{args.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            flags |= MOUNT_ATTR_IDMAP
        if flags:
            set_attributes(tree, flags, userns, args.recursive)
        namespaces.enter(f"/proc/{args.pid}/ns/mnt", namespaces.CLONE_NEWNS)
        os.chdir("/")
        _libc.setfsgid(args.root_id)
        _libc.setfsuid(args.root_id)
        try:
            if is_dir:
                os.makedirs(args.target, exist_ok=True)
            elif not os.path.exists(args.target):
                os.makedirs(os.path.dirname(args.target) or "/", exist_ok=True)
                os.close(os.open(args.target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        finally:
            _libc.setfsuid(0)
            _libc.setfsgid(0)
        move_mount(tree, args.target)
    except OSError as exc:
        sys.stderr.write(f"cannot mount {args.source} at {args.target}: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
