"""/1.0/instances/{name}/files?path=: read (file body or directory listing), write, delete."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime

from aiohttp import web

from stapes.api.envelope import sync_envelope
from stapes.api.errors import BadRequest, StapesError
from stapes.host.socket_splice import BodyCutShort, SocketBody
from stapes.instance.files import FileBytes, FileInfo
from stapes.server.endpoint import Action, Endpoint, instance_row, state
from stapes.server.plain_socket import flushed, plain_unix_socket
from stapes.server.response import Result, Sync, error_response, render


def _headers(info: FileInfo) -> dict[str, str]:
    modified = datetime.fromtimestamp(info.mtime, UTC)
    return {
        "X-Incus-Uid": str(info.uid),
        "X-Incus-Gid": str(info.gid),
        "X-Incus-Mode": f"{info.mode:04o}",
        "X-Incus-Type": info.type,
        "X-Incus-Modified": modified.strftime("%Y-%m-%d %H:%M:%S +0000 UTC"),
    }


HANDED_OVER_FROM = 1024 * 1024
"""Uploads this big over the unix socket go into the file helper's pipe inside the kernel."""


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise BadRequest("Missing the path query parameter (for example ?path=/etc/hostname)")
    return path


async def get_file(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    info, body = await st.files.get(row, _path(request))
    try:
        return await _answer(request, info, body)
    finally:
        if isinstance(body, FileBytes):  # (already, unless the answer stopped early)
            await body.close()


async def _answer(
    request: web.Request, info: FileInfo, body: AsyncIterator[bytes] | FileBytes
) -> Result:
    headers = _headers(info)
    if info.type == "directory":
        async for _ in body:
            pass
        return web.json_response(sync_envelope(info.entries), headers=headers)
    if info.type == "symlink":
        async for _ in body:
            pass
        return web.Response(
            body=info.target.encode(), headers=headers, content_type="application/octet-stream"
        )
    name = _path(request).rstrip("/").rsplit("/", 1)[-1]
    headers["Content-Disposition"] = f"inline;filename={name}"
    # Chunked, not the size seen at open: the file may change while it is read, and a reader
    # that fails part-way must end as a broken transfer, not as a short "complete" one.
    response = web.StreamResponse(headers=headers)
    response.content_type = "application/octet-stream"
    response.enable_chunked_encoding()
    await response.prepare(request)
    connection = plain_unix_socket(request)
    try:
        if isinstance(body, FileBytes) and connection is not None and await flushed(request):
            await body.send_chunked(connection.fileno())  # the bytes never enter Python
        else:
            async for chunk in body:
                await response.write(chunk)
    except (StapesError, OSError):
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


async def head_file(request: web.Request) -> Result:
    """instance_file_head: what GET would say of the path, without its content."""
    row = instance_row(request)
    info, body = await state(request).files.get(row, _path(request))
    if isinstance(body, FileBytes):
        await body.close()
    else:
        with contextlib.suppress(StopAsyncIteration, StapesError):
            await anext(body)  # started, so that closing it ends the reader at once
        if isinstance(body, AsyncGenerator):
            await body.aclose()
    headers = _headers(info)
    if info.type == "file":
        headers["Content-Length"] = str(info.size)
    kind = "application/json" if info.type == "directory" else "application/octet-stream"
    return web.Response(headers=headers, content_type=kind)


def _int_header(request: web.Request, name: str, base: int = 10) -> int:
    raw = request.headers.get(f"X-Incus-{name}", request.headers.get(f"X-LXD-{name}", ""))
    if raw == "":
        return -1
    try:
        return int(raw, base)
    except ValueError:
        raise BadRequest(f"Invalid X-Incus-{name} header {raw!r}") from None


async def _content(request: web.Request) -> AsyncIterator[bytes]:
    while chunk := await request.content.read(1024 * 1024):
        yield chunk


async def post_file(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    path = _path(request)
    put = functools.partial(
        st.files.put,
        row,
        path,
        kind=request.headers.get("X-Incus-Type", "file") or "file",
        uid=_int_header(request, "Uid"),
        gid=_int_header(request, "Gid"),
        mode=_int_header(request, "Mode", 8),
        write=request.headers.get("X-Incus-Write", "overwrite") or "overwrite",
    )
    body = _socket_body(request) if row.type != "virtual-machine" else None
    if body is None:
        await put(content=_content(request))
        return Sync()
    try:
        await put(content=body)
        response = render(Sync())
    except BodyCutShort as exc:
        response = error_response(400, f"The upload of {path!r} stopped early: {exc}")
    except StapesError as exc:
        await body.discard()
        response = error_response(exc.status, exc.message, getattr(exc, "headers", None))
    except BaseException:
        request.protocol.force_close()  # the rest of the body is still in the socket
        raise
    # the HTTP parser still counts on the body: this connection ends with this answer
    request.content.feed_eof()
    response.force_close()
    return response


def _socket_body(request: web.Request) -> SocketBody | None:
    """A big upload over the unix socket is left in the socket, for the helper's pipe to be
    fed from it inside the kernel (host/socket_splice.py): what the HTTP layer had already read
    is taken from it, and it stops reading the connection."""
    length = request.content_length
    if length is None or length < HANDED_OVER_FROM or "Transfer-Encoding" in request.headers:
        return None  # (a chunked body is framed by the sender: only the HTTP layer reads it)
    connection = plain_unix_socket(request)
    if connection is None or request.transport is None:
        return None
    prefix = request.content.read_nowait()
    request.transport.pause_reading()  # (after: taking what was read may have resumed reading)
    return SocketBody(prefix, connection.fileno(), length - len(prefix))


async def delete_file(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    await st.files.delete(row, _path(request))
    return Sync()


ENDPOINTS = [
    Endpoint(
        "/instances/{name}/files",
        get=Action(get_file),
        head=Action(head_file),
        post=Action(post_file),
        delete=Action(delete_file),
    ),
]
