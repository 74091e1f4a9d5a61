"""Opening paths inside an instance's root from the daemon itself, safely: openat2 with
RESOLVE_IN_ROOT resolves every link and ``..`` as if the root were ``/``, so a path the instance
controls cannot lead out of it (Linux 5.6+). For the daemon's own small writes (templates, the
cloud-init seed), where a helper process per file would cost more than the write."""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path

SYS_OPENAT2 = 437  # the same number on every architecture (the generic syscall table)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10

_libc = ctypes.CDLL(None, use_errno=True)


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


def open_in_root(root_fd: int, path: str, flags: int, mode: int = 0) -> int:
    """An fd for ``path`` resolved inside the directory ``root_fd``; raises OSError."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(SYS_OPENAT2, root_fd, path.encode(), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{path}: {os.strerror(err)}")
    return int(fd)


def write_file(root: Path, path: str, content: bytes, owner: int, mode: int | None) -> None:
    """Write a file inside ``root`` (its directory must exist). A new file belongs to
    ``owner`` (uid and gid) with ``mode`` (0644 if None); an existing one keeps its owner.
    Only a regular file is ever written: what is there is looked at first (without opening
    it for I/O, so a FIFO or a device cannot block or react), then that very inode is opened
    again to write; a symlink or anything else is refused (OSError)."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = open_in_root(root_fd, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            created = True
        except FileExistsError:
            fd = _reopen_regular(open_in_root(root_fd, path, os.O_PATH | os.O_NOFOLLOW), path)
            created = False
        try:
            _write_all(fd, content)
            if created:
                os.fchown(fd, owner, owner)
            if created or mode is not None:
                os.fchmod(fd, 0o644 if mode is None else mode)
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)


def _reopen_regular(path_fd: int, path: str) -> int:
    """An fd for writing (truncated) to the regular file ``path_fd`` holds (an O_PATH fd),
    or OSError when it holds anything else. The reopening goes through /proc/self/fd, which
    names that inode and nothing else."""
    try:
        if not stat.S_ISREG(os.fstat(path_fd).st_mode):
            raise OSError(errno.EINVAL, f"{path}: not a regular file, not written")
        return os.open(f"/proc/self/fd/{path_fd}", os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    finally:
        os.close(path_fd)


def make_dirs(root: Path, path: str, owner: int, mode: int = 0o755) -> None:
    """Every directory of ``path`` inside ``root``, made (owned by ``owner``) where missing."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        current = ""
        for part in [p for p in path.split("/") if p]:
            parent = open_in_root(root_fd, current or "/", os.O_PATH | os.O_DIRECTORY)
            try:
                try:
                    os.mkdir(part, mode, dir_fd=parent)
                    os.chown(part, owner, owner, dir_fd=parent, follow_symlinks=False)
                except FileExistsError:
                    pass
            finally:
                os.close(parent)
            current += "/" + part
    finally:
        os.close(root_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def exists_in_root(root: Path, path: str) -> bool:
    """Whether something (a dangling link included) is at ``path`` inside ``root``."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = open_in_root(root_fd, path, os.O_PATH | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    finally:
        os.close(root_fd)
    os.close(fd)
    return True


def read_file(root: Path, path: str, limit: int) -> bytes | None:
    """A regular file inside ``root`` (None when there is none); at most ``limit`` bytes, else
    OSError. FIFOs, devices and directories are refused without blocking."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = open_in_root(root_fd, path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, f"{path}: not a regular file")
            if st.st_size > limit:
                raise OSError(errno.EFBIG, f"{path}: larger than {limit} bytes")
            os.set_blocking(fd, True)
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)


def list_dir(root: Path, path: str) -> list[str]:
    """The entries of a directory inside ``root`` ([] when there is none)."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = open_in_root(root_fd, path, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            return []
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)


def remove_file(root: Path, directory: str, name: str) -> bool:
    """Remove the file ``name`` (one path component) of ``directory`` inside ``root``;
    False when there was none."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            dir_fd = open_in_root(root_fd, directory, os.O_PATH | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return False
        finally:
            os.close(dir_fd)
        return True
    finally:
        os.close(root_fd)
