"""/1.0/storage-pools: list, create, show, update (PUT/PATCH with ETag), delete, resources."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from stapes.api.storage import StoragePoolPut, StoragePoolsPost
from stapes.api.urls import pool_url
from stapes.db.storage import PoolRow, get_pool, list_pools
from stapes.server.endpoint import (
    Action,
    Endpoint,
    body_as,
    check_etag,
    patched,
    recursion,
    state,
)
from stapes.server.response import Result, Sync, created


def _writable(row: PoolRow) -> dict[str, Any]:
    return {"config": row.config, "description": row.description}


def _pool(request: web.Request) -> PoolRow:
    return get_pool(state(request).db, request.match_info["pool"])


async def list_pools_handler(request: web.Request) -> Result:
    st = state(request)
    rows = list_pools(st.db)
    if recursion(request) >= 1:
        return Sync([st.pools.render(r) for r in rows])
    return Sync([pool_url(r.name) for r in rows])


async def create_pool_handler(request: web.Request) -> Result:
    req = await body_as(request, StoragePoolsPost)
    st = state(request)
    if st.membership.clustered and st.cluster_pools is not None:
        if request.query.get("target"):  # this member's values (the request came here)
            st.pools.define_pending(req.name, req.driver, dict(req.config))
        else:
            await st.cluster_pools.create(req.name, req.driver, req.description, dict(req.config))
        return created(pool_url(req.name))
    await st.pools.create(req.name, req.driver, req.description, dict(req.config))
    return created(pool_url(req.name))


async def get_pool_handler(request: web.Request) -> Result:
    row = _pool(request)
    return Sync(state(request).pools.render(row), etag=_writable(row))


async def put_pool_handler(request: web.Request) -> Result:
    row = _pool(request)
    check_etag(request, _writable(row))
    req = await body_as(request, StoragePoolPut)
    await state(request).pools.update(row, req.description, dict(req.config))
    return Sync()


async def patch_pool_handler(request: web.Request) -> Result:
    row = _pool(request)
    current = _writable(row)
    check_etag(request, current)
    req = await patched(request, current, ("config",), StoragePoolPut)
    await state(request).pools.update(row, req.description, dict(req.config))
    return Sync()


async def delete_pool_handler(request: web.Request) -> Result:
    st = state(request)
    if st.membership.clustered and st.cluster_pools is not None:
        await st.cluster_pools.delete(request.match_info["pool"])
        return Sync()
    await st.pools.delete(request.match_info["pool"])
    return Sync()


async def pool_resources_handler(request: web.Request) -> Result:
    row = _pool(request)
    return Sync(state(request).pools.resources(row.name))


ENDPOINTS = [
    Endpoint(
        "/storage-pools",
        get=Action(list_pools_handler),
        post=Action(create_pool_handler),
    ),
    Endpoint(
        "/storage-pools/{pool}",
        get=Action(get_pool_handler),
        put=Action(put_pool_handler),
        patch=Action(patch_pool_handler),
        delete=Action(delete_pool_handler),
    ),
    Endpoint("/storage-pools/{pool}/resources", get=Action(pool_resources_handler)),
]
