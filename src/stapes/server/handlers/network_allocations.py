"""/1.0/network-allocations: the addresses the managed networks hand out (network/allocations)."""

from __future__ import annotations

from aiohttp import web

from stapes.network.allocations import allocations
from stapes.server.endpoint import Action, Endpoint, flag, project_of, state
from stapes.server.response import Result, Sync


async def list_allocations(request: web.Request) -> Result:
    project = None if flag(request, "all-projects") else project_of(request)
    return Sync(allocations(state(request).networks, project))


ENDPOINTS = [Endpoint("/network-allocations", get=Action(list_allocations))]
