"""A network's Policy from the database: its forwards' rewrites and the chains of the ACLs its
``security.acls`` names."""

from __future__ import annotations

import ipaddress

from stapes.api.errors import BadRequest
from stapes.api.network import AclRule, ForwardPort
from stapes.config import validate as v
from stapes.db import network_policies as pq
from stapes.db.connection import Database
from stapes.db.networks import NetworkRow
from stapes.network import acls, addresses, forwards
from stapes.network.drivers.driver import Policy


def acl_names(config: dict[str, str]) -> list[str]:
    return [n.strip() for n in config.get("security.acls", "").split(",") if n.strip()]


def check_acls_exist(db: Database, config: dict[str, str], project: str = "default") -> None:
    """The ACLs a network's config names, in the network's project."""
    for name in acl_names(config):
        if pq.find_acl(db, project, name) is None:
            raise BadRequest(f"security.acls: network ACL {name!r} does not exist")


def forward_of(row: pq.ForwardRow, network: NetworkRow) -> forwards.Forward:
    return forwards.build(
        ipaddress.ip_address(row.listen_address),
        row.config,
        [ForwardPort.model_validate(p) for p in row.ports],
        addresses.subnets(network.config),
    )


def build(db: Database, network: NetworkRow) -> Policy:
    policy = Policy()
    for row in pq.list_forwards(db, network.id):
        policy.forwards += forward_of(row, network).rules
    names = acl_names(network.config)
    if names:
        ingress: list[tuple[str, AclRule]] = []
        egress: list[tuple[str, AclRule]] = []
        for name in names:
            acl = pq.find_acl(db, network.project, name)
            if acl is None:  # refused on write; a stale name applies nothing
                continue
            ingress += [(name, AclRule.model_validate(r)) for r in acl.ingress]
            egress += [(name, AclRule.model_validate(r)) for r in acl.egress]
        conf = network.config
        policy.acl_ingress = acls.render_chain(
            ingress,
            conf.get("security.acls.default.ingress.action") or "reject",
            v.parse_bool(conf.get("security.acls.default.ingress.logged", "false")),
        )
        policy.acl_egress = acls.render_chain(
            egress,
            conf.get("security.acls.default.egress.action") or "reject",
            v.parse_bool(conf.get("security.acls.default.egress.logged", "false")),
        )
    return policy
