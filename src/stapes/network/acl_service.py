"""Network ACLs: rows of a project (the one that holds the project's networks, as Incus keeps
them), checked in full before they are written; every network whose ``security.acls`` names
an ACL gets its firewall rebuilt when the ACL changes (and the old rules back when that
fails). An ACL in use cannot be deleted or renamed."""

from __future__ import annotations

from typing import Any

from stapes.api.errors import BadRequest, Conflict
from stapes.api.lifecycle import NetworkAclAction
from stapes.api.network import NetworkAclPut, NetworkAclsPost
from stapes.api.urls import acl_url, network_url
from stapes.db import network_policies as pq
from stapes.db import networks as q
from stapes.db.connection import Database
from stapes.db.projects import feature_project
from stapes.network import acls
from stapes.network.policy import acl_names
from stapes.network.service import Networks
from stapes.runtime.events import EventBus


class NetworkAcls:
    def __init__(self, db: Database, networks: Networks, events: EventBus) -> None:
        self.db = db
        self.networks = networks
        self.events = events

    def holder(self, project: str) -> str:
        """The project whose ACLs ``project`` sees (its own with features.networks)."""
        return feature_project(self.db, project, "networks")

    def list_acls(self, project: str | None) -> list[pq.AclRow]:
        return pq.list_acls(self.db, None if project is None else self.holder(project))

    def get(self, project: str, name: str) -> pq.AclRow:
        return pq.get_acl(self.db, self.holder(project), name)

    def _users(self, row: pq.AclRow) -> list[q.NetworkRow]:
        return [
            n
            for n in q.list_networks(self.db, row.project)
            if n.project == row.project and row.name in acl_names(n.config)
        ]

    def render(self, row: pq.AclRow) -> dict[str, Any]:
        return {
            "name": row.name,
            "description": row.description,
            "config": row.config,
            "ingress": row.ingress,
            "egress": row.egress,
            "used_by": [network_url(n.name, n.project) for n in self._users(row)],
            "project": row.project,
        }

    @staticmethod
    def writable(row: pq.AclRow) -> dict[str, Any]:
        return {
            "config": row.config,
            "description": row.description,
            "ingress": row.ingress,
            "egress": row.egress,
        }

    @staticmethod
    def _fill(row: pq.AclRow, put: NetworkAclPut) -> None:
        acls.check_config(put.config)
        for direction in ("ingress", "egress"):
            for rule in getattr(put, direction):
                acls.check_rule(rule, direction)
        row.description = put.description
        row.config = {k: v for k, v in put.config.items() if v != ""}
        row.ingress = [r.model_dump() for r in put.ingress]
        row.egress = [r.model_dump() for r in put.egress]

    async def create(self, req: NetworkAclsPost, project: str) -> None:
        acls.check_name(req.name)
        holder = self.holder(project)
        if pq.find_acl(self.db, holder, req.name) is not None:
            raise Conflict(f"Network ACL {req.name!r} already exists")
        row = pq.AclRow(0, req.name, project=holder)
        self._fill(row, req)
        with self.db.transaction():
            pq.insert_acl(self.db, row)
        self.events.lifecycle(
            NetworkAclAction.CREATED, acl_url(row.name, row.project), project=holder
        )

    async def update(self, row: pq.AclRow, put: NetworkAclPut) -> None:
        old = pq.AclRow(**vars(row))
        self._fill(row, put)
        with self.db.transaction():
            pq.update_acl(self.db, row)
        users = self._users(row)
        try:
            for network in users:
                await self.networks.apply_policy(network)
        except BaseException as exc:
            with self.db.transaction():
                pq.update_acl(self.db, old)
            for network in users:
                await self.networks.apply_policy(network)
            if isinstance(exc, BadRequest):
                raise
            raise BadRequest(f"The ACL's rules could not be applied: {exc}") from exc
        self.events.lifecycle(
            NetworkAclAction.UPDATED, acl_url(row.name, row.project), project=row.project
        )

    def _check_unused(self, row: pq.AclRow, doing: str) -> None:
        users = [network_url(n.name, n.project) for n in self._users(row)]
        if users:
            raise BadRequest(
                f"Cannot {doing} network ACL {row.name!r}: it is in use by {', '.join(users)}"
            )

    async def rename(self, row: pq.AclRow, new_name: str) -> None:
        acls.check_name(new_name)
        if pq.find_acl(self.db, row.project, new_name) is not None:
            raise Conflict(f"Network ACL {new_name!r} already exists")
        self._check_unused(row, "rename")
        old = row.name
        row.name = new_name
        with self.db.transaction():
            pq.update_acl(self.db, row)
        self.events.lifecycle(
            NetworkAclAction.RENAMED,
            acl_url(new_name, row.project),
            project=row.project,
            context={"old_name": old},
        )

    async def delete(self, row: pq.AclRow) -> None:
        self._check_unused(row, "delete")
        with self.db.transaction():
            pq.delete_acl(self.db, row.id)
        self.events.lifecycle(
            NetworkAclAction.DELETED, acl_url(row.name, row.project), project=row.project
        )
