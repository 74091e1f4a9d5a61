"""/1.0/cluster and below: enabling clustering, the members and the groups (cluster/service.py).
On a server that is not clustered the member and group endpoints answer Incus's errors (400s
here: Incus answers some with a 500, though nothing failed on the server)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from typing import Any

import aiohttp
from aiohttp import web

from stapes import certs
from stapes.api.cluster import (
    ClusterGroupPost,
    ClusterGroupPut,
    ClusterGroupsPost,
    ClusterMemberPost,
    ClusterMemberPut,
    ClusterMembersPost,
    ClusterPut,
)
from stapes.api.errors import BadRequest, Forbidden
from stapes.cluster import join, placement
from stapes.cluster.admission import JoinRequest
from stapes.cluster.fanout import on_every_member
from stapes.cluster.service import NOT_CLUSTERED, group_url, member_url
from stapes.db import networks as network_db
from stapes.db import storage as storage_db
from stapes.db.server_config import get_config, replace_config
from stapes.db.storage import MEMBER_POOL_KEYS
from stapes.server.auth import identify
from stapes.server.endpoint import (
    Action,
    Endpoint,
    body_as,
    check_etag,
    flag,
    json_body,
    patched,
    recursion,
    state,
)
from stapes.server.extensions import API_EXTENSIONS
from stapes.server.response import Async, Result, Sync, created
from stapes.server.state import State

log = logging.getLogger(__name__)

_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
ANSWER_SECONDS = 0.3
"""How long a removed member waits, after answering, before its process starts again."""


def member_config(pools: list[Any], networks: list[Any]) -> list[dict[str, str]]:
    """The member-specific keys set on this server's pools and networks, each to be given by
    a joining member (so their values are empty), as Incus lists them."""
    found: list[dict[str, str]] = []
    for entity, label, rows, keys in (
        ("storage-pool", "storage pool", pools, MEMBER_POOL_KEYS),
        ("network", "network", networks, network_db.MEMBER_NETWORK_KEYS),
    ):
        found.extend(
            {
                "entity": entity,
                "name": row.name,
                "key": key,
                "value": "",
                "description": f'"{key}" property for {label} "{row.name}"',
            }
            for row in rows
            for key in sorted(k for k in row.config if k in keys)
        )
    return found


async def get_cluster(request: web.Request) -> Result:
    st = state(request)
    pools = storage_db.list_pools(st.db)
    networks = network_db.list_networks(st.db)
    body = {
        "server_name": st.membership.name,
        "enabled": st.membership.clustered,
        "member_config": member_config(pools, networks),
    }
    return Sync(body, etag=body)


async def put_cluster(request: web.Request) -> Result:
    st = state(request)
    put = await body_as(request, ClusterPut)
    if not put.enabled:
        if put.server_name:
            raise BadRequest("ServerName must be empty when disabling clustering")
        if not st.membership.clustered:
            raise BadRequest("This server is not clustered")
        raise BadRequest(
            "A cluster member cannot leave its cluster by itself: remove it from the cluster "
            "(stapes cluster remove) instead"
        )
    if put.cluster_address:
        return _join(st, put)
    address = st.cluster.check_enable(put.server_name)
    api_extensions = len(API_EXTENSIONS)

    async def run(_op: Any) -> None:
        await asyncio.to_thread(st.cluster.enable, put.server_name, address)
        st.cluster.api_extensions = api_extensions

    return Async(
        st.operations.start(run, description="Creating bootstrap node", resources={"cluster": []})
    )


def _join(st: State, put: ClusterPut) -> Result:
    plan = join.plan(st.cluster, put)

    async def listen(address: str) -> None:
        if not st.https.address:
            await st.https.apply(address)
            with st.db.transaction():
                config = get_config(st.db)
                replace_config(st.db, {**config, "core.https_address": address})

    async def reload_certificate() -> None:
        await _certificate_changed(st)

    async def run(_op: Any) -> None:
        joiner = join.Joiner(st.cluster, listen, reload_certificate, st.pools.prepare_member)
        await joiner.join(plan)
        await st.networks.start_all()

    return Async(st.operations.start(run, description="Joining cluster", resources={"cluster": []}))


async def _certificate_changed(st: State) -> None:
    """The server certificate on disk was replaced: listeners and clients take it."""
    st.cluster.transport.certificate_changed()
    await st.https.reload()
    await st.metrics_https.reload()
    if st.forwarder is not None:
        await st.forwarder.peers.certificate_changed()


async def _use_certificate(st: State, body: dict[str, Any]) -> None:
    cert, key = body.get("cluster_certificate"), body.get("cluster_certificate_key")
    if not isinstance(cert, str) or not isinstance(key, str):
        raise BadRequest("Give cluster_certificate and cluster_certificate_key (PEM)")
    try:
        certs.check_pair(cert, key)
    except ValueError as exc:
        raise BadRequest(f"Invalid cluster certificate or key: {exc}") from None
    certs.replace_pair(st.paths.server_cert, st.paths.server_key, cert.encode(), key.encode())
    await _certificate_changed(st)


async def put_certificate(request: web.Request) -> Result:
    """PUT /1.0/cluster/certificate: every member's certificate replaced (the others first,
    each told over the connection it still trusts, then this one)."""
    st = state(request)
    st.cluster.check_clustered()
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("The request must be a JSON object")
    try:
        certs.check_pair(
            str(body.get("cluster_certificate")), str(body.get("cluster_certificate_key"))
        )
    except ValueError as exc:
        raise BadRequest(f"Invalid cluster certificate or key: {exc}") from None
    assert st.forwarder is not None
    failures = await on_every_member(
        st.db, st.membership.name, st.forwarder.peers, "/internal/cluster/certificate", body, None
    )
    if failures:
        raise BadRequest(
            "The certificate could not be replaced on every member: " + "; ".join(failures)
        )
    await _use_certificate(st, body)
    return Sync()


async def member_certificate(request: web.Request) -> Result:
    """Another member replaces the cluster certificate: this member takes it too."""
    await _use_certificate(state(request), await _from_member(request, needs_name=False))
    return Sync()


async def list_members(request: web.Request) -> Result:
    cluster = state(request).cluster
    rows = cluster.members()
    if recursion(request):
        return Sync(cluster.render_members(rows))
    return Sync([member_url(row.name) for row in rows])


def _member(request: web.Request) -> dict[str, Any]:
    cluster = state(request).cluster
    return cluster.render_members([cluster.member(request.match_info["name"])])[0]


async def get_member(request: web.Request) -> Result:
    rendered = _member(request)
    return Sync(rendered, etag=state(request).cluster.writable(rendered))


async def put_member(request: web.Request) -> Result:
    cluster = state(request).cluster
    current = cluster.writable(_member(request))
    check_etag(request, current)
    if request.method == "PATCH":
        put = await patched(request, current, ("config",), ClusterMemberPut)
    else:
        put = await body_as(request, ClusterMemberPut)
    cluster.update_member(request.match_info["name"], put)
    return Sync()


async def post_member(request: web.Request) -> Result:
    post = await body_as(request, ClusterMemberPost)
    state(request).cluster.rename_member(request.match_info["name"], post.server_name)
    return created(member_url(post.server_name))


async def delete_member(request: web.Request) -> web.StreamResponse | Result:
    """Removal is done by another member: asked of the member itself, the request goes to
    one that is online. Without ``force`` the member must answer (it is told to leave)."""
    st = state(request)
    name = request.match_info["name"]
    force = flag(request, "force")
    row = st.cluster.check_removal(name, force)
    assert st.forwarder is not None
    peers = st.forwarder.peers
    if name == st.membership.name:
        other = next(
            (
                m
                for m in st.cluster.members()
                if m.name != name and placement.online(st.db, m, st.membership.name)
            ),
            None,
        )
        if other is None:
            raise BadRequest("No other member is online to remove this one")
        return await st.forwarder.forward(request, other.address)
    if not force:
        try:
            async with peers.session().get(
                f"https://{row.address}/1.0", timeout=aiohttp.ClientTimeout(total=10)
            ) as resp:
                await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BadRequest(
                f"Cluster member {name!r} does not answer ({exc}): remove it with --force"
            ) from None
    await asyncio.to_thread(st.cluster.remove_member, row)
    if not force:
        try:
            async with peers.session().post(
                f"https://{row.address}/internal/cluster/leave",
                timeout=aiohttp.ClientTimeout(total=30),
            ) as resp:
                await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("member %s removed but not told to leave: %s", name, exc)
    return Sync()


async def _from_member(request: web.Request, needs_name: bool = True) -> dict[str, Any]:
    """The JSON body of a request only another member may make."""
    if not identify(request).member:
        raise Forbidden("Only another member of the cluster may ask for this")
    body = await json_body(request)
    if not isinstance(body, dict) or (needs_name and not isinstance(body.get("name"), str)):
        raise BadRequest("The request needs a JSON object with a name")
    return body


async def receive(request: web.Request) -> Result:
    """Another member moves one of the cluster's instances here: this one pulls its volumes."""
    st = state(request)
    body = await _from_member(request)
    assert st.moves is not None
    await st.moves.receive(body)
    return Sync()


