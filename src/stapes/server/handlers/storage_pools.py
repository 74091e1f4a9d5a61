"""/1.0/storage-pools, read-only in this release (the storage issue brings the rest)."""

from __future__ import annotations

from aiohttp import web

from stapes.db.instances import list_instances
from stapes.db.projects import list_profiles
from stapes.db.storage import get_pool, list_pools
from stapes.server.endpoint import Action, Endpoint, recursion, state
from stapes.server.response import Result, Sync


def _pool_used_by(request: web.Request, name: str) -> list[str]:
    st = state(request)
    used = [f"/1.0/instances/{i.name}" for i in list_instances(st.db, None) if i.pool == name]
    used += [
        f"/1.0/profiles/{profile.name}"
        for profile in list_profiles(st.db, "default")
        if any(d.get("pool") == name for d in profile.devices.values())
    ]
    return used


async def list_pools_handler(request: web.Request) -> Result:
    st = state(request)
    rows = list_pools(st.db)
    if recursion(request) >= 1:
        return Sync([st.pools.render(r, _pool_used_by(request, r.name)) for r in rows])
    return Sync([f"/1.0/storage-pools/{r.name}" for r in rows])


async def get_pool_handler(request: web.Request) -> Result:
    st = state(request)
    row = get_pool(st.db, request.match_info["name"])
    return Sync(
        st.pools.render(row, _pool_used_by(request, row.name)),
        etag={"config": row.config, "description": row.description},
    )


ENDPOINTS = [
    Endpoint("/storage-pools", get=Action(list_pools_handler)),
    Endpoint("/storage-pools/{name}", get=Action(get_pool_handler)),
]
