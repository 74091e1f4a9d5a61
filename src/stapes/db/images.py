"""Image and image alias rows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from stapes.api.errors import NotFound
from stapes.db.connection import Database, Row
from stapes.db.projects import feature_project, get_project


@dataclass
class ImageRow:
    id: int
    project: str
    fingerprint: str
    filename: str
    size: int
    type: str
    architecture: str
    created_at: str
    uploaded_at: str
    public: bool = False
    auto_update: bool = False
    cached: bool = False
    split: bool = False
    properties: dict[str, str] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=lambda: ["default"])
    last_used_at: str = ""
    expires_at: str = ""


@dataclass
class AliasRow:
    name: str
    fingerprint: str
    description: str
    type: str


_SELECT = (
    "SELECT images.*, projects.name AS project FROM images "
    "JOIN projects ON projects.id = images.project_id"
)


def _image(r: Row) -> ImageRow:
    return ImageRow(
        id=r["id"],
        project=r["project"],
        fingerprint=r["fingerprint"],
        filename=r["filename"],
        size=r["size"],
        type=r["type"],
        architecture=r["architecture"],
        created_at=r["created_at"],
        uploaded_at=r["uploaded_at"],
        public=bool(r["public"]),
        auto_update=bool(r["auto_update"]),
        cached=bool(r["cached"]),
        split=bool(r["split"]),
        properties=json.loads(r["properties"]),
        profiles=json.loads(r["profiles"]),
        last_used_at=r["last_used_at"],
        expires_at=r["expires_at"],
    )


def list_images(db: Database, project: str | None) -> list[ImageRow]:
    if project is not None:
        project = feature_project(db, project, "images")
    if project is None:
        return [_image(r) for r in db.all(_SELECT + " ORDER BY images.fingerprint")]
    return [
        _image(r)
        for r in db.all(
            _SELECT + " WHERE projects.name = ? ORDER BY images.fingerprint", (project,)
        )
    ]


def find_images_by_prefix(db: Database, project: str, prefix: str) -> list[ImageRow]:
    project = feature_project(db, project, "images")
    return [
        _image(r)
        for r in db.all(
            _SELECT + " WHERE projects.name = ? AND images.fingerprint LIKE ?",
            (project, prefix.replace("%", "").replace("_", "") + "%"),
        )
    ]


def insert_image(db: Database, row: ImageRow) -> int:
    pid = get_project(db, feature_project(db, row.project, "images")).id
    cur = db.execute(
        "INSERT INTO images (project_id, fingerprint, filename, size, type, architecture, public, "
        "auto_update, cached, split, properties, profiles, created_at, uploaded_at, last_used_at, "
        "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            pid,
            row.fingerprint,
            row.filename,
            row.size,
            row.type,
            row.architecture,
            int(row.public),
            int(row.auto_update),
            int(row.cached),
            int(row.split),
            json.dumps(row.properties),
            json.dumps(row.profiles),
            row.created_at,
            row.uploaded_at,
            row.last_used_at,
            row.expires_at,
        ),
    )
    row.id = int(cur.lastrowid or 0)
    return row.id


def update_image(db: Database, row: ImageRow) -> None:
    db.execute(
        "UPDATE images SET public = ?, auto_update = ?, cached = ?, properties = ?, profiles = ?, "
        "last_used_at = ?, expires_at = ? WHERE id = ?",
        (
            int(row.public),
            int(row.auto_update),
            int(row.cached),
            json.dumps(row.properties),
            json.dumps(row.profiles),
            row.last_used_at,
            row.expires_at,
            row.id,
        ),
    )


def delete_image(db: Database, image_id: int) -> None:
    db.execute("DELETE FROM images WHERE id = ?", (image_id,))


_ALIAS_SELECT = (
    "SELECT image_aliases.name, image_aliases.description, images.fingerprint, "
    "images.type FROM image_aliases JOIN images ON images.id = image_aliases.image_id "
    "JOIN projects ON projects.id = image_aliases.project_id WHERE projects.name = ?"
)


def list_aliases(db: Database, project: str) -> list[AliasRow]:
    project = feature_project(db, project, "images")
    return [
        AliasRow(r["name"], r["fingerprint"], r["description"], r["type"])
        for r in db.all(_ALIAS_SELECT + " ORDER BY image_aliases.name", (project,))
    ]


def aliases_of(db: Database, image_id: int) -> list[AliasRow]:
    return [
        AliasRow(r["name"], "", r["description"], "")
        for r in db.all(
            "SELECT name, description FROM image_aliases WHERE image_id = ? ORDER BY name",
            (image_id,),
        )
    ]


def find_alias(db: Database, project: str, name: str) -> AliasRow | None:
    project = feature_project(db, project, "images")
    r = db.one(_ALIAS_SELECT + " AND image_aliases.name = ?", (project, name))
    return AliasRow(r["name"], r["fingerprint"], r["description"], r["type"]) if r else None


def get_alias(db: Database, project: str, name: str) -> AliasRow:
    alias = find_alias(db, project, name)
    if alias is None:
        raise NotFound(f"Image alias {name!r} not found")
    return alias


def insert_alias(db: Database, project: str, name: str, image_id: int, description: str) -> None:
    pid = get_project(db, feature_project(db, project, "images")).id
    db.execute(
        "INSERT INTO image_aliases (project_id, name, image_id, description) VALUES (?, ?, ?, ?)",
        (pid, name, image_id, description),
    )


def update_alias(
    db: Database,
    project: str,
    name: str,
    image_id: int,
    description: str,
    new_name: str | None = None,
) -> None:
    pid = get_project(db, feature_project(db, project, "images")).id
    db.execute(
        "UPDATE image_aliases SET name = ?, image_id = ?, description = ? "
        "WHERE project_id = ? AND name = ?",
        (new_name or name, image_id, description, pid, name),
    )


def delete_alias(db: Database, project: str, name: str) -> None:
    pid = get_project(db, feature_project(db, project, "images")).id
    db.execute("DELETE FROM image_aliases WHERE project_id = ? AND name = ?", (pid, name))


@dataclass
class ImageSourceRow:
    image_id: int
    server: str
    protocol: str
    alias: str = ""
    certificate: str = ""


def set_source(db: Database, row: ImageSourceRow) -> None:
    db.execute(
        "INSERT OR REPLACE INTO image_sources (image_id, server, protocol, alias, certificate)"
        " VALUES (?, ?, ?, ?, ?)",
        (row.image_id, row.server, row.protocol, row.alias, row.certificate),
    )


def find_source(db: Database, image_id: int) -> ImageSourceRow | None:
    r = db.one("SELECT * FROM image_sources WHERE image_id = ?", (image_id,))
    if r is None:
        return None
    return ImageSourceRow(r["image_id"], r["server"], r["protocol"], r["alias"], r["certificate"])


def move_aliases(db: Database, old_id: int, new_id: int) -> None:
    db.execute("UPDATE image_aliases SET image_id = ? WHERE image_id = ?", (new_id, old_id))
