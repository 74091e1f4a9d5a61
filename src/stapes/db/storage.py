"""Storage pool rows."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field

from stapes.api.errors import NotFound
from stapes.db.connection import Database


@dataclass
class PoolRow:
    id: int
    name: str
    driver: str
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)
    status: str = "Created"


def _pool(r: sqlite3.Row) -> PoolRow:
    return PoolRow(
        r["id"],
        r["name"],
        r["driver"],
        r["description"],
        json.loads(r["config"]),
        r["status"],
    )


def list_pools(db: Database) -> list[PoolRow]:
    return [_pool(r) for r in db.all("SELECT * FROM storage_pools ORDER BY name")]


def get_pool(db: Database, name: str) -> PoolRow:
    r = db.one("SELECT * FROM storage_pools WHERE name = ?", (name,))
    if r is None:
        raise NotFound(f"Storage pool {name!r} not found")
    return _pool(r)


def create_pool(
    db: Database, name: str, driver: str, description: str, config: dict[str, str]
) -> None:
    db.execute(
        "INSERT INTO storage_pools (name, driver, description, config) VALUES (?, ?, ?, ?)",
        (name, driver, description, json.dumps(config)),
    )
