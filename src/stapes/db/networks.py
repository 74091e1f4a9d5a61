"""Network rows."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field

from stapes.api.errors import NotFound
from stapes.db.connection import Database


@dataclass
class NetworkRow:
    id: int
    name: str
    type: str
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)


def _row(r: sqlite3.Row) -> NetworkRow:
    return NetworkRow(r["id"], r["name"], r["type"], r["description"], json.loads(r["config"]))


def list_networks(db: Database) -> list[NetworkRow]:
    return [_row(r) for r in db.all("SELECT * FROM networks ORDER BY name")]


def find_network(db: Database, name: str) -> NetworkRow | None:
    r = db.one("SELECT * FROM networks WHERE name = ?", (name,))
    return _row(r) if r else None


def get_network(db: Database, name: str) -> NetworkRow:
    row = find_network(db, name)
    if row is None:
        raise NotFound(f"Network {name!r} not found")
    return row


def insert_network(db: Database, row: NetworkRow) -> None:
    cur = db.execute(
        "INSERT INTO networks (name, type, description, config) VALUES (?, ?, ?, ?)",
        (row.name, row.type, row.description, json.dumps(row.config)),
    )
    row.id = int(cur.lastrowid or 0)


def update_network(db: Database, row: NetworkRow) -> None:
    db.execute(
        "UPDATE networks SET name = ?, description = ?, config = ? WHERE id = ?",
        (row.name, row.description, json.dumps(row.config), row.id),
    )


def delete_network(db: Database, network_id: int) -> None:
    db.execute("DELETE FROM networks WHERE id = ?", (network_id,))
