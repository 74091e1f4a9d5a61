"""Projects and profiles rows."""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from stapes.api.errors import NotFound
from stapes.db.connection import Database, Row


@dataclass
class ProjectRow:
    id: int
    name: str
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)


@dataclass
class ProfileRow:
    id: int
    project: str
    name: str
    description: str = ""
    config: dict[str, str] = field(default_factory=dict)
    devices: dict[str, dict[str, str]] = field(default_factory=dict)


def ensure_project(db: Database, name: str, description: str, config: dict[str, str]) -> None:
    db.execute(
        "INSERT OR IGNORE INTO projects (name, description, config) VALUES (?, ?, ?)",
        (name, description, json.dumps(config)),
    )


FEATURES = ("images", "profiles", "storage.volumes", "networks")


def feature_project(db: Database, project: str, feature: str) -> str:
    """Where a project keeps what ``features.<feature>`` covers: itself when the feature is on,
    else the default project (whose images, profiles... it then shares)."""
    if project == "default":
        return project
    r = db.one("SELECT config FROM projects WHERE name = ?", (project,))
    if r is None:
        return project  # the caller's lookup says it does not exist
    return project if json.loads(r["config"]).get(f"features.{feature}") == "true" else "default"


def find_project(db: Database, name: str) -> ProjectRow | None:
    r = db.one("SELECT * FROM projects WHERE name = ?", (name,))
    return (
        None
        if r is None
        else ProjectRow(r["id"], r["name"], r["description"], json.loads(r["config"]))
    )


def insert_project(db: Database, row: ProjectRow) -> None:
    cur = db.execute(
        "INSERT INTO projects (name, description, config) VALUES (?, ?, ?)",
        (row.name, row.description, json.dumps(row.config)),
    )
    row.id = int(cur.lastrowid or 0)


def update_project(db: Database, row: ProjectRow) -> None:
    db.execute(
        "UPDATE projects SET name = ?, description = ?, config = ? WHERE id = ?",
        (row.name, row.description, json.dumps(row.config), row.id),
    )


def delete_project(db: Database, project_id: int) -> None:
    db.execute("DELETE FROM projects WHERE id = ?", (project_id,))


def list_projects(db: Database) -> list[ProjectRow]:
    return [
        ProjectRow(r["id"], r["name"], r["description"], json.loads(r["config"]))
        for r in db.all("SELECT * FROM projects ORDER BY name")
    ]


def get_project(db: Database, name: str) -> ProjectRow:
    row = find_project(db, name)
    if row is None:
        raise NotFound("Project not found")  # Incus's words
    return row


def get_target_project(db: Database, name: str) -> ProjectRow:
    """A project a request's body names (a move's or copy's target): the error names it."""
    row = find_project(db, name)
    if row is None:
        raise NotFound(f"Target project {name!r} not found")
    return row


def ensure_profile(
    db: Database, project: str, name: str, description: str, devices: dict[str, dict[str, str]]
) -> None:
    pid = get_project(db, project).id
    db.execute(
        "INSERT OR IGNORE INTO profiles (project_id, name, description, devices) "
        "VALUES (?, ?, ?, ?)",
        (pid, name, description, json.dumps(devices)),
    )


def ensure_root_disk(db: Database, project: str, profile: str, pool: str) -> None:
    """Give a profile a root disk on ``pool`` unless it has one."""
    row = get_profile(db, project, profile)
    if any(d.get("type") == "disk" and d.get("path") == "/" for d in row.devices.values()):
        return
    devices = {**row.devices, "root": {"type": "disk", "path": "/", "pool": pool}}
    db.execute("UPDATE profiles SET devices = ? WHERE id = ?", (json.dumps(devices), row.id))


def _profile(r: Row) -> ProfileRow:
    row = r
    return ProfileRow(
        row["id"],
        row["project"],
        row["name"],
        row["description"],
        json.loads(row["config"]),
        json.loads(row["devices"]),
    )


def list_profiles(db: Database, project: str) -> list[ProfileRow]:
    project = feature_project(db, project, "profiles")
    return [
        _profile(r)
        for r in db.all(
            "SELECT profiles.*, projects.name AS project FROM profiles JOIN projects "
            "ON projects.id = profiles.project_id WHERE projects.name = ? ORDER BY profiles.name",
            (project,),
        )
    ]


def list_all_profiles(db: Database) -> list[ProfileRow]:
    """Every project's own profiles, project by project (as ?all-projects lists them)."""
    return [
        _profile(r)
        for r in db.all(
            "SELECT profiles.*, projects.name AS project FROM profiles JOIN projects "
            "ON projects.id = profiles.project_id ORDER BY projects.id, profiles.name"
        )
    ]


_PROFILES_SEEN: contextvars.ContextVar[dict[tuple[str, str], ProfileRow | None] | None] = (
    contextvars.ContextVar("profiles_seen", default=None)
)
Merged = tuple[dict[str, str], dict[str, dict[str, str]]]
_PROFILES_MERGED: contextvars.ContextVar[dict[tuple[str, tuple[str, ...]], Merged] | None] = (
    contextvars.ContextVar("profiles_merged", default=None)
)