async def pools(request: web.Request) -> Result:
    """Another member makes or deletes a cluster pool: this member's storage of it."""
    st = state(request)
    body = await _from_member(request)
    assert st.cluster_pools is not None
    await st.cluster_pools.act(body["name"], str(body.get("action", "")))
    return Sync()


async def networks(request: web.Request) -> Result:
    """Another member made or deletes a cluster network: this member's bridge of it."""
    st = state(request)
    body = await _from_member(request)
    assert st.cluster_networks is not None
    project = str(body.get("project") or "default")
    old = body.get("old") or {}
    if not isinstance(old, dict):
        raise BadRequest("old must be a network's config")
    old = {str(k): str(v) for k, v in old.items()}
    await st.cluster_networks.act(body["name"], project, str(body.get("action", "")), old)
    return Sync()


async def images(request: web.Request) -> Result:
    """Another member got or deleted an image: this member's copy of its files."""
    st = state(request)
    body = await _from_member(request, needs_name=False)
    fingerprint = body.get("fingerprint")
    if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
        raise BadRequest("The request needs an image fingerprint")
    assert st.image_replicas is not None
    project = str(body.get("project") or "default")
    await st.image_replicas.act(fingerprint, project, str(body.get("action", "")))
    return Sync()


async def leave(request: web.Request) -> Result:
    """This member was removed (by another): it becomes a server of its own again and the
    daemon starts again."""
    st = state(request)
    if not identify(request).member:
        raise Forbidden("Only another member of the cluster may remove this one")
    await asyncio.to_thread(st.cluster.leave)
    asyncio.get_running_loop().call_later(ANSWER_SECONDS, restart_daemon)
    return Sync()


