"""Projects: create, update, rename, delete (only when empty), and their state (what they use
against their limits). A project with ``features.profiles`` gets a ``default`` profile of its
own, without devices, as in Incus."""

from __future__ import annotations

import re
from typing import Any

from stapes.api.errors import BadRequest, Conflict
from stapes.api.lifecycle import ProjectAction
from stapes.api.project import ProjectPut, ProjectsPost
from stapes.api.urls import instance_url, profile_url, project_url
from stapes.config import validate as v
from stapes.db import projects as q
from stapes.db.connection import Database
from stapes.project import keys, limits
from stapes.runtime.events import EventBus

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")


def check_name(name: str) -> None:
    """Incus's rules, tighter: no underscore (an instance's files are ``<project>_<name>``,
    so ``a_b``/``c`` and ``a``/``b_c`` must never both exist), slash, blank or quote."""
    if "_" in name:
        raise BadRequest(
            f"Invalid project name {name!r}: Project names may not contain underscores"
        )
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise BadRequest(
            f"Invalid project name {name!r}: 1-63 letters, digits, dots and dashes, starting "
            "with a letter or digit"
        )


class Projects:
    def __init__(self, db: Database, events: EventBus) -> None:
        self.db = db
        self.events = events

    def list_projects(self) -> list[q.ProjectRow]:
        return q.list_projects(self.db)

    def get(self, name: str) -> q.ProjectRow:
        return q.get_project(self.db, name)

    def render(self, row: q.ProjectRow) -> dict[str, Any]:
        usage = q.project_usage(self.db, row.id)
        suffix = "" if row.name == "default" else f"?project={row.name}"
        used_by = [instance_url(n, row.name) for n in usage["instances"]]
        used_by += [f"/1.0/images/{f}{suffix}" for f in usage["images"]]
        used_by += [profile_url(n, row.name) for n in usage["profiles"]]
        used_by += [f"/1.0/networks/{n}{suffix}" for n in usage["networks"]]
        used_by += [
            f"/1.0/storage-pools/{pool}/volumes/custom/{name}{suffix}"
            for pool, name in (x.split("/", 1) for x in usage["volumes"])
        ]
        return {
            "name": row.name,
            "description": row.description,
            "config": row.config,
            "used_by": used_by,
        }

    @staticmethod
    def writable(row: q.ProjectRow) -> dict[str, Any]:
        return {"config": row.config, "description": row.description}

    def _check_config(self, name: str, config: dict[str, str]) -> None:
        keys.validate(config)

    def _empty(self, row: q.ProjectRow) -> bool:
        usage = q.project_usage(self.db, row.id)
        return not (
            usage["instances"]
            or usage["images"]
            or usage["volumes"]
            or usage["networks"]
            or [p for p in usage["profiles"] if p != "default"]
        )

    def create(self, req: ProjectsPost) -> None:
        check_name(req.name)
        config = {k: val for k, val in req.config.items() if val != ""}
        config = {
            **keys.NEW_PROJECT_FEATURES,
            **config,
        }  # Incus's default for each feature not given
        self._check_config(req.name, config)
        if q.find_project(self.db, req.name) is not None:
            raise Conflict(f"Project {req.name!r} already exists")
        row = q.ProjectRow(0, req.name, req.description, config)
        with self.db.transaction():
            q.insert_project(self.db, row)
            if v.parse_bool(config.get("features.profiles", "false")):
                q.create_profile(
                    self.db,
                    row.name,
                    "default",
                    f"Default Incus profile for project {row.name}",
                    {},
                    {},
                )
        self.events.lifecycle(ProjectAction.CREATED, project_url(row.name))

    def update(self, row: q.ProjectRow, put: ProjectPut) -> None:
        # a key sent empty (unset) must be a key too: incus project unset of a key no project
        # has is an error, as in Incus
        keys.check_names(put.config)
        config = {k: val for k, val in put.config.items() if val != ""}
        self._check_config(row.name, config)
        changed = {
            k for k in keys.FEATURE_KEYS if config.get(k, "false") != row.config.get(k, "false")
        }
        if changed and row.name == "default":
            raise BadRequest("You can't change the features of the default project")
        if changed and not self._empty(row):
            for key in sorted(changed):
                enabled = v.parse_bool(config.get(key, "false"))
                if not (enabled and key in keys.CHANGEABLE_WHEN_USED):
                    how = "enabled" if enabled else "disabled"
                    raise BadRequest(
                        f'Project feature "{key}" cannot be {how} on non-empty projects'
                    )
        limits.check_project(self.db, row.name, config)
        gains_profiles = "features.profiles" in changed and v.parse_bool(
            config.get("features.profiles", "false")
        )
        row.config, row.description = config, put.description
        with self.db.transaction():
            q.update_project(self.db, row)
            if gains_profiles:
                q.create_profile(
                    self.db,
                    row.name,
                    "default",
                    f"Default Incus profile for project {row.name}",
                    {},
                    {},
                )
            elif "features.profiles" in changed:
                q.delete_profiles_of(self.db, row.id)
        self.events.lifecycle(ProjectAction.UPDATED, project_url(row.name))

    def rename(self, row: q.ProjectRow, new_name: str) -> None:
        check_name(new_name)
        if row.name == "default":
            raise BadRequest("The default project cannot be renamed")
        if q.find_project(self.db, new_name) is not None:
            raise Conflict(f"Project {new_name!r} already exists")
        if not self._empty(row):
            raise BadRequest(f"Only empty projects can be renamed: {row.name!r} is in use")
        old, row.name = row.name, new_name
        with self.db.transaction():
            q.update_project(self.db, row)
        self.events.lifecycle(
            ProjectAction.RENAMED, project_url(new_name), context={"old_name": old}
        )

    def delete(self, row: q.ProjectRow) -> None:
        if row.name == "default":
            raise BadRequest("The default project cannot be deleted")
        if not self._empty(row):
            raise BadRequest(
                f"Only empty projects can be deleted: {row.name!r} still has "
                + ", ".join(u for u in self.render(row)["used_by"] if "/profiles/default" not in u)
            )
        with self.db.transaction():
            q.delete_profiles_of(self.db, row.id)
            q.delete_project(self.db, row.id)
        self.events.lifecycle(ProjectAction.DELETED, project_url(row.name))

    def state(self, row: q.ProjectRow) -> dict[str, Any]:
        return {"resources": limits.usage(self.db, row.name)}
