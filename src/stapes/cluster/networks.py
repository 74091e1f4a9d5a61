"""Managed networks of a cluster: one row for the cluster, a bridge on every member (each
member's instances attach to its own). Made on the member asked, then brought up on the
others; removed from the others first, then there."""

from __future__ import annotations

from stapes.api.errors import BadRequest
from stapes.api.network import NetworksPost
from stapes.cluster.fanout import on_every_member
from stapes.cluster.peers import Peers
from stapes.cluster.service import Cluster
from stapes.db import networks as q
from stapes.db.projects import feature_project
from stapes.network.service import Networks

INTERNAL = "/internal/cluster/networks"


class ClusterNetworks:
    def __init__(self, cluster: Cluster, networks: Networks, peers: Peers) -> None:
        self.cluster = cluster
        self.networks = networks
        self.peers = peers

    async def create(self, req: NetworksPost, project: str) -> None:
        await self.networks.create(req, project)
        owner = feature_project(self.networks.db, project, "networks")
        failures = await self._others(req.name, owner, "start")
        if failures:
            raise BadRequest(
                f"Network {req.name!r} is up here but not on every member ("
                + "; ".join(failures)
                + "): it is marked Errored there"
            )

    async def delete(self, row: q.NetworkRow) -> None:
        self.networks.check_unused(row, "delete")
        failures = await self._others(row.name, row.project, "delete")
        if failures:
            raise BadRequest(
                f"Network {row.name!r} could not be removed from every member ("
                + "; ".join(failures)
                + ")"
            )
        await self.networks.delete(row)

    async def _others(self, name: str, project: str, action: str) -> list[str]:
        body = {"name": name, "project": project, "action": action}
        db = self.networks.db
        return await on_every_member(
            db, self.cluster.membership.name, self.peers, INTERNAL, body, None
        )

    async def act(self, name: str, project: str, action: str) -> None:
        """This member's bridge of a cluster network (another member asked)."""
        row = q.get_network(self.networks.db, name, project)
        if action == "start":
            await self.networks.start_here(row)
        elif action == "delete":
            await self.networks.driver(row).delete()
        else:
            raise BadRequest(f"Unknown network action {action!r}")
