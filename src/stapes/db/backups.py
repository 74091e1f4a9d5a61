"""Backup rows: one per tarball kept under backups/, owned by an instance or a custom volume
(deleted with it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from stapes.api.errors import NotFound
from stapes.api.times import is_past
from stapes.db.connection import Database, Row

Owner = Literal["instance", "volume"]


@dataclass
class BackupRow:
    id: int
    owner: Owner
    owner_id: int
    name: str
    created_at: str
    expires_at: str = ""
    without_snapshots: bool = False
    """instance_only / volume_only on the wire."""
    optimized: bool = False
    compression: str = "gzip"


def _column(owner: Owner) -> str:
    return "instance_id" if owner == "instance" else "volume_id"


def _row(r: Row) -> BackupRow:
    owner: Owner = "instance" if r["instance_id"] is not None else "volume"
    return BackupRow(
        id=r["id"],
        owner=owner,
        owner_id=r[_column(owner)],
        name=r["name"],
        created_at=r["created_at"],
        expires_at=r["expires_at"],
        without_snapshots=bool(r["without_snapshots"]),
        optimized=bool(r["optimized"]),
        compression=r["compression"],
    )


def list_backups(db: Database, owner: Owner, owner_id: int) -> list[BackupRow]:
    rows = db.all(f"SELECT * FROM backups WHERE {_column(owner)} = ? ORDER BY id", (owner_id,))
    return [_row(r) for r in rows]


def find_backup(db: Database, owner: Owner, owner_id: int, name: str) -> BackupRow | None:
    r = db.one(f"SELECT * FROM backups WHERE {_column(owner)} = ? AND name = ?", (owner_id, name))
    return _row(r) if r else None


def get_backup(db: Database, owner: Owner, owner_id: int, name: str) -> BackupRow:
    row = find_backup(db, owner, owner_id, name)
    if row is None:
        # Incus's texts; the name is in the URL the client sent
        raise NotFound(
            "Instance backup not found"
            if owner == "instance"
            else "Storage volume backup not found"
        )
    return row


def insert_backup(db: Database, row: BackupRow) -> int:
    cur = db.execute(
        f"INSERT INTO backups ({_column(row.owner)}, name, created_at, expires_at, "
        "without_snapshots, optimized, compression) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            row.owner_id,
            row.name,
            row.created_at,
            row.expires_at,
            int(row.without_snapshots),
            int(row.optimized),
            row.compression,
        ),
    )
    row.id = int(cur.lastrowid or 0)
    return row.id


def rename_backup(db: Database, backup_id: int, name: str) -> None:
    db.execute("UPDATE backups SET name = ? WHERE id = ?", (name, backup_id))


def delete_backup(db: Database, backup_id: int) -> None:
    db.execute("DELETE FROM backups WHERE id = ?", (backup_id,))


def expired_backups(db: Database, before: datetime) -> list[BackupRow]:
    rows = db.all("SELECT * FROM backups WHERE expires_at != ''")
    return [_row(r) for r in rows if is_past(r["expires_at"], before)]
