"""/1.0/instances and /1.0/instances/{name}: list, create, get, update, rename, delete."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from stapes.api.base import StatusCode
from stapes.api.errors import BadRequest
from stapes.api.instance import (
    InstancePost,
    InstancePut,
    InstanceRebuildPost,
    InstancesPost,
    InstancesPut,
)
from stapes.api.urls import instance_url
from stapes.db import cluster as cluster_db
from stapes.db.instances import InstanceRow
from stapes.db.projects import get_target_project, profiles_read_once
from stapes.instance import migrate, power
from stapes.instance import update as updates
from stapes.instance.driver import RuntimeState
from stapes.project import restrictions
from stapes.server import filter as api_filter
from stapes.server.auth import identify, require_project
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
    if identify(request).member:  # another member gathers the list: this one's instances
        rows = [r for r in rows if r.location == st.membership.name]
    depth = recursion(request)
    flt = api_filter.parse(request.query["filter"]) if request.query.get("filter") else None
    if depth == 0 and flt is None:
        return Sync([_url(r.name, r.project) for r in rows])
    here = [r for r in rows if r.location in ("", st.membership.name)]
    with profiles_read_once():
        statuses = await st.instances.statuses(here)  # every instance asked in one trip
        if depth >= 2:
            mine = await asyncio.gather(
                *(_full(st, r, s) for r, s in zip(here, statuses, strict=True))
            )
        else:
            mine = [st.instances.render(r, s) for r, s in zip(here, statuses, strict=True)]
        found = {(r.project, r.name): item for r, item in zip(here, mine, strict=True)}
        if len(here) < len(rows):
            found.update(await _gathered(st, request, [r for r in rows if r not in here]))
    rendered = [found[(r.project, r.name)] for r in rows]
    if flt is not None:
        rendered = [item for item in rendered if api_filter.matches(flt, item)]
    if depth == 0:
        return Sync([_url(item["name"], item["project"]) for item in rendered])
    return Sync(rendered)


async def _gathered(
    st: State, request: web.Request, rows: list[InstanceRow]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The instances of ``rows``, which live on other members, as those members render them;
    those of a member that does not answer as the database has them, in status Error (as
    Incus shows them)."""
    by_member: dict[str, list[InstanceRow]] = {}
    for row in rows:
        by_member.setdefault(row.location, []).append(row)
    depth = min(recursion(request), 2)

    async def ask(member: str) -> list[dict[str, Any]]:
        found = cluster_db.find_member(st.db, member)
        if found is None or st.forwarder is None:
            return []
        url = f"https://{found.address}/1.0/instances?recursion={depth}&all-projects=true"
        try:
            async with st.forwarder.peers.session().get(
                url, timeout=aiohttp.ClientTimeout(total=MEMBER_LIST_SECONDS)
            ) as resp:
                body = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return []
        listed = body.get("metadata") if isinstance(body, dict) else None
        return listed if isinstance(listed, list) else []

    answers = await asyncio.gather(*(ask(member) for member in by_member))
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for member, listed in zip(by_member, answers, strict=True):
        known = {(i.get("project"), i.get("name")): i for i in listed if isinstance(i, dict)}
        for row in by_member[member]:
            item = known.get((row.project, row.name))
            if item is None:
                item = st.instances.render(row, RuntimeState(StatusCode.ERROR))
                if depth >= 2:
                    item.update(state=None, snapshots=None)
            found[(row.project, row.name)] = item
    return found


async def _full(st: State, row: InstanceRow, status: RuntimeState | None = None) -> dict[str, Any]:
    """An instance with its state and snapshots (recursion 2 lists, recursion 1 gets)."""
    full = await st.instances.render_full(row, status)
    full["snapshots"] = st.snapshots.render_all(row) or None
    return full


_url = instance_url

MEMBER_LIST_SECONDS = 10.0
"""How long a list waits for another member's instances before showing them in error."""


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
    target = request.query.get("target", "")
    if req.migration and target and st.membership.clustered and st.moves is not None:
        restrictions.check_cluster_target(st.db, row.project)
        return Async(await st.moves.move(row, target, req.live))  # within the cluster
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
