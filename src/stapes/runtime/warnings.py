"""Warnings: problems the daemon found and kept serving through (a network that would not come
up...). One row per (type, entity, member): seen again, it counts up and turns ``new`` again;
fixed, it is ``resolved``. Users acknowledge or delete them through /1.0/warnings; in a
cluster each member's are its own (their location), and every member lists them all."""

from __future__ import annotations

import logging
import uuid as uuidlib
from typing import Any

from stapes.api.errors import BadRequest
from stapes.api.lifecycle import WarningAction
from stapes.api.times import now, timestamp
from stapes.api.urls import warning_url
from stapes.db import warnings as q
from stapes.db.connection import Database
from stapes.runtime.events import EventBus
from stapes.runtime.membership import Membership, shown_location

log = logging.getLogger(__name__)
STATUSES = ("new", "acknowledged", "resolved")


class Warnings:
    def __init__(self, db: Database, events: EventBus, membership: Membership) -> None:
        self.db = db
        self.events = events
        self.membership = membership

    def raise_(
        self,
        type_: str,
        message: str,
        entity_url: str = "",
        project: str = "",
        severity: str = "low",
    ) -> None:
        stamp = timestamp(now())
        log.warning("%s: %s", type_, message)
        with self.db.transaction():
            here = self.membership.name
            row = q.find_warning(self.db, type_, entity_url, project, here)
            if row is None:
                row = q.WarningRow(
                    0, str(uuidlib.uuid4()), type_, entity_url, project, severity, "new", 1,
                    stamp, stamp, message, here,
                )  # fmt: skip
                q.insert_warning(self.db, row)
            else:
                row.count += 1
                row.last_seen_at, row.last_message = stamp, message
                if row.status == "resolved":
                    row.status = "new"
                q.update_warning(self.db, row)

    def resolve(self, type_: str, entity_url: str = "", project: str = "") -> None:
        with self.db.transaction():
            row = q.find_warning(self.db, type_, entity_url, project, self.membership.name)
            if row is not None and row.status != "resolved":
                row.status = "resolved"
                q.update_warning(self.db, row)

    def about(self, entity_url: str) -> list[q.WarningRow]:
        """The unresolved warnings of one entity."""
        return [
            w
            for w in q.list_warnings(self.db)
            if w.entity_url == entity_url and w.status != "resolved"
        ]

    def list_warnings(self, project: str | None) -> list[q.WarningRow]:
        return q.list_warnings(self.db, project)

    def get(self, uuid: str) -> q.WarningRow:
        return q.get_warning(self.db, uuid)

    @staticmethod
    def render(row: q.WarningRow) -> dict[str, Any]:
        return {
            "uuid": row.uuid,
            "type": row.type,
            "entity_url": row.entity_url,
            "project": row.project,
            "severity": row.severity,
            "status": row.status,
            "count": row.count,
            "first_seen_at": row.first_seen_at,
            "last_seen_at": row.last_seen_at,
            "last_message": row.last_message,
            "location": shown_location(row.location),
        }

    def set_status(self, row: q.WarningRow, status: str) -> None:
        if status not in ("new", "acknowledged"):
            raise BadRequest(f"Invalid warning status {status!r}: use new or acknowledged")
        if status == row.status:
            return
        row.status = status
        with self.db.transaction():
            q.update_warning(self.db, row)
        action = WarningAction.ACKNOWLEDGED if status == "acknowledged" else WarningAction.RESET
        self.events.lifecycle(action, warning_url(row.uuid))

    def delete(self, row: q.WarningRow) -> None:
        with self.db.transaction():
            q.delete_warning(self.db, row.id)
        self.events.lifecycle(WarningAction.DELETED, warning_url(row.uuid))
