"""Projects and profiles rows."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field

from stapes.api.errors import NotFound
from stapes.db.connection import Database


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


def list_projects(db: Database) -> list[ProjectRow]:
    return [
        ProjectRow(r["id"], r["name"], r["description"], json.loads(r["config"]))
        for r in db.all("SELECT * FROM projects ORDER BY name")
    ]


def get_project(db: Database, name: str) -> ProjectRow:
    r = db.one("SELECT * FROM projects WHERE name = ?", (name,))
    if r is None:
        raise NotFound(f"Project {name!r} not found")
    return ProjectRow(r["id"], r["name"], r["description"], json.loads(r["config"]))


def ensure_profile(
    db: Database, project: str, name: str, description: str, devices: dict[str, dict[str, str]]
) -> None:
    pid = get_project(db, project).id
    db.execute(
        "INSERT OR IGNORE INTO profiles (project_id, name, description, devices) "
        "VALUES (?, ?, ?, ?)",
        (pid, name, description, json.dumps(devices)),
    )


def _profile(r: sqlite3.Row) -> ProfileRow:
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
    return [
        _profile(r)
        for r in db.all(
            "SELECT profiles.*, projects.name AS project FROM profiles JOIN projects "
            "ON projects.id = profiles.project_id WHERE projects.name = ? ORDER BY profiles.name",
            (project,),
        )
    ]


def find_profile(db: Database, project: str, name: str) -> ProfileRow | None:
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
    pid = get_project(db, project).id
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
    config: dict[str, str] = {}
    devices: dict[str, dict[str, str]] = {}
    for name in profiles:
        profile = find_profile(db, project, name)
        if profile is not None:
            config.update(profile.config)
            devices.update(profile.devices)
    config.update(local_config)
    devices.update(local_devices)
    return config, devices
