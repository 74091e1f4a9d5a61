"""An SFTP (version 3) server on stdin/stdout, serving one instance's filesystem, as a helper
process per session (behind GET /1.0/instances/NAME/sftp, which is what `incus file` uses):

    python -m stapes.host.sftp_server --root ROOTFS [--id-base N]      (a stopped instance)
    python -m stapes.host.sftp_server --pid PID [--userns]             (a running one)

Stopped: the helper chroots into ROOTFS, so paths and symlinks resolve inside it, and shifts
ids by N (what it reports and what it sets: container uid U is host uid N+U; new files belong to
the container's root). Running: it enters the instance's mount namespace (and, for unprivileged
containers, its user namespace as its root), so it sees exactly what the instance sees.

Its stdin and stdout may be the client's connection itself (the daemon hands a unix-socket
connection over rather than relaying it), which can be non-blocking: it shares its flags with
the daemon's event loop, so the server waits for it rather than change them.

Only the standard library (and host/namespaces.py, which is stdlib-only too), imported before
the namespaces change."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import select
import stat
import struct
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from stapes.host import namespaces

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

OVERFLOW_ID = 65534

# packet types
INIT, VERSION = 1, 2
OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT, SETSTAT, FSETSTAT = 3, 4, 5, 6, 7, 8, 9, 10
OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME = 11, 12, 13, 14, 15, 16, 17, 18
READLINK, SYMLINK, EXTENDED = 19, 20, 200
STATUS, HANDLE, DATA, NAME, ATTRS, EXTENDED_REPLY = 101, 102, 103, 104, 105, 201
# status codes
OK, EOF, NO_SUCH_FILE, PERMISSION_DENIED, FAILURE, BAD_MESSAGE, OP_UNSUPPORTED = 0, 1, 2, 3, 4, 5, 8
# attribute flags
A_SIZE, A_UIDGID, A_PERMISSIONS, A_ACMODTIME, A_EXTENDED = 0x1, 0x2, 0x4, 0x8, 0x80000000
# open flags
F_READ, F_WRITE, F_APPEND, F_CREAT, F_TRUNC, F_EXCL = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20

MAX_PACKET = 256 * 1024 + 1024
READ_LIMIT = 256 * 1024
BUFFER = 256 * 1024

_ERRNO_STATUS = {
    errno.ENOENT: NO_SUCH_FILE,
    errno.ENOTDIR: NO_SUCH_FILE,
    errno.EACCES: PERMISSION_DENIED,
    errno.EPERM: PERMISSION_DENIED,
    errno.EROFS: PERMISSION_DENIED,
}


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u32(self) -> int:
        (value,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        return int(value)

    def u64(self) -> int:
        (value,) = struct.unpack_from(">Q", self.data, self.pos)
        self.pos += 8
        return int(value)

    def raw(self) -> bytes:
        size = self.u32()
        value = self.data[self.pos : self.pos + size]
        if len(value) != size:
            raise ValueError("truncated packet")
        self.pos += size
        return value

    def text(self) -> str:
        return self.raw().decode("utf-8", "surrogateescape")


def pack_str(value: bytes | str) -> bytes:
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    return struct.pack(">I", len(data)) + data


EXTENSIONS = [
    ("posix-rename@openssh.com", "1"),
    ("statvfs@openssh.com", "2"),
    ("fsync@openssh.com", "1"),
    ("hardlink@openssh.com", "1"),
]
VERSION_PAYLOAD = struct.pack(">I", 3) + b"".join(
    pack_str(name) + pack_str(data) for name, data in EXTENSIONS
)
"""The answer to INIT: version 3 and the extensions served."""


class Ids:
    """Translation between the ids the client speaks (the instance's) and the host's."""

    def __init__(self, base: int) -> None:
        self.base = base

    def to_client(self, host_id: int) -> int:
        if self.base == 0:
            return host_id
        inside = host_id - self.base
        return inside if 0 <= inside < 1_000_000_000 else OVERFLOW_ID

    def to_host(self, client_id: int) -> int:
        return client_id + self.base


class Server:
    def __init__(self, ids: Ids, inp: BinaryIO, out: BinaryIO) -> None:
        self.ids = ids
        self.inp = inp
        self.out = out
        self.files: dict[bytes, int] = {}
        self.dirs: dict[bytes, tuple[str, list[str]]] = {}
        self.next_handle = 0

    # -- framing ------------------------------------------------------------------------------

    def _read_exact(self, size: int) -> bytes | None:
        chunks = b""
        while len(chunks) < size:
            part = self.inp.read(size - len(chunks))
            if not part:
                return None
            chunks += part
        return chunks

    def send(self, kind: int, payload: bytes) -> None:
        self.out.write(struct.pack(">IB", len(payload) + 1, kind) + payload)
        self.out.flush()

    def status(self, rid: int, code: int, message: str = "") -> None:
        self.send(STATUS, struct.pack(">II", rid, code) + pack_str(message) + pack_str("en"))

    def serve(self) -> None:
        while True:
            head = self._read_exact(4)
            if head is None:
                return
            (length,) = struct.unpack(">I", head)
            if not 0 < length <= MAX_PACKET:
                return
            body = self._read_exact(length)
            if body is None:
                return
            kind, reader = body[0], Reader(body[1:])
            if kind == INIT:
                self.send(VERSION, VERSION_PAYLOAD)
                continue
            rid = reader.u32()
            try:
                self.dispatch(kind, rid, reader)
            except OSError as exc:
                self.status(rid, _ERRNO_STATUS.get(exc.errno or 0, FAILURE), exc.strerror or "")
            except (ValueError, struct.error, IndexError) as exc:
                self.status(rid, BAD_MESSAGE, str(exc))

    # -- attributes ---------------------------------------------------------------------------

    def attrs(self, st: os.stat_result) -> bytes:
        flags = A_SIZE | A_UIDGID | A_PERMISSIONS | A_ACMODTIME
        return struct.pack(
            ">IQIIIII",
            flags,
            st.st_size,
            self.ids.to_client(st.st_uid),
            self.ids.to_client(st.st_gid),
            st.st_mode,
            int(st.st_atime),
            int(st.st_mtime),
        )

    def read_attrs(self, reader: Reader) -> dict[str, int]:
        flags = reader.u32()
        found: dict[str, int] = {}
        if flags & A_SIZE:
            found["size"] = reader.u64()
        if flags & A_UIDGID:
            found["uid"], found["gid"] = reader.u32(), reader.u32()
        if flags & A_PERMISSIONS:
            found["mode"] = reader.u32()
        if flags & A_ACMODTIME:
            found["atime"], found["mtime"] = reader.u32(), reader.u32()
        if flags & A_EXTENDED:
            for _ in range(reader.u32()):
                reader.raw()
                reader.raw()
        return found

    def apply_attrs(self, target: str | int, attrs: dict[str, int], follow: bool = True) -> None:
        if "size" in attrs:
            os.truncate(target, attrs["size"])
        if "uid" in attrs:
            uid, gid = self.ids.to_host(attrs["uid"]), self.ids.to_host(attrs["gid"])
            if isinstance(target, int):
                os.fchown(target, uid, gid)
            else:
                os.chown(target, uid, gid, follow_symlinks=follow)
        if "mode" in attrs:
            os.chmod(target, stat.S_IMODE(attrs["mode"]))
        if "atime" in attrs:
            os.utime(target, (attrs["atime"], attrs["mtime"]))

    def owned_by_root(self, target: str | int) -> None:
        """New files belong to the instance's root (stopped, shifted instances)."""
        if self.ids.base:
            if isinstance(target, int):
                os.fchown(target, self.ids.base, self.ids.base)
            else:
                os.lchown(target, self.ids.base, self.ids.base)

    # -- handles ------------------------------------------------------------------------------

    def new_handle(self) -> bytes:
        self.next_handle += 1
        return str(self.next_handle).encode()

    def file(self, reader: Reader) -> int:
        fd = self.files.get(reader.raw())
        if fd is None:
            raise OSError(errno.EBADF, "Invalid handle")
        return fd

    # -- requests -----------------------------------------------------------------------------

    def dispatch(self, kind: int, rid: int, reader: Reader) -> None:
        if kind == OPEN:
            path, pflags = reader.text(), reader.u32()
            attrs = self.read_attrs(reader)
            flags = os.O_CLOEXEC
            if pflags & F_READ and pflags & F_WRITE:
                flags |= os.O_RDWR
            elif pflags & F_WRITE:
                flags |= os.O_WRONLY
            else:
                flags |= os.O_RDONLY
            flags |= os.O_APPEND if pflags & F_APPEND else 0
            flags |= os.O_CREAT if pflags & F_CREAT else 0
            flags |= os.O_TRUNC if pflags & F_TRUNC else 0
            flags |= os.O_EXCL if pflags & F_EXCL else 0
            existed = os.path.lexists(path)
            fd = os.open(path, flags, stat.S_IMODE(attrs.get("mode", 0o644)))
            if not existed and pflags & F_CREAT:
                self.owned_by_root(fd)
            handle = self.new_handle()
            self.files[handle] = fd
            self.send(HANDLE, struct.pack(">I", rid) + pack_str(handle))
        elif kind == CLOSE:
            raw = reader.raw()
            if raw in self.files:
                os.close(self.files.pop(raw))
            elif raw in self.dirs:
                del self.dirs[raw]
            else:
                raise OSError(errno.EBADF, "Invalid handle")
            self.status(rid, OK)
        elif kind == READ:
            fd = self.file(reader)
            offset, size = reader.u64(), min(reader.u32(), READ_LIMIT)
            data = os.pread(fd, size, offset)
            if not data:
                self.status(rid, EOF, "End of file")
            else:
                self.send(DATA, struct.pack(">I", rid) + pack_str(data))
        elif kind == WRITE:
            fd = self.file(reader)
            offset, data = reader.u64(), reader.raw()
            while data:
                written = os.pwrite(fd, data, offset)
                data, offset = data[written:], offset + written
            self.status(rid, OK)
        elif kind in (LSTAT, STAT):
            st = os.stat(reader.text(), follow_symlinks=kind == STAT)
            self.send(ATTRS, struct.pack(">I", rid) + self.attrs(st))
        elif kind == FSTAT:
            fd = self.file(reader)
            self.send(ATTRS, struct.pack(">I", rid) + self.attrs(os.fstat(fd)))
        elif kind == SETSTAT:
            path = reader.text()
            self.apply_attrs(path, self.read_attrs(reader))
            self.status(rid, OK)
        elif kind == FSETSTAT:
            fd = self.file(reader)
            self.apply_attrs(fd, self.read_attrs(reader))
            self.status(rid, OK)
        elif kind == OPENDIR:
            path = reader.text()
            if not os.path.isdir(path):
                raise OSError(errno.ENOTDIR, "Not a directory")
            handle = self.new_handle()
            self.dirs[handle] = (path, [".", "..", *sorted(os.listdir(path))])
            self.send(HANDLE, struct.pack(">I", rid) + pack_str(handle))
        elif kind == READDIR:
            listing = self.dirs.get(reader.raw())
            if listing is None:
                raise OSError(errno.EBADF, "Invalid handle")
            path, entries = listing
            if not entries:
                self.status(rid, EOF, "End of directory")
                return
            batch, entries[:] = entries[:100], entries[100:]
            payload = struct.pack(">II", rid, 0)
            count = 0
            for name in batch:
                try:
                    st = os.lstat(os.path.join(path, name))
                except OSError:
                    continue
                payload += pack_str(name) + pack_str(name) + self.attrs(st)
                count += 1
            payload = payload[:4] + struct.pack(">I", count) + payload[8:]
            self.send(NAME, payload)
        elif kind == REMOVE:
            os.unlink(reader.text())
            self.status(rid, OK)
        elif kind == MKDIR:
            path = reader.text()
            attrs = self.read_attrs(reader)
            os.mkdir(path, stat.S_IMODE(attrs.get("mode", 0o755)))
            self.owned_by_root(path)
            self.status(rid, OK)
        elif kind == RMDIR:
            os.rmdir(reader.text())
            self.status(rid, OK)
        elif kind == REALPATH:
            path = os.path.normpath(os.path.join("/", reader.text() or "."))
            real = os.path.realpath(path)
            self.send(
                NAME, struct.pack(">II", rid, 1) + pack_str(real) + pack_str(real) + b"\0" * 4
            )
        elif kind == RENAME:
            old, new = reader.text(), reader.text()
            if os.path.lexists(new):
                raise OSError(errno.EEXIST, "File exists")
            os.rename(old, new)
            self.status(rid, OK)
        elif kind == READLINK:
            target = os.readlink(reader.text())
            payload = struct.pack(">II", rid, 1) + pack_str(target) + pack_str(target)
            self.send(NAME, payload + b"\0" * 4)
        elif kind == SYMLINK:
            # OpenSSH's (and pkg/sftp's) order: target path first, then the link's path
            target, link = reader.text(), reader.text()
            os.symlink(target, link)
            self.owned_by_root(link)
            self.status(rid, OK)
        elif kind == EXTENDED:
            self.extended(rid, reader.text(), reader)
        else:
            self.status(rid, OP_UNSUPPORTED, f"Unsupported request {kind}")

    def extended(self, rid: int, name: str, reader: Reader) -> None:
        if name == "posix-rename@openssh.com":
            os.rename(reader.text(), reader.text())
            self.status(rid, OK)
        elif name == "hardlink@openssh.com":
            os.link(reader.text(), reader.text())
            self.status(rid, OK)
        elif name == "fsync@openssh.com":
            os.fsync(self.file(reader))
            self.status(rid, OK)
        elif name == "statvfs@openssh.com":
            vfs = os.statvfs(reader.text())
            payload = struct.pack(
                ">I11Q",
                rid,
                vfs.f_bsize,
                vfs.f_frsize,
                vfs.f_blocks,
                vfs.f_bfree,
                vfs.f_bavail,
                vfs.f_files,
                vfs.f_ffree,
                vfs.f_favail,
                vfs.f_fsid,
                vfs.f_flag,
                vfs.f_namemax,
            )
            self.send(EXTENDED_REPLY, payload)
        else:
            self.status(rid, OP_UNSUPPORTED, f"Unsupported extension {name}")


class Descriptor(io.RawIOBase):
    """A descriptor read and written as a blocking one, whatever its O_NONBLOCK."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        while True:
            try:
                return os.readv(self.fd, [buffer])
            except BlockingIOError:
                select.select([self.fd], [], [])

    def write(self, data: ReadableBuffer, /) -> int:
        while True:
            try:
                return os.write(self.fd, data)
            except BlockingIOError:
                select.select([], [self.fd], [])


@dataclass
class Options:
    root: str = ""
    pid: str = ""
    userns: bool = False
    id_base: int = 0


def parse(argv: list[str]) -> Options:
    """The command line (module docstring). Read by hand: argparse costs ~0.2 ms in a forked
    spare even warmed, and a client waits for it."""
    options, args = Options(), iter(argv)
    for arg in args:
        if arg == "--userns":
            options.userns = True
        elif arg in ("--root", "--pid", "--id-base"):
            value = next(args, None)
            if value is None:
                raise ValueError(f"{arg} needs a value")
            if arg == "--root":
                options.root = value
            elif arg == "--pid":
                options.pid = value
            else:
                options.id_base = int(value)
        else:
            raise ValueError(f"unknown argument {arg!r}")
    return options


def enter(options: Options) -> Ids:
    if options.pid:
        if options.userns:
            namespaces.enter(f"/proc/{options.pid}/ns/user", namespaces.CLONE_NEWUSER)
        namespaces.enter(f"/proc/{options.pid}/ns/mnt", namespaces.CLONE_NEWNS)
        if options.userns:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            with contextlib.suppress(OSError):
                os.setgroups([])
        os.chdir("/")
        return Ids(0)
    os.chroot(options.root)
    os.chdir("/")
    return Ids(options.id_base)


_stdio: tuple[io.BufferedReader, io.BufferedWriter] | None = None


def warm() -> None:
    """In a process forked ahead of a session (the attach helper's spare): make now what
    a session starts with and a client would otherwise wait for (~0.2 ms), its buffered
    stdin and stdout (they name descriptors 0 and 1, whatever those become)."""
    global _stdio
    _stdio = _buffered_stdio()


def _buffered_stdio() -> tuple[io.BufferedReader, io.BufferedWriter]:
    return io.BufferedReader(Descriptor(0), BUFFER), io.BufferedWriter(Descriptor(1), BUFFER)


def main(argv: list[str]) -> int:
    try:
        options = parse(argv)
        ids = enter(options)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"sftp: {exc}\n")
        return 2
    inp, out = _stdio or _buffered_stdio()
    Server(ids, inp, out).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
