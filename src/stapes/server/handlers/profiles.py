"""/1.0/profiles: list, create, get, update (PUT/PATCH with ETag), rename, delete."""

from __future__ import annotations

from aiohttp import web

from stapes.api.profile import ProfilePost, ProfilePut, ProfilesPost
from stapes.api.urls import profile_url
from stapes.server.endpoint import (
    Action,
    Endpoint,
    body_as,
    check_etag,
    flag,
    patched,
    project_of,
    recursion,
    state,
)
from stapes.server.response import Result, Sync, created


async def list_profiles(request: web.Request) -> Result:
    profiles = state(request).profiles
    rows = profiles.list_profiles(None if flag(request, "all-projects") else project_of(request))
    if recursion(request) >= 1:
        return Sync([profiles.render(r) for r in rows])
    return Sync([profile_url(r.name, r.project) for r in rows])


async def create_profile(request: web.Request) -> Result:
    req = await body_as(request, ProfilesPost)
    project = project_of(request)
    state(request).profiles.create(project, req.name, req)
    return created(profile_url(req.name, project))


async def get_profile(request: web.Request) -> Result:
    profiles = state(request).profiles
    row = profiles.get(project_of(request), request.match_info["name"])
    return Sync(profiles.render(row), etag=profiles.writable(row))


async def put_profile(request: web.Request) -> Result:
    profiles = state(request).profiles
    row = profiles.get(project_of(request), request.match_info["name"])
    check_etag(request, profiles.writable(row))
    await profiles.update(row, await body_as(request, ProfilePut))
    return Sync()


async def patch_profile(request: web.Request) -> Result:
    profiles = state(request).profiles
    row = profiles.get(project_of(request), request.match_info["name"])
    current = profiles.writable(row)
    check_etag(request, current)
    await profiles.update(row, await patched(request, current, ("config", "devices"), ProfilePut))
    return Sync()


async def rename_profile(request: web.Request) -> Result:
    profiles = state(request).profiles
    row = profiles.get(project_of(request), request.match_info["name"])
    req = await body_as(request, ProfilePost)
    profiles.rename(row, req.name)
    return created(profile_url(req.name, row.project))


async def delete_profile(request: web.Request) -> Result:
    profiles = state(request).profiles
    profiles.delete(profiles.get(project_of(request), request.match_info["name"]))
    return Sync()


ENDPOINTS = [
    Endpoint("/profiles", get=Action(list_profiles), post=Action(create_profile)),
    Endpoint(
        "/profiles/{name}",
        get=Action(get_profile),
        put=Action(put_profile),
        patch=Action(patch_profile),
        post=Action(rename_profile),
        delete=Action(delete_profile),
    ),
]
