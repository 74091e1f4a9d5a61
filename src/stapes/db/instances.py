"""Instance rows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import orjson

from stapes.api.errors import NotFound
from stapes.db.connection import Database, Row
from stapes.db.projects import get_project


@dataclass
class InstanceRow:
    id: int
    project: str
    name: str
    type: str
    architecture: str
    pool: str
    created_at: str
    description: str = ""
    ephemeral: bool = False
    stateful: bool = False
    config: dict[str, str] = field(default_factory=dict)
    devices: dict[str, dict[str, str]] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=list)
    last_used_at: str = ""
    volume_description: str = ""
    volume_config: dict[str, str] = field(default_factory=dict)
    """What a client set on the instance's storage volume (user.* keys)."""
    location: str = ""
    """The cluster member the instance lives on; empty on a server that is not clustered."""


_SELECT = (
    "SELECT instances.*, projects.name AS project FROM instances "
    "JOIN projects ON projects.id = instances.project_id"
)


_COLUMNS = (
    "id", "project", "name", "type", "architecture", "pool", "created_at", "description",
    "ephemeral", "stateful", "config", "devices", "profiles", "last_used_at",
    "volume_description", "volume_config", "location",
)  # fmt: skip


def _row(r: Row) -> InstanceRow:
    return _rows([r])[0]


def _rows(found: list[Row]) -> list[InstanceRow]:
    """Rows of _SELECT as InstanceRows: each column found by name once for the whole list,
    then by position (a name lookup on every row was a third of a large list's time)."""
    if not found:
        return []
    at = {key: index for index, key in enumerate(found[0].keys())}
    (id_, project, name, type_, architecture, pool, created_at, description, ephemeral,
     stateful, config, devices, profiles, last_used_at, volume_description, volume_config,
     location) = (at[column] for column in _COLUMNS)  # fmt: skip
    loads = orjson.loads
    return [
        InstanceRow(
            id=r[id_],
            project=r[project],
            name=r[name],
            type=r[type_],
            architecture=r[architecture],
            pool=r[pool],
            created_at=r[created_at],
            description=r[description],
            ephemeral=bool(r[ephemeral]),
            stateful=bool(r[stateful]),
            config=loads(r[config]),
            devices=loads(r[devices]),
            profiles=loads(r[profiles]),
            last_used_at=r[last_used_at],
            volume_description=r[volume_description],
            volume_config=loads(r[volume_config]),
            location=r[location],
        )
        for r in found
    ]


def set_volume_settings(
    db: Database, instance_id: int, description: str, config: dict[str, str]
) -> None:
    db.execute(
        "UPDATE instances SET volume_description = ?, volume_config = ? WHERE id = ?",
        (description, json.dumps(config), instance_id),
    )


def list_instances(db: Database, project: str | None) -> list[InstanceRow]:
    if project is None:
        return _rows(db.all(_SELECT + " ORDER BY projects.name, instances.name"))
    return _rows(db.all(_SELECT + " WHERE projects.name = ? ORDER BY instances.name", (project,)))


def instances_at(db: Database, location: str) -> list[InstanceRow]:
    """The instances of every project that live on the cluster member ``location`` (every
    instance of a server that is not clustered: ``location`` is empty then)."""
    order = " ORDER BY projects.name, instances.name"
    return _rows(db.all(_SELECT + " WHERE instances.location = ?" + order, (location,)))


def find_instance(db: Database, project: str, name: str) -> InstanceRow | None:
    r = db.one(_SELECT + " WHERE projects.name = ? AND instances.name = ?", (project, name))
    return _row(r) if r else None


def find_instance_by_id(db: Database, instance_id: int) -> InstanceRow | None:
    r = db.one(_SELECT + " WHERE instances.id = ?", (instance_id,))
    return _row(r) if r else None


def get_instance(db: Database, project: str, name: str) -> InstanceRow:
    row = find_instance(db, project, name)
    if row is None:
        raise NotFound(
            f"Failed to fetch instance {name!r} in project {project!r}: Instance not found"
        )
    return row


def insert_instance(db: Database, row: InstanceRow) -> int:
    pid = get_project(db, row.project).id
    cur = db.execute(
        "INSERT INTO instances (project_id, name, type, architecture, description, ephemeral, "
        "stateful, config, devices, profiles, pool, created_at, last_used_at, location) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            pid,
            row.name,
            row.type,
            row.architecture,
            row.description,
            int(row.ephemeral),
            int(row.stateful),
            json.dumps(row.config),
            json.dumps(row.devices),
            json.dumps(row.profiles),
            row.pool,
            row.created_at,
            row.last_used_at,
            row.location,
        ),
    )
    row.id = int(cur.lastrowid or 0)
    return row.id


def update_instance(db: Database, row: InstanceRow) -> None:
    db.execute(
        "UPDATE instances SET name = ?, architecture = ?, description = ?, ephemeral = ?, "
        "stateful = ?, config = ?, devices = ?, profiles = ?, pool = ?, last_used_at = ? "
        "WHERE id = ?",
        (
            row.name,
            row.architecture,
            row.description,
            int(row.ephemeral),
            int(row.stateful),
            json.dumps(row.config),
            json.dumps(row.devices),
            json.dumps(row.profiles),
            row.pool,
            row.last_used_at,
            row.id,
        ),
    )


def set_project(db: Database, instance_id: int, project: str) -> None:
    """Move an instance row (its snapshots and backups follow its id) to another project."""
    db.execute(
        "UPDATE instances SET project_id = (SELECT id FROM projects WHERE name = ?) WHERE id = ?",
        (project, instance_id),
    )


def set_config_keys(db: Database, instance_id: int, values: dict[str, str | None]) -> None:
    """Set (or with None, remove) config keys of one instance, in one statement."""
    r = db.one("SELECT config FROM instances WHERE id = ?", (instance_id,))
    if r is None:
        return
    config = json.loads(r["config"])
    for key, value in values.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    db.execute("UPDATE instances SET config = ? WHERE id = ?", (json.dumps(config), instance_id))


def delete_instance(db: Database, instance_id: int) -> None:
    db.execute("DELETE FROM instances WHERE id = ?", (instance_id,))
