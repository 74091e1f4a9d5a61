"""/1.0/instances/{name}/metadata and .../metadata/templates (container_edit_metadata): what
``incus config metadata show|edit`` and ``incus config template list|create|edit|show|delete``
use."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from stapes.api.errors import BadRequest, PayloadTooLarge
from stapes.api.image import ImageMetadata
from stapes.instance import metadata
from stapes.server.endpoint import (
    Action,
    Endpoint,
    body_as,
    check_etag,
    instance_row,
    patched,
    state,
)
from stapes.server.response import Result, Sync


def _volume(request: web.Request) -> Any:
    st = state(request)
    return st.instances.spec(instance_row(request)).volume


async def get_metadata(request: web.Request) -> Result:
    meta = await metadata.read(_volume(request))
    return Sync(meta, etag=meta)


async def put_metadata(request: web.Request) -> Result:
    volume = _volume(request)
    check_etag(request, await metadata.read(volume))
    await metadata.write(volume, await body_as(request, ImageMetadata))
    return Sync()


async def patch_metadata(request: web.Request) -> Result:
    volume = _volume(request)
    current = await metadata.read(volume)
    check_etag(request, current)
    current["templates"] = current["templates"] or {}
    await metadata.write(
        volume, await patched(request, current, ("properties", "templates"), ImageMetadata)
    )
    return Sync()


def _path(request: web.Request) -> str:
    name = request.query.get("path", "")
    if not name:
        raise BadRequest("Name the template with ?path=")
    return name


async def get_templates(request: web.Request) -> web.StreamResponse | Result:
    volume = _volume(request)
    if "path" not in request.query:
        return Sync(await metadata.list_templates(volume))
    data = await metadata.get_template(volume, _path(request))
    return web.Response(body=data, content_type="application/octet-stream")


async def put_template(request: web.Request) -> Result:
    volume = _volume(request)
    name = _path(request)
    chunks, size = [], 0
    while chunk := await request.content.read(1 << 20):
        size += len(chunk)
        if size > metadata.LIMIT:
            raise PayloadTooLarge(f"A template is at most {metadata.LIMIT} bytes")
        chunks.append(chunk)
    await metadata.put_template(volume, name, b"".join(chunks))
    return Sync()


async def delete_template(request: web.Request) -> Result:
    await metadata.delete_template(_volume(request), _path(request))
    return Sync()


ENDPOINTS = [
    Endpoint(
        "/instances/{name}/metadata",
        get=Action(get_metadata),
        put=Action(put_metadata),
        patch=Action(patch_metadata),
    ),
    Endpoint(
        "/instances/{name}/metadata/templates",
        get=Action(get_templates),
        post=Action(put_template),
        put=Action(put_template),
        delete=Action(delete_template),
    ),
]
