"""Storage pool rows, custom volume rows and volume snapshot rows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from stapes.api.errors import NotFound
from stapes.api.times import is_past
from stapes.db.connection import Database, Row
from stapes.db.local import keep_member_values, with_member_values
from stapes.db.projects import feature_project, get_project


@dataclass
class PoolRow:
    id: int
    name: str
    driver: str
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)
    status: str = "Created"


MEMBER_POOL_KEYS = frozenset(
    {"size", "source", "source.wipe", "zfs.pool_name", "lvm.thinpool_name", "lvm.vg_name"}
)
"""A pool's keys that each cluster member has its own value of (its disk, its path): on a
member they live in its local database (db/local.py), the rest in the cluster's."""


def _pool(db: Database, r: Row) -> PoolRow:
    config = with_member_values(
        db, "storage-pool", r["name"], json.loads(r["config"]), MEMBER_POOL_KEYS
    )
    return PoolRow(r["id"], r["name"], r["driver"], r["description"], config, r["status"])


def _shared_config(db: Database, name: str, config: dict[str, str]) -> dict[str, str]:
    return keep_member_values(db, "storage-pool", name, config, MEMBER_POOL_KEYS)


def list_pools(db: Database) -> list[PoolRow]:
    return [_pool(db, r) for r in db.all("SELECT * FROM storage_pools ORDER BY name")]


def find_pool(db: Database, name: str) -> PoolRow | None:
    r = db.one("SELECT * FROM storage_pools WHERE name = ?", (name,))
    return _pool(db, r) if r else None


def get_pool(db: Database, name: str) -> PoolRow:
    row = find_pool(db, name)
    if row is None:
        raise NotFound(f"Storage pool {name!r} not found")
    return row


def create_pool(
    db: Database, name: str, driver: str, description: str, config: dict[str, str]
) -> int:
    shared = _shared_config(db, name, config)
    cur = db.execute(
        "INSERT INTO storage_pools (name, driver, description, config) VALUES (?, ?, ?, ?)",
        (name, driver, description, json.dumps(shared)),
    )
    return int(cur.lastrowid or 0)


def update_pool(db: Database, row: PoolRow) -> None:
    shared = _shared_config(db, row.name, row.config)
    db.execute(
        "UPDATE storage_pools SET description = ?, config = ?, status = ? WHERE id = ?",
        (row.description, json.dumps(shared), row.status, row.id),
    )


def set_pool_status(db: Database, name: str, status: str) -> None:
    """Created, Pending (a cluster pool defined on some members only) or Errored."""
    db.execute("UPDATE storage_pools SET status = ? WHERE name = ?", (status, name))


def delete_pool(db: Database, pool_id: int) -> None:
    r = db.one("SELECT name FROM storage_pools WHERE id = ?", (pool_id,))
    db.execute("DELETE FROM storage_pools WHERE id = ?", (pool_id,))
    if r is not None:
        keep_member_values(db, "storage-pool", r["name"], {}, MEMBER_POOL_KEYS)


# -- custom volumes ------------------------------------------------------------------------------


@dataclass
class VolumeRow:
    id: int
    pool: str
    project: str
    name: str
    type: str
    content_type: str
    created_at: str
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)


_VOLUMES = (
    "SELECT storage_volumes.*, storage_pools.name AS pool, projects.name AS project "
    "FROM storage_volumes JOIN storage_pools ON storage_pools.id = storage_volumes.pool_id "
    "JOIN projects ON projects.id = storage_volumes.project_id"
)


def _volume(r: Row) -> VolumeRow:
    return VolumeRow(
        id=r["id"],
        pool=r["pool"],
        project=r["project"],
        name=r["name"],
        type=r["type"],
        content_type=r["content_type"],
        created_at=r["created_at"],
        description=r["description"],
        config=json.loads(r["config"]),
    )


def list_volumes(db: Database, pool: str | None, project: str | None) -> list[VolumeRow]:
    """Custom volumes of one pool (or all), in one project (or all), by name."""
    where, params = [], []
    if pool is not None:
        where.append("storage_pools.name = ?")
        params.append(pool)
    if project is not None:
        where.append("projects.name = ?")
        params.append(feature_project(db, project, "storage.volumes"))
    sql = _VOLUMES + (" WHERE " + " AND ".join(where) if where else "")
    return [_volume(r) for r in db.all(sql + " ORDER BY storage_volumes.name", tuple(params))]


