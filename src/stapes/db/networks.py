"""Network rows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from stapes.api.errors import NotFound
from stapes.db.connection import Database, Row
from stapes.db.local import keep_member_values, with_member_values
from stapes.db.projects import feature_project

MEMBER_NETWORK_KEYS = frozenset(
    {"bgp.ipv4.nexthop", "bgp.ipv6.nexthop", "bridge.external_interfaces", "parent"}
)
"""A network's keys that each cluster member has its own value of (its uplinks): on a
member they live in its local database (db/local.py), the rest in the cluster's."""


@dataclass
class NetworkRow:
    id: int
    name: str
    type: str
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)
    project: str = "default"
    status: str = "Created"
    """Created, or Pending: a cluster network given member values (``--target``) and not yet
    made on every member."""


def _row(db: Database, r: Row) -> NetworkRow:
    config = with_member_values(
        db, "network", r["name"], json.loads(r["config"]), MEMBER_NETWORK_KEYS
    )
    return NetworkRow(
        r["id"], r["name"], r["type"], r["description"], config, r["project"], r["status"]
    )


def list_networks(db: Database, project: str | None = None) -> list[NetworkRow]:
    """The networks a project sees (its own with features.networks, else the default
    project's), or every network on the host (``project`` None)."""
    if project is None:
        return [_row(db, r) for r in db.all("SELECT * FROM networks ORDER BY name")]
    project = feature_project(db, project, "networks")
    rows = db.all("SELECT * FROM networks WHERE project = ? ORDER BY name", (project,))
    return [_row(db, r) for r in rows]


def find_network(db: Database, name: str, project: str = "default") -> NetworkRow | None:
    """A network by name as ``project`` sees it."""
    project = feature_project(db, project, "networks")
    r = db.one("SELECT * FROM networks WHERE name = ? AND project = ?", (name, project))
    return _row(db, r) if r else None


def name_taken(db: Database, name: str) -> bool:
    """Network names are the host's interface names: unique across projects."""
    return db.one("SELECT 1 FROM networks WHERE name = ?", (name,)) is not None


def get_network(db: Database, name: str, project: str = "default") -> NetworkRow:
    row = find_network(db, name, project)
    if row is None:
        raise NotFound(f"Network {name!r} not found")
    return row


def _shared(db: Database, row: NetworkRow) -> str:
    """The config the cluster keeps (this member's values of its member keys kept aside)."""
    return json.dumps(keep_member_values(db, "network", row.name, row.config, MEMBER_NETWORK_KEYS))


def insert_network(db: Database, row: NetworkRow) -> None:
    cur = db.execute(
        "INSERT INTO networks (name, type, description, config, project, status) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (row.name, row.type, row.description, _shared(db, row), row.project, row.status),
    )
    row.id = int(cur.lastrowid or 0)


def update_network(db: Database, row: NetworkRow, old_name: str = "") -> None:
    """``row`` written back (``old_name``: its name before a rename)."""
    if old_name and old_name != row.name:
        keep_member_values(db, "network", old_name, {}, MEMBER_NETWORK_KEYS)
    db.execute(
        "UPDATE networks SET name = ?, description = ?, config = ?, status = ? WHERE id = ?",
        (row.name, row.description, _shared(db, row), row.status, row.id),
    )


def delete_network(db: Database, network_id: int) -> None:
    r = db.one("SELECT name FROM networks WHERE id = ?", (network_id,))
    db.execute("DELETE FROM networks WHERE id = ?", (network_id,))
    if r is not None:
        keep_member_values(db, "network", r["name"], {}, MEMBER_NETWORK_KEYS)
