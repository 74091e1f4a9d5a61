"""/1.0/instances/{name}/snapshots[/{snapshot}]: list, take, show, expire, rename, delete.
(Restoring is a PUT on the instance with ``restore``, as in Incus.)"""

from __future__ import annotations

from aiohttp import web

from stapes.api.errors import BadRequest
from stapes.api.instance import InstanceSnapshotPost, InstanceSnapshotPut, InstanceSnapshotsPost
from stapes.db.projects import profiles_read_once
from stapes.instance.snapshots import snapshot_url
from stapes.server.endpoint import (
    Action,
    Endpoint,
    body_as,
    check_etag,
    instance_row,
    patched,
    recursion,
    state,
)
from stapes.server.response import Async, Result, Sync


async def list_snapshots(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    if recursion(request) >= 1:
        with profiles_read_once():  # the snapshots share their profiles: one read each
            return Sync(st.snapshots.render_all(row))
    return Sync([snapshot_url(row.name, name, row.project) for name in st.snapshots.names(row)])


async def create_snapshot(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    req = await body_as(request, InstanceSnapshotsPost)
    return Async(st.snapshots.create(row, req))


async def get_snapshot(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    snap = st.snapshots.get(row, request.match_info["snapshot"])
    return Sync(st.snapshots.render(row, snap), etag=st.snapshots.writable(snap))


async def put_snapshot(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    snap = st.snapshots.get(row, request.match_info["snapshot"])
    check_etag(request, st.snapshots.writable(snap))
    put = await body_as(request, InstanceSnapshotPut)
    return Async(st.snapshots.update(row, snap, put))


async def patch_snapshot(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    snap = st.snapshots.get(row, request.match_info["snapshot"])
    check_etag(request, st.snapshots.writable(snap))
    put = await patched(request, st.snapshots.writable(snap), (), InstanceSnapshotPut)
    return Async(st.snapshots.update(row, snap, put))


async def post_snapshot(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    snap = st.snapshots.get(row, request.match_info["snapshot"])
    req = await body_as(request, InstanceSnapshotPost)
    if req.migration:
        raise BadRequest("Migrating a snapshot to another server is not supported by this stapesd")
    return Async(st.snapshots.rename(row, snap, req.name))


async def delete_snapshot(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    snap = st.snapshots.get(row, request.match_info["snapshot"])
    return Async(st.snapshots.delete(row, snap))


ENDPOINTS = [
    Endpoint(
        "/instances/{name}/snapshots",
        get=Action(list_snapshots),
        post=Action(create_snapshot),
    ),
    Endpoint(
        "/instances/{name}/snapshots/{snapshot}",
        get=Action(get_snapshot),
        put=Action(put_snapshot),
        patch=Action(patch_snapshot),
        post=Action(post_snapshot),
        delete=Action(delete_snapshot),
    ),
]
