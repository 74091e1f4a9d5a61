"""/streams/v1/index.json, /streams/v1/images.json and /streams/images/{fingerprint}/{file}:
the public images of the default project as a simplestreams server, open to anyone (no client
certificate), as image servers are."""

from __future__ import annotations

from aiohttp import web

from stapes.api.errors import NotFound
from stapes.db.images import ImageRow, list_aliases
from stapes.images import streams_server
from stapes.server.endpoint import Action, Endpoint, state
from stapes.server.response import Result

_CACHE: dict[str, str] = {}
"""File hashes by path and mtime (an image file never changes under its fingerprint)."""


def _public(request: web.Request) -> list[ImageRow]:
    return [r for r in state(request).images.list_images("default") if r.public]


async def index_json(request: web.Request) -> web.StreamResponse:
    tree = streams_server.images_json(_public(request), {}, state(request).images.files, _CACHE)
    return web.json_response(streams_server.index_json(sorted(tree["products"])))


async def images_json(request: web.Request) -> web.StreamResponse:
    st = state(request)
    aliases: dict[str, list[str]] = {}
    for alias in list_aliases(st.db, "default"):
        aliases.setdefault(alias.fingerprint, []).append(alias.name)
    tree = streams_server.images_json(_public(request), aliases, st.images.files, _CACHE)
    return web.json_response(tree)


async def image_file(request: web.Request) -> Result:
    fingerprint, name = request.match_info["fingerprint"], request.match_info["file"]
    for row in _public(request):
        if row.fingerprint == fingerprint:
            path = streams_server.item_files(row, state(request).images.files).get(name)
            if path is not None:
                return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})
    raise NotFound(f"No public image file {fingerprint}/{name}")


ENDPOINTS = [
    Endpoint("/streams/v1/index.json", get=Action(index_json, allow_untrusted=True)),
    Endpoint("/streams/v1/images.json", get=Action(images_json, allow_untrusted=True)),
    Endpoint("/streams/images/{fingerprint}/{file}", get=Action(image_file, allow_untrusted=True)),
]