def find_volume(
    db: Database, pool: str, project: str, vol_type: str, name: str
) -> VolumeRow | None:
    if vol_type == "custom":
        project = feature_project(db, project, "storage.volumes")
    r = db.one(
        _VOLUMES + " WHERE storage_pools.name = ? AND projects.name = ? "
        "AND storage_volumes.type = ? AND storage_volumes.name = ?",
        (pool, project, vol_type, name),
    )
    return _volume(r) if r else None


def get_volume(db: Database, pool: str, project: str, vol_type: str, name: str) -> VolumeRow:
    row = find_volume(db, pool, project, vol_type, name)
    if row is None:
        raise NotFound(f"Storage volume {vol_type}/{name} not found on pool {pool!r}")
    return row


def insert_volume(db: Database, row: VolumeRow) -> int:
    pool = get_pool(db, row.pool)
    cur = db.execute(
        "INSERT INTO storage_volumes (pool_id, project_id, name, type, content_type, "
        "description, config, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            pool.id,
            get_project(
                db,
                feature_project(db, row.project, "storage.volumes")
                if row.type == "custom"
                else row.project,
            ).id,
            row.name,
            row.type,
            row.content_type,
            row.description,
            json.dumps(row.config),
            row.created_at,
        ),
    )
    row.id = int(cur.lastrowid or 0)
    return row.id


def update_volume(db: Database, row: VolumeRow) -> None:
    """Name, description and config; moving to another pool deletes and inserts."""
    db.execute(
        "UPDATE storage_volumes SET name = ?, description = ?, config = ? WHERE id = ?",
        (row.name, row.description, json.dumps(row.config), row.id),
    )


def set_volume_project(db: Database, volume_id: int, project: str) -> None:
    db.execute(
        "UPDATE storage_volumes SET project_id = (SELECT id FROM projects WHERE name = ?) "
        "WHERE id = ?",
        (project, volume_id),
    )


def delete_volume(db: Database, volume_id: int) -> None:
    db.execute("DELETE FROM storage_volumes WHERE id = ?", (volume_id,))


# -- volume snapshots ----------------------------------------------------------------------------


@dataclass
class VolumeSnapshotRow:
    id: int
    volume_id: int
    name: str
    created_at: str
    expires_at: str = ""
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)


def _volume_snapshot(r: Row) -> VolumeSnapshotRow:
    return VolumeSnapshotRow(
        id=r["id"],
        volume_id=r["volume_id"],
        name=r["name"],
        created_at=r["created_at"],
        expires_at=r["expires_at"],
        description=r["description"],
        config=json.loads(r["config"]),
    )


def list_volume_snapshots(db: Database, volume_id: int) -> list[VolumeSnapshotRow]:
    """Oldest first."""
    rows = db.all(
        "SELECT * FROM storage_volume_snapshots WHERE volume_id = ? ORDER BY id",
        (volume_id,),
    )
    return [_volume_snapshot(r) for r in rows]


def find_volume_snapshot(db: Database, volume_id: int, name: str) -> VolumeSnapshotRow | None:
    r = db.one(
        "SELECT * FROM storage_volume_snapshots WHERE volume_id = ? AND name = ?",
        (volume_id, name),
    )
    return _volume_snapshot(r) if r else None


def insert_volume_snapshot(db: Database, row: VolumeSnapshotRow) -> int:
    cur = db.execute(
        "INSERT INTO storage_volume_snapshots (volume_id, name, description, config, created_at, "
        "expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        (
            row.volume_id,
            row.name,
            row.description,
            json.dumps(row.config),
            row.created_at,
            row.expires_at,
        ),
    )
    row.id = int(cur.lastrowid or 0)
    return row.id


def update_volume_snapshot(db: Database, row: VolumeSnapshotRow) -> None:
    db.execute(
        "UPDATE storage_volume_snapshots SET name = ?, description = ?, expires_at = ? "
        "WHERE id = ?",
        (row.name, row.description, row.expires_at, row.id),
    )


def delete_volume_snapshot(db: Database, snapshot_id: int) -> None:
    db.execute("DELETE FROM storage_volume_snapshots WHERE id = ?", (snapshot_id,))


def expired_volume_snapshots(db: Database, before: datetime) -> list[tuple[int, str]]:
    """(volume id, snapshot name) of volume snapshots whose expiry is set and past."""
    rows = db.all(
        "SELECT volume_id, name, expires_at FROM storage_volume_snapshots WHERE expires_at != ''"
    )
    return [(r["volume_id"], r["name"]) for r in rows if is_past(r["expires_at"], before)]
