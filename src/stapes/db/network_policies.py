"""Rows of network forwards (per network and listen address) and network ACLs (global, as
networks are)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from stapes.api.errors import NotFound
from stapes.db.connection import Database, Row


@dataclass
class ForwardRow:
    id: int
    network_id: int
    listen_address: str
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)
    ports: list[dict[str, Any]] = field(default_factory=list)


def _forward(r: Row) -> ForwardRow:
    return ForwardRow(
        r["id"],
        r["network_id"],
        r["listen_address"],
        r["description"],
        json.loads(r["config"]),
        json.loads(r["ports"]),
    )


def list_forwards(db: Database, network_id: int) -> list[ForwardRow]:
    rows = db.all(
        "SELECT * FROM network_forwards WHERE network_id = ? ORDER BY listen_address",
        (network_id,),
    )
    return [_forward(r) for r in rows]


def all_forwards(db: Database) -> list[ForwardRow]:
    return [_forward(r) for r in db.all("SELECT * FROM network_forwards")]


def find_forward(db: Database, network_id: int, listen_address: str) -> ForwardRow | None:
    r = db.one(
        "SELECT * FROM network_forwards WHERE network_id = ? AND listen_address = ?",
        (network_id, listen_address),
    )
    return _forward(r) if r else None


def get_forward(db: Database, network_id: int, listen_address: str) -> ForwardRow:
    row = find_forward(db, network_id, listen_address)
    if row is None:
        raise NotFound(f"Network forward {listen_address!r} not found")
    return row


def insert_forward(db: Database, row: ForwardRow) -> None:
    cur = db.execute(
        "INSERT INTO network_forwards (network_id, listen_address, description, config, ports)"
        " VALUES (?, ?, ?, ?, ?)",
        (
            row.network_id,
            row.listen_address,
            row.description,
            json.dumps(row.config),
            json.dumps(row.ports),
        ),
    )
    row.id = int(cur.lastrowid or 0)


def update_forward(db: Database, row: ForwardRow) -> None:
    db.execute(
        "UPDATE network_forwards SET description = ?, config = ?, ports = ? WHERE id = ?",
        (row.description, json.dumps(row.config), json.dumps(row.ports), row.id),
    )


def delete_forward(db: Database, forward_id: int) -> None:
    db.execute("DELETE FROM network_forwards WHERE id = ?", (forward_id,))


@dataclass
class AclRow:
    id: int
    name: str
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)
    ingress: list[dict[str, str]] = field(default_factory=list)
    egress: list[dict[str, str]] = field(default_factory=list)
    project: str = "default"
    """The project that holds it (the one holding its networks: features.networks)."""


def _acl(r: Row) -> AclRow:
    return AclRow(
        r["id"],
        r["name"],
        r["description"],
        json.loads(r["config"]),
        json.loads(r["ingress"]),
        json.loads(r["egress"]),
        r["project"],
    )


def list_acls(db: Database, project: str | None) -> list[AclRow]:
    """The ACLs of ``project`` (None: of every project)."""
    if project is None:
        return [_acl(r) for r in db.all("SELECT * FROM network_acls ORDER BY project, name")]
    rows = db.all("SELECT * FROM network_acls WHERE project = ? ORDER BY name", (project,))
    return [_acl(r) for r in rows]


def find_acl(db: Database, project: str, name: str) -> AclRow | None:
    r = db.one("SELECT * FROM network_acls WHERE project = ? AND name = ?", (project, name))
    return _acl(r) if r else None


def get_acl(db: Database, project: str, name: str) -> AclRow:
    row = find_acl(db, project, name)
    if row is None:
        raise NotFound(f"Network ACL {name!r} not found")
    return row


def insert_acl(db: Database, row: AclRow) -> None:
    cur = db.execute(
        "INSERT INTO network_acls (project, name, description, config, ingress, egress)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            row.project,
            row.name,
            row.description,
            json.dumps(row.config),
            json.dumps(row.ingress),
            json.dumps(row.egress),
        ),
    )
    row.id = int(cur.lastrowid or 0)


def update_acl(db: Database, row: AclRow) -> None:
    db.execute(
        "UPDATE network_acls SET name = ?, description = ?, config = ?, ingress = ?, egress = ?"
        " WHERE id = ?",
        (
            row.name,
            row.description,
            json.dumps(row.config),
            json.dumps(row.ingress),
            json.dumps(row.egress),
            row.id,
        ),
    )


def delete_acl(db: Database, acl_id: int) -> None:
    db.execute("DELETE FROM network_acls WHERE id = ?", (acl_id,))