@contextlib.contextmanager
def profiles_read_once() -> Iterator[None]:
    """Within the block (one request's task), each profile is read from the database once:
    a list of many instances expands the same few profiles for each."""
    token = _PROFILES_SEEN.set({})
    merged = _PROFILES_MERGED.set({})
    try:
        yield
    finally:
        _PROFILES_MERGED.reset(merged)
        _PROFILES_SEEN.reset(token)


def find_profile(db: Database, project: str, name: str) -> ProfileRow | None:
    seen = _PROFILES_SEEN.get()
    if seen is None:
        return _find_profile(db, project, name)
    if (project, name) not in seen:
        seen[(project, name)] = _find_profile(db, project, name)
    return seen[(project, name)]


def _find_profile(db: Database, project: str, name: str) -> ProfileRow | None:
    project = feature_project(db, project, "profiles")
    r = db.one(
        "SELECT profiles.*, projects.name AS project FROM profiles JOIN projects "
        "ON projects.id = profiles.project_id WHERE projects.name = ? AND profiles.name = ?",
        (project, name),
    )
    return None if r is None else _profile(r)


def get_profile(db: Database, project: str, name: str) -> ProfileRow:
    row = find_profile(db, project, name)
    if row is None:
        raise NotFound(f"Profile {name!r} not found")
    return row


def create_profile(
    db: Database,
    project: str,
    name: str,
    description: str,
    config: dict[str, str],
    devices: dict[str, dict[str, str]],
) -> None:
    pid = get_project(db, feature_project(db, project, "profiles")).id
    db.execute(
        "INSERT INTO profiles (project_id, name, description, config, devices) "
        "VALUES (?, ?, ?, ?, ?)",
        (pid, name, description, json.dumps(config), json.dumps(devices)),
    )


def update_profile(db: Database, row: ProfileRow) -> None:
    db.execute(
        "UPDATE profiles SET name = ?, description = ?, config = ?, devices = ? WHERE id = ?",
        (row.name, row.description, json.dumps(row.config), json.dumps(row.devices), row.id),
    )


def delete_profile(db: Database, profile_id: int) -> None:
    db.execute("DELETE FROM profiles WHERE id = ?", (profile_id,))


def expand_profiles(
    db: Database,
    project: str,
    profiles: list[str],
    local_config: dict[str, str],
    local_devices: dict[str, dict[str, str]],
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """An instance's expanded config and devices: its profiles in order (a missing one is
    skipped), then its own config and devices on top."""
    config, devices = _profiles_merged(db, project, profiles)
    return {**config, **local_config}, {**devices, **local_devices}


def _profiles_merged(db: Database, project: str, profiles: list[str]) -> Merged:
    """The profiles' config and devices merged in order; within profiles_read_once, once per
    list of profiles (a list of instances has a few such lists)."""
    seen = _PROFILES_MERGED.get()
    key = (project, tuple(profiles))
    if seen is not None and key in seen:
        return seen[key]
    config: dict[str, str] = {}
    devices: dict[str, dict[str, str]] = {}
    for name in profiles:
        profile = find_profile(db, project, name)
        if profile is not None:
            config.update(profile.config)
            devices.update(profile.devices)
    if seen is not None:
        seen[key] = (config, devices)
    return config, devices


def project_usage(db: Database, project_id: int) -> dict[str, list[str]]:
    """What a project holds itself (not what it shares with the default project): instance
    names, image fingerprints, profile names, custom volumes (pool/name)."""
    return {
        "instances": [
            r["name"]
            for r in db.all("SELECT name FROM instances WHERE project_id = ?", (project_id,))
        ],
        "images": [
            r["fingerprint"]
            for r in db.all("SELECT fingerprint FROM images WHERE project_id = ?", (project_id,))
        ],
        "profiles": [
            r["name"]
            for r in db.all("SELECT name FROM profiles WHERE project_id = ?", (project_id,))
        ],
        "networks": [
            r["name"]
            for r in db.all(
                "SELECT networks.name AS name FROM networks JOIN projects"
                " ON projects.name = networks.project WHERE projects.id = ?",
                (project_id,),
            )
        ],
        "volumes": [
            f"{r['pool']}/{r['name']}"
            for r in db.all(
                "SELECT storage_pools.name AS pool, storage_volumes.name AS name"
                " FROM storage_volumes JOIN storage_pools"
                " ON storage_pools.id = storage_volumes.pool_id"
                " WHERE storage_volumes.project_id = ? AND storage_volumes.type = 'custom'",
                (project_id,),
            )
        ],
    }


def delete_profiles_of(db: Database, project_id: int) -> None:
    db.execute("DELETE FROM profiles WHERE project_id = ?", (project_id,))
