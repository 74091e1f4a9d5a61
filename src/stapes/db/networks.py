"""Network rows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from stapes.api.errors import NotFound
from stapes.db.connection import Database, Row
from stapes.db.projects import feature_project


@dataclass
class NetworkRow:
    id: int
    name: str
    type: str
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)
    project: str = "default"


def _row(r: Row) -> NetworkRow:
    return NetworkRow(
        r["id"], r["name"], r["type"], r["description"], json.loads(r["config"]), r["project"]
    )


def list_networks(db: Database, project: str | None = None) -> list[NetworkRow]:
    """The networks a project sees (its own with features.networks, else the default
    project's), or every network on the host (``project`` None)."""
    if project is None:
        return [_row(r) for r in db.all("SELECT * FROM networks ORDER BY name")]
    project = feature_project(db, project, "networks")
    rows = db.all("SELECT * FROM networks WHERE project = ? ORDER BY name", (project,))
    return [_row(r) for r in rows]


def find_network(db: Database, name: str, project: str = "default") -> NetworkRow | None:
    """A network by name as ``project`` sees it."""
    project = feature_project(db, project, "networks")
    r = db.one("SELECT * FROM networks WHERE name = ? AND project = ?", (name, project))
    return _row(r) if r else None


def name_taken(db: Database, name: str) -> bool:
    """Network names are the host's interface names: unique across projects."""
    return db.one("SELECT 1 FROM networks WHERE name = ?", (name,)) is not None


def get_network(db: Database, name: str, project: str = "default") -> NetworkRow:
    row = find_network(db, name, project)
    if row is None:
        raise NotFound(f"Network {name!r} not found")
    return row


def insert_network(db: Database, row: NetworkRow) -> None:
    cur = db.execute(
        "INSERT INTO networks (name, type, description, config, project) VALUES (?, ?, ?, ?, ?)",
        (row.name, row.type, row.description, json.dumps(row.config), row.project),
    )
    row.id = int(cur.lastrowid or 0)


def update_network(db: Database, row: NetworkRow) -> None:
    db.execute(
        "UPDATE networks SET name = ?, description = ?, config = ? WHERE id = ?",
        (row.name, row.description, json.dumps(row.config), row.id),
    )


def delete_network(db: Database, network_id: int) -> None:
    db.execute("DELETE FROM networks WHERE id = ?", (network_id,))
