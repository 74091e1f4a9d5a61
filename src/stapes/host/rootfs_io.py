"""File access inside an instance's root filesystem, run as a short-lived helper process that
chroots into the rootfs first: every path and every symlink (absolute or ``..``) then resolves
inside it, so nothing a container does to its files can make stapesd touch a host file.

    python -m stapes.host.rootfs_io ROOT get PATH
        one JSON line (type, mode, uid, gid, size, mtime, target, entries), then a regular
        file's bytes
    python -m stapes.host.rootfs_io ROOT put PATH TYPE UID GID MODE WRITE NEW_UID NEW_GID
        (content on stdin) TYPE file|directory|symlink; UID/GID/MODE -1 keep what an existing
        file has, or use NEW_UID/NEW_GID (the instance's root) and 0644/0755; WRITE
        overwrite|append
    python -m stapes.host.rootfs_io ROOT delete PATH

Errors: exit 2 with ``ERRNO_NAME: message`` on stderr. Only standard-library imports, all made
before the chroot."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import sys

CHUNK = 1024 * 1024

ARGV = [sys.executable, "-m", "stapes.host.rootfs_io"]
"""How to run this helper (followed by ROOT and a command)."""


def splice_all(source: int, target: int) -> bool:
    """Move everything ``source`` has left into ``target`` inside the kernel (one of the two
    a pipe: stdin or stdout here), without copying it through Python. False, with nothing
    moved, where splice cannot join them (neither is a pipe, or the file appends): the
    caller copies instead."""
    moved = False
    while True:
        try:
            count = os.splice(source, target, CHUNK)
        except OSError as exc:
            if exc.errno == errno.EINVAL and not moved:
                return False
            raise
        if count == 0:
            return True
        moved = True


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "file"


def get(path: str) -> None:
    """Open first (without following a final symlink), then describe what was opened: the
    answer cannot change between the check and the read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        fd = -1  # a symlink: report it, never follow it
    st = os.fstat(fd) if fd >= 0 else os.lstat(path)
    kind = _kind(st.st_mode)
    if fd >= 0 and not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file, directory or symlink")
    header = {
        "type": kind,
        "mode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "size": st.st_size,
        "mtime": st.st_mtime,
        "target": os.readlink(path) if fd < 0 else "",
        "entries": sorted(os.listdir(fd)) if kind == "directory" else [],
    }
    out = sys.stdout.buffer
    out.write(json.dumps(header).encode() + b"\n")
    out.flush()
    if kind == "file":
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            if not splice_all(fd, out.fileno()):
                shutil.copyfileobj(f, out, CHUNK)
                out.flush()
    elif fd >= 0:
        os.close(fd)


def put(
    path: str, kind: str, uid: int, gid: int, mode: int, write: str, new_ids: tuple[int, int]
) -> None:
    existing = os.lstat(path) if os.path.lexists(path) else None
    if kind == "directory":
        if existing is None:
            os.mkdir(path, 0o755 if mode < 0 else mode)
        elif not stat.S_ISDIR(existing.st_mode):
            raise OSError(errno.EEXIST, "exists and is not a directory")
    elif kind == "symlink":
        target = sys.stdin.buffer.read().decode()
        if existing is not None:
            if stat.S_ISDIR(existing.st_mode):
                raise OSError(errno.EISDIR, "a directory is in the way")
            os.unlink(path)
        os.symlink(target, path)
    elif kind == "file":
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise OSError(errno.EISDIR, "is a directory")
        kind_there = stat.S_IFMT(existing.st_mode) if existing is not None else stat.S_IFREG
        if kind_there not in (stat.S_IFREG, stat.S_IFLNK):  # a link is checked once open
            raise OSError(errno.EINVAL, "not a regular file")
        # never blocks on a FIFO nor writes to a device: opened without blocking, checked,
        # and only then truncated
        flags = os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_NOCTTY
        fd = os.open(
            path, flags | (os.O_APPEND if write == "append" else 0), 0o644 if mode < 0 else mode
        )
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file")
        if write != "append":
            os.ftruncate(fd, 0)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "wb") as f:
            if not splice_all(sys.stdin.fileno(), fd):
                shutil.copyfileobj(sys.stdin.buffer, f, CHUNK)
    else:
        raise OSError(errno.EINVAL, f"unknown type {kind!r} (use file, directory or symlink)")
    if existing is None or uid >= 0 or gid >= 0:
        keep_uid = existing.st_uid if existing is not None else new_ids[0]
        keep_gid = existing.st_gid if existing is not None else new_ids[1]
        os.lchown(path, uid if uid >= 0 else keep_uid, gid if gid >= 0 else keep_gid)
    if mode >= 0 and kind != "symlink":
        os.chmod(path, mode)


def delete(path: str) -> None:
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        os.rmdir(path)
    else:
        os.unlink(path)


def main(argv: list[str]) -> int:
    root, op, path = argv[0], argv[1], argv[2]
    try:
        os.chroot(root)
        os.chdir("/")
        if op == "get":
            get(path)
        elif op == "put":
            kind, uid, gid, mode, write = argv[3], int(argv[4]), int(argv[5]), int(argv[6]), argv[7]
            put(path, kind, uid, gid, mode, write, (int(argv[8]), int(argv[9])))
        elif op == "delete":
            delete(path)
        else:
            raise OSError(errno.EINVAL, f"unknown operation {op!r}")
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "EIO")
        sys.stderr.write(f"{name}: {exc.strerror or exc}\n")
        return 2
    except (IndexError, ValueError):
        sys.stderr.write(f"EINVAL: bad arguments {argv!r}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
