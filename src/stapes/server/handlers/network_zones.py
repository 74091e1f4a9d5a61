"""/1.0/network-zones[/{zone}[/records[/{name}]]]: network zones and their records."""

from __future__ import annotations

from aiohttp import web

from stapes.api.errors import Forbidden
from stapes.api.network import (
    NetworkZonePut,
    NetworkZoneRecordPut,
    NetworkZoneRecordsPost,
    NetworkZonesPost,
)
from stapes.api.urls import zone_record_url, zone_url
from stapes.db import network_zones as zq
from stapes.server.auth import identify
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


def _project(request: web.Request) -> str:
    """The request's project; a restricted client reaches only zones its project holds
    itself (features.networks.zones), never the default project's shared ones."""
    project = project_of(request)
    holder = state(request).zones.holder(project)
    if identify(request).restricted and holder != project:
        raise Forbidden(
            f"Certificate is restricted: the network zones of project {project!r} are the "
            f"{holder!r} project's (features.networks.zones is off)"
        )
    return project


def _zone(request: web.Request) -> zq.ZoneRow:
    return state(request).zones.get(_project(request), request.match_info["zone"])


def _record(request: web.Request) -> tuple[zq.ZoneRow, zq.RecordRow]:
    zone = _zone(request)
    return zone, zq.get_record(state(request).db, zone.id, request.match_info["name"])


async def list_zones(request: web.Request) -> Result:
    zones = state(request).zones
    rows = zones.list_zones(None if flag(request, "all-projects") else _project(request))
    if recursion(request) >= 1:
        return Sync([zones.render(r) for r in rows])
    return Sync([zone_url(r.name) for r in rows])  # Incus names no project in these


async def create_zone(request: web.Request) -> Result:
    req = await body_as(request, NetworkZonesPost)
    row = await state(request).zones.create(req, _project(request))
    return created(zone_url(row.name, row.project))


async def get_zone(request: web.Request) -> Result:
    zones = state(request).zones
    row = _zone(request)
    # Incus 6.0 names the project in lists but leaves it empty here
    return Sync({**zones.render(row), "project": ""}, etag=zones.writable(row))


async def put_zone(request: web.Request) -> Result:
    zones = state(request).zones
    row = _zone(request)
    check_etag(request, zones.writable(row))
    await zones.update(row, await body_as(request, NetworkZonePut))
    return Sync()


async def patch_zone(request: web.Request) -> Result:
    zones = state(request).zones
    row = _zone(request)
    current = zones.writable(row)
    check_etag(request, current)
    await zones.update(row, await patched(request, current, ("config",), NetworkZonePut))
    return Sync()


async def delete_zone(request: web.Request) -> Result:
    await state(request).zones.delete(_zone(request))
    return Sync()


async def list_records(request: web.Request) -> Result:
    zones = state(request).zones
    zone = _zone(request)
    rows = zq.list_records(state(request).db, zone.id)
    if recursion(request) >= 1:
        return Sync([zones.render_record(r) for r in rows])
    return Sync([zone_record_url(zone.name, r.name) for r in rows])


async def create_record(request: web.Request) -> Result:
    zone = _zone(request)
    req = await body_as(request, NetworkZoneRecordsPost)
    await state(request).zones.create_record(zone, req)
    return created(zone_record_url(zone.name, req.name, zone.project))


async def get_record(request: web.Request) -> Result:
    zones = state(request).zones
    _, record = _record(request)
    return Sync(zones.render_record(record), etag=zones.writable_record(record))


async def put_record(request: web.Request) -> Result:
    zones = state(request).zones
    zone, record = _record(request)
    check_etag(request, zones.writable_record(record))
    await zones.update_record(zone, record, await body_as(request, NetworkZoneRecordPut))
    return Sync()


async def patch_record(request: web.Request) -> Result:
    zones = state(request).zones
    zone, record = _record(request)
    current = zones.writable_record(record)
    check_etag(request, current)
    put = await patched(request, current, ("config",), NetworkZoneRecordPut)
    await zones.update_record(zone, record, put)
    return Sync()


async def delete_record(request: web.Request) -> Result:
    zone, record = _record(request)
    await state(request).zones.delete_record(zone, record)
    return Sync()


ENDPOINTS = [
    Endpoint("/network-zones", get=Action(list_zones), post=Action(create_zone)),
    Endpoint(
        "/network-zones/{zone}",
        get=Action(get_zone),
        put=Action(put_zone),
        patch=Action(patch_zone),
        delete=Action(delete_zone),
    ),
    Endpoint("/network-zones/{zone}/records", get=Action(list_records), post=Action(create_record)),
    Endpoint(
        "/network-zones/{zone}/records/{name}",
        get=Action(get_record),
        put=Action(put_record),
        patch=Action(patch_record),
        delete=Action(delete_record),
    ),
]
