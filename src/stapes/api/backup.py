"""Request bodies of the backup endpoints (instances and custom volumes)."""

from __future__ import annotations

from stapes.api.base import WireModel


class BackupsPost(WireModel):
    """POST .../backups. ``instance_only`` (and the older ``container_only``) for instances,
    ``volume_only`` for custom volumes: leave the snapshots out."""

    name: str = ""
    expires_at: str | None = None
    instance_only: bool = False
    container_only: bool = False
    volume_only: bool = False
    optimized_storage: bool = False
    compression_algorithm: str = ""

    @property
    def without_snapshots(self) -> bool:
        return self.instance_only or self.container_only or self.volume_only


class BackupPost(WireModel):
    """POST .../backups/{name}: rename."""

    name: str
