"""/1.0/warnings[/{uuid}]: what the daemon warned about; acknowledge (PUT/PATCH status) or
delete."""

from __future__ import annotations

from aiohttp import web

from stapes.api.base import WireModel
from stapes.api.urls import warning_url
from stapes.db.warnings import WarningRow
from stapes.server import filter as api_filter
from stapes.server.endpoint import Action, Endpoint, body_as, recursion, state
from stapes.server.response import Result, Sync


class WarningPut(WireModel):
    status: str


def _warning(request: web.Request) -> WarningRow:
    return state(request).warnings.get(request.match_info["uuid"])


async def list_warnings(request: web.Request) -> Result:
    warnings = state(request).warnings
    project = request.query.get("project") or None
    if request.query.get("all-projects") in ("1", "true"):
        project = None
    rendered = [warnings.render(r) for r in warnings.list_warnings(project)]
    if request.query.get("filter"):  # as Incus: status eq new, severity eq low...
        flt = api_filter.parse(request.query["filter"])
        rendered = [w for w in rendered if api_filter.matches(flt, w)]
    if recursion(request) >= 1:
        return Sync(rendered)
    return Sync([warning_url(w["uuid"]) for w in rendered])


async def get_warning(request: web.Request) -> Result:
    return Sync(state(request).warnings.render(_warning(request)))


async def put_warning(request: web.Request) -> Result:
    row = _warning(request)
    state(request).warnings.set_status(row, (await body_as(request, WarningPut)).status)
    return Sync()


async def delete_warning(request: web.Request) -> Result:
    state(request).warnings.delete(_warning(request))
    return Sync()


ENDPOINTS = [
    Endpoint("/warnings", get=Action(list_warnings)),
    Endpoint(
        "/warnings/{uuid}",
        get=Action(get_warning),
        put=Action(put_warning),
        patch=Action(put_warning),
        delete=Action(delete_warning),
    ),
]
