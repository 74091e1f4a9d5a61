"""Managed networks of a cluster: one row for the cluster, a bridge on every member (each
member's instances attach to its own). A network's member keys (its uplink: ``parent``,
``bridge.external_interfaces``...) are given per member first (``--target``: the network is
Pending until made); then it is made on the member asked and brought up on the others, each
with its own values; removed from the others first, then there. A change is applied on every
member; a change of one member's values (``--target``) on that member only."""

from __future__ import annotations

from stapes.api.errors import BadRequest, Conflict
from stapes.api.network import NetworkPut, NetworksPost
from stapes.cluster.fanout import on_every_member
from stapes.cluster.peers import Peers
from stapes.cluster.service import Cluster
from stapes.db import networks as q
from stapes.db.projects import feature_project
from stapes.network.registry import network_type
from stapes.network.service import PENDING, Networks, validate_config

INTERNAL = "/internal/cluster/networks"


class ClusterNetworks:
    def __init__(self, cluster: Cluster, networks: Networks, peers: Peers) -> None:
        self.cluster = cluster
        self.networks = networks
        self.peers = peers

    def define_here(self, req: NetworksPost, project: str) -> None:
        """This member's values of a network's member keys (``--target``, forwarded here):
        its row is Pending until the network is made on every member."""
        db = self.networks.db
        pending = q.find_network(db, req.name, project)
        owner = self.networks.admit(req, project, new=pending is None)
        config = {k: v for k, v in req.config.items() if v != ""}
        _only_member_keys(config, True)
        validate_config(network_type(req.type), config)
        with db.transaction():
            row = q.find_network(db, req.name, owner)
            if row is None:
                if q.name_taken(db, req.name):
                    raise Conflict(f"Network {req.name!r} already exists")
                row = q.NetworkRow(0, req.name, req.type, "", config, owner, PENDING)
                q.insert_network(db, row)
            elif row.status != PENDING or row.type != req.type:
                raise Conflict(f"Network {req.name!r} already exists")
            else:
                row.config = {**row.config, **config}
                q.update_network(db, row)

    async def create(self, req: NetworksPost, project: str) -> None:
        _only_member_keys({k: v for k, v in req.config.items() if v != ""}, False)
        owner = feature_project(self.networks.db, project, "networks")
        pending = q.find_network(self.networks.db, req.name, owner)
        if pending is not None and pending.status != PENDING:
            raise Conflict(f"Network {req.name!r} already exists")
        if pending is not None and pending.type != (req.type or "bridge"):
            raise BadRequest(
                f"Network {req.name!r} is pending with type {pending.type!r}, not {req.type!r}"
            )
        await self.networks.create(req, project, pending)
        failures = await self._others(req.name, owner, "start")
        if failures:
            raise BadRequest(
                f"Network {req.name!r} is up here but not on every member ("
                + "; ".join(failures)
                + "): it is marked Errored there"
            )

    async def update(self, row: q.NetworkRow, put: NetworkPut, target: str) -> None:
        """A change on every member, or (``target``: this member, where the request was
        forwarded) of this member's values only; each member applies it to its own bridge."""
        given = {k: v for k, v in put.config.items() if v != ""}
        mine = {k: v for k, v in row.config.items() if k in q.MEMBER_NETWORK_KEYS}
        if target:
            _unchanged({k: v for k, v in row.config.items() if k not in mine}, given, False)
        else:
            _unchanged(mine, given, True)
        old = dict(row.config)
        await self.networks.update(row, put)
        if target:
            return
        failures = await self._others(row.name, row.project, "update", old)
        if failures:
            raise BadRequest(
                f"Network {row.name!r} changed here but not on every member ("
                + "; ".join(failures)
                + ")"
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

    async def _others(
        self, name: str, project: str, action: str, old: dict[str, str] | None = None
    ) -> list[str]:
        body = {"name": name, "project": project, "action": action, "old": old or {}}
        db = self.networks.db
        return await on_every_member(
            db, self.cluster.membership.name, self.peers, INTERNAL, body, None
        )

    async def act(self, name: str, project: str, action: str, old: dict[str, str]) -> None:
        """This member's bridge of a cluster network (another member asked); ``old``: the
        shared config before an update (with this member's own values, as it ran)."""
        row = q.get_network(self.networks.db, name, project)
        if action == "start":
            await self.networks.start_here(row)
        elif action == "update":
            mine = {k: v for k, v in row.config.items() if k in q.MEMBER_NETWORK_KEYS}
            await self.networks.reapply(row, {**old, **mine})
        elif action == "delete":
            await self.networks.driver(row).delete()
        else:
            raise BadRequest(f"Unknown network action {action!r}")


def _only_member_keys(config: dict[str, str], member: bool) -> None:
    """Member values (``member``) hold member keys only; the network's own config none."""
    wrong = sorted(k for k in config if (k in q.MEMBER_NETWORK_KEYS) != member)
    if wrong and member:
        raise BadRequest(
            f"Config key {wrong[0]!r} is not specific to a member: give it when the network is "
            "created on every member (without --target)"
        )
    if wrong:
        raise BadRequest(
            f"Config key {wrong[0]!r} is specific to each cluster member: give it per member "
            "with --target (?target=MEMBER) first"
        )


def _unchanged(current: dict[str, str], given: dict[str, str], member: bool) -> None:
    """A change for every member may not touch a member's values, one with --target only
    those."""
    for key in sorted(set(current) | {k for k in given if (k in q.MEMBER_NETWORK_KEYS) == member}):
        if current.get(key, "") != given.get(key, ""):
            if member:
                raise BadRequest(
                    f"Config key {key!r} is specific to each cluster member: change it with "
                    "--target (?target=MEMBER)"
                )
            raise BadRequest(
                f"Config key {key!r} is not specific to a member: change it without --target"
            )
