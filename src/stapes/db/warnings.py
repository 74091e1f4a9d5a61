"""Warning rows."""

from __future__ import annotations

from dataclasses import dataclass

from stapes.api.errors import NotFound
from stapes.db.connection import Database, Row


@dataclass
class WarningRow:
    id: int
    uuid: str
    type: str
    entity_url: str
    project: str
    severity: str
    status: str
    count: int
    first_seen_at: str
    last_seen_at: str
    last_message: str
    location: str = ""
    """The cluster member that saw it ("" on a server that is not clustered)."""


def _row(r: Row) -> WarningRow:
    return WarningRow(*(r[k] for k in WarningRow.__dataclass_fields__))


def list_warnings(db: Database, project: str | None = None) -> list[WarningRow]:
    if project is None:
        rows = db.all("SELECT * FROM warnings ORDER BY id")
    else:
        rows = db.all("SELECT * FROM warnings WHERE project = ? ORDER BY id", (project,))
    return [_row(r) for r in rows]


def find_warning(
    db: Database, type_: str, entity_url: str, project: str, location: str
) -> WarningRow | None:
    r = db.one(
        "SELECT * FROM warnings WHERE type = ? AND entity_url = ? AND project = ? AND location = ?",
        (type_, entity_url, project, location),
    )
    return _row(r) if r else None


def get_warning(db: Database, uuid: str) -> WarningRow:
    r = db.one("SELECT * FROM warnings WHERE uuid = ?", (uuid,))
    if r is None:
        raise NotFound(f"Warning {uuid!r} not found")
    return _row(r)


def insert_warning(db: Database, row: WarningRow) -> None:
    fields = [k for k in WarningRow.__dataclass_fields__ if k != "id"]
    cur = db.execute(
        f"INSERT INTO warnings ({', '.join(fields)}) VALUES ({', '.join('?' for _ in fields)})",
        tuple(getattr(row, k) for k in fields),
    )
    row.id = int(cur.lastrowid or 0)


def update_warning(db: Database, row: WarningRow) -> None:
    db.execute(
        "UPDATE warnings SET status = ?, count = ?, last_seen_at = ?, last_message = ?"
        " WHERE id = ?",
        (row.status, row.count, row.last_seen_at, row.last_message, row.id),
    )


def delete_warning(db: Database, warning_id: int) -> None:
    db.execute("DELETE FROM warnings WHERE id = ?", (warning_id,))
