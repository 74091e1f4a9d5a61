"""/1.0/storage-pools/{pool}/volumes[/{type}[/{vol}]]: list, create (empty or a copy), show,
update (PUT/PATCH with ETag, restore), rename/move, delete, state; and volume snapshots."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from stapes.api.storage import (
    StorageVolumePost,
    StorageVolumePut,
    StorageVolumeSnapshotPost,
    StorageVolumeSnapshotPut,
    StorageVolumeSnapshotsPost,
    StorageVolumesPost,
)
from stapes.api.urls import volume_snapshot_url, volume_url
from stapes.db.storage import VolumeRow, VolumeSnapshotRow
from stapes.runtime.operations import Operation
from stapes.server import filter as api_filter
from stapes.server.auth import require_project
from stapes.server.endpoint import (
    Action,
    Endpoint,
    body_as,
    check_etag,
    incus_header,
    patched,
    project_of,
    recursion,
    save_body,
    state,
)
from stapes.server.response import Async, Result, Sync
from stapes.storage import volume_migration


def volume_row(request: web.Request) -> VolumeRow:
    m = request.match_info
    return state(request).volumes.get(m["pool"], project_of(request), m["type"], m["vol"])


def _snapshot(request: web.Request) -> tuple[VolumeRow, VolumeSnapshotRow]:
    vol = volume_row(request)
    return vol, state(request).volume_snapshots.get(vol, request.match_info["snap"])


async def list_volumes(request: web.Request) -> Result:
    """Volumes and their snapshots (``c1/s1``), as Incus lists them; ``filter`` applies to
    the rendered entries (``type eq custom``, ``name eq ...``)."""
    volumes = state(request).volumes
    pool = request.match_info["pool"]
    project = None if request.query.get("all-projects") == "true" else project_of(request)
    wanted = request.match_info.get("type")
    flt = api_filter.parse(request.query["filter"]) if request.query.get("filter") else None
    if recursion(request) == 0 and flt is None:
        urls = volumes.urls(pool, project)
        if wanted:
            urls = [u for u in urls if u.split("/volumes/", 1)[1].startswith(f"{wanted}/")]
        return Sync(urls)
    snaps = state(request).volume_snapshots
    entries: list[tuple[str, dict[str, Any]]] = []
    for vol in volumes.list_volumes(pool, project):
        if wanted and vol.type != wanted:
            continue
        entries.append((volume_url(pool, vol.type, vol.name, vol.project), volumes.render(vol)))
        for snap in snaps.list(vol):
            shown = volumes.render(vol) | snaps.render(vol, snap)
            shown["name"] = f"{vol.name}/{snap.name}"
            shown["used_by"] = []
            shown.pop("expires_at", None)
            url = volume_snapshot_url(pool, vol.type, vol.name, snap.name, vol.project)
            entries.append((url, shown))
    if flt is not None:
        entries = [(url, shown) for url, shown in entries if api_filter.matches(flt, shown)]
    if recursion(request) >= 1:
        return Sync([shown for _, shown in entries])
    return Sync(sorted(url for url, _ in entries))


async def create_volume(request: web.Request) -> Result:
    if request.headers.get("Content-Type") == "application/octet-stream":  # a backup to import
        st = state(request)
        if incus_header(request, "type") == "iso":  # or an ISO image (custom_volume_iso)
            upload = await save_body(request, st.paths.backups / "uploads")
            return Async(
                await st.volumes.import_iso(
                    request.match_info["pool"],
                    project_of(request),
                    incus_header(request, "name"),
                    upload,
                )
            )
        archive = await save_body(request, st.paths.backups / "uploads")
        return Async(
            await st.volume_backups.import_archive(
                archive,
                request.match_info["pool"],
                project_of(request),
                incus_header(request, "name"),
            )
        )
    req = await body_as(request, StorageVolumesPost)
    require_project(request, req.source.project)
    if "type" in request.match_info:
        req.type = request.match_info["type"]
    pool = request.match_info["pool"]
    project = project_of(request)
    op = await state(request).volumes.create(pool, project, req)
    if op is not None:
        return Async(op)
    return Sync()  # as Incus: 200, no Location


async def get_volume(request: web.Request) -> Result:
    volumes = state(request).volumes
    vol = volume_row(request)
    return Sync(volumes.render(vol), etag=volumes.writable(vol))


async def put_volume(request: web.Request) -> Result:
    volumes = state(request).volumes
    vol = volume_row(request)
    check_etag(request, volumes.writable(vol))
    await volumes.update(vol, await body_as(request, StorageVolumePut))
    return Sync()


async def patch_volume(request: web.Request) -> Result:
    volumes = state(request).volumes
    vol = volume_row(request)
    current = volumes.writable(vol)
    check_etag(request, current)
    await volumes.update(vol, await patched(request, current, ("config",), StorageVolumePut))
    return Sync()


async def post_volume(request: web.Request) -> Result:
    vol = volume_row(request)
    req = await body_as(request, StorageVolumePost)
    require_project(request, req.project)
    if req.migration:
        st = state(request)
        return Async(volume_migration.send(st.volumes, st.volume_snapshots, vol, req))
    return Async(state(request).volumes.rename_or_move(vol, req, project_of(request)))


async def delete_volume(request: web.Request) -> Result:
    await state(request).volumes.delete(volume_row(request))
    return Sync()


async def volume_state(request: web.Request) -> Result:
    return Sync(await state(request).volumes.state(volume_row(request)))


# -- snapshots ----------------------------------------------------------------------------------


async def list_snapshots(request: web.Request) -> Result:
    vol = volume_row(request)
    snaps = state(request).volume_snapshots
    rows = snaps.list(vol)
    if recursion(request) >= 1:
        return Sync(
            [snaps.render(vol, s, listed=True) | {"name": f"{vol.name}/{s.name}"} for s in rows]
        )
    return Sync(
        [volume_snapshot_url(vol.pool, vol.type, vol.name, s.name, vol.project) for s in rows]
    )


async def create_snapshot(request: web.Request) -> Result:
    vol = volume_row(request)
    req = await body_as(request, StorageVolumeSnapshotsPost)
    st = state(request)
    st.volume_snapshots.check_custom(vol)
    return _snapshot_work(
        request,
        vol,
        "Snapshotting storage volume",
        lambda op: st.volume_snapshots.create(vol, req.name, req.expires_at),
    )


def _snapshot_work(
    request: web.Request,
    vol: VolumeRow,
    description: str,
    work: Callable[[Operation], Awaitable[object]],
) -> Result:
    """Snapshot changes run as operations on their volume, as in Incus (a custom volume's:
    an instance's volume snapshots change through the instance)."""
    state(request).volume_snapshots.check_custom(vol)

    async def act(op: Operation) -> None:
        await work(op)

    # the operation is the requester's project's (its volumes may be the default project's)
    return Async(
        state(request).volumes.operation(act, description, vol.pool, project_of(request), vol.name)
    )


async def get_snapshot(request: web.Request) -> Result:
    vol, snap = _snapshot(request)
    snaps = state(request).volume_snapshots
    return Sync(snaps.render(vol, snap), etag=snaps.writable(snap))


async def put_snapshot(request: web.Request) -> Result:
    vol, snap = _snapshot(request)
    snaps = state(request).volume_snapshots
    check_etag(request, snaps.writable(snap))
    req = await body_as(request, StorageVolumeSnapshotPut)
    # a PUT states the whole snapshot: no expires_at is no expiry, as in Incus
    snaps.update(vol, snap, req.description, req.expires_at or "")
    return Sync()


async def patch_snapshot(request: web.Request) -> Result:
    vol, snap = _snapshot(request)
    snaps = state(request).volume_snapshots
    current = snaps.writable(snap)
    check_etag(request, current)
    req = await patched(request, current, (), StorageVolumeSnapshotPut)
    snaps.update(vol, snap, req.description, req.expires_at)
    return Sync()


async def rename_snapshot(request: web.Request) -> Result:
    vol, snap = _snapshot(request)
    req = await body_as(request, StorageVolumeSnapshotPost)
    snaps = state(request).volume_snapshots
    return _snapshot_work(
        request,
        vol,
        "Renaming storage volume snapshot",
        lambda op: snaps.rename(vol, snap, req.name),
    )


async def delete_snapshot(request: web.Request) -> Result:
    vol, snap = _snapshot(request)
    snaps = state(request).volume_snapshots
    return _snapshot_work(
        request, vol, "Deleting storage volume snapshot", lambda op: snaps.delete(vol, snap)
    )


_VOL = "/storage-pools/{pool}/volumes/{type}/{vol}"

ENDPOINTS = [
    Endpoint(
        "/storage-pools/{pool}/volumes",
        get=Action(list_volumes),
        post=Action(create_volume),
    ),
    Endpoint(
        "/storage-pools/{pool}/volumes/{type}",
        get=Action(list_volumes),
        post=Action(create_volume),
    ),
    Endpoint(
        _VOL,
        get=Action(get_volume),
        put=Action(put_volume),
        patch=Action(patch_volume),
        post=Action(post_volume),
        delete=Action(delete_volume),
    ),
    Endpoint(_VOL + "/state", get=Action(volume_state)),
    Endpoint(_VOL + "/snapshots", get=Action(list_snapshots), post=Action(create_snapshot)),
    Endpoint(
        _VOL + "/snapshots/{snap}",
        get=Action(get_snapshot),
        put=Action(put_snapshot),
        patch=Action(patch_snapshot),
        post=Action(rename_snapshot),
        delete=Action(delete_snapshot),
    ),
]
