"""A request body left in the client's socket, moved into a pipe inside the kernel.

The files API hands a big upload over this way (server/handlers/instance_files.py): the HTTP
layer stops reading the connection, and the bytes go from the socket into the file helper's
stdin pipe with splice, as the event loop finds the socket readable and the pipe writable, never
through Python. The descriptors are duplicated first: asyncio refuses to watch a descriptor a
transport owns, and the copies share the originals' (non-blocking) state."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
from dataclasses import dataclass

CHUNK = 1024 * 1024


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
            view = memoryview(self.prefix)
            while view:
                try:
                    view = view[os.write(target, view) :]
                except BlockingIOError:
                    await _ready(target, select.POLLOUT)
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
