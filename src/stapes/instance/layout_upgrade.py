"""Moves what an earlier stapesd kept under an instance's bare name to the names keyed by
project (host/paths.py ``instance_entry``), at daemon start, before instances are re-adopted.

Stapes before 2026-12 named an instance's volume, its snapshots, its logs and its device
files by the instance's name alone, whatever its project. Only instances outside the default
project move (the default project's names did not change). A bare-named directory that a
default-project instance of the same name also claims stays with that instance: on one pool
the two could not both exist, and logs and device files were shared (the default project's
instance keeps them). Idempotent: once moved, the old names are gone."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from stapes.api.errors import StapesError
from stapes.host.paths import instance_entry, move_instance_dir
from stapes.storage.volumes import instance_volume

if TYPE_CHECKING:
    from stapes.instance.service import InstanceService

log = logging.getLogger(__name__)


async def upgrade(svc: InstanceService) -> None:
    rows = svc.local_instances()
    default = {(r.name, r.pool) for r in rows if r.project == "default"}
    default_names = {name for name, _ in default}
    for row in rows:
        if row.project == "default":
            continue
        try:
            drv = svc.pools.driver(row.pool)
        except StapesError:  # an unavailable pool: its instances move when it is back
            continue
        vol_type, on_pool = instance_volume(row)
        old, new = drv.volume_path(vol_type, row.name), drv.volume_path(vol_type, on_pool)
        if (row.name, row.pool) not in default and old.is_dir() and not new.exists():
            await drv.rename_volume(vol_type, row.name, on_pool)
            log.info("moved the volume of %s (project %s) to %s", row.name, row.project, on_pool)
        if row.name in default_names:
            continue
        for place in (svc.paths.logs, svc.paths.devices):
            target = place / instance_entry(row.project, row.name)
            if (place / row.name).is_dir() and not target.exists():
                move_instance_dir(place / row.name, target)
