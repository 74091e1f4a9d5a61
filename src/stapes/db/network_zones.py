"""Rows of network zones (names unique across every project, as Incus keeps them) and of the
records added to them by hand."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from stapes.api.errors import NotFound
from stapes.db.connection import Database, Row


@dataclass
class ZoneRow:
    id: int
    name: str
    project: str = "default"
    """The project that holds it (the one holding its zones: features.networks.zones)."""
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)


@dataclass
class RecordRow:
    id: int
    zone_id: int
    name: str
    description: str = ""
    entries: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, str] = field(default_factory=dict)


def _zone(r: Row) -> ZoneRow:
    return ZoneRow(r["id"], r["name"], r["project"], r["description"], json.loads(r["config"]))


def _record(r: Row) -> RecordRow:
    return RecordRow(
        r["id"],
        r["zone_id"],
        r["name"],
        r["description"],
        json.loads(r["entries"]),
        json.loads(r["config"]),
    )


def list_zones(db: Database, project: str | None) -> list[ZoneRow]:
    """The zones of ``project`` (None: of every project), in the order they were made."""
    if project is None:
        return [_zone(r) for r in db.all("SELECT * FROM network_zones ORDER BY id")]
    rows = db.all("SELECT * FROM network_zones WHERE project = ? ORDER BY id", (project,))
    return [_zone(r) for r in rows]


def find_zone(db: Database, name: str) -> ZoneRow | None:
    """The zone of this name, whatever project holds it."""
    r = db.one("SELECT * FROM network_zones WHERE name = ?", (name,))
    return _zone(r) if r else None


def get_zone(db: Database, project: str, name: str) -> ZoneRow:
    row = find_zone(db, name)
    if row is None or row.project != project:
        raise NotFound("Network zone not found")
    return row


def insert_zone(db: Database, row: ZoneRow) -> None:
    cur = db.execute(
        "INSERT INTO network_zones (project, name, description, config) VALUES (?, ?, ?, ?)",
        (row.project, row.name, row.description, json.dumps(row.config)),
    )
    row.id = int(cur.lastrowid or 0)


def update_zone(db: Database, row: ZoneRow) -> None:
    db.execute(
        "UPDATE network_zones SET description = ?, config = ? WHERE id = ?",
        (row.description, json.dumps(row.config), row.id),
    )


def delete_zone(db: Database, zone_id: int) -> None:
    db.execute("DELETE FROM network_zones WHERE id = ?", (zone_id,))


def list_records(db: Database, zone_id: int) -> list[RecordRow]:
    rows = db.all("SELECT * FROM network_zone_records WHERE zone_id = ? ORDER BY id", (zone_id,))
    return [_record(r) for r in rows]


def find_record(db: Database, zone_id: int, name: str) -> RecordRow | None:
    r = db.one("SELECT * FROM network_zone_records WHERE zone_id = ? AND name = ?", (zone_id, name))
    return _record(r) if r else None


def get_record(db: Database, zone_id: int, name: str) -> RecordRow:
    row = find_record(db, zone_id, name)
    if row is None:
        raise NotFound("Network zone record not found")
    return row


def insert_record(db: Database, row: RecordRow) -> None:
    cur = db.execute(
        "INSERT INTO network_zone_records (zone_id, name, description, entries, config)"
        " VALUES (?, ?, ?, ?, ?)",
        (row.zone_id, row.name, row.description, json.dumps(row.entries), json.dumps(row.config)),
    )
    row.id = int(cur.lastrowid or 0)


def update_record(db: Database, row: RecordRow) -> None:
    db.execute(
        "UPDATE network_zone_records SET description = ?, entries = ?, config = ? WHERE id = ?",
        (row.description, json.dumps(row.entries), json.dumps(row.config), row.id),
    )


def delete_record(db: Database, record_id: int) -> None:
    db.execute("DELETE FROM network_zone_records WHERE id = ?", (record_id,))
