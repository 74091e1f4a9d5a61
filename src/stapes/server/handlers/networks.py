"""/1.0/networks[/{name}[/state|/leases]]: managed networks (create, show, update, rename,
delete), their live state and DHCP leases; the host's own interfaces listed and shown beside
them (managed: false), as Incus does."""

from __future__ import annotations

from aiohttp import web

from stapes.api.errors import BadRequest
from stapes.api.network import NetworkPost, NetworkPut, NetworksPost
from stapes.api.urls import network_url
from stapes.db.networks import NetworkRow
from stapes.network.host_interfaces import HostInterface
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


def _network(request: web.Request) -> NetworkRow:
    return state(request).networks.get(request.match_info["name"], project_of(request))


async def list_networks(request: web.Request) -> Result:
    """Managed networks, then the host's own interfaces (managed: false), as Incus lists them."""
    networks = state(request).networks
    project = None if flag(request, "all-projects") else project_of(request)
    rows = networks.list_networks(project)
    host = await networks.host_interfaces(project)
    if recursion(request) >= 1:
        return Sync(
            [networks.render(r) for r in rows] + [networks.render_host_interface(i) for i in host]
        )
    return Sync([network_url(r.name) for r in rows] + [network_url(i.name) for i in host])


async def create_network(request: web.Request) -> Result:
    req = await body_as(request, NetworksPost)
    st = state(request)
    if st.membership.clustered and st.cluster_networks is not None:
        if request.query.get("target"):  # this member's values (the request came here)
            st.cluster_networks.define_here(req, project_of(request))
        else:
            await st.cluster_networks.create(req, project_of(request))
    else:
        await st.networks.create(req, project_of(request))
    return created(network_url(req.name))


async def _host_interface(request: web.Request) -> HostInterface | None:
    """The host interface a request names when no managed network has that name."""
    networks = state(request).networks
    name = request.match_info["name"]
    if networks.find(name, project_of(request)) is not None:
        return None
    return await networks.host_interface_named(name, project_of(request))


async def _refuse_host_interface(request: web.Request) -> None:
    if await _host_interface(request) is not None:
        raise BadRequest("Only managed networks can be modified")


async def get_network(request: web.Request) -> Result:
    networks = state(request).networks
    iface = await _host_interface(request)
    if iface is not None:
        return Sync(networks.render_host_interface(iface), etag={"config": {}, "description": ""})
    row = _network(request)
    return Sync(networks.render(row), etag=networks.writable(row))


async def _update(request: web.Request, row: NetworkRow, put: NetworkPut) -> None:
    st = state(request)
    if st.membership.clustered and st.cluster_networks is not None:
        await st.cluster_networks.update(row, put, request.query.get("target", ""))
    else:
        await st.networks.update(row, put)


async def put_network(request: web.Request) -> Result:
    await _refuse_host_interface(request)
    networks = state(request).networks
    row = _network(request)
    check_etag(request, networks.writable(row))
    await _update(request, row, await body_as(request, NetworkPut))
    return Sync()


async def patch_network(request: web.Request) -> Result:
    await _refuse_host_interface(request)
    networks = state(request).networks
    row = _network(request)
    current = networks.writable(row)
    check_etag(request, current)
    await _update(request, row, await patched(request, current, ("config",), NetworkPut))
    return Sync()


async def rename_network(request: web.Request) -> Result:
    row = _network(request)
    req = await body_as(request, NetworkPost)
    await state(request).networks.rename(row, req.name)
    return created(network_url(req.name))


async def delete_network(request: web.Request) -> Result:
    st = state(request)
    if st.membership.clustered and st.cluster_networks is not None:
        await st.cluster_networks.delete(_network(request))
    else:
        await st.networks.delete(_network(request))
    return Sync()


async def network_state(request: web.Request) -> Result:
    iface = await _host_interface(request)
    if iface is not None:
        return Sync(await state(request).networks.host_interface_state(iface))
    return Sync(await state(request).networks.state(_network(request)))


async def network_leases(request: web.Request) -> Result:
    return Sync(state(request).networks.leases(_network(request), project_of(request)))


ENDPOINTS = [
    Endpoint("/networks", get=Action(list_networks), post=Action(create_network)),
    Endpoint(
        "/networks/{name}",
        get=Action(get_network),
        put=Action(put_network),
        patch=Action(patch_network),
        post=Action(rename_network),
        delete=Action(delete_network),
    ),
    Endpoint("/networks/{name}/state", get=Action(network_state)),
    Endpoint("/networks/{name}/leases", get=Action(network_leases)),
]