def restart_daemon() -> None:
    """The daemon again, in this process (as incusd replaces itself): its instances keep
    running and are adopted again."""
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


async def member_state(request: web.Request) -> Result:
    """GET: the member's resources as Incus shows them (its load, memory, pools); POST:
    evacuate or restore it (run by the member itself: the request was forwarded there)."""
    st = state(request)
    st.cluster.member(request.match_info["name"])
    if request.method == "GET":
        return Sync(await _member_resources(st))
    body = await json_body(request)
    if not isinstance(body, dict) or body.get("action") not in ("evacuate", "restore"):
        raise BadRequest('The action must be "evacuate" or "restore"')
    assert st.evacuation is not None
    if body["action"] == "evacuate":
        return Async(await st.evacuation.evacuate(str(body.get("mode") or "")))
    return Async(await st.evacuation.restore())


async def _member_resources(st: State) -> dict[str, Any]:
    with open("/proc/loadavg") as f:
        loads = [float(x) for x in f.read().split()[:3]]
    memory = {}
    with open("/proc/meminfo") as f:
        for entry in f:
            key, _, rest = entry.partition(":")
            memory[key] = int(rest.split()[0]) * 1024
    with open("/proc/uptime") as f:
        uptime = int(float(f.read().split()[0]))
    pools = {}
    for row in storage_db.list_pools(st.db):
        try:
            space = st.pools.resources(row.name)
        except Exception:
            continue
        pools[row.name] = space
    return {
        "sysinfo": {
            "uptime": uptime,
            "load_averages": loads,
            "total_ram": memory.get("MemTotal", 0),
            "free_ram": memory.get("MemFree", 0),
            "shared_ram": memory.get("Shmem", 0),
            "buffered_ram": memory.get("Buffers", 0),
            "total_swap": memory.get("SwapTotal", 0),
            "free_swap": memory.get("SwapFree", 0),
            "processes": len([p for p in os.listdir("/proc") if p.isdigit()]),
            "logical_cpus": os.cpu_count() or 0,
        },
        "storage_pools": pools,
    }


