"""/1.0/network-acls[/{name}]: network ACLs (create, show, update, rename, delete)."""

from __future__ import annotations

from aiohttp import web

from stapes.api.errors import BadRequest
from stapes.api.network import NetworkAclPost, NetworkAclPut, NetworkAclsPost
from stapes.api.urls import acl_url
from stapes.db.network_policies import AclRow
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


def _acl(request: web.Request) -> AclRow:
    return state(request).acls.get(project_of(request), request.match_info["name"])


async def list_acls(request: web.Request) -> Result:
    acls = state(request).acls
    rows = acls.list_acls(None if flag(request, "all-projects") else project_of(request))
    if recursion(request) >= 1:
        return Sync([acls.render(r) for r in rows])
    return Sync([acl_url(r.name, r.project) for r in rows])


async def create_acl(request: web.Request) -> Result:
    req = await body_as(request, NetworkAclsPost)
    acls = state(request).acls
    await acls.create(req, project_of(request))
    return created(acl_url(req.name, acls.holder(project_of(request))))


async def get_acl(request: web.Request) -> Result:
    acls = state(request).acls
    row = _acl(request)
    return Sync(acls.render(row), etag=acls.writable(row))


async def put_acl(request: web.Request) -> Result:
    acls = state(request).acls
    row = _acl(request)
    check_etag(request, acls.writable(row))
    await acls.update(row, await body_as(request, NetworkAclPut))
    return Sync()


async def patch_acl(request: web.Request) -> Result:
    acls = state(request).acls
    row = _acl(request)
    current = acls.writable(row)
    check_etag(request, current)
    await acls.update(row, await patched(request, current, ("config",), NetworkAclPut))
    return Sync()


async def rename_acl(request: web.Request) -> Result:
    row = _acl(request)
    req = await body_as(request, NetworkAclPost)
    await state(request).acls.rename(row, req.name)
    return created(acl_url(req.name, row.project))


async def delete_acl(request: web.Request) -> Result:
    await state(request).acls.delete(_acl(request))
    return Sync()


async def acl_log(request: web.Request) -> Result:
    _acl(request)
    raise BadRequest(
        "ACL logs are not collected by this stapesd: logged rules write to the kernel log "
        "with the prefix 'stapes-acl <name>' (read it with dmesg or journalctl -k)"
    )


ENDPOINTS = [
    Endpoint("/network-acls", get=Action(list_acls), post=Action(create_acl)),
    Endpoint(
        "/network-acls/{name}",
        get=Action(get_acl),
        put=Action(put_acl),
        patch=Action(patch_acl),
        post=Action(rename_acl),
        delete=Action(delete_acl),
    ),
    Endpoint("/network-acls/{name}/log", get=Action(acl_log)),
]
