"""/1.0/instances/{name}/backups[/{backup}[/export]]: make, list, show, rename, delete and
download instance backups. (Importing one is a POST of the tarball to /1.0/instances.)"""

from __future__ import annotations

from aiohttp import web

from stapes.api.backup import BackupPost, BackupsPost
from stapes.instance.backups import backup_url
from stapes.server.endpoint import Action, Endpoint, body_as, instance_row, recursion, state
from stapes.server.response import Async, Result, Sync


async def list_backups(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    backups = st.backups.list_backups(row)
    if recursion(request) >= 1:
        return Sync([st.backups.render(b) for b in backups])
    return Sync([backup_url(row.name, b.name, row.project) for b in backups])


async def create_backup(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    return Async(st.backups.create(row, await body_as(request, BackupsPost)))


async def get_backup(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    return Sync(st.backups.render(st.backups.get(row, request.match_info["backup"])))


async def rename_backup(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    backup = st.backups.get(row, request.match_info["backup"])
    req = await body_as(request, BackupPost)
    return Async(st.backups.rename(row, backup, req.name))


async def delete_backup(request: web.Request) -> Result:
    st = state(request)
    row = instance_row(request)
    return Async(st.backups.delete(row, st.backups.get(row, request.match_info["backup"])))


async def export_backup(request: web.Request) -> web.StreamResponse:
    st = state(request)
    row = instance_row(request)
    path = st.backups.export_file(row, st.backups.get(row, request.match_info["backup"]))
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})


ENDPOINTS = [
    Endpoint(
        "/instances/{name}/backups",
        get=Action(list_backups),
        post=Action(create_backup),
    ),
    Endpoint(
        "/instances/{name}/backups/{backup}",
        get=Action(get_backup),
        post=Action(rename_backup),
        delete=Action(delete_backup),
    ),
    Endpoint("/instances/{name}/backups/{backup}/export", get=Action(export_backup)),
]