async def add_member(request: web.Request) -> Result:
    """A join token for a new member: an operation of class token, as Incus's."""
    st = state(request)
    st.cluster.check_clustered(NOT_CLUSTERED)  # before the body, as Incus
    post = await body_as(request, ClusterMembersPost)
    return Async(st.admission.new_token(post.server_name))


async def accept(request: web.Request) -> Result:
    """A server with a join token asks to be a member (its certificate is not trusted yet:
    the token is its credential)."""
    req = JoinRequest.parse(await json_body(request))
    return Sync(state(request).admission.accept(req))  # on the loop: it cancels an operation


async def assign(request: web.Request) -> Result:
    """A member that was accepted asks for its node to be added to raft (it presents the
    cluster certificate it was given: no client may add raft nodes)."""
    if not identify(request).member:
        raise Forbidden("Only a member of the cluster may add its node")
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("address"), str):
        raise BadRequest("The request needs the node's id and address")
    try:
        node_id = int(body["node_id"])
    except (KeyError, TypeError, ValueError):
        raise BadRequest("The request needs the node's id and address") from None
    await asyncio.to_thread(state(request).admission.assign, node_id, body["address"])
    return Sync()


async def list_groups(request: web.Request) -> Result:
    cluster = state(request).cluster
    rows = cluster.groups()
    if recursion(request):
        return Sync([cluster.render_group(row) for row in rows])
    return Sync([group_url(row.name) for row in rows])


async def create_group(request: web.Request) -> Result:
    post = await body_as(request, ClusterGroupsPost)
    state(request).cluster.create_group(post.name, post)
    return created(group_url(post.name))


def _group_writable(rendered: dict[str, Any]) -> dict[str, Any]:
    return {k: rendered[k] for k in ("description", "members", "config")}


async def get_group(request: web.Request) -> Result:
    cluster = state(request).cluster
    rendered = cluster.render_group(cluster.group(request.match_info["name"]))
    return Sync(rendered, etag=_group_writable(rendered))


async def put_group(request: web.Request) -> Result:
    cluster = state(request).cluster
    name = request.match_info["name"]
    current = _group_writable(cluster.render_group(cluster.group(name)))
    check_etag(request, current)
    if request.method == "PATCH":
        put = await patched(request, current, ("config",), ClusterGroupPut)
    else:
        put = await body_as(request, ClusterGroupPut)
    cluster.update_group(name, put)
    return Sync()


async def post_group(request: web.Request) -> Result:
    post = await body_as(request, ClusterGroupPost)
    state(request).cluster.rename_group(request.match_info["name"], post.name)
    return created(group_url(post.name))


async def delete_group(request: web.Request) -> Result:
    state(request).cluster.delete_group(request.match_info["name"])
    return Sync()


INTERNAL = [
    Endpoint("/internal/cluster/accept", post=Action(accept, allow_untrusted=True)),
    Endpoint("/internal/cluster/assign", post=Action(assign)),
    Endpoint("/internal/cluster/leave", post=Action(leave)),
    Endpoint("/internal/cluster/receive", post=Action(receive)),
    Endpoint("/internal/cluster/pools", post=Action(pools)),
    Endpoint("/internal/cluster/networks", post=Action(networks)),
    Endpoint("/internal/cluster/images", post=Action(images)),
    Endpoint("/internal/cluster/certificate", post=Action(member_certificate)),
]
"""Between members (outside /1.0)."""

ENDPOINTS = [
    Endpoint("/cluster", get=Action(get_cluster), put=Action(put_cluster)),
    Endpoint("/cluster/certificate", put=Action(put_certificate)),
    Endpoint("/cluster/members", get=Action(list_members), post=Action(add_member)),
    Endpoint(
        "/cluster/members/{name}",
        get=Action(get_member),
        put=Action(put_member),
        patch=Action(put_member),
        post=Action(post_member),
        delete=Action(delete_member),
    ),
    Endpoint("/cluster/members/{name}/state", get=Action(member_state), post=Action(member_state)),
    Endpoint("/cluster/groups", get=Action(list_groups), post=Action(create_group)),
    Endpoint(
        "/cluster/groups/{name}",
        get=Action(get_group),
        put=Action(put_group),
        patch=Action(put_group),
        post=Action(post_group),
        delete=Action(delete_group),
    ),
]
