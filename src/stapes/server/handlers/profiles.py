"""/1.0/profiles, /1.0/projects and /1.0/storage-pools, read-only in this release."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from stapes.db.images import list_images
from stapes.db.instances import list_instances
from stapes.db.projects import ProfileRow, get_profile, get_project, list_profiles, list_projects
from stapes.db.storage import get_pool, list_pools
from stapes.server.endpoint import Action, Endpoint, project_of, recursion, state
from stapes.server.response import Result, Sync


def _profile(request: web.Request, row: ProfileRow) -> dict[str, Any]:
    st = state(request)
    used_by = [
        f"/1.0/instances/{i.name}"
        for i in list_instances(st.db, row.project)
        if row.name in i.profiles
    ]
    return {
        "config": row.config,
        "description": row.description,
        "devices": row.devices,
        "name": row.name,
        "used_by": used_by,
        "project": row.project,
    }


async def list_profiles_handler(request: web.Request) -> Result:
    st = state(request)
    rows = list_profiles(st.db, get_project(st.db, project_of(request)).name)
    if recursion(request) >= 1:
        return Sync([_profile(request, r) for r in rows])
    return Sync([f"/1.0/profiles/{r.name}" for r in rows])


async def get_profile_handler(request: web.Request) -> Result:
    st = state(request)
    row = get_profile(st.db, project_of(request), request.match_info["name"])
    body = _profile(request, row)
    return Sync(
        body, etag={"config": row.config, "description": row.description, "devices": row.devices}
    )


def _project(request: web.Request, name: str) -> dict[str, Any]:
    st = state(request)
    row = get_project(st.db, name)
    used_by = [f"/1.0/images/{i.fingerprint}" for i in list_images(st.db, name)]
    used_by += [f"/1.0/instances/{i.name}" for i in list_instances(st.db, name)]
    used_by += [f"/1.0/profiles/{p.name}" for p in list_profiles(st.db, name)]
    return {
        "config": row.config,
        "description": row.description,
        "name": row.name,
        "used_by": used_by,
    }


async def list_projects_handler(request: web.Request) -> Result:
    rows = list_projects(state(request).db)
    if recursion(request) >= 1:
        return Sync([_project(request, r.name) for r in rows])
    return Sync([f"/1.0/projects/{r.name}" for r in rows])


async def get_project_handler(request: web.Request) -> Result:
    body = _project(request, request.match_info["name"])
    return Sync(body, etag={"config": body["config"], "description": body["description"]})


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
    Endpoint("/profiles", get=Action(list_profiles_handler)),
    Endpoint("/profiles/{name}", get=Action(get_profile_handler)),
    Endpoint("/projects", get=Action(list_projects_handler)),
    Endpoint("/projects/{name}", get=Action(get_project_handler)),
    Endpoint("/storage-pools", get=Action(list_pools_handler)),
    Endpoint("/storage-pools/{name}", get=Action(get_pool_handler)),
]
