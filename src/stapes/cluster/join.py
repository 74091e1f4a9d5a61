"""How a server becomes a member, seen from the server: it presents its join token to a member
(which records it and hands over the cluster's key), takes the cluster certificate as its own,
starts its node, has the cluster add it to raft, and switches its database to the cluster's.
Its own standalone database is set aside, as at enable; its pools are the cluster's, made here
with this member's own values (``member_config``, or the driver's defaults)."""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from stapes import certs
from stapes.api.cluster import ClusterPut
from stapes.api.errors import BadRequest
from stapes.api.join_token import secret_of
from stapes.cluster.admission import fingerprint_of
from stapes.cluster.engine import ClusterEngine
from stapes.cluster.files import move_database
from stapes.cluster.service import LEADER_SECONDS, Cluster, check_name
from stapes.cluster.transport import MemberError, member_request
from stapes.config import validate as v
from stapes.config.server_scope import LOCAL_SERVER_KEYS
from stapes.config.validate import split_address
from stapes.db import cluster as cluster_db
from stapes.db.connection import Database
from stapes.db.cowsql import wire
from stapes.db.cowsql.node import generate_id
from stapes.db.local import RaftNode, install_local, open_local
from stapes.db.networks import MEMBER_NETWORK_KEYS
from stapes.db.schema import MIGRATIONS
from stapes.db.server_config import get_config
from stapes.db.storage import MEMBER_POOL_KEYS

log = logging.getLogger(__name__)


_MEMBER_KEYS: dict[str, tuple[frozenset[str], dict[str, v.Validator]]] = {
    "storage-pool": (MEMBER_POOL_KEYS, {"source": v.is_abs_path, "size": v.is_size}),
    "network": (
        MEMBER_NETWORK_KEYS,
        {
            "parent": v.is_ifname,
            "bridge.external_interfaces": v.is_ifname_list,
            "bgp.ipv4.nexthop": v.is_ip,
            "bgp.ipv6.nexthop": v.is_ip,
        },
    ),
}
"""A joining server's values of the member keys (``member_config``): the keys of each kind
and how their values are checked before it joins."""


@dataclass(frozen=True)
class JoinPlan:
    name: str
    server_address: str
    cluster_address: str
    cluster_certificate: str
    fingerprint: str
    secret: str
    node_id: int
    pool_config: dict[str, dict[str, str]]
    network_config: dict[str, dict[str, str]]
    """Its values of each cluster network's member keys (checked by the network at start)."""
    """This member's values of the pools' member keys (source...), by pool."""


def _empty(db: Database) -> None:
    """Only a server with nothing of its own may join: its database is replaced."""
    for table, what in (
        ("instances", "instances"),
        ("storage_volumes", "custom storage volumes"),
        ("images", "images"),
        ("networks", "managed networks"),
    ):
        if db.one(f"SELECT 1 FROM {table} LIMIT 1") is not None:
            raise BadRequest(
                f"This server has {what}: only a server without instances, custom volumes, "
                "images or managed networks can join a cluster (its database is replaced by "
                "the cluster's)"
            )
    if db.one("SELECT 1 FROM projects WHERE name != 'default' LIMIT 1") is not None:
        raise BadRequest("This server has projects of its own: delete them before joining")


def plan(cluster: Cluster, put: ClusterPut) -> JoinPlan:
    """The join ``put`` asks for, checked (4xx) before anything is done."""
    if cluster.membership.clustered:
        raise BadRequest("This server is already clustered")
    check_name(put.server_name)
    if not put.cluster_certificate:
        raise BadRequest("No target cluster member certificate provided")
    if not put.server_address:
        raise BadRequest("No server address provided for this member")
    if not put.cluster_token:
        raise BadRequest("No join token provided: ask a member for one (cluster add NAME)")
    for address in (put.server_address, put.cluster_address):
        try:
            host, _ = split_address(address)
        except ValueError as exc:
            raise BadRequest(f"Invalid address {address!r}: {exc}") from None
        if host in ("", "0.0.0.0", "::"):
            raise BadRequest(f"Invalid address {address!r}: a wildcard address cannot be dialled")
    own = get_config(cluster.db).get("core.https_address", "")
    if own and own != put.server_address:
        raise BadRequest(
            f"server_address {put.server_address!r} must be this server's core.https_address "
            f"({own!r})"
        )
    _empty(cluster.db)
    found: dict[str, dict[str, dict[str, str]]] = {"storage-pool": {}, "network": {}}
    for entry in put.member_config:
        entity = str(entry.get("entity", ""))
        if entity not in _MEMBER_KEYS:
            continue
        key, name = str(entry.get("key", "")), str(entry.get("name", ""))
        value = str(entry.get("value", ""))
        keys, checks = _MEMBER_KEYS[entity]
        label = entity.replace("-", " ")
        if key not in keys:
            raise BadRequest(f"{key!r} is not a member-specific key of {label} {name!r}")
        check = checks.get(key)
        try:
            if check is not None and value:
                check(value)
        except ValueError as exc:
            raise BadRequest(f"Invalid {key} for {label} {name!r}: {exc}") from None
        found[entity].setdefault(name, {})[key] = value
    pools, networks = found["storage-pool"], found["network"]
    return JoinPlan(
        name=put.server_name,
        server_address=put.server_address,
        cluster_address=put.cluster_address,
        cluster_certificate=put.cluster_certificate,
        fingerprint=fingerprint_of(put.cluster_certificate),
        secret=secret_of(put.cluster_token),
        node_id=generate_id(put.server_address),
        pool_config=pools,
        network_config=networks,
    )


