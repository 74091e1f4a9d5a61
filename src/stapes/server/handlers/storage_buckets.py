"""/1.0/storage-pools/{pool}/buckets: object storage buckets, as Incus answers on a host without
an object store. Incus serves buckets through MinIO on filesystem pools; this host has no MinIO
(and stapesd no MinIO driver), so there are never buckets: listing answers an empty list,
looking one up a 404, creating one a 400 that says what is missing (after the name is checked,
as Incus checks it first)."""

from __future__ import annotations

import re

from aiohttp import web

from stapes.api.errors import BadRequest, MissingHostFeature, NotFound
from stapes.db.storage import get_pool
from stapes.server.endpoint import Action, Endpoint, json_body, state
from stapes.server.response import Result, Sync

_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{2,62}")


async def list_buckets(request: web.Request) -> Result:
    get_pool(state(request).db, request.match_info["pool"])  # a missing pool is a 404
    return Sync([])


async def create_bucket(request: web.Request) -> Result:
    get_pool(state(request).db, request.match_info["pool"])
    body = await json_body(request)
    name = body.get("name", "") if isinstance(body, dict) else ""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadRequest(
            "Failed creating storage bucket: Bucket name must be between 3 and 63 lowercase "
            "letters, numbers, periods or hyphens and must start with a letter or number"
        )
    raise MissingHostFeature(
        "Failed creating storage bucket: storage buckets need an object store (MinIO: the "
        "minio server and its mc client), which this host does not have"
    )


async def get_bucket(request: web.Request) -> Result:
    get_pool(state(request).db, request.match_info["pool"])
    raise NotFound("Storage bucket not found")


_POOL = "/storage-pools/{pool}/buckets"
ENDPOINTS = [
    Endpoint(_POOL, get=Action(list_buckets), post=Action(create_bucket)),
    Endpoint(_POOL + "/{bucket}", get=Action(get_bucket), delete=Action(get_bucket)),
    Endpoint(_POOL + "/{bucket}/keys", get=Action(get_bucket), post=Action(get_bucket)),
]
