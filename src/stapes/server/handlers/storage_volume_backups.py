"""/1.0/storage-pools/{pool}/volumes/custom/{vol}/backups[/{backup}[/export]]: make, list, show,
rename, delete and download custom volume backups. (Importing one is a POST of the tarball to
.../volumes/custom.)"""

from __future__ import annotations

from aiohttp import web

from stapes.api.backup import BackupPost, BackupsPost
from stapes.server.endpoint import Action, Endpoint, body_as, project_of, recursion, state
from stapes.server.handlers.storage_volumes import volume_row
from stapes.server.response import Async, Result, Sync
from stapes.storage.volume_backups import backup_url


async def list_backups(request: web.Request) -> Result:
    backups = state(request).volume_backups
    vol = volume_row(request)
    found = backups.list_backups(vol)
    if recursion(request) >= 1:
        return Sync([backups.render(b) for b in found])
    return Sync([backup_url(vol, b.name) for b in found])


async def create_backup(request: web.Request) -> Result:
    vol = volume_row(request)
    req = await body_as(request, BackupsPost)
    return Async(state(request).volume_backups.create(vol, req, project_of(request)))


async def get_backup(request: web.Request) -> Result:
    backups = state(request).volume_backups
    return Sync(backups.render(backups.get(volume_row(request), request.match_info["backup"])))


async def rename_backup(request: web.Request) -> Result:
    backups = state(request).volume_backups
    vol = volume_row(request)
    backup = backups.get(vol, request.match_info["backup"])
    req = await body_as(request, BackupPost)
    return Async(backups.rename(vol, backup, req.name, project_of(request)))


async def delete_backup(request: web.Request) -> Result:
    backups = state(request).volume_backups
    vol = volume_row(request)
    backup = backups.get(vol, request.match_info["backup"])
    return Async(backups.delete(vol, backup, project_of(request)))


async def export_backup(request: web.Request) -> web.StreamResponse:
    backups = state(request).volume_backups
    vol = volume_row(request)
    path = backups.export_file(vol, backups.get(vol, request.match_info["backup"]))
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})


_BACKUPS = "/storage-pools/{pool}/volumes/{type}/{vol}/backups"

ENDPOINTS = [
    Endpoint(_BACKUPS, get=Action(list_backups), post=Action(create_backup)),
    Endpoint(
        _BACKUPS + "/{backup}",
        get=Action(get_backup),
        post=Action(rename_backup),
        delete=Action(delete_backup),
    ),
    Endpoint(_BACKUPS + "/{backup}/export", get=Action(export_backup)),
]
