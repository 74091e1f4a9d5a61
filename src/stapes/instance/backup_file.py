"""Keeps backup.yaml in every instance volume current, as Incus does, so that `stapes admin
recover` can rebuild the database from the pools: it follows the lifecycle events of instances
and rewrites the file of the instance each one names."""

from __future__ import annotations

import logging
from typing import Any

from stapes.db import instances as q
from stapes.instance.backups import InstanceBackups
from stapes.runtime.events import EventBus

log = logging.getLogger(__name__)

CHANGES = {
    "instance-created",
    "instance-updated",
    "instance-renamed",
    "instance-restored",
    "instance-snapshot-created",
    "instance-snapshot-deleted",
    "instance-snapshot-renamed",
    "instance-snapshot-updated",
}
"""The lifecycle actions after which an instance's backup.yaml is stale."""


def instance_of(event: dict[str, Any]) -> tuple[str, str] | None:
    """(project, instance) a lifecycle event changed, when it is one of CHANGES."""
    meta = event.get("metadata") or {}
    if meta.get("action") not in CHANGES:
        return None
    parts = str(meta.get("source", "")).split("?", 1)[0].split("/")
    if len(parts) < 4 or parts[2] != "instances":
        return None
    return str(meta.get("project") or "default"), parts[3]


class BackupFileKeeper:
    def __init__(self, backups: InstanceBackups, events: EventBus) -> None:
        self.backups = backups
        self.listener = events.subscribe(frozenset({"lifecycle"}), None)

    async def run(self) -> None:
        """Until the bus closes (daemon shutdown)."""
        while (event := await self.listener.queue.get()) is not None:
            # what queued meanwhile too: a burst (300 snapshots) writes each instance's once
            events = [event]
            while not self.listener.queue.empty():
                more = self.listener.queue.get_nowait()
                if more is None:
                    return
                events.append(more)
            for found in dict.fromkeys(filter(None, map(instance_of, events))):
                row = q.find_instance(self.backups.db, *found)
                if row is None:
                    continue
                try:
                    # under the instance's lock: a snapshot's copy of the volume must not meet
                    # the file half-written (cp fails on a file that vanishes under it)
                    async with self.backups.instances.locks(row.project, row.name):
                        await self.backups.write_backup_file(row)
                except Exception:  # a missed write must not stop the next ones
                    log.exception("could not write backup.yaml of instance %s", row.name)
