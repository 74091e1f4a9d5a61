"""The client's own socket, for handlers that move a body's bytes into or out of it themselves
(the files API and SFTP over the unix socket): only a plain connection's, since TLS bytes must
go through the daemon to be decrypted or encrypted."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

FLUSH_WAIT = 1.0


def plain_unix_socket(request: web.Request) -> socket.socket | None:
    """The connection's socket when it is a unix socket without TLS, else None."""
    transport = request.transport
    if transport is None or transport.get_extra_info("sslcontext") is not None:
        return None
    connection = transport.get_extra_info("socket")
    if connection is None or connection.family != socket.AF_UNIX:
        return None
    return connection  # type: ignore[no-any-return]


async def flushed(request: web.Request) -> bool:
    """Whether all aiohttp had to write (a response's headers) has reached the socket, waiting
    up to FLUSH_WAIT for it: what the handler writes itself must come after."""
    transport = request.transport
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FLUSH_WAIT
    while transport is not None and transport.get_write_buffer_size():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.001)
    return transport is not None
