"""/internal/recover/validate and /import (outside /1.0, as in Incus): what `incus admin
recover` (and `stapes admin recover`) call to find the volumes the database lost and record
them again."""

from __future__ import annotations

from aiohttp import web

from stapes.api.storage import RecoverPost
from stapes.db.storage import find_pool
from stapes.server.endpoint import Action, Endpoint, body_as, state
from stapes.server.response import Result, Sync
from stapes.storage.drivers.driver import StorageDriver


async def _extra_pools(request: web.Request) -> list[StorageDriver]:
    """The pools of the request the database lacks (incus sends the known ones too)."""
    req = await body_as(request, RecoverPost)
    st = state(request)
    lost = [p for p in req.pools if find_pool(st.db, p.name) is None]
    return [await st.pools.mount_existing(p.name, p.driver, p.config) for p in lost]


async def validate(request: web.Request) -> Result:
    return Sync(state(request).recovery.scan(await _extra_pools(request)).render())


async def import_volumes(request: web.Request) -> Result:
    await state(request).recovery.recover(await _extra_pools(request))
    return Sync(None)


ENDPOINTS = [
    Endpoint("/internal/recover/validate", post=Action(validate)),
    Endpoint("/internal/recover/import", post=Action(import_volumes)),
]
