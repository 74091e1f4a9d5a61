"""Profiles: CRUD, and the reconfiguration of every instance a change reaches.

A profile change is checked against every instance that uses it before anything is stored; then
the running ones get the changed live keys at once and the rest at their next start."""

from __future__ import annotations

import logging
import re
from typing import Any

from stapes.api.errors import BadRequest, Conflict, Forbidden, NotFound
from stapes.api.lifecycle import ProfileAction
from stapes.api.profile import ProfilePut
from stapes.api.urls import profile_url
from stapes.config.keys import validate_instance_config, without_empty
from stapes.config.validate import name_problem
from stapes.db import instances as iq
from stapes.db import projects as q
from stapes.db.connection import Database
from stapes.instance import admission, root_disk
from stapes.instance import update as updates
from stapes.instance.service import InstanceService
from stapes.project import restrictions
from stapes.runtime.events import EventBus

log = logging.getLogger(__name__)

_NAME = re.compile(r"[^/\s]+")


def validate_name(name: str) -> None:
    problem = name_problem(name)
    if problem is None and not _NAME.fullmatch(name):
        problem = "it cannot contain spaces"
    if problem is not None:
        raise BadRequest(f"Invalid profile name {name!r}: {problem}")


class ProfileService:
    def __init__(self, db: Database, events: EventBus, instances: InstanceService) -> None:
        self.db = db
        self.events = events
        self.instances = instances

    def get(self, project: str, name: str) -> q.ProfileRow:
        return q.get_profile(self.db, project, name)

    def list_profiles(self, project: str | None) -> list[q.ProfileRow]:
        """The profiles ``project`` sees (None: every project's own)."""
        if project is None:
            return q.list_all_profiles(self.db)
        return q.list_profiles(self.db, q.get_project(self.db, project).name)

    def users(self, row: q.ProfileRow) -> list[iq.InstanceRow]:
        return [i for i in iq.list_instances(self.db, row.project) if row.name in i.profiles]

    def render(self, row: q.ProfileRow) -> dict[str, Any]:
        return {
            **self.writable(row),
            "name": row.name,
            "used_by": [f"/1.0/instances/{i.name}" for i in self.users(row)],
            "project": row.project,
        }

    @staticmethod
    def writable(row: q.ProfileRow) -> dict[str, Any]:
        return {"config": row.config, "description": row.description, "devices": row.devices}

    def _check(self, put: ProfilePut) -> ProfilePut:
        put.config = without_empty(put.config)
        validate_instance_config(put.config, None)
        self.instances.check_devices(put.devices, "container")
        return put

    def create(self, project: str, name: str, put: ProfilePut) -> None:
        validate_name(name)
        self._check(put)
        q.get_project(self.db, project)
        restrictions.check_instance(self.db, project, None, put.config, put.devices)
        try:
            q.get_profile(self.db, project, name)
        except NotFound:
            pass
        else:
            raise Conflict(f"Profile {name!r} already exists")
        with self.db.transaction():
            q.create_profile(self.db, project, name, put.description, put.config, put.devices)
        self.events.lifecycle(ProfileAction.CREATED, profile_url(name, project), project=project)

    async def update(self, row: q.ProfileRow, put: ProfilePut) -> None:
        """Store a new profile body and reconfigure its instances, or change nothing."""
        self._check(put)
        restrictions.check_instance(self.db, row.project, None, put.config, put.devices)
        users = self.users(row)
        before = {i.name: self.instances.spec(i) for i in users}
        running = {i.name: await self.instances.is_running(i) for i in users}
        candidate = q.ProfileRow(
            row.id, row.project, row.name, put.description, put.config, put.devices
        )
        with self.db.transaction():
            q.update_profile(self.db, candidate)
            changes = {}
            try:
                # every instance must still render with the new profile (raises: rollback)
                for instance in users:
                    spec = self.instances.spec(instance)
                    admission.admit(
                        self.instances, instance.project, instance.name, instance.type,
                        instance.profiles, instance.config, instance.devices, new=False,
                    )  # fmt: skip
                    if root_disk.pool(spec.devices) != instance.pool:
                        raise BadRequest(
                            f"Instance {instance.name!r} would lose or move its root disk"
                        )
                    self.instances.drivers.get(instance.type).check_config(spec)
                    changes[instance.name] = updates.plan_devices(
                        self.instances,
                        instance,
                        before[instance.name],
                        spec,
                        running[instance.name],
                    )
            except (BadRequest, Forbidden) as exc:
                raise type(exc)(f"Profile change refused: {exc.message}") from None
        for instance in users:
            try:
                await updates.apply_live(
                    self.instances,
                    instance,
                    before[instance.name],
                    self.instances.spec(instance),
                    changes[instance.name],
                )
            except Exception:
                log.exception("could not apply profile %s to %s live", row.name, instance.name)
        self.events.lifecycle(
            ProfileAction.UPDATED, profile_url(row.name, row.project), project=row.project
        )

    def rename(self, row: q.ProfileRow, new_name: str) -> None:
        if row.name == "default":
            raise Forbidden("The 'default' profile cannot be renamed")
        validate_name(new_name)
        try:
            q.get_profile(self.db, row.project, new_name)
        except NotFound:
            pass
        else:
            raise Conflict(f"Profile {new_name!r} already exists")
        old = row.name
        with self.db.transaction():
            for instance in self.users(row):
                instance.profiles = [new_name if p == old else p for p in instance.profiles]
                iq.update_instance(self.db, instance)
            row.name = new_name
            q.update_profile(self.db, row)
        self.events.lifecycle(
            ProfileAction.RENAMED,
            profile_url(new_name, row.project),
            project=row.project,
            context={"old_name": old},
        )

    def delete(self, row: q.ProfileRow) -> None:
        if row.name == "default":
            raise Forbidden("The 'default' profile cannot be deleted")
        users = self.users(row)
        if users:
            raise BadRequest(
                f"Profile {row.name!r} is currently in use by {', '.join(i.name for i in users)}"
            )
        with self.db.transaction():
            q.delete_profile(self.db, row.id)
        self.events.lifecycle(
            ProfileAction.DELETED, profile_url(row.name, row.project), project=row.project
        )