class Joiner:
    def __init__(
        self,
        cluster: Cluster,
        listen: Callable[[str], Awaitable[None]],
        reload_certificate: Callable[[], Awaitable[None]],
        prepare_pools: Callable[[dict[str, dict[str, str]]], Awaitable[None]],
    ) -> None:
        self.cluster = cluster
        self.listen = listen
        self.reload_certificate = reload_certificate
        self.prepare_pools = prepare_pools

    async def join(self, plan: JoinPlan) -> None:
        cluster = self.cluster
        transport = cluster.transport
        await self.listen(plan.server_address)
        request = {
            "server_name": plan.name,
            "address": plan.server_address,
            "secret": plan.secret,
            "schema": len(MIGRATIONS),
            "api_extensions": cluster.api_extensions,
            "architecture": platform.machine(),
            "node_id": plan.node_id,
        }
        accepted: dict[str, Any] = await asyncio.to_thread(
            self._ask, plan, "/internal/cluster/accept", request
        )
        cert, key = transport.cert, transport.key
        for path in (cert, key):
            kept = path.with_name(path.name + ".standalone")
            if not kept.exists():
                shutil.copy2(path, kept)
        certs.replace_pair(
            cert, key, plan.cluster_certificate.encode(), accepted["cluster_key"].encode()
        )
        transport.certificate_changed()
        await self.reload_certificate()
        pools = await asyncio.to_thread(self._switch, plan, accepted)
        cluster.membership.name = plan.name
        cluster.membership.address = plan.server_address
        await self.prepare_pools(pools)
        log.info("joined the cluster as %s at %s", plan.name, plan.server_address)

    def _ask(self, plan: JoinPlan, path: str, body: object) -> Any:
        transport = self.cluster.transport
        try:
            return member_request(
                plan.cluster_address, path, body, transport.cert, transport.key, plan.fingerprint
            )
        except MemberError as exc:
            raise BadRequest(f"The cluster refused: {exc.message}") from None

    def _switch(self, plan: JoinPlan, accepted: dict[str, Any]) -> dict[str, dict[str, str]]:
        """Start the node, have it added, and move to the cluster's database; returns the
        pools' member config this member settled on."""
        cluster = self.cluster
        files = cluster.files
        shutil.rmtree(files.cowsql, ignore_errors=True)
        nodes = [
            RaftNode(int(n["id"]), str(n["address"]), int(n["role"]), str(n.get("name", "")))
            for n in accepted["raft_nodes"]
        ]
        nodes.append(RaftNode(plan.node_id, plan.server_address, wire.SPARE, plan.name))
        engine = ClusterEngine.start(
            plan.node_id, plan.server_address, files.cowsql, cluster.transport
        )
        cluster.engine = engine  # the leader reaches the node through the listener from now

        try:
            self._ask(
                plan,
                "/internal/cluster/assign",
                {"node_id": plan.node_id, "address": plan.server_address},
            )
            shared = engine.database([n.address for n in nodes], timeout=60.0)
            shared.timeout = LEADER_SECONDS
            with cluster.db.exclusive():
                standalone = cluster.db.engine
                own = {k: v for k, v in get_config(standalone).items() if k in LOCAL_SERVER_KEYS}
                own["core.https_address"] = own.get("core.https_address") or plan.server_address
                own["cluster.https_address"] = plan.server_address
                pools = self._pool_config(plan, standalone, shared)
                files.drop_local_staging()
                # a member from here on
                networks = {k: v for k, v in plan.network_config.items() if v}
                install_local(files.local_staging, files.local, own, nodes, pools, networks)
                old = cluster.db.replace_engine(shared, open_local(files.local))
            old.close()
        except BaseException:
            cluster.engine = None
            engine.close()
            shutil.rmtree(files.cowsql, ignore_errors=True)
            files.drop_local_staging()
            raise
        move_database(files.standalone, files.standalone_kept)
        member = cluster_db.find_member(cluster.db, plan.name)
        if member is None:
            log.warning("joined, but the cluster has no member %s", plan.name)
        return pools

    @staticmethod
    def _pool_config(
        plan: JoinPlan, standalone: Database, shared: Database
    ) -> dict[str, dict[str, str]]:
        """Each cluster pool's member keys here: the ones given, else those of a pool of this
        server of the same name and driver (it is kept), else none (the driver's defaults)."""
        mine = {
            r["name"]: (r["driver"], json.loads(r["config"]))
            for r in standalone.all("SELECT name, driver, config FROM storage_pools")
        }
        found: dict[str, dict[str, str]] = {}
        for row in shared.all("SELECT name, driver FROM storage_pools"):
            given = plan.pool_config.get(row["name"])
            if given is not None:
                found[row["name"]] = given
            elif mine.get(row["name"], ("", {}))[0] == row["driver"]:
                config = mine[row["name"]][1]
                found[row["name"]] = {k: v for k, v in config.items() if k in MEMBER_POOL_KEYS}
        return found
