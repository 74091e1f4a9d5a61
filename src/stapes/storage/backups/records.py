"""What instance and volume backups share: the rows, the tarball each row names, new names,
expiry, and the wire form."""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from stapes.api.backup import BackupsPost
from stapes.api.errors import BadRequest, Conflict, NotFound
from stapes.api.times import ZERO_TIME, now, timestamp
from stapes.config.server_keys import server_value
from stapes.config.snapshots import parse_expiry_time
from stapes.config.validate import name_problem
from stapes.db import backups as q
from stapes.db.connection import Database
from stapes.db.server_config import get_config
from stapes.host.paths import Paths
from stapes.storage.backups import compression


class BackupRecords:
    def __init__(self, db: Database, paths: Paths, owner: q.Owner) -> None:
        self.db = db
        self.paths = paths
        self.owner: q.Owner = owner

    def directory(self, owner_id: int) -> Path:
        """Where the tarballs of one instance or volume live (ids: they survive renames)."""
        return self.paths.backups / f"{self.owner}s" / str(owner_id)

    def file(self, row: q.BackupRow) -> Path:
        return self.directory(row.owner_id) / f"{row.id}.tar"

    def existing_file(self, row: q.BackupRow) -> Path:
        """The tarball to download; 404 when it has gone from the disk."""
        path = self.file(row)
        if not path.exists():
            raise NotFound(f"The tarball of backup {row.name!r} is missing")
        return path

    def list_backups(self, owner_id: int) -> list[q.BackupRow]:
        return q.list_backups(self.db, self.owner, owner_id)

    def get(self, owner_id: int, name: str) -> q.BackupRow:
        return q.get_backup(self.db, self.owner, owner_id, name)

    def new_row(self, owner_id: int, req: BackupsPost, optimized: bool) -> q.BackupRow:
        """Check a create request (name free, compression usable) and describe the backup."""
        taken = {b.name for b in self.list_backups(owner_id)}
        name = req.name or next(
            f"backup{n}" for n in range(len(taken) + 1) if f"backup{n}" not in taken
        )
        self.check_name(owner_id, name)
        return q.BackupRow(
            id=0,
            owner=self.owner,
            owner_id=owner_id,
            name=name,
            created_at=timestamp(now()),
            expires_at=parse_expiry_time(req.expires_at) if req.expires_at else "",
            without_snapshots=req.without_snapshots,
            optimized=optimized,
            compression=compression.check(
                req.compression_algorithm
                or server_value(get_config(self.db), "backups.compression_algorithm")
            ),
        )

    def check_name(self, owner_id: int, name: str) -> None:
        problem = name_problem(name)
        if problem is None and any(c.isspace() for c in name):
            problem = "it cannot contain spaces"
        if problem is not None:
            raise BadRequest(f"Invalid backup name {name!r}: {problem}")
        if q.find_backup(self.db, self.owner, owner_id, name) is not None:
            raise Conflict(f"Backup {name!r} already exists")

    def insert(self, row: q.BackupRow) -> None:
        with self.db.transaction():
            q.insert_backup(self.db, row)

    def rename(self, row: q.BackupRow, name: str) -> None:
        self.check_name(row.owner_id, name)
        with self.db.transaction():
            q.rename_backup(self.db, row.id, name)

    async def delete(self, row: q.BackupRow) -> None:
        await asyncio.to_thread(self.file(row).unlink, True)
        with self.db.transaction():
            q.delete_backup(self.db, row.id)

    async def forget_owner(self, owner_id: int) -> None:
        """The tarballs of a deleted instance or volume (its rows go with it)."""
        await asyncio.to_thread(shutil.rmtree, self.directory(owner_id), True)

    async def expire(self, minute: datetime) -> None:
        """Delete the backups whose expires_at has passed (the minute round calls this)."""
        for backup in q.expired_backups(self.db, minute):
            if backup.owner == self.owner:
                await self.delete(backup)

    @staticmethod
    def stored_time(value: object) -> str:
        """A time from a backup's index.yaml as stored ("" for Go's zero time: never)."""
        text = str(value or "")
        return "" if text.startswith("0001-") else text

    def render(self, row: q.BackupRow) -> dict[str, Any]:
        only = "volume_only" if self.owner == "volume" else "instance_only"
        body: dict[str, Any] = {
            "name": row.name,
            "created_at": row.created_at,
            "expires_at": row.expires_at or ZERO_TIME,
            only: row.without_snapshots,
            "optimized_storage": row.optimized,
        }
        if self.owner == "instance":
            body["container_only"] = row.without_snapshots
        return body
