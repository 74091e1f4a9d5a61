"""/1.0/cluster and below, as a server that is not (yet) a cluster member answers them: its
member configuration (what a member joining a cluster with this server's pools and networks
would have to give), and Incus's errors for the member and group endpoints (all 400s here:
Incus answers some with a 500, though nothing failed on the server)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from stapes.api.errors import BadRequest
from stapes.db import networks as network_db
from stapes.db import storage as storage_db
from stapes.server.endpoint import Action, Endpoint, state
from stapes.server.response import Result, Sync

MEMBER_POOL_KEYS = (
    "size", "source", "source.wipe", "zfs.pool_name", "lvm.thinpool_name", "lvm.vg_name"
)  # fmt: skip
"""A storage pool's keys that belong to each member, not to the cluster (as Incus's)."""
MEMBER_NETWORK_KEYS = (
    "bgp.ipv4.nexthop",
    "bgp.ipv6.nexthop",
    "bridge.external_interfaces",
    "parent",
)
"""A network's keys that belong to each member."""


def member_config(pools: list[Any], networks: list[Any]) -> list[dict[str, str]]:
    """The member-specific keys set on this server's pools and networks, each to be given by
    a joining member (so their values are empty), as Incus lists them."""
    found: list[dict[str, str]] = []
    for entity, label, rows, keys in (
        ("storage-pool", "storage pool", pools, MEMBER_POOL_KEYS),
        ("network", "network", networks, MEMBER_NETWORK_KEYS),
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
    db = state(request).db
    pools = storage_db.list_pools(db)
    networks = network_db.list_networks(db)
    return Sync(
        {"server_name": "", "enabled": False, "member_config": member_config(pools, networks)}
    )


async def not_clustered_member(request: web.Request) -> Result:
    # Incus's words; Incus answers these with a 500, but nothing failed on the server: the
    # request was for a cluster this server is not part of
    raise BadRequest("Server is not clustered")


async def not_clustered(request: web.Request) -> Result:
    raise BadRequest("This server is not clustered")


ENDPOINTS = [
    Endpoint("/cluster", get=Action(get_cluster)),
    Endpoint(
        "/cluster/members",
        get=Action(not_clustered_member),
        post=Action(not_clustered),
    ),
    Endpoint(
        "/cluster/members/{name}",
        get=Action(not_clustered_member),
        put=Action(not_clustered_member),
        patch=Action(not_clustered_member),
        post=Action(not_clustered_member),
        delete=Action(not_clustered_member),
    ),
    Endpoint("/cluster/groups", get=Action(not_clustered), post=Action(not_clustered)),
]
