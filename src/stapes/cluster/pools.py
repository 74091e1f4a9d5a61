"""Storage pools of a cluster: one row for the cluster, the storage on every member. A pool
is made on every member at once (each with its own values of the member keys, given before
with ``--target``, or the driver's defaults) and deleted from every member; a member that
fails leaves the pool Errored, with which member and why in the answer."""

from __future__ import annotations

import logging

from stapes.api.errors import BadRequest, Conflict
from stapes.api.lifecycle import StoragePoolAction
from stapes.api.urls import pool_url
from stapes.cluster.fanout import on_every_member
from stapes.cluster.peers import Peers
from stapes.cluster.service import Cluster
from stapes.db.storage import (
    create_pool,
    find_pool,
    get_pool,
    set_pool_status,
    update_pool,
)
from stapes.storage.pool import Pools, cluster_pool_config

log = logging.getLogger(__name__)

INTERNAL = "/internal/cluster/pools"


class ClusterPools:
    def __init__(self, cluster: Cluster, pools: Pools, peers: Peers) -> None:
        self.cluster = cluster
        self.pools = pools
        self.peers = peers
        self.db = pools.db

    async def create(
        self, name: str, driver: str, description: str, config: dict[str, str]
    ) -> None:
        shared = cluster_pool_config(name, driver, config, member=False)
        with self.db.transaction():
            row = find_pool(self.db, name)
            if row is None:
                create_pool(self.db, name, driver, description, {})
                row = get_pool(self.db, name)
            elif row.status != "Pending":
                raise Conflict(f"Storage pool {name!r} already exists")
            elif row.driver != driver:
                raise BadRequest(
                    f"Storage pool {name!r} is pending with driver {row.driver!r}, not {driver!r}"
                )
            row.description = description
            row.config = {**row.config, **shared}
            row.status = "Pending"
            update_pool(self.db, row)
        failures = await self._on_every_member(name, "create")
        with self.db.transaction():
            set_pool_status(self.db, name, "Errored" if failures else "Created")
        if failures:
            raise BadRequest(
                f"Storage pool {name!r} could not be made on every member ("
                + "; ".join(failures)
                + "): it is Errored; delete it and try again"
            )
        self.pools.events.lifecycle(StoragePoolAction.CREATED, pool_url(name))

    async def delete(self, name: str) -> None:
        users = [u for u in self.pools.used_by(name) if not u.startswith("/1.0/images/")]
        if users:
            raise BadRequest(
                f"The storage pool is currently in use (by {', '.join(users[:3])}): delete or "
                "move those first"
            )
        failures = await self._on_every_member(name, "delete", here=False)
        if failures:
            raise BadRequest(
                f"Storage pool {name!r} could not be removed from every member ("
                + "; ".join(failures)
                + ")"
            )
        await self.pools.delete(name)

    async def _on_every_member(self, name: str, action: str, here: bool = True) -> list[str]:
        """``action`` (create, delete) on every member; what failed where."""

        async def mine() -> None:
            await self.act(name, action)

        body = {"name": name, "action": action}
        own = self.cluster.membership.name
        return await on_every_member(
            self.db, own, self.peers, INTERNAL, body, mine if here else None
        )

    async def act(self, name: str, action: str) -> None:
        """This member's part (another member asked, or this one)."""
        if action == "create":
            await self.pools.create_here(name)
        elif action == "delete":
            await self.pools.delete_here(name)
        else:
            raise BadRequest(f"Unknown pool action {action!r}")
