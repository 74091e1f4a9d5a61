"""/1.0/instances and /1.0/instances/{name}: list, create, get, update, rename, delete."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from stapes.api.errors import BadRequest
from stapes.api.instance import (
    InstancePost,
    InstancePut,
    InstanceRebuildPost,
    InstancesPost,
    InstancesPut,
)
from stapes.api.urls import instance_url
from stapes.db.instances import InstanceRow
from stapes.db.projects import get_target_project, profiles_read_once
from stapes.instance import migrate, power
from stapes.instance import update as updates
from stapes.instance.driver import RuntimeState
from stapes.server import filter as api_filter
from stapes.server.auth import require_project
from stapes.server.endpoint import (
    Action,
    Endpoint,
    body_as,
    check_etag,
    flag,
    incus_header,
    instance_row,
    patched,
    project_of,
    recursion,
    save_body,
    state,
)
from stapes.server.response import Async, Result, Sync
from stapes.server.state import State


async def list_instances(request: web.Request) -> Result:
    st = state(request)
    project = None if flag(request, "all-projects") else project_of(request)
    rows = st.instances.list_instances(project)
    depth = recursion(request)
    flt = api_filter.parse(request.query["filter"]) if request.query.get("filter") else None
    if depth == 0 and flt is None:
        return Sync([_url(r.name, r.project) for r in rows])
    with profiles_read_once():
        statuses = await st.instances.statuses(rows)  # every instance asked in one trip
        if depth >= 2:
            rendered = await asyncio.gather(
                *(_full(st, r, s) for r, s in zip(rows, statuses, strict=True))
            )
        else:
            rendered = [st.instances.render(r, s) for r, s in zip(rows, statuses, strict=True)]
    if flt is not None:
        rendered = [item for item in rendered if api_filter.matches(flt, item)]
    if depth == 0:
        return Sync([_url(item["name"], item["project"]) for item in rendered])
    return Sync(rendered)


async def _full(st: State, row: InstanceRow, status: RuntimeState | None = None) -> dict[str, Any]:
    """An instance with its state and snapshots (recursion 2 lists, recursion 1 gets)."""
    full = await st.instances.render_full(row, status)
    snaps = st.snapshots.list_snapshots(row)
    full["snapshots"] = [st.snapshots.render(row, s) for s in snaps] or None
    return full


_url = instance_url


async def create_instance(request: web.Request) -> Result:
    st = state(request)
    if request.headers.get("Content-Type") == "application/octet-stream":  # a backup to import
        archive = await save_body(request, st.paths.backups / "uploads")
        return Async(
            await st.backups.import_archive(
                archive,
                project_of(request),
                incus_header(request, "name"),
                incus_header(request, "pool"),
            )
        )
    req = await body_as(request, InstancesPost)
    require_project(request, req.source.project)
    return Async(await st.instances.create(req, project_of(request)))


async def get_instance(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    if recursion(request) >= 1:
        with profiles_read_once():  # its snapshots share their profiles
            body: dict[str, Any] = await _full(st, row)
    else:
        body = st.instances.render(row, await st.instances.status(row))
    return Sync(body, etag=st.instances.writable(row))


async def put_instance(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    check_etag(request, st.instances.writable(row))
    put = await body_as(request, InstancePut)
    if put.restore:
        return Async(st.snapshots.restore(row, put.restore, put.stateful))
    return Async(updates.update(st.instances, row, put))


async def patch_instance(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    check_etag(request, st.instances.writable(row))
    put = await patched(request, st.instances.writable(row), ("config", "devices"), InstancePut)
    async with st.locks(row.project, row.name):
        await updates.apply_update(st.instances, st.instances.get(row.project, row.name), put)
    return Sync()


async def post_instance(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    req = await body_as(request, InstancePost)
    if req.pool and req.pool != row.pool:  # incus move --storage: a local move (no migration)
        if req.name and req.name != row.name:
            raise BadRequest("Move to another pool or rename, not both at once")
        return Async(await st.instances.move_to_pool(row, req.pool))
    if req.project and req.project != row.project:  # the client sends it as a migration
        require_project(request, req.project)
        get_target_project(st.db, req.project)  # a project that does not exist is a 404
        return Async(await st.instances.move_to_project(row, req.project, req.name))
    if req.migration:
        return Async(await migrate.send(st.instances, row, req))
    if not req.name or req.name == row.name:
        raise BadRequest("The new instance name can't be empty or the current one")
    return Async(await st.instances.rename(row, req.name))


async def delete_instance(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    return Async(await st.instances.delete(row))


async def rebuild_instance(request: web.Request) -> Result:
    """incus rebuild: the instance's root volume from an image again, or empty."""
    row = instance_row(request)
    req = await body_as(request, InstanceRebuildPost)
    require_project(request, req.source.project)
    return Async(await state(request).instances.rebuild(row, req.source))


async def put_instances(request: web.Request) -> Result:
    req = await body_as(request, InstancesPut)
    if req.state is None:
        raise BadRequest('PUT /1.0/instances changes the state of all instances: give "state"')
    change = req.state
    return Async(
        await power.change_states(
            state(request).instances,
            project_of(request),
            change.action,
            change.force,
            change.timeout,
            change.stateful,
        )
    )


ENDPOINTS = [
    Endpoint(
        "/instances",
        get=Action(list_instances),
        post=Action(create_instance),
        put=Action(put_instances),
    ),
    Endpoint(
        "/instances/{name}",
        get=Action(get_instance),
        put=Action(put_instance),
        patch=Action(patch_instance),
        post=Action(post_instance),
        delete=Action(delete_instance),
    ),
    Endpoint("/instances/{name}/rebuild", post=Action(rebuild_instance)),
]
