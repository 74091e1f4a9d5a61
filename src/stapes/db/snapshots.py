"""Instance snapshot rows: a frozen copy of an instance's writable fields, owned by the instance
(deleted with it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from stapes.api.errors import NotFound
from stapes.api.times import is_past
from stapes.db.connection import Database, Row


@dataclass
class SnapshotRow:
    id: int
    instance_id: int
    name: str
    architecture: str
    created_at: str
    expires_at: str = ""
    description: str = ""
    ephemeral: bool = False
    stateful: bool = False
    config: dict[str, str] = field(default_factory=dict)
    devices: dict[str, dict[str, str]] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=list)
    last_used_at: str = ""


def _decoded(r: Row, column: str) -> Any:
    return orjson.loads(r[column])


def _row(r: Row, decode: Callable[[Row, str], Any] = _decoded) -> SnapshotRow:
    return SnapshotRow(
        id=r["id"],
        instance_id=r["instance_id"],
        name=r["name"],
        architecture=r["architecture"],
        created_at=r["created_at"],
        expires_at=r["expires_at"],
        description=r["description"],
        ephemeral=bool(r["ephemeral"]),
        stateful=bool(r["stateful"]),
        config=decode(r, "config"),
        devices=decode(r, "devices"),
        profiles=decode(r, "profiles"),
        last_used_at=r["last_used_at"],
    )


def list_snapshots(db: Database, instance_id: int) -> list[SnapshotRow]:
    """Oldest first, as Incus lists them."""
    rows = db.all(
        "SELECT * FROM instance_snapshots WHERE instance_id = ? ORDER BY id",
        (instance_id,),
    )
    return [_row(r) for r in rows]


def snapshots_to_show(db: Database, instance_id: int) -> list[SnapshotRow]:
    """As list_snapshots, for rendering only: rows whose config, devices or profiles have the
    same text share one decoded object, so nothing may change them. The newest snapshot's texts
    are compared in SQLite (NULLIF) and not even read again for the others that have them: an
    instance's snapshots mostly do, and 3,000 snapshots' texts are ~6 MB."""
    newest = db.one(
        "SELECT config, devices, profiles FROM instance_snapshots WHERE instance_id = ? "
        "ORDER BY id DESC LIMIT 1",
        (instance_id,),
    )
    if newest is None:
        return []
    rows = db.all(
        "SELECT id, instance_id, name, architecture, created_at, expires_at, description, "
        "ephemeral, stateful, last_used_at, NULLIF(config, ?) AS config, "
        "NULLIF(devices, ?) AS devices, NULLIF(profiles, ?) AS profiles "
        "FROM instance_snapshots WHERE instance_id = ? ORDER BY id",
        (newest["config"], newest["devices"], newest["profiles"], instance_id),
    )
    decoded: dict[str, Any] = {}
    common = {column: orjson.loads(newest[column]) for column in ("config", "devices", "profiles")}

    def once(r: Row, column: str) -> Any:
        text = r[column]
        if text is None:  # the newest's
            return common[column]
        if text not in decoded:
            decoded[text] = orjson.loads(text)
        return decoded[text]

    return [_row(r, once) for r in rows]


def snapshot_names(db: Database, instance_id: int) -> list[str]:
    """Oldest first, without decoding their config (a list of URLs needs only names)."""
    rows = db.all(
        "SELECT name FROM instance_snapshots WHERE instance_id = ? ORDER BY id", (instance_id,)
    )
    return [r[0] for r in rows]


def count_snapshots(db: Database) -> dict[int, int]:
    """Snapshots per instance id, for listings."""
    rows = db.all("SELECT instance_id, COUNT(*) AS n FROM instance_snapshots GROUP BY instance_id")
    return {r["instance_id"]: r["n"] for r in rows}


def find_snapshot(db: Database, instance_id: int, name: str) -> SnapshotRow | None:
    r = db.one(
        "SELECT * FROM instance_snapshots WHERE instance_id = ? AND name = ?", (instance_id, name)
    )
    return _row(r) if r else None


def get_snapshot(db: Database, instance_id: int, instance: str, name: str) -> SnapshotRow:
    row = find_snapshot(db, instance_id, name)
    if row is None:
        raise NotFound(f"Snapshot {name!r} of instance {instance!r} not found")
    return row


def expired(db: Database, before: datetime) -> list[tuple[int, str]]:
    """(instance id, snapshot name) of snapshots whose expiry is set and earlier than
    ``before`` (compared as times: a client's offset is kept in the text)."""
    rows = db.all(
        "SELECT instance_id, name, expires_at FROM instance_snapshots WHERE expires_at != ''"
    )
    return [(r["instance_id"], r["name"]) for r in rows if is_past(r["expires_at"], before)]


def insert_snapshot(db: Database, row: SnapshotRow) -> int:
    cur = db.execute(
        "INSERT INTO instance_snapshots (instance_id, name, description, architecture, ephemeral, "
        "stateful, config, devices, profiles, created_at, expires_at, last_used_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.instance_id,
            row.name,
            row.description,
            row.architecture,
            int(row.ephemeral),
            int(row.stateful),
            json.dumps(row.config),
            json.dumps(row.devices),
            json.dumps(row.profiles),
            row.created_at,
            row.expires_at,
            row.last_used_at,
        ),
    )
    row.id = int(cur.lastrowid or 0)
    return row.id


def update_snapshot(db: Database, row: SnapshotRow) -> None:
    """The fields a snapshot can change after it is taken: name, expiry, description."""
    db.execute(
        "UPDATE instance_snapshots SET name = ?, expires_at = ?, description = ? WHERE id = ?",
        (row.name, row.expires_at, row.description, row.id),
    )


def delete_snapshot(db: Database, snapshot_id: int) -> None:
    db.execute("DELETE FROM instance_snapshots WHERE id = ?", (snapshot_id,))
