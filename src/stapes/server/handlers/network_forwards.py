"""/1.0/networks/{name}/forwards[/{listen_address}]: a network's forwards."""

from __future__ import annotations

from aiohttp import web

from stapes.api.network import NetworkForwardPut, NetworkForwardsPost
from stapes.api.urls import forward_url
from stapes.db.network_policies import ForwardRow
from stapes.db.networks import NetworkRow
from stapes.server.endpoint import (
    Action,
    Endpoint,
    body_as,
    check_etag,
    patched,
    project_of,
    recursion,
    state,
)
from stapes.server.response import Result, Sync, created


def _network(request: web.Request) -> NetworkRow:
    return state(request).networks.get(request.match_info["name"], project_of(request))


def _forward(request: web.Request, network: NetworkRow) -> ForwardRow:
    return state(request).forwards.get(network, request.match_info["address"])


async def list_forwards(request: web.Request) -> Result:
    forwards, network = state(request).forwards, _network(request)
    rows = forwards.list_forwards(network)
    if recursion(request) >= 1:
        return Sync([forwards.render(r) for r in rows])
    return Sync([forward_url(network.name, r.listen_address) for r in rows])


async def create_forward(request: web.Request) -> Result:
    network = _network(request)
    req = await body_as(request, NetworkForwardsPost)
    return created(await state(request).forwards.create(network, req))


async def get_forward(request: web.Request) -> Result:
    forwards, network = state(request).forwards, _network(request)
    row = _forward(request, network)
    return Sync(forwards.render(row), etag=forwards.writable(row))


async def put_forward(request: web.Request) -> Result:
    forwards, network = state(request).forwards, _network(request)
    row = _forward(request, network)
    check_etag(request, forwards.writable(row))
    await forwards.update(network, row, await body_as(request, NetworkForwardPut))
    return Sync()


async def patch_forward(request: web.Request) -> Result:
    forwards, network = state(request).forwards, _network(request)
    row = _forward(request, network)
    current = forwards.writable(row)
    check_etag(request, current)
    put = await patched(request, current, ("config",), NetworkForwardPut)
    await forwards.update(network, row, put)
    return Sync()


async def delete_forward(request: web.Request) -> Result:
    forwards, network = state(request).forwards, _network(request)
    await forwards.delete(network, _forward(request, network))
    return Sync()


ENDPOINTS = [
    Endpoint("/networks/{name}/forwards", get=Action(list_forwards), post=Action(create_forward)),
    Endpoint(
        "/networks/{name}/forwards/{address}",
        get=Action(get_forward),
        put=Action(put_forward),
        patch=Action(patch_forward),
        delete=Action(delete_forward),
    ),
]
