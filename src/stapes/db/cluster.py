"""Cluster members and groups (the cluster's database; empty on a standalone server)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import orjson

from stapes.api.errors import NotFound
from stapes.db.connection import Database, Row

DEFAULT_GROUP = "default"
"""The group every member joins unless told otherwise; it cannot go."""


@dataclass
class MemberRow:
    id: int
    name: str
    address: str
    architecture: str
    schema: int
    api_extensions: int
    heartbeat: str
    description: str = ""
    failure_domain: str = "default"
    config: dict[str, str] = field(default_factory=dict)
    roles: list[str] = field(default_factory=list)
    """The roles given to it (event-hub, ovn-chassis); the database ones follow raft."""
    state: str = "created"
    """created, or evacuated (its instances moved or stopped)."""


@dataclass
class GroupRow:
    id: int
    name: str
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)
    members: list[str] = field(default_factory=list)


def _member(r: Row) -> MemberRow:
    return MemberRow(
        id=r["id"],
        name=r["name"],
        address=r["address"],
        architecture=r["architecture"],
        schema=r["schema"],
        api_extensions=r["api_extensions"],
        heartbeat=r["heartbeat"],
        description=r["description"],
        failure_domain=r["failure_domain"],
        config=orjson.loads(r["config"]),
        roles=orjson.loads(r["roles"]),
        state=r["state"],
    )


def list_members(db: Database) -> list[MemberRow]:
    return [_member(r) for r in db.all("SELECT * FROM cluster_members ORDER BY name")]


def find_member(db: Database, name: str) -> MemberRow | None:
    r = db.one("SELECT * FROM cluster_members WHERE name = ?", (name,))
    return _member(r) if r is not None else None


def get_member(db: Database, name: str) -> MemberRow:
    member = find_member(db, name)
    if member is None:
        raise NotFound("Cluster member not found")
    return member


def member_at(db: Database, address: str) -> MemberRow | None:
    r = db.one("SELECT * FROM cluster_members WHERE address = ?", (address,))
    return _member(r) if r is not None else None


def insert_member(db: Database, row: MemberRow) -> int:
    cur = db.execute(
        "INSERT INTO cluster_members (name, address, description, architecture, "
        "failure_domain, config, roles, state, schema, api_extensions, heartbeat) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.name,
            row.address,
            row.description,
            row.architecture,
            row.failure_domain,
            json.dumps(row.config),
            json.dumps(row.roles),
            row.state,
            row.schema,
            row.api_extensions,
            row.heartbeat,
        ),
    )
    row.id = int(cur.lastrowid or 0)
    return row.id


def update_member(db: Database, row: MemberRow) -> None:
    db.execute(
        "UPDATE cluster_members SET name = ?, address = ?, description = ?, "
        "failure_domain = ?, config = ?, roles = ?, state = ?, heartbeat = ? WHERE id = ?",
        (
            row.name,
            row.address,
            row.description,
            row.failure_domain,
            json.dumps(row.config),
            json.dumps(row.roles),
            row.state,
            row.heartbeat,
            row.id,
        ),
    )


def rename_member(db: Database, row: MemberRow, name: str) -> None:
    """The member and what is located on it."""
    db.execute("UPDATE cluster_members SET name = ? WHERE id = ?", (name, row.id))
    db.execute("UPDATE instances SET location = ? WHERE location = ?", (name, row.name))
    row.name = name


def delete_member(db: Database, member_id: int) -> None:
    db.execute("DELETE FROM cluster_members WHERE id = ?", (member_id,))


def member_groups(db: Database) -> dict[int, list[str]]:
    """Each member's groups, by member id."""
    found: dict[int, list[str]] = {}
    for r in db.all(
        "SELECT m.member_id, g.name FROM cluster_group_members m "
        "JOIN cluster_groups g ON g.id = m.group_id ORDER BY g.name"
    ):
        found.setdefault(r["member_id"], []).append(r["name"])
    return found


def set_member_groups(db: Database, member_id: int, group_ids: list[int]) -> None:
    db.execute("DELETE FROM cluster_group_members WHERE member_id = ?", (member_id,))
    _link(db, [(group_id, member_id) for group_id in group_ids])


def _link(db: Database, pairs: list[tuple[int, int]]) -> None:
    """Members put in groups: (group id, member id) pairs."""
    for pair in pairs:
        db.execute("INSERT INTO cluster_group_members (group_id, member_id) VALUES (?, ?)", pair)


def _group(db: Database, r: Row) -> GroupRow:
    members = db.all(
        "SELECT c.name FROM cluster_group_members m JOIN cluster_members c ON c.id = m.member_id "
        "WHERE m.group_id = ? ORDER BY c.name",
        (r["id"],),
    )
    return GroupRow(
        id=r["id"],
        name=r["name"],
        description=r["description"],
        config=orjson.loads(r["config"]),
        members=[m["name"] for m in members],
    )


def list_groups(db: Database) -> list[GroupRow]:
    return [_group(db, r) for r in db.all("SELECT * FROM cluster_groups ORDER BY name")]


def find_group(db: Database, name: str) -> GroupRow | None:
    r = db.one("SELECT * FROM cluster_groups WHERE name = ?", (name,))
    return _group(db, r) if r is not None else None


def get_group(db: Database, name: str) -> GroupRow:
    group = find_group(db, name)
    if group is None:
        raise NotFound("Cluster group not found")
    return group


def insert_group(db: Database, name: str, description: str = "") -> int:
    cur = db.execute(
        "INSERT INTO cluster_groups (name, description) VALUES (?, ?)", (name, description)
    )
    return int(cur.lastrowid or 0)


def update_group(db: Database, row: GroupRow) -> None:
    db.execute(
        "UPDATE cluster_groups SET name = ?, description = ?, config = ? WHERE id = ?",
        (row.name, row.description, json.dumps(row.config), row.id),
    )


def set_group_members(db: Database, group_id: int, member_ids: list[int]) -> None:
    db.execute("DELETE FROM cluster_group_members WHERE group_id = ?", (group_id,))
    _link(db, [(group_id, member_id) for member_id in member_ids])


def delete_group(db: Database, group_id: int) -> None:
    db.execute("DELETE FROM cluster_groups WHERE id = ?", (group_id,))


@dataclass
class JoinToken:
    name: str
    """The member it lets join."""
    secret: str
    expires_at: str = ""


def insert_join_token(db: Database, token: JoinToken) -> None:
    db.execute(
        "INSERT INTO cluster_join_tokens (name, secret, expires_at) VALUES (?, ?, ?)",
        (token.name, token.secret, token.expires_at),
    )


def list_join_tokens(db: Database) -> list[JoinToken]:
    rows = db.all("SELECT name, secret, expires_at FROM cluster_join_tokens ORDER BY name")
    return [JoinToken(r["name"], r["secret"], r["expires_at"]) for r in rows]


def delete_join_token(db: Database, secret: str) -> None:
    db.execute("DELETE FROM cluster_join_tokens WHERE secret = ?", (secret,))
