"""File bytes moved between a client's socket and a helper's pipe inside the kernel (splice), as
the event loop finds each side ready, never through Python: the files API's uploads and
downloads over the unix socket (server/handlers/instance_files.py).

- ``SocketBody``: an upload left in the socket (the HTTP layer stopped reading the connection),
  spliced into the file helper's stdin pipe.
- ``PipeBody``: what the file helper writes to its stdout pipe, read as chunks, or spliced into
  the socket as HTTP/1.1 chunks (the response's headers are out; the caller ends the body).

The socket's descriptor is duplicated first: asyncio refuses to watch a descriptor a transport
owns, and the copy shares the original's (non-blocking) state."""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import os
import select
import socket
import termios
from collections.abc import AsyncIterator
from dataclasses import dataclass

CHUNK = 1024 * 1024
SO_SNDBUFFORCE = 32  # Linux's; root may pass net.core.wmem_max with it
SEND_BUFFER = 4 * 1024 * 1024
"""What a download may have in flight in the socket. Each time the socket is full costs a wait
for the client; with the default (~208 KiB) a 100 MiB download took 150-215 ms here, with this
20-160 ms (bimodal, around 30 or 110 ms; why, not found)."""


class BodyCutShort(Exception):
    """The client hung up before sending the whole body."""


@dataclass
class SocketBody:
    """``prefix``: what the HTTP layer had read past the headers; then ``remaining`` more
    bytes are to be read from ``socket`` (a descriptor the caller keeps open)."""

    prefix: bytes
    socket: int
    remaining: int

    async def send_to(self, pipe: int) -> None:
        """Write the whole body into ``pipe`` (its write end). BrokenPipeError when its reader
        went away; BodyCutShort when the client stopped early."""
        source, target = os.dup(self.socket), os.dup(pipe)
        try:
            await _write_all(target, self.prefix)
            while self.remaining:
                try:
                    moved = os.splice(
                        source, target, min(self.remaining, CHUNK), flags=os.SPLICE_F_NONBLOCK
                    )
                except BlockingIOError:  # the socket has nothing yet, or the pipe is full
                    await _ready(source, select.POLLIN)
                    await _ready(target, select.POLLOUT)
                    continue
                if moved == 0:
                    raise BodyCutShort(f"{self.remaining} bytes of the body never came")
                self.remaining -= moved
        finally:
            os.close(source)
            os.close(target)

    async def discard(self) -> None:
        """Read what is left of the body and drop it (after a failure, so that the client,
        still sending, reads the answer rather than a reset connection)."""
        copy = socket.socket(fileno=os.dup(self.socket))
        buffer = bytearray(CHUNK)
        try:
            while self.remaining:
                try:
                    count = copy.recv_into(buffer, min(self.remaining, CHUNK))
                except BlockingIOError:
                    await _ready(copy.fileno(), select.POLLIN)
                    continue
                if count == 0:
                    return
                self.remaining -= count
        finally:
            copy.close()


async def _ready(fd: int, event: int) -> None:
    """Until ``fd`` is readable (POLLIN) or writable (POLLOUT); at once when it already is (a
    hung-up socket counts as readable: the next read says so)."""
    poller = select.poll()
    poller.register(fd, event)
    if poller.poll(0):
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    watch, unwatch = (
        (loop.add_reader, loop.remove_reader)
        if event == select.POLLIN
        else (loop.add_writer, loop.remove_writer)
    )
    watch(fd, wake)
    try:
        await done
    finally:
        with contextlib.suppress(Exception):
            unwatch(fd)


class PipeBody:
    """The read end of a pipe (non-blocking, owned: ``close`` closes it) and what was already
    read from it."""

    def __init__(self, fd: int, prefix: bytes = b"") -> None:
        self.fd = fd
        self.prefix = prefix

    async def line(self) -> bytes:
        """Up to the first newline (without it; b"" at the end of the pipe); what follows it is
        kept for the body."""
        while b"\n" not in self.prefix:
            more = await self._read()
            if not more:
                line, self.prefix = self.prefix, b""
                return line
            self.prefix += more
        line, _, self.prefix = self.prefix.partition(b"\n")
        return line

    async def chunks(self) -> AsyncIterator[bytes]:
        """The rest, as it comes."""
        if self.prefix:
            yield self.prefix
            self.prefix = b""
        while chunk := await self._read():
            yield chunk

    async def send_chunked(self, sock: int) -> None:
        """The rest into ``sock`` as HTTP/1.1 chunks, each as big as what the pipe holds
        (FIONREAD), without the last, empty one."""
        conn = socket.socket(fileno=os.dup(sock))
        with contextlib.suppress(OSError):  # see SEND_BUFFER
            conn.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, SEND_BUFFER)
        target = conn.fileno()
        try:
            if self.prefix:
                await _write_all(target, _chunk_size(len(self.prefix)) + self.prefix + b"\r\n")
                self.prefix = b""
            while True:
                await _ready(self.fd, select.POLLIN)
                size = _available(self.fd)
                if size == 0:  # readable with nothing in it: the writer closed its end
                    return
                await _write_all(target, _chunk_size(size))
                while size:
                    try:
                        size -= os.splice(self.fd, target, size, flags=os.SPLICE_F_NONBLOCK)
                    except BlockingIOError:
                        await _ready(target, select.POLLOUT)
                await _write_all(target, b"\r\n")
        finally:
            conn.close()

    async def rest(self) -> bytes:
        """Everything left (small things: a helper's complaints)."""
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    async def _read(self) -> bytes:
        while True:
            try:
                return os.read(self.fd, CHUNK)
            except BlockingIOError:
                await _ready(self.fd, select.POLLIN)


def _available(fd: int) -> int:
    """How many bytes the pipe ``fd`` holds."""
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count, True)
    return count[0]


def _chunk_size(size: int) -> bytes:
    return b"%x\r\n" % size


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _ready(fd, select.POLLOUT)
