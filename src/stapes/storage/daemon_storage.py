"""storage.backups_volume and storage.images_volume: the daemon's backups or images kept on a
custom volume (``POOL/VOLUME`` of the default project), as Incus keeps them. Setting a key
moves what the directory holds onto the volume and leaves a symlink in its place; unsetting it
moves everything back; a volume in this use cannot be deleted or renamed."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from stapes.api.errors import BadRequest
from stapes.db import storage as q
from stapes.db.connection import Database
from stapes.db.server_config import get_config
from stapes.host.paths import Paths
from stapes.storage.pool import Pools
from stapes.storage.volumes import disk_name

KEYS = {"storage.backups_volume": "backups", "storage.images_volume": "images"}
"""Each key and the daemon directory it moves."""


def parse(value: str) -> tuple[str, str]:
    pool, sep, volume = value.partition("/")
    if not sep or not pool or not volume or "/" in volume:
        raise BadRequest(f"Invalid volume {value!r}: use POOL/VOLUME (a custom volume)")
    return pool, volume


def users(db: Database, pool: str, volume: str) -> list[str]:
    """The server keys that keep daemon storage on the volume."""
    config = get_config(db)
    return [key for key in KEYS if config.get(key) == f"{pool}/{volume}"]


class DaemonStorage:
    def __init__(self, db: Database, paths: Paths, pools: Pools) -> None:
        self.db = db
        self.paths = paths
        self.pools = pools

    def _directory(self, key: str) -> Path:
        return self.paths.root / KEYS[key]

    def _volume_path(self, value: str) -> Path:
        pool, name = parse(value)
        row = q.find_volume(self.db, pool, "default", "custom", name)
        if row is None:
            raise BadRequest(
                f"Storage volume {name!r} does not exist on pool {pool!r} (project default): "
                "create it first"
            )
        if row.content_type != "filesystem":
            raise BadRequest(f"Storage volume {value!r} is a block volume: use a filesystem one")
        return self.pools.usable_driver(pool).volume_path("custom", disk_name("default", name))

    def check(self, config: dict[str, str]) -> None:
        """Raise unless each key names a usable volume (one volume per key)."""
        named = [config[k] for k in KEYS if config.get(k)]
        if len(named) != len(set(named)):
            raise BadRequest("storage.backups_volume and storage.images_volume need two volumes")
        for key in KEYS:
            if config.get(key):
                self._volume_path(config[key])

    async def apply(self, before: dict[str, str], after: dict[str, str]) -> None:
        """Move each directory whose key changed to its new place."""
        for key in KEYS:
            old, new = before.get(key, ""), after.get(key, "")
            if old != new:
                target = self._volume_path(new) if new else None
                await asyncio.to_thread(self._move, self._directory(key), target)

    @staticmethod
    def _move(directory: Path, target: Path | None) -> None:
        """Make ``directory`` a symlink to ``target`` (None: a directory of its own again),
        moving its entries there."""
        current = directory.resolve() if directory.exists() else None
        if target is None:
            staging = directory.with_name(directory.name + ".moving")
            staging.mkdir(mode=0o700, exist_ok=True)
            destination = staging
        else:
            if any(target.iterdir()):
                raise BadRequest(f"The volume for {directory.name} must be empty")
            destination = target
        if current is not None and current != destination:
            for entry in current.iterdir():
                shutil.move(str(entry), str(destination / entry.name))
        if directory.is_symlink():
            directory.unlink()
        elif directory.exists():
            directory.rmdir()
        if target is None:
            staging.rename(directory)
        else:
            target.chmod(0o700)
            directory.symlink_to(target)
