"""Where a server keeps its cluster state, beside the standalone database (light: the CLI's
daemon control reads it to know whether the server is a cluster member)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ClusterFiles:
    """Where a member keeps its cluster state, beside the standalone database."""

    directory: Path
    """database/: holds stapes.db (standalone), local.db and global/ (clustered)."""

    @property
    def standalone(self) -> Path:
        return self.directory / "stapes.db"

    @property
    def standalone_kept(self) -> Path:
        """The standalone database as it was when clustering was enabled, kept aside."""
        return self.directory / "stapes.db.standalone"

    @property
    def local(self) -> Path:
        return self.directory / "local.db"

    @property
    def cowsql(self) -> Path:
        return self.directory / "global"

    @property
    def clustered(self) -> bool:
        return self.local.exists()

    @property
    def local_staging(self) -> Path:
        """local.db being written: it becomes local.db whole, or not at all."""
        return self.local.with_name("local.db.new")

    def drop_local_staging(self) -> None:
        for leftover in self.directory.glob(self.local_staging.name + "*"):
            leftover.unlink()


def move_database(source: Path, target: Path) -> None:
    """A SQLite file moved with its -wal and -shm files (those that exist)."""
    for suffix in ("", "-wal", "-shm"):
        path = source.with_name(source.name + suffix)
        if path.exists():
            path.rename(target.with_name(target.name + suffix))
